"""Flash a signed bundle onto a scanner, switching only to a release that runs; roll back.

A flash: (1) checks the bundle here (a fast refusal); (2) sends the archive itself to the scanner, whose installer
verifies it against the scanner's own key while unpacking it into a staging folder, and only then makes it a
release (targets.py, releases.py); (3) runs install.sh and the self-test of every model in the new release (over
ssh); (4) switches `current` and records it in the history; (5) restarts the service and waits for READY
(Type=notify) and for it to stay up a few seconds. If anything fails, or Ctrl-C interrupts it, the new release is
deleted, and if it was already current the previous release is switched back and restarted, and the error says
so. Then releases beyond --keep are pruned by the history (the current and previous never).

On a mounted card (--root) nothing can run: steps 3 and 5 become notes for the first boot.
"""

from __future__ import annotations

import logging
from pathlib import Path

from firmware_bridge.bundle import verify_bundle
from firmware_bridge.errors import FlashError
from firmware_bridge.releases import DEFAULT_PREFIX, release_key
from firmware_bridge.targets import SERVICE, FlashOptions, HostTarget, RootTarget, Target

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PREFIX", "SERVICE", "FlashOptions", "HostTarget", "RootTarget", "flash", "release_key",
           "rollback"]


def flash(bundle: str | Path, public_key: str | Path, target: Target) -> dict:
    """Install BUNDLE as a new release on TARGET and make it current; FlashError (previous stays current) if not."""
    bundle, public_key = Path(bundle), Path(public_key)
    info = verify_bundle(bundle, public_key)
    opts = target.opts
    target.prepare()
    if opts.install_key:
        key = target.install_key(public_key)
        opts.notes.append(f"bundle-signing key {'installed at' if key['installed'] else 'already at'} "
                          f"{key['public_key']}")
    previous: str | None = None
    release: str | None = None
    active = False
    try:
        installed = target.install(bundle)
        release, previous = installed["release"], installed["current"]
        target.setup(release)
        target.selftest(release, info.models)
        target.activate(release)
        active = True
        ready = target.restart_and_wait()
    except BaseException as exc:
        undone = _undo(target, release, active, previous)
        if isinstance(exc, Exception):
            raise FlashError(f"{exc}; {undone}") from exc
        log.error("interrupted: %s", undone)  # KeyboardInterrupt: cleaned up, and the CLI says "interrupted"
        raise
    return {"release": release, "version": info.version, "previous": previous, "target": target.kind,
            "models": info.models, "ready": ready, "pruned": _prune(target, opts.keep),
            "notes": list(opts.notes)}


def _undo(target: Target, release: str | None, active: bool, previous: str | None) -> str:
    """Take a failed or interrupted release off the scanner; what was done, for the error message."""
    try:
        if release is None:
            return "nothing was installed, the current release stays current"
        if not active:
            target.remove(release)
            return f"release {release} removed, {previous or 'no release'} stays current"
        target.revert(release)
        if previous is None:
            return f"release {release} removed; no release is current"
        try:
            return f"switched back to {previous} and restarted it: {target.restart_and_wait()}"
        except FlashError as exc:
            return f"switched back to {previous}, but it did not come up either: {exc}"
    except BaseException as exc:  # reported, not raised: the original failure is what the user must see
        log.error("cleaning up after the failed flash failed: %s", exc)
        return (f"cleaning up failed too ({exc}); check with `python -m firmware_bridge scanner status` on the "
                "scanner")


def _prune(target: Target, keep: int) -> list[str]:
    try:
        return target.prune(keep)
    except FlashError as exc:  # the flash itself succeeded
        target.opts.notes.append(f"pruning old releases failed: {exc}")
        return []


def rollback(target: Target) -> dict:
    """Make the release that was current before this one current again (its hashes re-checked on the scanner),
    and restart the service; FlashError if it does not come up."""
    target.prepare()
    r = target.rollback()
    try:
        ready = target.restart_and_wait()
    except FlashError as exc:
        raise FlashError(f"rolled back {r['from']} -> {r['to']}, but {exc}") from exc
    return {"from": r["from"], "to": r["to"], "target": target.kind, "ready": ready,
            "notes": list(target.opts.notes)}

