"""`python -m quantize input-checks drift`: replay image sources through the runtime and report the input drift.

Each replay is a fresh edge_sca Runtime on a replay camera, the same path as `python -m edge_sca run --camera
replay:DIR --split S [--dataset D] --shuffle 0`. The ISIC test split comes from the same sources as the training split
and should raise no warning at any frame; ISIC 2017, UDA-1 and ../shared/isic_extra (BCN20000, a hospital the models
never saw) are the sources a scanner's own camera resembles: the statistic should move there. The images are played
in a seeded random order, as a clinic sees its sources mixed; the test split is also played in file order, where its
first 94 frames are the ISIC 2017, ISIC Archive and UDA-1 images (the monitor should warn while it has seen little
else). Writes reports/input_checks/drift.{json,md}.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge_sca.cameras import ReplayCamera
from edge_sca.input_drift import INPUT_STATS
from edge_sca.runtime import Runtime, run_loop
from quantize.provenance import git_commit, now_iso, write_json

log = logging.getLogger(__name__)

#: The replays' order: a seeded shuffle (None: file order).
REPLAY_SEED = 0


@dataclass(frozen=True)
class Replay:
    name: str
    folder: Path
    split: str
    dataset: str | None = None
    frames: int | None = None
    shuffle: int | None = REPLAY_SEED

    def command(self) -> str:
        ds = f" --dataset '{self.dataset}'" if self.dataset else ""
        fr = f" --frames {self.frames}" if self.frames else ""
        sh = "" if self.shuffle is None else f" --shuffle {self.shuffle}"
        return f"python -m edge_sca run --camera replay:{self.folder} --split {self.split}{ds}{fr}{sh}"


def default_replays(isic_dir: Path, extra_dir: Path | None, extra_frames: int) -> list[Replay]:
    replays = [Replay("ISIC test split", isic_dir, "test"),
               Replay("ISIC test split, file order", isic_dir, "test", shuffle=None),
               Replay("HAM10000 val", isic_dir, "val", "HAM10000"),
               Replay("ISIC 2017 challenge val", isic_dir, "val", "ISIC 2017 challenge"),
               Replay("ISIC Archive UDA-1 val", isic_dir, "val", "ISIC Archive UDA-1")]
    if extra_dir is not None:
        replays.append(Replay("isic_extra (BCN20000)", extra_dir, "all", None, extra_frames))
    return replays


def run_replays(model: Path, replays: list[Replay], threads: int = 2) -> list[dict]:
    rows = []
    for rp in replays:
        runtime = Runtime(model, threads=threads)
        try:
            with ReplayCamera(rp.folder, rp.split, dataset=rp.dataset, shuffle=rp.shuffle) as camera:
                report = run_loop(runtime, camera, rp.frames)
        finally:
            runtime.close()
        d = report["input_drift"]
        log.info("%s: %d judged, warning: %s", rp.name, d["n"], d["warning"])
        rows.append({"replay": rp.name, "command": rp.command(), "frames": report["frames"],
                     "decisions": report["decisions"], "retake_reasons": report["retake_reasons"],
                     "input_drift": d})
    return rows


def markdown(result: dict) -> str:
    stats = list(INPUT_STATS) + ["p_malignant"]
    lines = [f"# Input drift on replayed sources ({result['created']}, commit {result['git_commit'][:12]})", "",
             (f"Model {result['model']}; PSI against the ISIC train split (p(malignant): the val split), left after "
             f"fitting one malignant share to every statistic's benign / malignant reference. Warning past PSI "
             f"{result['psi_warn']:g} after {result['min_frames']} judged frames."), "",
             "| replay | frames | judged | " + " | ".join(f"PSI {s}" for s in stats)
             + " | fitted malignant share | warning at the end | judged frames that carried the warning |",
             "|---|---:|---:|" + "---:|" * len(stats) + "---:|---|---|"]
    for row in result["replays"]:
        d = row["input_drift"]
        psis = " | ".join(f"{d['stats'][s]['psi']:.3f}" if s in d["stats"] else "-" for s in stats)
        share = d.get("malignant_share_fitted")
        lines.append(f"| {row['replay']} | {row['frames']} | {d['n']} | {psis} | "
                     f"{'-' if share is None else f'{share:.2f}'} | "
                     f"{'**' + ', '.join(d['drifted']) + '**' if d['warning'] else 'none'} | {_warned(d)} |")
    lines += ["", "Commands (each replay is the same as):", ""]
    lines += [f"- {row['replay']}: `{row['command']}`" for row in result["replays"]]
    return "\n".join(lines) + "\n"


def _warned(d: dict) -> str:
    if not d["frames_warned"]:
        return "none"
    return f"{d['frames_warned']} (from frame {d['first_warning_at']})"


def write(model: Path, rows: list[dict], out_dir: Path) -> tuple[dict, Path]:
    from edge_sca.policy import DRIFT_MIN_FRAMES, DRIFT_PSI_WARN

    result = {"created": now_iso(), "git_commit": git_commit(), "model": model.name, "replays": rows,
              "psi_warn": DRIFT_PSI_WARN, "min_frames": DRIFT_MIN_FRAMES}
    write_json(out_dir / "drift.json", result)
    md = out_dir / "drift.md"
    md.write_text(markdown(result))
    return result, md
