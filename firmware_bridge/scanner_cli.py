"""`python -m firmware_bridge scanner <command>`: the scanner's own side of a flash (standard library plus
`cryptography`, so the system python3 runs it before the device environment exists).

`flash --host` sends these modules to the scanner as one zip (agent.py) and runs them there over ssh;
`flash --root` calls the same ReleaseStore in-process on the mounted card. By hand on the scanner:

    sudo python3 -m firmware_bridge scanner install /media/usb/cancernet-sca-0.2.0.tar.gz   (from a release folder)
    sudo python3 -m firmware_bridge scanner status
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_sca.cli_common import add_command, emit, run_cli, whole_number
from firmware_bridge.errors import BundleError
from firmware_bridge.releases import DEFAULT_PREFIX, MIN_KEEP, ReleaseStore


def _store(args: argparse.Namespace) -> ReleaseStore:
    return ReleaseStore(args.root, args.prefix)


def cmd_install(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.bundle == "-":
        result = store.install(sys.stdin.buffer, "the bundle on stdin", args.allow_downgrade)
    else:
        try:
            with open(args.bundle, "rb") as f:
                result = store.install(f, args.bundle, args.allow_downgrade)
        except FileNotFoundError as exc:
            raise BundleError(f"bundle {args.bundle} not found") from exc
    emit(result, args.json, lambda r: "\n".join(
        [f"verified and installed {r['release']} (version {r['version']}, {r['compatible']}); not current yet: "
         f"`scanner activate {r['release']}`"] + [f"note: {n}" for n in r["notes"]]))
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    emit(_store(args).activate(args.release), args.json,
         lambda r: f"{r['release']} is current (previous: {r['previous'] or 'none'})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    emit(_store(args).rollback(), args.json, lambda r: f"rolled back {r['from']} -> {r['to']} (hashes re-checked)")
    return 0


def cmd_revert(args: argparse.Namespace) -> int:
    emit(_store(args).revert(args.release), args.json,
         lambda r: f"reverted {r['from']} (removed); current: {r['to'] or 'none'}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    _store(args).remove(args.release)
    emit({"removed": args.release}, args.json, lambda r: f"removed {r['removed']}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    emit({"pruned": _store(args).prune(args.keep)}, args.json,
         lambda r: f"pruned: {', '.join(r['pruned']) or 'nothing'}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    emit(_store(args).status(), args.json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0


def cmd_install_key(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.key == "-" else Path(args.key).read_bytes()
    emit(_store(args).install_key(data), args.json, lambda r: (
        f"{r['public_key']}: {'installed' if r['installed'] else 'already this key'}"))
    return 0


def keep_count(text: str) -> int:
    """argparse type of --keep: an integer of at least MIN_KEEP."""
    value = whole_number(text)
    if value < MIN_KEEP:
        raise argparse.ArgumentTypeError(f"{value} is too few: the current and the previous release are always "
                                         f"kept, so --keep must be at least {MIN_KEEP}")
    return value


def _command(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], help: str,
             release: bool = False, **kw: Any) -> argparse.ArgumentParser:
    """A scanner command: FUNC on the release store under --root / --prefix (and a RELEASE argument if asked)."""
    s = add_command(sub, name, func, help=help, **kw)
    if release:
        s.add_argument("release", help="a release's folder name under PREFIX/releases (`scanner status` lists them)")
    s.add_argument("--root", default="/", help="the scanner's root file system (default /; a mounted card's path)")
    s.add_argument("--prefix", default=DEFAULT_PREFIX, help="install folder, as the scanner sees it")
    return s


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The scanner commands, under whatever parser SUB belongs to."""
    s = _command(sub, "install", cmd_install, "verify a bundle against this scanner's key and unpack it as a release",
                 description="Stream BUNDLE (or - for stdin): check its signature against ROOT/etc/"
                 "cancernet-sca/bundle-signing.pub, that it is for this device and not older than the current "
                 "release, that there is room, then every file's hash as it is unpacked into PREFIX/staging. Only "
                 "then does it become PREFIX/releases/<version>-<time> (not current).")
    s.add_argument("bundle", help="bundle .tar.gz, or - to read it from stdin")
    s.add_argument("--allow-downgrade", action="store_true", help="install a version older than the current one")
    _command(sub, "activate", cmd_activate, "make an installed release current (and record it in the history)",
             release=True)
    _command(sub, "rollback", cmd_rollback, "go back to the release that was current before this one (re-checked)")
    _command(sub, "revert", cmd_revert, "undo `activate RELEASE` after a failed health check, deleting RELEASE",
             release=True)
    _command(sub, "remove", cmd_remove, "delete a release that is not current", release=True)
    s = _command(sub, "prune", cmd_prune, "keep N releases: current, previous, then the most recently current")
    s.add_argument("--keep", type=keep_count, required=True, help=f"releases kept (at least {MIN_KEEP})")
    _command(sub, "status", cmd_status, "releases, current, history, free space, compatible string, key")
    s = _command(sub, "install-key", cmd_install_key, "trust a bundle-signing public key, if the scanner has none yet")
    s.add_argument("key", help="the .pub file, or - for stdin")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m firmware_bridge scanner", description=(
        "The scanner's side of a flash: verify and install bundles, switch, roll back, prune."))
    add_commands(p.add_subparsers(title="commands"))
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
