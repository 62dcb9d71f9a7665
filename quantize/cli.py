"""`python -m quantize <command>`: the workstation's commands (models, train, evaluate, convert, ...)."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edge_sca.cli_common import add_common, emit, run_cli  # noqa: E402
from edge_sca.config import MODEL_NAMES  # noqa: E402


def cmd_models(args: argparse.Namespace) -> int:
    from quantize.architectures import PAPER_BUDGETS, build_model, count_macs

    rows = []
    for name in args.model or MODEL_NAMES:
        m = build_model(name)
        params, macs = int(m.count_params()), count_macs(m)
        paper_p, paper_m = PAPER_BUDGETS[name]
        rows.append({"model": name, "params": params, "macs": macs, "gflops": 2 * macs / 1e9,
                     "paper_params": paper_p, "paper_macs": paper_m})
    emit(rows, args.json, lambda r: "\n".join(
        f"{x['model']:>9}: {x['params']:>10,} params ({x['params'] / x['paper_params'] - 1:+.1%} vs paper), "
        f"{x['macs'] / 1e9:.3f} GMACs = {x['gflops']:.3f} GFLOPs ({x['macs'] / x['paper_macs'] - 1:+.1%})"
        for x in r))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edge_sca.isic import resolve_isic_dir
    from quantize.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, isic_dir=str(resolve_isic_dir(args.isic_dir)), out_dir=args.out_dir,
                      epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      train_size=args.image_size, final_epochs=args.final_epochs, lr=args.lr,
                      weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed,
                      limit=args.limit, threads=args.threads, skip_bad=args.skip_bad)
    if cfg.train_size != 224 and cfg.final_epochs == 0:
        cfg.final_epochs = 1
    record = train(cfg, resume=args.resume, finalize_only=args.finalize)
    summary = {k: record[k] for k in ("artifact", "epochs_completed", "best_epoch", "threshold", "metrics")}
    emit(summary, args.json, lambda r: (
        f"{r['artifact']}: {r['epochs_completed']} epochs (best {r['best_epoch']}), threshold {r['threshold']:.4f}; "
        f"test balanced accuracy {r['metrics']['test']['balanced_accuracy']:.3f}, "
        f"sensitivity {r['metrics']['test']['sensitivity']:.3f}, AUROC {r['metrics']['test']['auroc']:.3f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from edge_sca.config import MODELS_DIR

    p = argparse.ArgumentParser(prog="python -m quantize", description=(
        "Workstation side of CancerNet-SCa edge: architectures, training on an ISIC folder, evaluation, int8 "
        "calibration and conversion, drift reports. Research tool, not a diagnosis."))
    sub = p.add_subparsers(title="commands")

    s = sub.add_parser("models", help="parameter counts and multiply-accumulates of each architecture at 224x224")
    s.add_argument("--model", action="append", choices=MODEL_NAMES, help="only this model (repeatable)")
    add_common(s)
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train a model on an ISIC folder (resumable)", description=(
        "Train on the train split, select the best epoch by validation AUROC, choose the threshold on val for 90%% "
        "malignant sensitivity, and write models/<name>.keras with a JSON record. Each epoch is STEPS balanced "
        "batches; a checkpoint is written every epoch and --resume continues a stopped run."))
    s.add_argument("--model", required=True, choices=MODEL_NAMES)
    s.add_argument("--isic-dir", help="ISIC folder (default: $ISIC_DIR, data/isic, ../shared/isic)")
    s.add_argument("--out-dir", default=str(MODELS_DIR), help="where the model, record and checkpoints go")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--steps-per-epoch", type=int, default=100, help="balanced batches per epoch")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--image-size", type=int, default=224,
                   help="training size; below 224 the last --final-epochs run at 224 (progressive resizing)")
    s.add_argument("--final-epochs", type=int, default=0, help="epochs at 224 at the end (default 1 if resizing)")
    s.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate, cosine-decayed to 1%%")
    s.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay (0: plain Adam)")
    s.add_argument("--label-smoothing", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, help="use only the first N images of each class per split (quick runs)")
    s.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: all cores)")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad rows, counting them")
    s.add_argument("--resume", action="store_true", help="continue the run in the checkpoint folder")
    s.add_argument("--finalize", action="store_true", help="export the best checkpoint now, without training more")
    add_common(s)
    s.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
