"""`make pi-check`: the scanner in a box, start to finish, as a new user's scanner would go.

Build (or reuse) the emulated root, flash the real signed bundle into it with `make flash ROOT=...`, run the
bundle's install.sh there as on first boot (the venv from the guest's python3, offline from the wheelhouse), then
under emulation: the self-test of every model, a replay of ISIC test images through `edge_sca run`, the stand-in
for apt's camera stack imported in the same venv, `benchmarks/device_bench.py --quick`, and Arm-vs-x86 parity.
Every step is timed; the report goes to reports/pi-check/<target>/pi-check.{json,md}.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_sca.contract import model_stem
from edge_sca.devpaths import MODELS_DIR, REPO_ROOT
from edge_sca.isic import resolve_isic_dir
from firmware_bridge.flash import DEFAULT_PREFIX
from firmware_bridge.wheelhouse import lock_path, read_lock
from pi_target import parity, rootfs
from pi_target.devenv import fetch_control_numpy, fetch_wheelhouse, lock_is_current
from pi_target.emulator import QEMU, ensure_emulator, root_lock, run_guest
from pi_target.errors import PiTargetError
from pi_target.targets import REPORT_DIR, Cpu, Target, get_cpu, get_target

log = logging.getLogger(__name__)

RELEASE = f"{DEFAULT_PREFIX}/current"
VENV_PYTHON = f"{DEFAULT_PREFIX}/venv/bin/python"
WORK = "/tmp/pi-check"
REPLAY_MODEL = f"{model_stem('b')}_int8.tflite"  # the service's default model (deploy/scanner.toml)
ENV_PROBE = """
import importlib, json, sys
import numpy, cv2
from importlib.metadata import version
out = {"python": sys.version.split()[0], "numpy": numpy.__version__, "numpy_file": numpy.__file__,
       "numpy_from_system": not numpy.__file__.startswith(sys.prefix), "opencv": cv2.__version__,
       "litert": version("ai-edge-litert")}
mod = importlib.import_module(sys.argv[1])
out["stand_in"] = {"module": sys.argv[1], "version": getattr(mod, "__version__", "?"), "file": mod.__file__}
print(json.dumps(out))
"""


@dataclass
class CheckOptions:
    target: str = "bookworm"
    cpus: list[str] = field(default_factory=lambda: ["pi4"])
    parity_images: int = 200
    float_images: int | None = None  # float32 models on fewer images (slow under emulation); None = all
    replay_images: int = 100
    workers: int = 2
    bench: bool = True
    isic_dir: str | None = None
    models_dir: Path = MODELS_DIR
    out_dir: Path | None = None
    rebuild_root: bool = False


class Steps:
    """Runs named steps in order, timing each; the first failure is recorded and stops the run."""

    def __init__(self, progress: Callable[[list[dict]], None] | None = None) -> None:
        self.done: list[dict] = []
        self.failed: dict | None = None
        self.progress = progress  # called after every step, so a stopped run still leaves its report

    def run(self, name: str, fn: Callable[[], dict]) -> dict:
        if self.failed:
            return {}
        log.info("pi-check: %s", name)
        t0, c0 = time.monotonic(), _cpu_seconds()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - recorded in the report, raised by run_check once written
            self.failed = {"step": name, "seconds": round(time.monotonic() - t0, 1), "error": str(exc)}
            self.done.append(self.failed)
            log.error("pi-check: %s failed: %s", name, exc)
            return {}
        self.done.append({"step": name, "seconds": round(time.monotonic() - t0, 1),
                          "cpu_seconds": round(_cpu_seconds() - c0, 1), **result})
        if self.progress:
            self.progress(self.done)
        return result


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: what a step costs on an idle machine, whatever the
    load of a shared one made the wall-clock time."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_check(opts: CheckOptions) -> dict:
    """Every step of the check; writes the report (also when a step fails) and returns it."""
    with root_lock(get_target(opts.target).root):
        return _run_check(opts)


def _run_check(opts: CheckOptions) -> dict:
    target = get_target(opts.target)
    cpus = [get_cpu(c) for c in opts.cpus]
    isic = resolve_isic_dir(opts.isic_dir)
    out_dir = opts.out_dir or REPORT_DIR / target.name
    root = target.root
    keys = target.data_dir / "keys" / "pi-check.key"
    dist = target.data_dir / "dist"
    t0 = time.monotonic()
    head = {"pi_check_format": 1, "target": target.name, "python": target.python, "system_numpy": target.numpy,
            "stand_in": target.stand_in, "cpus": [c.qemu for c in cpus]}
    s = Steps(lambda done: write_report({**head, "steps": done, "environment": None, "parity": None,
                                         "seconds": round(time.monotonic() - t0, 1), "passed": False,
                                         "unfinished": True}, out_dir))
    s.run("emulator", lambda: _emulator())
    s.run("root", lambda: _root(target, opts.rebuild_root))
    s.run("wheelhouse", lambda: _wheelhouse(target))
    s.run("bundle", lambda: _bundle(keys, dist))
    s.run("flash", lambda: _flash(root, keys, dist))
    s.run("install", lambda: _install(root, cpus[0]))
    env = s.run("environment", lambda: _environment(root, target, cpus[0]))
    s.run("camera stack", lambda: _camera_stack(root, target, cpus[0]))
    s.run("selftest", lambda: _selftests(root, cpus))
    s.run("replay", lambda: _replay(root, isic, opts.replay_images, cpus[0]))
    if opts.bench:
        s.run("bench", lambda: _bench(root, cpus[0], out_dir))
    par = s.run("parity", lambda: {"parity": parity.run_parity(
        root, VENV_PYTHON, RELEASE, opts.models_dir, isic, opts.parity_images, cpus, opts.workers,
        opts.float_images)})
    report = {**head, "steps": s.done,
              "environment": env.get("environment"), "parity": par.get("parity"),
              "seconds": round(time.monotonic() - t0, 1),
              "passed": s.failed is None and bool(par.get("parity", {}).get("passed"))}
    write_report(report, out_dir)
    if s.failed:
        raise PiTargetError(f"pi-check failed at {s.failed['step']}: {s.failed['error']}")
    if not report["passed"]:
        raise PiTargetError(f"Arm outputs differ from x86 beyond the self-test bound; see {out_dir}/pi-check.md")
    return report


def _emulator() -> dict:
    ensure_emulator(install=True)
    out = subprocess.run([str(QEMU), "--version"], capture_output=True, text=True, check=False).stdout
    version = out.splitlines()[0] if out else "unknown"
    return {"qemu": version}


def _root(target: Target, force: bool) -> dict:
    stamp = rootfs.build_root(target, force)
    keep = ("python3", f"python{target.python}", "python3-numpy", target.stand_in, "libc6")
    return {"cached": stamp["cached"], "build_seconds": stamp.get("build_seconds"),
            "packages": {k: v for k, v in stamp["packages"].items() if k in keep},
            "package_count": len(stamp["packages"])}


def _wheelhouse(target: Target) -> dict:
    lock = read_lock(lock_path(target.tag))
    if not lock_is_current(lock):
        raise PiTargetError(f"{lock.path.name} was compiled from another requirements/device.in; run `make lock`")
    wheels = fetch_wheelhouse(lock, target)
    return {"lock": lock.path.name, "wheels": {e.name: e.version for e in lock.entries},
            "megabytes": round(sum(p.stat().st_size for p in wheels.values()) / 1e6, 1)}


def _make(*args: str) -> str:
    """A make target as the user runs it (without the variables of the `make pi-check` that started us, and
    without redoing `make setup`, which that make already did: -o takes its stamp as current)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS")}
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.setup-stamp", *args], cwd=REPO_ROOT,
                          capture_output=True,
                          text=True, env=env, check=False)
    if done.returncode != 0:
        raise PiTargetError(f"make {' '.join(args)} failed:\n" + "\n".join(
            (done.stdout + done.stderr).strip().splitlines()[-8:]))
    return done.stdout


def _bundle(key: Path, dist: Path) -> dict:
    if not key.exists():
        _make("keygen", f"KEY={key}")
    shutil.rmtree(dist, ignore_errors=True)
    _make("bundle", f"KEY={key}", f"DIST={dist}")
    bundle = next(dist.glob("cancernet-sca-*.tar.gz"))
    return {"bundle": bundle.name, "megabytes": round(bundle.stat().st_size / 1e6, 1)}


def _flash(root: Path, key: Path, dist: Path) -> dict:
    """A fresh scanner each time: the previous install, venv, config and key are removed first, and the first
    flash installs the (throwaway) bundle-signing key, as `make flash ARGS=--install-key` does on a new scanner."""
    for d in (DEFAULT_PREFIX, "/etc/cancernet-sca", "/etc/systemd/system"):
        shutil.rmtree(root / d.lstrip("/"), ignore_errors=True)
    out = _make("flash", f"ROOT={root}", f"KEY={key}", f"DIST={dist}", "ARGS=--install-key")
    return {"output": out.strip().splitlines()[-1]}


def _install(root: Path, cpu: Cpu) -> dict:
    """install.sh as the README's first-boot step (without the system part: no systemd in a chroot), with no
    network at all: the wheelhouse must be enough."""
    done = run_guest(root, ["/bin/sh", f"{RELEASE}/install.sh", "--no-system"], cpu, offline=True)
    stamp = root / DEFAULT_PREFIX.lstrip("/") / "venv/.lock.sha256"
    if not stamp.is_file():
        raise PiTargetError("install.sh finished but left no venv stamp; see its output:\n" + done.stdout[-500:])
    return {"output": done.stdout.strip().splitlines()[-1], "network": "none (unshare --net)"}


def _environment(root: Path, target: Target, cpu: Cpu) -> dict:
    done = run_guest(root, [VENV_PYTHON, "-c", ENV_PROBE, target.stand_in_module], cpu)
    env = json.loads(done.stdout.strip().splitlines()[-1])
    if not env["numpy_from_system"] or env["numpy"] != target.numpy:
        raise PiTargetError(f"the venv imports numpy {env['numpy']} from {env['numpy_file']}, not apt's "
                            f"{target.numpy}: apt's compiled camera helpers would break")
    return {"environment": env}


FAKE_PICAMERA2 = """\"\"\"Stands in for apt's picamera2: it imports its compiled numpy helper first, as picamera2
imports simplejpeg, then finds no camera (there is none in the emulator).\"\"\"
import {module}  # noqa: F401


class Picamera2:
    def __init__(self, camera_num=0):
        raise RuntimeError("no camera attached to the emulated Pi")
"""
OPEN_CAMERA = """
from edge_sca.cameras import open_camera
from edge_sca.errors import CameraError
try:
    open_camera("picamera2")
except CameraError as exc:
    print(exc)
"""


def _camera_stack(root: Path, target: Target, cpu: Cpu) -> dict:
    """`--camera picamera2` with a stand-in picamera2 that imports the apt-built extension: in the device venv it
    imports (and finds no camera); in a venv that carries its own numpy (TARGET.control_numpy, what the old
    requirements installed) it must fail, with edge_sca's one-line answer naming numpy and the fix."""
    work = root / WORK.lstrip("/") / "camera"
    shutil.rmtree(work, ignore_errors=True)
    (work / "fake/picamera2").mkdir(parents=True)
    (work / "fake/picamera2/__init__.py").write_text(FAKE_PICAMERA2.format(module=target.stand_in_module))
    path = f"{WORK}/camera/fake:{RELEASE}"
    good = run_guest(root, [VENV_PYTHON, "-c", OPEN_CAMERA], cpu, env={"PYTHONPATH": path}).stdout.strip()
    if "no camera attached" not in good:
        raise PiTargetError(f"in the device venv the stand-in picamera2 did not import: {good}")
    if not target.control_numpy:
        shutil.rmtree(work, ignore_errors=True)
        return {"camera_stack": {"device_venv": good, "with_venv_numpy": None, "control_wheel": None}}
    wheel = fetch_control_numpy(target)
    shutil.copy(wheel, work / wheel.name)
    bad_venv = f"{WORK}/camera/numpy-venv"
    site = f"{bad_venv}/lib/python{target.python}/site-packages"
    run_guest(root, ["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", bad_venv], cpu)
    run_guest(root, [VENV_PYTHON, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", site,
                     f"{WORK}/camera/{wheel.name}"], cpu, offline=True)
    device_site = f"{DEFAULT_PREFIX}/venv/lib/python{target.python}/site-packages"
    bad = run_guest(root, [f"{bad_venv}/bin/python", "-c", OPEN_CAMERA], cpu,
                    env={"PYTHONPATH": f"{path}:{device_site}"}).stdout.strip()
    shutil.rmtree(work, ignore_errors=True)
    if "numpy" not in bad or "\n" in bad or "no camera attached" in bad:
        raise PiTargetError(f"with {wheel.name} in the venv the camera error was not one line naming numpy: {bad}")
    return {"camera_stack": {"device_venv": good, "with_venv_numpy": bad, "control_wheel": wheel.name}}


def _selftests(root: Path, cpus: list[Cpu]) -> dict:
    out = {}
    models = sorted(p.name for p in (root / RELEASE.lstrip("/") / "models").glob("*.tflite"))
    for cpu in cpus:
        for m in models:
            done = run_guest(root, [VENV_PYTHON, "-m", "edge_sca", "selftest", "--model-file", f"models/{m}", "--json"],
                             cpu, cwd=RELEASE, env={"PYTHONPATH": RELEASE}, check=False)
            try:
                r = json.loads(done.stdout[done.stdout.index("{"):])
            except ValueError as exc:
                raise PiTargetError(f"self-test of {m} on {cpu.qemu} printed no result:\n{done.stderr[-800:]}") \
                    from exc
            out[f"{cpu.key}/{m}"] = {"passed": r["passed"], "max_delta": r["max_delta"], "bound": r["bound"]}
    failed = [k for k, v in out.items() if not v["passed"]]
    if failed:
        raise PiTargetError(f"self-test failed under emulation: {', '.join(failed)}")
    return {"selftests": out}


def _replay_folder(isic: Path, dest: Path, n: int) -> list[str]:
    """Copy the first N test images (parity's order) and their metadata rows into DEST (inside the root)."""
    records = parity.test_images(isic, n)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    ids = {r.isic_id for r in records}
    with open(isic / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["isic_id"] in ids]
        fields = reader.fieldnames or []
    with open(dest / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    for r in records:
        shutil.copy(r.path, dest / r.path.name)
    return sorted(ids)


def _audit(path: Path) -> dict[str, dict]:
    return {(d := json.loads(line))["source_id"]: d for line in path.read_text().splitlines() if line.strip()}


def _replay(root: Path, isic: Path, n: int, cpu: Cpu) -> dict:
    """`edge_sca run --camera replay:` on N ISIC test images under emulation, then the same folder on x86: the
    preprocessed pixels (frame sha256) and p(malignant) are compared frame by frame."""
    folder = root / WORK.lstrip("/") / "isic"
    _replay_folder(isic, folder, n)
    args = ["-m", "edge_sca", "run", "--camera", f"replay:{WORK}/isic", "--split", "test", "--frames", str(n),
            "--json", "--model-file", f"{RELEASE}/models/{REPLAY_MODEL}",
            "--bridge", ""]  # no board, whatever the settings
    guest_log = root / WORK.lstrip("/") / "audit-arm.jsonl"
    guest_log.unlink(missing_ok=True)
    done = run_guest(root, [VENV_PYTHON, *args, "--audit-log", f"{WORK}/audit-arm.jsonl"], cpu, cwd=RELEASE,
                     env={"PYTHONPATH": RELEASE})
    report = json.loads(done.stdout[done.stdout.index("{"):])
    host_log = folder.parent / "audit-x86.jsonl"
    host_log.unlink(missing_ok=True)
    host_args = [a.replace(f"{WORK}/isic", str(folder)).replace(RELEASE, str(root / RELEASE.lstrip("/")))
                 for a in args]
    subprocess.run([str(REPO_ROOT / ".venv/bin/python"), *host_args, "--audit-log", str(host_log)],
                   cwd=REPO_ROOT, capture_output=True, check=True)
    arm, x86 = _audit(guest_log), _audit(host_log)
    common = sorted(set(arm) & set(x86), key=lambda k: Path(k).name)
    same_pixels = sum(arm[k]["frame_sha256"] == x86[k]["frame_sha256"] for k in common)
    deltas = [abs(arm[k]["p_malignant"] - x86[k]["p_malignant"]) for k in common
              if arm[k]["p_malignant"] is not None and x86[k]["p_malignant"] is not None]
    flips = sum(arm[k]["decision"] != x86[k]["decision"] for k in common)
    shutil.rmtree(folder, ignore_errors=True)
    if report["frames"] < n:
        raise PiTargetError(f"replay classified {report['frames']} of {n} frames")
    return {"replay": {"model": REPLAY_MODEL, "frames": report["frames"], "decisions": report["decisions"],
                       "metrics": report.get("metrics"), "latency_emulated": report.get("latency"),
                       "vs_x86": {"frames": len(common), "identical_preprocessed_pixels": same_pixels,
                                  "max_abs_delta_p": max(deltas) if deltas else None, "decision_changes": flips}}}


def _bench(root: Path, cpu: Cpu, out_dir: Path) -> dict:
    guest_out = f"{WORK}/bench"
    run_guest(root, [VENV_PYTHON, "benchmarks/device_bench.py", "--quick", "--threads", "1", "--e2e-threads", "default",
                     "--no-plot", "--models-dir", "models", "--out-dir", guest_out], cpu, cwd=RELEASE,
              env={"PYTHONPATH": RELEASE})
    src = root / guest_out.lstrip("/")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("bench.json", "bench.md"):
        shutil.copy(src / name, out_dir / f"emulated-{name}")
    bench = json.loads((src / "bench.json").read_text())
    if not any("NOT device figures" in n for n in bench.get("notes", [])):
        raise PiTargetError("the emulated benchmark's report does not say its timings are not device figures")
    return {"bench": {"report": str(out_dir / "emulated-bench.md"), "emulated": bench["machine"].get("emulated"),
                      "models": len(bench.get("models", []))}}


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pi-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "pi-check.md").write_text(markdown(report))


def markdown(r: dict) -> str:
    title = (f"# pi-check: {r['target']} (Python {r['python']}, system numpy {r['system_numpy']}) under "
             f"{', '.join(r['cpus'])}")
    state = "UNFINISHED (the run was stopped or is still going)" if r.get("unfinished") else (
        "PASS" if r["passed"] else "FAIL")
    verdict = (f"Written by `make pi-check`. Result: **{state}** in {r['seconds']:.0f} s "
               "wall. Timings under emulation are not device figures; CPU s is what a step costs on an idle machine.")
    lines = [title, "", verdict, "", "| step | wall s | CPU s | result |", "|---|---|---|---|"]
    for st in r["steps"]:
        lines.append(f"| {st['step']} | {st['seconds']:.1f} | {st.get('cpu_seconds', 0):.1f} | {_summary(st)} |")
    if r.get("parity"):
        p = r["parity"]
        lines += ["", f"## Arm vs x86 ({p['images']['n']} ISIC test images, {p['images']['malignant']} malignant)",
                  "", parity.parity_table(p)]
    return "\n".join(lines) + "\n"


def _summary(st: dict) -> str:
    if "error" in st:
        return "FAILED: " + st["error"].splitlines()[0][:200]
    if "selftests" in st:
        worst = max(v["max_delta"] for v in st["selftests"].values())
        return f"{len(st['selftests'])} self-tests passed, worst max \\|delta p\\| {worst:.5f}"
    if "replay" in st:
        rp = st["replay"]
        vs = rp["vs_x86"]
        return (f"{rp['frames']} frames {rp['decisions']}; vs x86: {vs['identical_preprocessed_pixels']}/"
                f"{vs['frames']} identical preprocessed frames, max \\|delta p\\| {vs['max_abs_delta_p']:.5f}, "
                f"{vs['decision_changes']} decision changes")
    if "environment" in st:
        e = st["environment"]
        return (f"numpy {e['numpy']} from apt, opencv {e['opencv']}, LiteRT {e['litert']}, "
                f"{e['stand_in']['module']} {e['stand_in']['version']} imports")
    if "packages" in st:
        pk = ", ".join(f"{k} {v}" for k, v in sorted(st["packages"].items()))
        return f"{'cached' if st['cached'] else 'built'} ({st['package_count']} Debian arm64 packages): {pk}"
    if "wheels" in st:
        return (f"{st['lock']}: {len(st['wheels'])} wheels, {st['megabytes']} MB, hashes match: "
                + ", ".join(f"{k} {v}" for k, v in st["wheels"].items()))
    if "bench" in st:
        name = Path(st["bench"]["report"]).name
        return f"{st['bench']['models']} models, report {name} (emulated: not device figures)"
    if "camera_stack" in st:
        c = st["camera_stack"]
        if not c["control_wheel"]:
            return f"device venv: `{c['device_venv'][:90]}`; no negative control on this target"
        return (f"device venv: `{c['device_venv'][:90]}`; with {c['control_wheel'].split('-cp')[0]} in a venv: "
                f"`{c['with_venv_numpy'][:160]}...`").replace("|", "\\|")
    if "parity" in st:
        return f"{'passed' if st['parity']['passed'] else 'FAILED'} ({st['parity']['seconds']:.0f} s)"
    keys = [k for k in st if k not in ("step", "seconds", "cpu_seconds")]
    return ", ".join(f"{k}: {st[k]}" for k in keys)[:200].replace("|", "\\|")


def run_parity_only(opts: CheckOptions, report_path: Path) -> dict:
    """Parity alone, on a root that a pi-check already flashed and installed, merged into that check's report:
    CPUs measured now replace the report's entries for them, the others stay (the images must be the same)."""
    target = get_target(opts.target)
    if not (target.root / VENV_PYTHON.lstrip("/")).exists():
        raise PiTargetError(f"{target.root} has no installed release; run `make pi-check` first")
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        raise PiTargetError(f"cannot read {report_path} ({exc}); run `make pi-check` first") from exc
    t0, c0 = time.monotonic(), _cpu_seconds()
    with root_lock(target.root):
        new = parity.run_parity(target.root, VENV_PYTHON, RELEASE, opts.models_dir, resolve_isic_dir(opts.isic_dir),
                                opts.parity_images, [get_cpu(c) for c in opts.cpus], opts.workers, opts.float_images)
    merge_parity(report, new, {"step": "parity", "seconds": round(time.monotonic() - t0, 1),
                               "cpu_seconds": round(_cpu_seconds() - c0, 1)})
    write_report(report, report_path.parent)
    return report


def merge_parity(report: dict, new: dict, step: dict) -> None:
    """Put parity NEW into REPORT: its CPUs replace the report's entries for them, the others stay. STEP (timings,
    and where the parity was run) becomes the report's parity step."""
    old = report.get("parity") or {}
    def shas(p: dict) -> dict[str, str]:
        return {k: v["sha256"] for k, v in p["models"].items()}

    if old and (old["images"] != new["images"] or shas(old) != shas(new)):
        raise PiTargetError("the report's parity was measured on other images or models; run `make pi-check`")
    merged = {**new, "cpus": {**old.get("cpus", {}), **new["cpus"]}}
    merged["passed"] = all(r["passed"] for c in merged["cpus"].values() for r in c["models"].values())
    name = f"parity {','.join(sorted(new['cpus']))}"  # one step per merged run, e.g. "parity pi4"
    steps = [st for st in report.get("steps", []) if st["step"] not in ("parity", name)]
    steps.append({**step, "step": name, "parity": new})
    failed = any("error" in st for st in steps)
    report.update(parity=merged, steps=steps, cpus=sorted({c["qemu_cpu"] for c in merged["cpus"].values()}),
                  passed=not failed and merged["passed"])
    report.pop("unfinished", None)  # a check stopped before its parity step is complete with this one
