#!/bin/bash
# Issue 14 on a lent GPU: runs of the project's own `python -m quantize train` (Keras on JAX), concurrently, on the
# packed data (pack/, written by `python -m quantize pack`); brings back weights, states, records and logs.
# RUNS=generalisation (default): the recipe's ablations and the source-held-out pair (seven runs).
# RUNS=colour: Shades of Gray colour constancy against a control with the same recipe and budget, for B and C.
set -u
cd "$(dirname "$0")"
T0=$(date +%s)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/logs
[ -d pack ] || python3 -c "import zipfile; zipfile.ZipFile('pack.zip').extractall('pack')" || exit 1
if [ -d whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false CANCERNET_CACHE=${CANCERNET_CACHE:-/tmp/cache}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
nvidia-smi -L 2>/dev/null; nproc
python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())" || exit 1
python3 -c "
from edge_sca.isic import load_isic_folder
from quantize.data import load_arrays
import os
for d in ('pack/isic', 'pack/extra'):
    if os.path.isdir(d):  # RUNS=colour needs no pack/extra
        load_arrays(load_isic_folder(d).records)
" || exit 1
echo "cache built at +$(( $(date +%s) - T0 ))s"
EPOCHS=${EPOCHS:-24}; FINAL=${FINAL:-4}; STEPS=${STEPS:-100}; LIMIT=${LIMIT:-450}; EXTRA=${EXTRA:-}
common="--isic-dir pack/isic --image-size 128 --final-epochs $FINAL --epochs $EPOCHS --steps-per-epoch $STEPS --batch-size 64
        --lr 3e-4 --label-smoothing 0.1 --seed 14 $EXTRA"
full="--extra-isic-dir pack/extra --augment strong --source-balance 0.5 --ema 0.998"
run() {  # name, model, then options; fine-tunes the shipped model unless the options hold --scratch
  local name=$1 model=$2; shift 2
  local init="--init-from ../models/cancernet_sca_$model.keras"
  if [ "${1:-}" = "--scratch" ]; then init=""; shift; fi
  timeout "$LIMIT" python3 -m quantize train --model "$model" $init \
    --models-dir /tmp/runs/$name $common "$@" > /tmp/logs/$name.log 2>&1 &
}
case ${RUNS:-generalisation} in
generalisation)
  run b_full b $full --snapshot-every 4
  run c_full c $full --snapshot-every 4
  run b_naive b --extra-isic-dir pack/extra --augment basic
  run b_nodegrade b --extra-isic-dir pack/extra --augment strong-no-degrade --source-balance 0.5 --ema 0.998
  run b_noextra b --augment strong --source-balance 0.5 --ema 0.998
  # source-held-out check: B from scratch with every source, and without ISIC 2017 (tested on its val + test)
  run b_scratch_all b --scratch $full --lr 1e-3
  run b_scratch_no2017 b --scratch $full --lr 1e-3 --exclude-source "ISIC 2017 challenge"
  ;;
colour)  # without isic_extra (it did not help in the generalisation runs); every run keeps every 2nd epoch
  recipe="--augment strong --source-balance 0.5 --ema 0.998 --snapshot-every 2"
  for m in b c; do
    run ${m}_sog $m $recipe --colour-constancy shades_of_gray
    run ${m}_control $m $recipe
  done
  ;;
*) echo "RUNS=${RUNS}: use generalisation or colour"; exit 2 ;;
esac
wait
echo "training done at +$(( $(date +%s) - T0 ))s"
pack_run() {  # name, how many snapshots: best weights, the last snapshots, state and record
  local name=$1 keep=$2 dir=/tmp/runs/$1
  (cd $dir && tar cf $OUT/$name.tar $(ls *.json 2>/dev/null) \
     $(ls checkpoints/*/best.weights.h5 checkpoints/*/state.json 2>/dev/null) \
     $(ls checkpoints/*/epoch-*.weights.h5 2>/dev/null | tail -n "$keep"))
}
if [ "${RUNS:-generalisation}" = colour ]; then
  for r in b_sog b_control; do pack_run $r 2; done
  for r in c_sog c_control; do pack_run $r 1; done  # C: 5.6 MB a file, 16 MiB a tar
else
  pack_run b_full 2
  pack_run c_full 1
  for a in b_naive b_nodegrade b_noextra; do pack_run $a 0 && mv $OUT/$a.tar /tmp/$a.tar; done
  (cd /tmp && tar cf $OUT/ablations.tar b_naive.tar b_nodegrade.tar b_noextra.tar)
  for a in b_scratch_all b_scratch_no2017; do pack_run $a 0 && mv $OUT/$a.tar /tmp/$a.tar; done
  (cd /tmp && tar cf $OUT/heldout.tar b_scratch_all.tar b_scratch_no2017.tar)
fi
tail -n 3 /tmp/logs/*.log
(cd /tmp && tar czf $OUT/logs.tar.gz logs)
ls -la $OUT
echo "all done at +$(( $(date +%s) - T0 ))s"
