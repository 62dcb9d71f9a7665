"""`python -m quantize <command>`: the workstation's commands (models, train, evaluate, convert, ...)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edge_sca.cli_common import (  # noqa: E402
    ISIC_DIR_HELP,
    add_command,
    add_model_option,
    add_option,
    emit,
    model_file,
    positive_float,
    positive_int,
    run_cli,
)
from edge_sca.colour import METHODS as COLOUR_METHODS  # noqa: E402
from edge_sca.contract import MODEL_NAMES  # noqa: E402
from edge_sca.devpaths import MODELS_DIR  # noqa: E402
from edge_sca.errors import EdgeScaError  # noqa: E402
from edge_sca.policy import TARGET_SENSITIVITY  # noqa: E402

SPLITS = ("test", "val", "train", "calibration", "all")


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


def cmd_summary(args: argparse.Namespace) -> int:
    from quantize.summary import load_records, markdown, rows, throughput, throughput_markdown

    records = load_records(Path(args.models_dir), args.model)
    result = {"rows": rows(records), "throughput_images_per_s": {r["model"]: throughput(r) for r in records}}
    emit(result, args.json, lambda d: markdown(d["rows"]) + "\n\n" + throughput_markdown(records))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from edge_sca.isic import resolve_isic_dir
    from quantize.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, isic_dir=str(resolve_isic_dir(args.isic_dir)), out_dir=args.models_dir,
                      epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                      train_size=args.image_size, final_epochs=args.final_epochs or 0, lr=args.lr,
                      weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, seed=args.seed,
                      limit=args.limit, threads=args.threads, skip_bad=args.skip_bad,
                      init_from=args.init_from, extra_isic_dirs=args.extra_isic_dir or [], augment=args.augment,
                      source_balance=args.source_balance, ema_decay=args.ema, select_on=args.select_on,
                      snapshot_every=args.snapshot_every, exclude_sources=args.exclude_source or [],
                      note=args.note or "", colour_constancy=args.colour_constancy)
    if args.final_epochs is None:  # resizing ends with one epoch at 224 unless told otherwise
        cfg.final_epochs = 1 if cfg.train_size != 224 else 0
    record = train(cfg, resume=args.resume, finalize_only=args.finalize)
    summary = {k: record[k] for k in ("artifact", "epochs_completed", "best_epoch", "threshold", "metrics")}
    emit(summary, args.json, lambda r: (
        f"{r['artifact']}: {r['epochs_completed']} epochs (best {r['best_epoch']}), threshold {r['threshold']:.4f}; "
        f"test balanced accuracy {r['metrics']['test']['balanced_accuracy']:.3f}, "
        f"sensitivity {r['metrics']['test']['sensitivity']:.3f}, AUROC {r['metrics']['test']['auroc']:.3f}"))
    return 0


def cmd_robust_tune(args: argparse.Namespace) -> int:
    from edge_sca.contract import model_stem
    from edge_sca.isic import resolve_isic_dir
    from quantize.robust import RobustSettings, robust_tune

    settings = RobustSettings(train_images=args.images, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.lr, consistency=args.consistency, labels=args.labels,
                              seed=args.seed, consistency_scale=args.consistency_scale)
    source = Path(args.models_dir) / f"{model_stem(args.model)}.keras"
    record = robust_tune(args.model, source, resolve_isic_dir(args.isic_dir), Path(args.out_dir), settings,
                         args.threads)
    summary = {k: record[k] for k in ("artifact", "threshold", "metrics", "history")} | {"out_dir": args.out_dir}
    emit(summary, args.json, lambda r: (
        f"{r['out_dir']}/{r['artifact']}: threshold {r['threshold']:.4f}; "
        f"val AUROC {r['metrics']['val']['auroc']:.4f}, "
        f"test AUROC {r['metrics']['test']['auroc']:.4f}, test sensitivity {r['metrics']['test']['sensitivity']:.3f}; "
        f"consistency {r['history'][-1]['consistency']:.5f} after {len(r['history'])} epochs. Next: "
        f"`python -m quantize convert --model {args.model} --models-dir {r['out_dir']} --reports-dir "
        f"{r['out_dir']}/reports` (int8 budgets) and `python -m quantize sources --models-dir {r['out_dir']} "
        f"--model {args.model} --out-dir {r['out_dir']}/sources` (per-source accuracy)"))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from quantize.pack import PackOptions, pack_folder

    opts = PackOptions(size=args.size, quality=args.quality, max_train_per_group=args.max_train_per_group,
                       splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()))
    result = pack_folder(args.isic_dir, args.out_dir, opts)
    emit(result, args.json, lambda r: f"{args.out_dir}: {r['images']} images, {r['bytes'] / 1e6:.1f} MB")
    return 0


def _fmt_rates(r: dict) -> str:
    lo, hi = r["sensitivity_ci95"]
    slo, shi = r["specificity_ci95"]
    return (f"threshold {r['threshold']:.4f}: sensitivity {r['sensitivity']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
            f"specificity {r['specificity']:.3f} (95% CI {slo:.3f}-{shi:.3f})")


def _fmt_recalibration(r: dict) -> str:
    c = r["counts"]
    lines = [f"{r['isic_dir']} ({r['split']}): {c['malignant']} malignant, {c['benign']} benign images"]
    for m in r["models"]:
        lines.append(f"{m['model']}: current {_fmt_rates(m['current'])}")
        if "proposed" in m:
            lines.append(f"{' ' * len(m['model'])}  proposed {_fmt_rates(m['proposed'])} (on these same images)")
    return "\n".join(lines)


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from quantize.recalibrate import RecalibrateOptions, recalibrate

    opts = RecalibrateOptions(target_sensitivity=args.target_sensitivity, split=args.split)
    report = recalibrate(args.isic_dir, args.models_dir, args.out_dir, args.model, opts)
    emit(report, args.json, _fmt_recalibration)
    if report["status"] != "proposed":
        print(f"error: no threshold proposed and nothing written: {report['reason']}", file=sys.stderr)
        return 2
    print(f"wrote {len(report['models'])} models with new manifests to {args.out_dir}; check them, then sign a bundle "
          f"with `make bundle MODELS_DIR={args.out_dir}`", file=sys.stderr)
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from edge_sca.contract import model_stem
    from edge_sca.isic import resolve_isic_dir
    from quantize.source_report import markdown, source_report

    files = args.model_file or [Path(args.models_dir) / f"{model_stem(name)}.keras" for name in args.model]
    reports = source_report(files, resolve_isic_dir(args.isic_dir), args.out_dir)
    emit(reports, args.json, lambda r: markdown(list(r.values())))
    return 0


def _fmt_eval(r: dict) -> str:
    cm = r["confusion"]
    return (f"{r['model']} on {r['split']} ({r['n']} images; threshold {r['threshold']:.4f} from "
            f"{r['threshold_source']}): accuracy {r['accuracy']:.4f}, balanced accuracy {r['balanced_accuracy']:.4f}, "
            f"sensitivity {r['sensitivity']:.4f}, specificity {r['specificity']:.4f}, PPV {r['ppv']:.4f}, "
            f"AUROC {r['auroc']:.4f}; confusion [[TN {cm[0][0]}, FP {cm[0][1]}], [FN {cm[1][0]}, TP {cm[1][1]}]]"
            + "".join(f"\n  {name} ({m['n']} images, {m['malignant']} malignant): sensitivity {m['sensitivity']:.4f}, "
                      f"specificity {m['specificity']:.4f}, AUROC {m['auroc']:.4f}"
                      for name, m in r.get("by_source", {}).items()))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge_sca.isic import resolve_isic_dir
    from quantize.evaluate import evaluate

    result = evaluate(model_file(args, "keras"), resolve_isic_dir(args.isic_dir), args.split, args.skip_bad,
                      args.threshold)
    emit(result, args.json, _fmt_eval)
    return 0


def _options(args: argparse.Namespace):
    from quantize.convert import VARIANTS
    from quantize.job import QuantizeOptions
    from quantize.recipe import load_recipe

    extra = [v.strip() for v in (getattr(args, "variants", None) or "").split(",") if v.strip()]
    bad = [v for v in extra if v not in VARIANTS]
    if bad:
        raise EdgeScaError(f"unknown variant(s) {', '.join(bad)} in --variants; choose from {', '.join(VARIANTS)}")
    recipe = load_recipe(args.recipe).with_overrides(
        args.calibration_size, getattr(args, "per_tensor", False), getattr(args, "no_bias_correction", False))
    return QuantizeOptions(io=args.io, variants=extra, recipe=recipe, keep_float=list(getattr(args, "keep_float", None)
                                                                                       or []),
                           keep_float_auto=getattr(args, "keep_float_auto", False), skip_bad=args.skip_bad,
                           threads=getattr(args, "threads", None))


def _fmt_convert(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        m = r["metrics"]
        split = " / ".join(f"{s} {d['agreement']:.2%}" for s, d in r["splits"].items())
        lines.append(f"{r['model']} ({r['recipe']}, {r['split']}, {r['n']} images): int8 agreement "
                     f"{r['agreement']:.2%} ({split}), flips malignant->benign {r['malignant_to_benign']} (missed "
                     f"cancers {r['missed_cancers']}) / benign->malignant "
                     f"{r['benign_to_malignant']}, delta sensitivity {r['delta_sensitivity'] * 100:+.2f} points, "
                     f"delta AUROC {r['delta_auroc']:+.4f}, mean / max |dp| {r['mean_abs_delta_p']:.4f} / "
                     f"{r['max_abs_delta_p']:.4f}, size {r['size_ratio']:.1%} of float32; balanced accuracy "
                     f"keras {m['keras']['balanced_accuracy']:.4f} float32 {m['float32']['balanced_accuracy']:.4f} "
                     f"int8 {m['int8']['balanced_accuracy']:.4f}; "
                     f"{'within budget' if r['budgets_ok'] else 'OVER BUDGET'}; report {r['report']}"
                     if "keras" in m else f"{r['model']}: see {r['report']}")
    return "\n".join(lines)


def _report_failures(failures: list[str], kinds: set) -> int:
    from quantize.budgets import Budget

    if not failures:
        return 0
    for f in failures:
        print(f"budget broken: {f}", file=sys.stderr)
    drift = {Budget.AGREEMENT, Budget.MALIGNANT_TO_BENIGN, Budget.DELTA_SENSITIVITY, Budget.DELTA_AUROC}
    if kinds & drift:
        print("int8 drift is over budget (see the drift report): `python -m quantize compare` measures every recipe "
              "(docs/quantization.md); --keep-float-auto keeps the worst layers in float (no longer fully integer)",
              file=sys.stderr)
    if Budget.SIZE_RATIO in kinds:
        print("int8 file over budget: did the conversion fall back to float? Check `quantize debug`; --per-tensor "
              "drops the per-channel scales (check its drift)", file=sys.stderr)
    return 1


def cmd_convert(args: argparse.Namespace) -> int:
    from edge_sca.isic import resolve_isic_dir
    from quantize.pipeline import prepare, run

    options = _options(args)
    isic = resolve_isic_dir(args.isic_dir)
    rows, failures, kinds = [], [], set()
    for name in args.model or ["b", "c"]:
        outcome = run(prepare(name, isic, Path(args.models_dir), Path(args.reports_dir), options))
        rows.append(outcome.summary)
        failures += outcome.failures
        kinds |= outcome.failed
    emit(rows, args.json, _fmt_convert)
    return _report_failures(failures, kinds)


def cmd_compare(args: argparse.Namespace) -> int:
    from edge_sca.isic import resolve_isic_dir
    from quantize.compare import BUILD_DIR, COMPARED_RECIPES, compare, markdown, write

    if not args.docs_only:
        table = compare(args.model or ["b", "c"], args.recipe or list(COMPARED_RECIPES),
                        resolve_isic_dir(args.isic_dir), Path(args.models_dir), Path(args.build_dir or BUILD_DIR),
                        args.threads, args.skip_bad)
        paths = write(table, Path(args.reports_dir))
        emit(table | {"report": str(paths["md"])}, args.json,
             lambda t: markdown(t) + f"\n(written to {paths['md']})")
    if args.update_docs or args.docs_only:
        _update_methods_docs(Path(args.reports_dir))
    return 0


def _update_methods_docs(reports_dir: Path) -> None:
    from edge_sca.devpaths import REPO_ROOT
    from quantize.methods_docs import update
    from quantize.recipe import DEFAULT_RECIPE

    changed = update([REPO_ROOT / "README.md", REPO_ROOT / "docs" / "quantization.md"], reports_dir / "methods.json",
                     reports_dir / "int8_latency.json", DEFAULT_RECIPE)
    print("recipe table updated in " + ", ".join(str(p) for p in changed) if changed else
          "recipe table: docs already up to date", file=sys.stderr)


def cmd_drift(args: argparse.Namespace) -> int:
    from edge_sca.contract import model_stem
    from edge_sca.isic import load_isic_folder, resolve_isic_dir
    from quantize.budgets import broken, check_budgets
    from quantize.data import load_split
    from quantize.drift import measure
    from quantize.report import write_report
    from quantize.validation import drift_of

    models_dir, stem = Path(args.models_dir), model_stem(args.model)
    paths = {"keras": models_dir / f"{stem}.keras", "float32": models_dir / f"{stem}_float32.tflite",
             "int8": models_dir / f"{stem}_int8.tflite"}
    if not paths["keras"].is_file():
        del paths["keras"]
    folder = load_isic_folder(resolve_isic_dir(args.isic_dir), skip_bad=args.skip_bad)
    data = load_split(folder, args.split, skip_bad=args.skip_bad)
    result, probs = measure(paths, data)
    result.update(model=args.model, split=args.split, isic_dir=str(folder.root))
    out = (Path(args.out_dir) if args.out_dir
           else Path(args.reports_dir) / args.model / f"{folder.root.name}-{args.split}")
    write_report(result, probs, data.y, out, f"CancerNet-SCa-{args.model.upper()}: drift on {folder.root.name} "
                 f"({args.split})")
    q = result["int8_vs_float32"]
    emit(result | {"report": str(out / "drift.md")}, args.json, lambda r: (
        f"{args.model} on {folder.root.name}/{args.split} ({r['n']} images): agreement {q['agreement']:.2%}, delta "
        f"sensitivity {q['delta_sensitivity'] * 100:+.2f} points, malignant->benign {q['malignant_to_benign']}; "
        f"report {r['report']}"))
    res = broken(check_budgets(drift_of(result)))
    return _report_failures([f"{args.model}: {b.message}" for b in res], {b.kind for b in res})


def cmd_debug(args: argparse.Namespace) -> int:
    from edge_sca.contract import model_stem
    from edge_sca.isic import load_isic_folder, resolve_isic_dir
    from quantize.calibration import calibration_set
    from quantize.debug import layer_errors
    from quantize.evaluate import load_source_model
    from quantize.provenance import write_json

    models_dir = Path(args.models_dir)
    src = models_dir / f"{model_stem(args.model)}.keras"
    folder = load_isic_folder(resolve_isic_dir(args.isic_dir), skip_bad=args.skip_bad)
    calib, source = calibration_set(folder, args.calibration_size, args.skip_bad)
    rows = layer_errors(load_source_model(src if src.is_file() else src.with_suffix(".pb")), calib.x,
                        n_images=args.images, io_type=args.io)
    out = Path(args.reports_dir) / args.model / "layers.json"
    write_json(out, {"model": args.model, "calibration": source, "images": min(args.images, len(calib.ids)),
                     "layers": rows})
    emit(rows[: args.top], args.json, lambda r: "\n".join(
        ["rmse/scale  op                 tensor (pass it to convert --keep-float, quoted)"]
        + [f"{x['rmse_over_scale']:10.3f}  {x['op_name']:<18} {x['tensor_name']}" for x in r] + [f"(all: {out})"]))
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from quantize.checkpoint import import_checkpoint

    out = import_checkpoint(args.checkpoint_dir, args.out)
    emit({"out": str(out)}, args.json, lambda r: f"wrote {r['out']}")
    return 0


def _checks_paths(args: argparse.Namespace) -> tuple[Path, Path | None, Path]:
    from edge_sca.isic import resolve_isic_dir

    extra = None if args.no_extra else Path(args.extra_dir)
    if extra is not None and not (extra / "metadata.csv").is_file():
        raise EdgeScaError(f"{extra}: no metadata.csv; give --extra-dir DIR or --no-extra")
    return resolve_isic_dir(args.isic_dir), extra, Path(args.reports_dir)


def cmd_input_fit(args: argparse.Namespace) -> int:
    from quantize.input_fit import FitOptions, fit, refresh_p_references, summary_line

    isic, extra, reports = _checks_paths(args)
    out = Path(args.out)
    if args.p_reference_only:
        data = refresh_p_references(isic, Path(args.models_dir), out)
        emit(data["reference"]["p_malignant"], args.json, lambda r: f"p(malignant) references for {len(r)} models "
             f"written to {out}")
        return 0
    data = fit(FitOptions(isic, extra, Path(args.models_dir), reports, args.components, not args.linear,
                          args.negatives, args.skin_tiles), out)
    emit({k: data[k] for k in ("focus", "grayscale", "created")} | {"out": str(out)}, args.json,
         lambda _: f"{out}: {summary_line(data)}")
    return 0


def cmd_input_evaluate(args: argparse.Namespace) -> int:
    from edge_sca.input_checks import load_input_checks
    from quantize.input_eval import evaluate, write

    isic, extra, reports = _checks_paths(args)
    result = evaluate(load_input_checks(args.checks), isic, extra, model_file(args), args.frames, args.extra_frames)
    md = write(result, reports)
    emit(result, args.json, lambda r: (
        f"non-dermoscopy RETAKE {r['pooled']['all']['retake']:.2%} of {r['pooled']['all']['n']} (held-out kinds "
        f"{r['pooled']['held_out_kinds']['retake']:.2%}); dermoscopy refused by the learned checks at most "
        f"{max(x['learned_checks'] for x in r['dermoscopy'] if x['isic']):.2%} per ISIC source; check / invoke "
        + ", ".join(f"{v['ratio']:.1%} ({name} threads)" for name, v in r["timing"]["invoke"].items())
        + f"; report {md}"))
    return 0


def cmd_input_docs(args: argparse.Namespace) -> int:
    from quantize.input_eval import update_docs

    try:
        changed = update_docs(Path(args.report), Path(args.docs))
    except FileNotFoundError as exc:
        raise EdgeScaError(f"{exc.filename}: not found; run `python -m quantize input-checks evaluate` first") from exc
    except ValueError as exc:
        raise EdgeScaError(f"{exc}: put them back around the tables (see docs/input-checks.md in git)") from exc
    emit(changed, args.json, lambda c: f"{args.docs}: " + (", ".join(k for k, v in c.items() if v) + " rewritten"
                                                          if any(c.values()) else "already matches the report"))
    return 0


def cmd_input_drift(args: argparse.Namespace) -> int:
    from quantize.drift_demo import default_replays, run_replays, write

    isic, extra, reports = _checks_paths(args)
    model = model_file(args)
    rows = run_replays(model, default_replays(isic, extra, args.extra_frames))
    result, md = write(model, rows, reports)
    emit(result, args.json, lambda r: "\n".join(
        f"{x['replay']}: {x['input_drift']['n']} judged, max PSI "
        f"{max(v['psi'] for v in x['input_drift']['stats'].values()):.3f}, "
        f"{'WARNING' if x['input_drift']['warning'] else 'no warning'}" for x in r["replays"]) + f"\nreport {md}")
    return 0


def _add_input_check_options(s: argparse.ArgumentParser) -> None:
    from edge_sca.devpaths import REPO_ROOT

    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--extra-dir", default=str(REPO_ROOT.parent / "shared" / "isic_extra"),
                   help="a second ISIC-layout folder of dermoscopy from other sources (default ../shared/isic_extra)")
    s.add_argument("--no-extra", action="store_true", help="do without --extra-dir")
    s.add_argument("--models-dir", default=str(MODELS_DIR),
                   help="the int8 models (fit: each one's p(malignant) reference is stored; default models/)")
    s.add_argument("--reports-dir", default=str(REPO_ROOT / "reports" / "input_checks"),
                   help="where focus.{png,json}, evaluation.{json,md} and drift.{json,md} go")


def _add_input_checks(sub: argparse._SubParsersAction) -> None:
    from edge_sca.contract import INPUT_CHECKS_FILE
    from edge_sca.devpaths import REPO_ROOT

    default_out = MODELS_DIR / INPUT_CHECKS_FILE
    p = sub.add_parser("input-checks", help="fit / evaluate the scanner's input checks and show input drift",
                       description="The focus and grayscale thresholds, the 'not a dermoscopy frame' check and the "
                       "input drift reference, all in models/input_checks.json (see docs/input-checks.md).")
    cmds = p.add_subparsers(title="input-checks commands")
    s = add_command(cmds, "fit", cmd_input_fit,
                    help="measure the focus curve, fit the checks, write models/input_checks.json",
                    description="Focus threshold from ISIC test images blurred at capture size (curve in "
                    "reports/input_checks/focus.png), grayscale threshold, the not-dermoscopy check (fitted on "
                    "ISIC train + half of isic_extra against generated frames), the no-lesion check (the same "
                    "against corner tiles of ISIC train images), the first stage that clears typical dermoscopy "
                    "on 22 of the statistics (the same fits on those columns), and the drift reference (ISIC "
                    "train, and "
                    "p(malignant) on val for each int8 model in --models-dir). A few minutes on 2 cores.")
    s.add_argument("--out", default=str(default_out), help=f"the file to write (default {default_out})")
    s.add_argument("--components", type=positive_int, default=6, help="Gaussian mixture components (default 6)")
    s.add_argument("--linear", action="store_true", help="logistic regression on the features only, no products")
    s.add_argument("--negatives", type=positive_int, default=400, help="generated frames per fitted kind")
    s.add_argument("--skin-tiles", type=positive_int, default=1500,
                   help="lesion-free corner tiles of ISIC train images for the no-lesion check (default 1500)")
    s.add_argument("--p-reference-only", action="store_true",
                   help="only recompute the p(malignant) references in --out (after the models were re-converted)")
    _add_input_check_options(s)

    s = add_command(cmds, "evaluate", cmd_input_evaluate,
                    help="refusal rates on every ISIC source and every non-dermoscopy kind, and cost",
                    description="Writes reports/input_checks/evaluation.{json,md}.")
    s.add_argument("--checks", default=str(default_out), help="the input checks file to evaluate")
    add_model_option(s, "int8 model whose invoke the check is timed against (default b)", default="b",
                     file_help="an int8 .tflite file instead")
    s.add_argument("--frames", type=positive_int, default=300, help="frames per non-dermoscopy kind (default 300)")
    s.add_argument("--extra-frames", type=positive_int, default=2000, help="isic_extra held-out images to judge")
    _add_input_check_options(s)

    s = add_command(cmds, "docs", cmd_input_docs,
                    help="rewrite the tables of docs/input-checks.md from the evaluation report",
                    description="The dermoscopy, not-dermoscopy and cost tables between their markers in "
                    "docs/input-checks.md, from reports/input_checks/evaluation.json (so the figures are the "
                    "report's, never typed).")
    s.add_argument("--report", default=str(REPO_ROOT / "reports" / "input_checks" / "evaluation.json"),
                   help="the evaluation report (default reports/input_checks/evaluation.json)")
    s.add_argument("--docs", default=str(REPO_ROOT / "docs" / "input-checks.md"),
                   help="the document to update (default docs/input-checks.md)")

    s = add_command(cmds, "drift", cmd_input_drift,
                    help="replay the ISIC test split and other sources; report the input drift",
                    description="Writes reports/input_checks/drift.{json,md}.")
    add_model_option(s, "int8 model to run (default b)", default="b", file_help="an int8 .tflite file instead")
    s.add_argument("--extra-frames", type=positive_int, default=1000, help="isic_extra images to replay")
    _add_input_check_options(s)


def _add_convert_options(s: argparse.ArgumentParser) -> None:
    from quantize.pipeline import default_reports_dir

    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where <stem>.keras is read and .tflite written")
    s.add_argument("--reports-dir", default=str(default_reports_dir()), help="reports go to <dir>/<model>/")
    s.add_argument("--calibration-size", type=positive_int, help="override the recipe's calibration size: a "
                   "stratified subset of the calibration column, or of train when the metadata has no calibration "
                   "column")
    s.add_argument("--io", choices=("int8", "uint8"), default="int8", help="int8 model input/output type")
    _add_skip_bad(s)


def _add_skip_bad(s: argparse.ArgumentParser) -> None:
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad rows, counting them")


def _add_recipe_options(s: argparse.ArgumentParser) -> None:
    from quantize.recipe import DEFAULT_RECIPE

    s.add_argument("--recipe", default=DEFAULT_RECIPE, help="quantisation recipe: a name in quantize/recipes/ "
                   f"(ptq, ptq_calib2000, qat, ...) or a .json path (default {DEFAULT_RECIPE})")
    s.add_argument("--per-tensor", action="store_true",
                   help="override the recipe: per-tensor int8 weight scales (smaller file, usually more drift)")
    s.add_argument("--no-bias-correction", action="store_true",
                   help="override the recipe: keep int8's systematic shift of the malignant logit (by default it "
                        "is measured on the calibration images and removed from the classifier's bias)")
    s.add_argument("--threads", type=positive_int, help="TensorFlow threads for quantisation-aware fine-tuning")


def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(prog="python -m quantize", description=(
        "Workstation side of CancerNet-SCa edge: architectures, training on an ISIC folder, evaluation, int8 "
        "calibration and conversion, drift reports. Research tool, not a diagnosis."))
    sub = p.add_subparsers(title="commands")

    s = add_command(sub, "models", cmd_models,
                    help="parameter counts and multiply-accumulates of each architecture at 224x224")
    add_model_option(s, "only this model (repeatable)", repeat=True)

    s = add_command(sub, "summary", cmd_summary,
                    help="the trained models' val / test metrics beside the paper's (Markdown)",
                    description="Read models/<name>.json (written by `quantize train`) and print val and test "
                    "accuracy, balanced accuracy, sensitivity, specificity, PPV and AUROC at the recorded "
                    "threshold, with epochs and core hours (wall hours x training threads, over every "
                    "stage), beside the paper's Table 1 (accuracy, sensitivity, PPV on its balanced test set).")
    add_model_option(s, "only this model (repeatable)", repeat=True)
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where the .json records are")

    s = add_command(sub, "train", cmd_train, help="train a model on an ISIC folder (resumable)", description=(
        "Train on the train split, select the best epoch by validation AUROC, choose the threshold on val for 90%% "
        "malignant sensitivity, and write models/<name>.keras with a JSON record. Each epoch is STEPS balanced "
        "batches; a checkpoint is written every epoch and --resume continues a stopped run."))
    add_model_option(s, "the architecture to train", required=True)
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    add_option(s, "--models-dir", old=("--out-dir",), default=str(MODELS_DIR),
               help="where the model, its record and the checkpoints go (default models/)")
    s.add_argument("--epochs", type=positive_int, default=30)
    s.add_argument("--steps-per-epoch", type=positive_int, default=100, help="balanced batches per epoch")
    s.add_argument("--batch-size", type=positive_int, default=64)
    s.add_argument("--image-size", type=positive_int, default=224,
                   help="training size; below 224 the last --final-epochs run at 224 (progressive resizing)")
    s.add_argument("--final-epochs", type=int, help="epochs at 224 at the end (default 1 if resizing; 0: none, "
                   "the model is still exported at 224)")
    s.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate, cosine-decayed to 1%%")
    s.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay (0: plain Adam)")
    s.add_argument("--label-smoothing", type=float, default=0.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, help="use only the first N images of each class per split (quick runs)")
    s.add_argument("--threads", type=positive_int, help="TensorFlow intra-op threads (default: all cores)")
    _add_skip_bad(s)
    s.add_argument("--extra-isic-dir", action="append", metavar="DIR",
                   help="another ISIC folder whose train rows join the training set (repeatable; e.g. "
                   "../shared/isic_extra); val, test and the threshold stay on --isic-dir")
    s.add_argument("--augment", default="basic", choices=("basic", "strong", "strong-no-degrade"),
                   help="augmentation preset: basic (rotation 30, scale 10%%, colour 10%%) or strong (any rotation, "
                   "scale 25%%, colour/saturation/gamma jitter, half the images degraded to 48-224 px and back)")
    s.add_argument("--source-balance", type=float, metavar="POWER",
                   help="sample a source (metadata `dataset`), then a class within it, with source weight "
                   "size**POWER (0: equal, 1: by size); default: class balance only")
    s.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and export an exponential moving average of the weights (e.g. 0.995; 0: off)")
    s.add_argument("--select-on", default="sources", choices=("sources", "pooled"),
                   help="best epoch by the mean of per-source val AUROC (default) or by pooled val AUROC")
    s.add_argument("--exclude-source", action="append", metavar="NAME",
                   help="train without the images of this source (metadata `dataset`; repeatable): the "
                   "source-held-out check, tested on that source's val and test images")
    s.add_argument("--note", help="free text kept in the model's record (e.g. that the epochs ran elsewhere)")
    s.add_argument("--colour-constancy", default="none", choices=COLOUR_METHODS,
                   help="normalise every image's colour cast after augmentation and before scoring "
                   "(edge_sca/colour.py; recorded in the model's record and applied by whatever scores it). "
                   "Experimental: the device does not apply it yet, so such a model cannot ship")
    s.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                   help="also keep the validated weights of every Nth epoch in the checkpoint folder")
    s.add_argument("--resume", action="store_true", help="continue the run in the checkpoint folder")
    s.add_argument("--finalize", action="store_true", help="export the best checkpoint now, without training more")
    s.add_argument("--init-from", metavar="MODEL.keras",
                   help="start a new run from this model's weights (a second stage, e.g. fine-tuning at 224); "
                        "its JSON record is kept in the new record")

    s = add_command(sub, "robust-tune", cmd_robust_tune,
                    help="fine-tune a float model so that its int8 conversion changes its decisions less",
                    description=(
        "A candidate float model for issue 12: the model's fake-quantised twin is trained in float and in int8 "
        "at once, distilled to the source model and pulled to agree with itself across quantisation "
        "(quantize/robust.py). Writes <out-dir>/<stem>.keras with a training record (threshold on val, metrics "
        "per source); resumes from <out-dir>/checkpoints after an interruption. It does not replace the shipped "
        "model: measure it with `convert --models-dir OUT` and `sources`, and ship it only when both hold."))
    add_model_option(s, "the model to start from: <models-dir>/<stem>.keras (by default the shipped float model)",
                     required=True)
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where the source model is (default models/)")
    s.add_argument("--out-dir", default="build/robust", help="where the candidate goes (default build/robust)")
    s.add_argument("--images", type=positive_int, default=6000,
                   help="train images, half of each class where the split has them (default 6000)")
    s.add_argument("--epochs", type=positive_int, default=3, help="passes over them (default 3)")
    s.add_argument("--batch-size", type=positive_int, default=32)
    s.add_argument("--lr", type=positive_float, default=5e-5, help="Adam learning rate, cosine-decayed to 10%%")
    s.add_argument("--consistency", type=positive_float, default=75.0,
                   help="weight of the int8-vs-float agreement term against distillation (default 75)")
    s.add_argument("--consistency-scale", choices=("relative", "absolute"), default="relative",
                   help="relative (default): the agreement term is divided by the batch's variance of the float "
                        "margins, so shrinking every logit does not count as agreeing better; absolute: it is not")
    s.add_argument("--labels", type=float, default=0.2,
                   help="weight of a logistic loss on the true labels (default 0.2)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=positive_int, help="TensorFlow intra-op threads (default: all cores)")

    s = add_command(sub, "evaluate", cmd_evaluate,
                    help="score a .keras or .tflite model on a labelled ISIC folder", description=(
        "Accuracy, balanced accuracy, sensitivity, specificity, PPV, AUROC and the confusion matrix at the model's "
        "threshold (the .tflite manifest's, or the .keras training record's; 0.5 when there is none). .tflite "
        "files run through edge_sca's runtime, the device's own code path."))
    add_model_option(s, "a trained model: <models-dir>/<stem>.keras", required=True,
                     file_help="a .keras, .tflite or imported .pb file instead")
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where the .keras model is (default models/)")
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    s.add_argument("--split", default="test", choices=SPLITS,
                   help="subset to score; `all` scores every image (use it when the metadata has no split column)")
    s.add_argument("--threshold", type=float, help="decide at this threshold instead of the model's own")
    _add_skip_bad(s)

    s = add_command(sub, "convert", cmd_convert,
                    help="calibrate and convert to float32 + int8 .tflite, drift report, budgets",
                    description=(
        "What `make quantize` runs, in stages: calibrate (the recipe's images), quantize (float32 .tflite from "
        "the trained model; int8 by the recipe: post-training quantisation, or quantisation-aware fine-tuning "
        "then conversion) and validate (drift of int8 against float32 on val + test, each split reported, and "
        "the budgets of quantize/budgets.py; exit 1 when one is broken). Models (input_1 / probs) and manifests "
        "go to --models-dir, reports to --reports-dir/<model>/. A re-run with unchanged inputs reuses what it "
        "built, the fine-tuned model (models/<stem>_qat.keras) included."))
    add_model_option(s, "model to convert (repeatable; default b, c)", repeat=True)
    _add_convert_options(s)
    _add_recipe_options(s)
    s.add_argument("--variants", help="extra variants, comma-separated: float16,dynamic")
    keep = s.add_mutually_exclusive_group()
    keep.add_argument("--keep-float", nargs="+", metavar="LAYER",
                      help="leave these layers (output tensor names, from `python -m quantize debug`) in float")
    keep.add_argument("--keep-float-auto", action="store_true",
                      help="when over budget, diagnose and leave the worst layers in float")

    s = add_command(sub, "compare", cmd_compare,
                    help="every recipe on every model: drift on val and test, size (a table)",
                    description=(
        "Build each --recipe's int8 model of each --model into --build-dir/<recipe>/ (the shipped models are not "
        "touched) and measure it against the float32 model on val, test and both; writes methods.json and "
        "methods.md to --reports-dir. Time the built files with `python -m benchmarks.int8_latency`."))
    add_model_option(s, "model (repeatable; default b, c)", repeat=True)
    s.add_argument("--recipe", action="append", help="recipe name or .json path (repeatable; default: the "
                   "recipes of the docs' table, quantize.compare.COMPARED_RECIPES)")
    s.add_argument("--update-docs", action="store_true",
                   help="then rewrite the recipe table in README.md and docs/quantization.md from the reports")
    s.add_argument("--docs-only", action="store_true",
                   help="build nothing: rewrite that table from the reports already in --reports-dir (methods.json, "
                        "int8_latency.json)")
    s.add_argument("--build-dir", help="where the int8 models are built (default build/quantize/methods)")
    s.add_argument("--threads", type=positive_int, help="TensorFlow threads for quantisation-aware fine-tuning")
    _add_convert_options(s)

    s = add_command(sub, "drift", cmd_drift, help="float vs int8 drift of converted models on any labelled ISIC folder")
    add_model_option(s, "the converted model to measure", required=True)
    s.add_argument("--split", default="test", choices=SPLITS)
    add_option(s, "--out-dir", old=("--out",), help="report folder (default: <reports-dir>/<model>/<folder>-<split>)")
    _add_convert_options(s)

    s = add_command(sub, "debug", cmd_debug,
                    help="per-layer int8 error (TFLite QuantizationDebugger) on calibration images")
    add_model_option(s, "the model whose layers to measure", required=True)
    s.add_argument("--images", type=positive_int, default=16, help="calibration images to run (default 16)")
    s.add_argument("--top", type=positive_int, default=10, help="layers to print (all go to layers.json)")
    _add_convert_options(s)

    s = add_command(sub, "pack", cmd_pack,
                    help="a smaller copy of an ISIC folder (for training where the full one cannot go)",
                    description="Squash-resize every image to --size (copying those already that small), "
                    "optionally cap train rows per source and class, and write an ordinary ISIC folder with a "
                    "PACK.json record. Used to send training data to a lent accelerator machine.")
    s.add_argument("--isic-dir", required=True, help="the ISIC folder to pack")
    add_option(s, "--out-dir", old=("--out",), required=True, help="new, empty folder for the packed copy")
    s.add_argument("--size", type=int, default=128, help="square side of the stored images (default 128)")
    s.add_argument("--quality", type=int, default=85, help="JPEG quality of re-encoded images (default 85)")
    s.add_argument("--max-train-per-group", type=int, help="keep at most this many train rows per source and class")
    s.add_argument("--splits", default="train,val,test", help="splits to keep, comma-separated (default all)")

    s = add_command(sub, "sources", cmd_sources,
                    help="per-source metrics of models on val, test and val+test (reports for docs)",
                    description="Score each model on the val and test splits and report every metric per image "
                    "source (the metadata's dataset column) and pooled, at the model's own threshold; check issue "
                    "14's targets on val+test; run the resolution shortcut check (HAM10000 val images degraded to "
                    "84x84 and back must not score higher). Writes <out>/<model>.json and <out>/sources.md.")
    add_model_option(s, "a trained model: <models-dir>/<stem>.keras (repeatable)", repeat=True, required=True,
                     file_help="a .keras or .tflite model file instead (repeatable)")
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where the .keras models are (default models/)")
    s.add_argument("--isic-dir", help=ISIC_DIR_HELP)
    add_option(s, "--out-dir", old=("--out",), default="reports/sources",
               help="report folder (default reports/sources)")

    s = add_command(sub, "recalibrate", cmd_recalibrate,
                    help="re-check the decision threshold on a site's own labelled captures",
                    description="Score a folder of the site's own labelled captures (ISIC layout: images plus "
                    "metadata.csv with isic_id and benign_malignant) with every .tflite model, report sensitivity "
                    "and specificity at the current threshold with Wilson 95%% intervals, and propose the highest "
                    "threshold giving the target sensitivity there. Refuses (exit 2, nothing written) when there "
                    "are too few malignant or benign images, saying how many are needed. Writes copies of the "
                    "models with new manifests to --out-dir, for `make bundle MODELS_DIR=<out-dir>`.")
    s.add_argument("--isic-dir", required=True, help="the site's labelled captures, in the ISIC folder layout")
    s.add_argument("--models-dir", default=str(MODELS_DIR), help="where the .tflite models and manifests are")
    s.add_argument("--out-dir", default="data/site-models",
                   help="folder for the models with recalibrated manifests (default data/site-models)")
    add_model_option(s, "only this model (repeatable)", repeat=True)
    s.add_argument("--target-sensitivity", type=float, default=TARGET_SENSITIVITY,
                   help="malignant sensitivity the proposed threshold must reach (default %(default)s)")
    s.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                   help="which rows of the folder to use (default all)")

    s = add_command(sub, "import-checkpoint", cmd_import_checkpoint,
                    help="turn an original CancerNet-SCa TF 1.x checkpoint into a .pb",
                    description=("Restores model.meta + model-N.*, freezes keras_learning_phase to 0 and writes a "
                    "frozen graph input_1 -> probs/Softmax. Put it at models/cancernet_sca_<m>.pb "
                    "and `convert` uses it when there is no .keras."))
    s.add_argument("checkpoint_dir", help="folder with model.meta, model-N.index, model-N.data-*")
    s.add_argument("--out", required=True, help="output .pb path")
    _add_input_checks(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
