"""`python -m firmware_bridge <command>`: keygen, bundle, verify, flash, rollback, simulate, and `scanner ...`
(the scanner's own side of a flash, scanner_cli.py)."""

from __future__ import annotations

import argparse
import sys
import time

from edge_sca.cli_common import add_command, add_option, emit, run_cli
from firmware_bridge.archive import DEFAULT_COMPATIBLE
from firmware_bridge.errors import FlashError
from firmware_bridge.scanner_cli import add_commands as add_scanner_commands
from firmware_bridge.signing import DEFAULT_KEY, public_path

DEFAULT_PUB = public_path(DEFAULT_KEY)


def cmd_keygen(args: argparse.Namespace) -> int:
    from firmware_bridge.signing import keygen

    priv, pub = keygen(args.key, force=args.force)
    emit({"private_key": str(priv), "public_key": str(pub)}, args.json, lambda r: (
        f"private key {r['private_key']} (mode 0600; keep it off the scanner and out of git)\n"
        f"public key  {r['public_key']} -> copy it to the scanner's /etc/cancernet-sca/bundle-signing.pub"))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from firmware_bridge.bundle import make_bundle

    info = make_bundle(args.models_dir, args.key, args.out_dir, args.version, compatible=args.compatible,
                       with_wheels=not args.no_wheelhouse)
    emit(info.to_dict(), args.json, lambda r: (
        f"{r['path']}: version {r['version']} for {r['compatible']}, {r['files']} files ({r['bytes'] / 1e6:.1f} MB), "
        f"models: {', '.join(m.split('/')[-1] for m in r['models'])}; signed with {args.key}"))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from firmware_bridge.bundle import verify_bundle

    info = verify_bundle(args.bundle, args.public_key)
    emit({**info.to_dict(), "verified": True}, args.json, lambda r: (
        f"{r['path']}: OK, version {r['version']} for {r['compatible']}, {r['files']} files match the signed list "
        f"(key {args.public_key})"))
    return 0


def _options(args: argparse.Namespace):
    from firmware_bridge.targets import FlashOptions

    opts = FlashOptions(prefix=args.prefix, ssh=args.ssh, python=args.python, restart_cmd=args.restart_cmd,
                        ready_timeout_s=args.ready_timeout)
    for name in ("keep", "install_cmd", "selftest_cmd", "allow_downgrade", "install_key", "settle_s"):
        if getattr(args, name, None) is not None:
            setattr(opts, name, getattr(args, name))
    return opts


def _target(args: argparse.Namespace):
    from firmware_bridge.targets import HostTarget, RootTarget

    if bool(args.host) == bool(args.root):
        raise FlashError("give exactly one of --host user@scanner or --root /path/to/mounted/rootfs")
    opts = _options(args)
    return HostTarget(args.host, opts) if args.host else RootTarget(args.root, opts)


def _flash_text(r: dict) -> str:
    lines = [f"{r['release']} is now current on the scanner ({r['target']}): {r['ready']}; previous: "
             f"{r['previous'] or 'none'}"]
    if r["pruned"]:
        lines.append(f"pruned old releases: {', '.join(r['pruned'])}")
    return "\n".join(lines + [f"note: {n}" for n in r["notes"]])


def cmd_flash(args: argparse.Namespace) -> int:
    from firmware_bridge.flash import flash

    bundle = args.bundle or _newest_bundle(args.dist_dir)
    emit(flash(bundle, args.public_key, _target(args)), args.json, _flash_text)
    return 0


def _newest_bundle(dist: str) -> str:
    from pathlib import Path

    found = sorted(Path(dist).glob("cancernet-sca-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FlashError(f"no bundle in {dist}/; make one with `make bundle` or pass --bundle")
    return str(found[-1])


def cmd_rollback(args: argparse.Namespace) -> int:
    from firmware_bridge.flash import rollback

    emit(rollback(_target(args)), args.json, lambda r: "\n".join(
        [f"rolled back {r['from']} -> {r['to']} ({r['target']}, hashes re-checked): {r['ready']}"] +
        [f"note: {n}" for n in r["notes"]]))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from firmware_bridge.simulator import BoardSimulator

    with BoardSimulator(link_path=args.link) as sim:
        emit({"port": sim.port}, args.json, lambda r: f"board simulator on {r['port']} (Ctrl-C stops it)")
        sys.stdout.flush()
        deadline = time.monotonic() + args.seconds if args.seconds else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(args.trigger_every or 0.2)
                if args.trigger_every:
                    sim.press_trigger()
        except KeyboardInterrupt:
            pass
    return 0


def _add_target(s: argparse.ArgumentParser, flash_only: bool) -> None:
    from firmware_bridge.releases import DEFAULT_PREFIX
    from firmware_bridge.scanner_cli import keep_count
    from firmware_bridge.targets import SERVICE, FlashOptions

    d = FlashOptions()
    g = s.add_argument_group("target (exactly one)")
    g.add_argument("--host", help="user@scanner reached over ssh (needs sudo -n there)")
    g.add_argument("--root", help="a scanner's root file system mounted here (an SD card); no self-test or "
                   "health check")
    s.add_argument("--public-key", default=str(DEFAULT_PUB), help="key the bundle must be signed with (checked "
                   "here first; the scanner checks against its own /etc/cancernet-sca/bundle-signing.pub)")
    s.add_argument("--prefix", default=DEFAULT_PREFIX, help="install folder on the scanner")
    s.add_argument("--ssh", default=d.ssh, help="ssh command (tests stand in a local one)")
    s.add_argument("--python", help="the scanner's device python for the self-test (default PREFIX/venv/bin/python)")
    s.add_argument("--restart-cmd", default=d.restart_cmd, help=f"how to restart {SERVICE} on the scanner and wait "
                   "for its READY ({ready_timeout}); non-zero exit means it did not come up")
    s.add_argument("--ready-timeout", type=float, default=d.ready_timeout_s, metavar="SECONDS",
                   help="how long the new release may take to report READY")
    if flash_only:
        s.add_argument("--keep", type=keep_count, default=d.keep,
                       help="releases kept on the scanner (at least 2: the current and the previous are never "
                       "pruned; then the most recently current)")
        s.add_argument("--allow-downgrade", action="store_true", help="install a version older than the current")
        s.add_argument("--install-key", action="store_true", help="first flash only: put --public-key on the "
                       "scanner as its bundle-signing key if it has none (never replaces one)")
        s.add_argument("--settle", dest="settle_s", type=float, default=d.settle_s, metavar="SECONDS",
                       help="after READY, the service must stay up this long")
        s.add_argument("--install-cmd", default=d.install_cmd, help="prepare a release ({release}, {prefix})")
        s.add_argument("--selftest-cmd", default=d.selftest_cmd,
                       help="self-test one model ({release}, {python}, {model}); non-zero exit fails the flash")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m firmware_bridge", description=(
        "Deploy CancerNet-SCa to a Raspberry Pi scanner: signing keys, signed bundles, flashing with self-test "
        "and rollback, and a simulator of the dermoscope board's serial link. Research tool, not a diagnosis."))
    sub = p.add_subparsers(title="commands")

    s = add_command(sub, "keygen", cmd_keygen, help="make an Ed25519 signing key pair for bundles")
    s.add_argument("--key", default=str(DEFAULT_KEY), help="private key path (public key: same name, .pub)")
    s.add_argument("--force", action="store_true", help="replace an existing key (scanners must get the new .pub)")

    s = add_command(sub, "bundle", cmd_bundle, help="pack models, runtime and deploy files into one signed tar.gz")
    add_option(s, "--models-dir", old=("--models",), default="models",
               help="folder of .tflite models with manifests (default models)")
    s.add_argument("--key", default=str(DEFAULT_KEY), help="Ed25519 private key to sign with")
    s.add_argument("--out-dir", default="dist", help="where the bundle is written (default dist)")
    s.add_argument("--version", help="bundle version (default: pyproject version + UTC time); scanners refuse an "
                   "older one than they run unless flashed with --allow-downgrade")
    s.add_argument("--compatible", default=DEFAULT_COMPATIBLE,
                   help=f"device kind/architecture the bundle is for (default {DEFAULT_COMPATIBLE}); a scanner "
                   "refuses any other")
    s.add_argument("--no-wheelhouse", action="store_true", help=(
        "leave out the aarch64 wheels (data/wheelhouse, `make wheelhouse`): a small bundle for tests, whose "
        "install.sh cannot build the device venv"))

    s = add_command(sub, "verify", cmd_verify,
                    help="check a bundle's signature, hashes, entries and manifests (as the scanner does)")
    s.add_argument("bundle")
    s.add_argument("--public-key", default=str(DEFAULT_PUB))

    s = add_command(sub, "flash", cmd_flash,
                    help="install a bundle as a new release, self-test, switch, wait for READY",
                    description=(
        "Check BUNDLE here, then send the archive to the scanner, which verifies it against its own key "
        "(/etc/cancernet-sca/bundle-signing.pub), its compatible string and version, and unpacks it into "
        "PREFIX/releases/<version>-<time>. Over ssh (--host): install.sh, the self-test of every model, switch "
        "PREFIX/current, restart the service and wait for READY; a release that does not come up is switched "
        "back. On any failure or Ctrl-C the new release is removed and the previous one stays (or is made again) "
        "current. See docs/deploy.md."))
    s.add_argument("--bundle", help="bundle to flash (default: the newest in --dist-dir)")
    add_option(s, "--dist-dir", old=("--dist",), default="dist",
               help="the folder `bundle --out-dir` wrote bundles to (default dist)")
    _add_target(s, flash_only=True)

    s = add_command(sub, "rollback", cmd_rollback,
                    help="make the release that was current before this one current again "
                    "(re-checked against its signed hashes)")
    _add_target(s, flash_only=False)

    s = add_command(sub, "simulate", cmd_simulate,
                    help="run a dermoscope-board simulator on a pseudo-terminal, print its path")
    s.add_argument("--trigger-every", type=float, help="press the trigger every N seconds")
    s.add_argument("--seconds", type=float, help="stop after N seconds (default: until Ctrl-C)")
    s.add_argument("--link", help="also make PATH a symlink to the pty (a stable name, as udev gives a board)")

    s = sub.add_parser("scanner", help="the scanner's side of a flash: install (verify), activate, rollback, "
                       "prune, status (run on the scanner, or with --root on a mounted card)")
    add_scanner_commands(s.add_subparsers(title="scanner commands"))
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
