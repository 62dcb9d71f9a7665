"""The benchmark's human outputs: Markdown tables and a PNG of the latency distributions (matplotlib optional)."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sca.policy import INPUT_CHECKS_MAX_SHARE_OF_INVOKE

log = logging.getLogger(__name__)


def _f(x: float | None, fmt: str = ".2f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def machine_line(m: dict) -> str:
    clock = f"{m['clock_ghz']:.2f} GHz" if m["clock_ghz"] else "clock unknown"
    return (f"{m['cpu_model']} ({m['arch']}, {m['cores']} cores usable, {clock}, {m['vector_unit']['name']}); "
            f"{m['os_pretty'] or m['os']}; Python {m['python']}, LiteRT {m['litert']}, numpy {m['numpy']}")


def models_table(models: list[dict]) -> list[str]:
    rows = ["| model | size MB | load ms | first invoke ms | peak RSS MiB (model) | GMACs | MACs from |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for m in models:
        if "error" in m:
            rows.append(f"| {m['name']} | error: {m['error']} | | | | | |")
            continue
        rows.append(f"| {m['name']} | {m['size_bytes'] / 1e6:.2f} | {m['load_ms']:.1f} | {m['first_invoke_ms']:.1f} "
                    f"| {_f(m['memory']['model_peak_mib'], '.1f')} | {_f(m['macs'] and m['macs'] / 1e9, '.3f')} "
                    f"| {m['macs_source'] or '-'} |")
    return rows


def latency_table(models: list[dict], ratios: dict) -> list[str]:
    rows = ["| model | threads | p50 ms | p90 ms | p99 ms | max ms | fps | GMAC/s | of peak | int8 speed-up "
            "| x faster than ResNet-50 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        for t, s in m.get("latency", {}).items():
            u = m["utilisation"][t]
            sp = ratios["int8_speedup"].get(m["architecture"], {}).get(t) if m["variant"] == "int8" else None
            vb = ratios["versus_baseline"].get(f"{m['architecture']}_{m['variant']}", {}).get("speedup", {}).get(t)
            rows.append(f"| {m['name']} | {t} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f} "
                        f"| {s['max_ms']:.2f} | {s['fps']:.1f} | {_f(u['achieved_gmacs'], '.1f')} "
                        f"| {_pct(u['fraction_of_peak'])} | {_f(sp, '.2f')} | {_f(vb, '.1f')} |")
    return rows


def _checks_share(e: dict) -> str:
    """The learned checks' median and its share of the invoke's median, flagged past its budget."""
    checks = e["latency"].get("stages", {}).get("input_checks_ms")
    share = e.get("input_checks_share_of_invoke")
    if not checks or share is None:
        return "-"
    over = " **over budget**" if share > INPUT_CHECKS_MAX_SHARE_OF_INVOKE else ""
    return f"{checks['p50_ms']:.2f} ({share:.1%} of invoke p50){over}"


def e2e_table(e2e: list[dict]) -> list[str]:
    rows = ["| model | camera | threads | frames | capture ms | preprocess ms | quality gate ms | invoke ms "
            "| around model ms | total p50 ms | total p99 ms | fps | overhead | input checks p50 ms | decisions |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for e in e2e:
        if "error" in e:
            rows.append(f"| {e['model']} | error: {e['error']} | {e.get('threads', '')} |" + " |" * 12)
            continue
        lat, st = e["latency"], e["latency"].get("stages", {})
        dec = ", ".join(f"{k} {v}" for k, v in sorted(e["decisions"].items()))
        stage = [_f(st.get(k, {}).get("mean_ms")) for k in ("capture_ms", "preprocess_ms", "quality_ms", "invoke_ms")]
        rows.append(f"| {e['model']} | {e['camera']} | {e['threads']} | {lat.get('measured', 0)} "
                    f"| {' | '.join(stage)} | {_f(e.get('around_model_ms_mean'))} "
                    f"| {_f(lat.get('p50_ms'))} | {_f(lat.get('p99_ms'))} "
                    f"| {_f(lat.get('fps'), '.1f')} | {_pct(e.get('overhead_fraction'))} | {_checks_share(e)} "
                    f"| {dec} |")
    return rows


def accuracy_table(acc: dict) -> list[str]:
    rows = [f"{acc['n']} images of split `{acc['split']}` ({acc['benign']} benign, {acc['malignant']} malignant"
            f"{', ' + str(acc['unreadable']) + ' unreadable' if acc['unreadable'] else ''}); a lone model at its "
            "manifest threshold, a float32 / int8 pair both at the int8 manifest's (the device's decision).", "",
            "| model | threshold | bal. acc f32 / int8 | sensitivity f32 / int8 | specificity f32 / int8 "
            "| AUROC f32 / int8 | agreement | flips B->M / M->B | mean / max abs dp |",
            "|---|---|---|---|---|---|---:|---|---|"]
    for arch, r in acc["models"].items():
        if "agreement" not in r:
            for v, mt in r.items():
                rows.append(f"| {arch}_{v} | {mt['threshold']:.3f} | {mt['balanced_accuracy']:.3f} "
                            f"| {mt['sensitivity']:.3f} | {mt['specificity']:.3f} | {mt['auroc']:.3f} | - | - | - |")
            continue
        f, q = r["float32"], r["int8"]
        rows.append(f"| {arch} | {r['threshold']:.3f} "
                    f"| {f['balanced_accuracy']:.3f} / {q['balanced_accuracy']:.3f} "
                    f"| {f['sensitivity']:.3f} / {q['sensitivity']:.3f} "
                    f"| {f['specificity']:.3f} / {q['specificity']:.3f} "
                    f"| {f['auroc']:.3f} / {q['auroc']:.3f} | {r['agreement']:.1%} "
                    f"| {r['flips']['benign_to_malignant']} / {r['flips']['malignant_to_benign']} "
                    f"| {r['mean_abs_delta_p']:.4f} / {r['max_abs_delta_p']:.4f} |")
    return rows


def markdown(result: dict) -> str:
    """The whole report as Markdown (what is printed and written to bench.md)."""
    out = [f"# Benchmark: {result['machine']['hostname']}", ""]
    if result["machine"].get("emulated"):
        out += [f"> **Emulated ({result['machine']['emulated']}): these timings are not device figures.** They "
                "measure an emulator on another CPU; run the benchmark on the scanner itself.", ""]
    out += [machine_line(result["machine"]), "", f"Settings: {result['settings_line']}", "", "## Models", ""]
    out += models_table(result["models"])
    out += ["", "## Single-frame latency (model only, after warm-up)", ""]
    out += latency_table(result["models"], result["ratios"])
    out += ["", f"Peak: {result['ratios']['peak_formula']}", ""]
    if result.get("e2e"):
        out += ["## End-to-end (camera -> preprocess -> quality gate -> int8 inference -> decision)", ""]
        out += e2e_table(result["e2e"])
        out += ["", "Times are means after the runtime's warm-up; around model = preprocess + quality gate + "
                "decision; overhead = (total - invoke) / total, capture included. Input checks = the learned "
                "checks inside the quality gate (the first stage, and both stages where it does not clear), "
                "median, and its share of the invoke's median in the same run (budget: "
                f"{_pct(INPUT_CHECKS_MAX_SHARE_OF_INVOKE)}, judged at threads 'default': the scanner's shipped "
                "setting, the runtime's choice).", ""]
    if result.get("accuracy"):
        out += ["## Accuracy and int8 drift", ""] + accuracy_table(result["accuracy"]) + [""]
    out += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(out).rstrip() + "\n"


def plot(result: dict, path: Path) -> str | None:
    """Box plots of every model's latency samples per thread count; returns a note instead if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no latency plot (pip install matplotlib to get one)"
    series = [(f"{m['name']}\n{t} thr", s["samples_ms"]) for m in result["models"]
              for t, s in m.get("latency", {}).items()]
    series += [(f"{e['model']}\nend-to-end {e['threads']} thr", e["total_samples_ms"]) for e in result.get("e2e", [])
               if e.get("total_samples_ms")]
    if not series:
        return "no latency samples to plot"
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(series)), 5.0))
    ax.boxplot([s for _, s in series], whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(series) + 1), [n for n, _ in series], rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per frame (log scale); whiskers p1-p99")
    ax.set_title(f"Latency on {result['machine']['hostname']} ({result['machine']['cpu_model']})", fontsize=9)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
    return None
