"""Importing an original CancerNet-SCa TF 1.x checkpoint (model.meta + model-N.index/.data-*) for conversion.

The official checkpoints are Keras-on-TF1 graphs: input `input_1:0` (RGB in [0, 1]), output `probs/Softmax:0`, and a
`keras_learning_phase:0` placeholder-with-default that must be 0 (inference: dropout off, batch norm frozen).
The import restores the variables, freezes them to constants, wires the learning phase to a constant 0, keeps only
what `probs/Softmax` needs, and writes a frozen GraphDef (.pb) that quantize.convert converts like a Keras model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_sca.errors import ModelError

log = logging.getLogger(__name__)

INPUT_TENSOR = "input_1:0"
OUTPUT_TENSOR = "probs/Softmax:0"
LEARNING_PHASE = "keras_learning_phase:0"


def find_checkpoint(ckpt_dir: Path) -> tuple[Path, str]:
    """The .meta graph and the checkpoint prefix (the newest model-N) in a checkpoint folder."""
    if not ckpt_dir.is_dir():
        raise ModelError(f"{ckpt_dir}: not a folder; give the folder holding model.meta and model-N.index")
    metas = sorted(ckpt_dir.glob("*.meta"))
    indexes = sorted(ckpt_dir.glob("*.index"), key=lambda p: (len(p.stem), p.stem))
    if not metas or not indexes:
        raise ModelError(f"{ckpt_dir}: needs a TF 1.x checkpoint (model.meta, model-N.index, model-N.data-*); "
                         f"found {', '.join(p.name for p in ckpt_dir.iterdir()) or 'nothing'}")
    meta = ckpt_dir / "model.meta" if (ckpt_dir / "model.meta").is_file() else metas[0]
    return meta, str(indexes[-1].with_suffix(""))


def freeze_checkpoint(ckpt_dir: str | Path):
    """Restore and freeze the checkpoint; returns a GraphDef with input_1 -> probs/Softmax and no learning phase."""
    import tensorflow as tf

    meta, prefix = find_checkpoint(Path(ckpt_dir))
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        try:
            saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
            saver.restore(sess, prefix)
        except (tf.errors.OpError, ValueError, OSError) as exc:
            raise ModelError(f"{meta}: cannot restore the checkpoint {prefix} ({exc})") from exc
        names = {op.name for op in graph.get_operations()}
        missing = [t for t in (INPUT_TENSOR, OUTPUT_TENSOR) if t.split(":")[0] not in names]
        if missing:
            raise ModelError(f"{meta}: graph lacks {', '.join(missing)}; not a CancerNet-SCa checkpoint")
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), [OUTPUT_TENSOR.split(":")[0]])
        phase = graph.get_tensor_by_name(LEARNING_PHASE) if LEARNING_PHASE.split(":")[0] in names else None
    if phase is None:
        return frozen
    inference = tf.Graph()
    with inference.as_default():
        zero = tf.zeros([], dtype=phase.dtype, name="learning_phase_inference")  # 0 / False: inference
        tf.compat.v1.import_graph_def(frozen, input_map={LEARNING_PHASE: zero}, name="")
        pruned = tf.compat.v1.graph_util.extract_sub_graph(inference.as_graph_def(), [OUTPUT_TENSOR.split(":")[0]])
    return pruned


def import_checkpoint(ckpt_dir: str | Path, out: str | Path) -> Path:
    """Write the frozen inference graph of a TF 1.x checkpoint to `out` (.pb)."""
    out = Path(out)
    if out.suffix != ".pb":
        raise ModelError(f"{out}: the imported model is a frozen graph; name it <something>.pb")
    graph_def = freeze_checkpoint(ckpt_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(graph_def.SerializeToString())
    log.info("wrote %s (%d nodes)", out, len(graph_def.node))
    return out


def load_frozen(path: str | Path):
    """A frozen .pb as a concrete function [input_1] -> [probs], which quantize.convert accepts like a Keras model."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except (OSError, Exception) as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ModelError(f"{path}: not a frozen graph written by `python -m quantize import-checkpoint` "
                         f"({exc})") from exc
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    return wrapped.prune([g.as_graph_element(INPUT_TENSOR)], [g.as_graph_element(OUTPUT_TENSOR)])


def run_frozen(fn, x: np.ndarray) -> np.ndarray:
    """Call a load_frozen function on a float batch; returns the probabilities."""
    import tensorflow as tf

    return fn(tf.constant(x, tf.float32))[0].numpy()
