"""Building an aarch64 Debian root from Debian's arm64 packages, without running any of them.

apt, with a private configuration under data/pi-target/<target>/apt (APT::Architecture arm64, an empty dpkg
status), resolves and downloads the packages and their dependencies; `dpkg-deb -x` unpacks each one. Maintainer
scripts do not run, so the few things they would do and the scanner needs are done here (the BLAS/LAPACK
alternatives numpy links against). The root is cached: rebuilt only when its recipe (packages, suites, this
module's steps) changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from pi_target.errors import PiTargetError
from pi_target.targets import Target

log = logging.getLogger(__name__)

#: Bump when the steps below change what a root holds: cached roots are then rebuilt.
STEPS_VERSION = 2
#: update-alternatives links that libblas3 / liblapack3's maintainer scripts would make (numpy links to them).
ALTERNATIVES = {"usr/lib/aarch64-linux-gnu/libblas.so.3": "blas/libblas.so.3",
                "usr/lib/aarch64-linux-gnu/liblapack.so.3": "lapack/liblapack.so.3"}
STAMP = "recipe.json"


def recipe(target: Target) -> dict:
    return {"target": target.name, "packages": list(target.packages), "sources": target.sources,
            "steps_version": STEPS_VERSION}


def recipe_hash(target: Target) -> str:
    return hashlib.sha256(json.dumps(recipe(target), sort_keys=True).encode()).hexdigest()


def is_current(target: Target) -> bool:
    stamp = target.data_dir / STAMP
    try:
        return (json.loads(stamp.read_text()).get("recipe_sha256") == recipe_hash(target)
                and (target.root / "usr/bin/python3").exists())
    except (OSError, ValueError):
        return False


def build_root(target: Target, force: bool = False) -> dict:
    """Build (or reuse) TARGET's root; returns the stamp: recipe hash, package versions, build seconds."""
    stamp_path = target.data_dir / STAMP
    if not force and is_current(target):
        log.info("%s root is current (%s)", target.name, target.root)
        return {**json.loads(stamp_path.read_text()), "cached": True}
    t0 = time.monotonic()
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PiTargetError("building the emulated root needs apt-get and dpkg-deb (a Debian or Ubuntu host)")
    apt = target.data_dir / "apt"
    shutil.rmtree(apt, ignore_errors=True)
    shutil.rmtree(target.root, ignore_errors=True)
    stamp_path.unlink(missing_ok=True)
    conf = _write_apt_config(target, apt)
    _apt(conf, ["update"], f"reading the {target.name} arm64 package lists")
    _apt(conf, ["install", "--download-only", *target.packages], f"downloading {target.name} arm64 packages")
    debs = sorted((apt / "archives").glob("*.deb"))
    log.info("unpacking %d packages into %s", len(debs), target.root)
    target.root.mkdir(parents=True)
    versions = {}
    for deb in debs:
        _unpack(deb, target.root)
        name, version, _ = deb.name.split("_", 2)
        versions[name] = version.replace("%3a", ":")
    _finish(target.root)
    _check_numpy(target, versions)
    stamp = {"recipe_sha256": recipe_hash(target), "recipe": recipe(target), "packages": versions,
             "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "build_seconds": round(time.monotonic() - t0, 1)}
    stamp_path.write_text(json.dumps(stamp, indent=1) + "\n")
    shutil.rmtree(apt / "archives", ignore_errors=True)  # the unpacked root is the cache; keep the lists only
    return {**stamp, "cached": False}


def _write_apt_config(target: Target, apt: Path) -> Path:
    for sub in ("lists/partial", "archives/partial", "etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("")
    (apt / "sources.list").write_text("\n".join(target.sources) + "\n")
    conf = apt / "apt.conf"
    conf.write_text("\n".join([
        'APT::Architecture "arm64";', 'APT::Architectures { "arm64"; };', 'APT::Install-Recommends "false";',
        'APT::Get::Assume-Yes "true";', 'Debug::NoLocking "true";',
        f'Dir::State "{apt}";', f'Dir::State::Lists "{apt}/lists";', f'Dir::State::status "{apt}/status";',
        f'Dir::Cache "{apt}";', f'Dir::Cache::archives "{apt}/archives";', f'Dir::Etc "{apt}/etc";',
        f'Dir::Etc::SourceList "{apt}/sources.list";', ""]))
    return conf


def _apt(conf: Path, args: list[str], what: str) -> None:
    log.info("%s", what)
    env = {**os.environ, "APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "-q", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise PiTargetError(f"{what} failed (apt-get {' '.join(args[:2])}): {tail}\nCheck the network to the "
                            "Debian mirror, then run `make pi-check` again")


def _unpack(deb: Path, root: Path) -> None:
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PiTargetError(f"unpacking {deb.name} failed: {done.stderr.strip()}; delete {deb.parent} and retry")


def _finish(root: Path) -> None:
    """What maintainer scripts and a booted system would provide."""
    for link, dest in ALTERNATIVES.items():
        path = root / link
        if (path.parent / dest).exists() and not path.exists():
            path.symlink_to(dest)
    _ca_bundle(root)
    for d in ("tmp", "var/tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(0o1777)
    (root / "root").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    if not (root / "dev/null").exists() and os.geteuid() == 0:
        os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
        (root / "dev/null").chmod(0o666)


def _ca_bundle(root: Path) -> None:
    """/etc/ssl/certs/ca-certificates.crt, which ca-certificates' maintainer script (update-ca-certificates) builds
    from the certificates the package ships."""
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    if certs and not bundle.exists():
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_text("".join(c.read_text() for c in certs))


def _check_numpy(target: Target, versions: dict[str, str]) -> None:
    """The lock is resolved against target.numpy: a Debian update of python3-numpy must be noticed."""
    got = versions.get("python3-numpy", "")
    upstream = got.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]
    if upstream != target.numpy:
        raise PiTargetError(f"{target.name}'s python3-numpy is now {got!r}, the lock was resolved for "
                            f"{target.numpy}: update pi_target/targets.py, then run `make lock` and `make pi-check`")
