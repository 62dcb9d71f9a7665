#!/bin/sh
# Prepare one unpacked CancerNet-SCa release on the scanner (flash runs it before the self-test; it never
# switches the `current` link). Idempotent: safe to run again.
#   sh install.sh [--prefix /opt/cancernet-sca] [--no-venv] [--no-system]
#   --no-venv     do not create / update PREFIX/venv (it must already hold the locked device environment)
#   --no-system   do not touch /etc or systemd (no user, unit or settings file); for tests and unprivileged trials
set -eu
umask 022  # explicit modes below; nothing this script makes is group- or world-writable, whatever the caller's umask
PREFIX=/opt/cancernet-sca
VENV=1
SYSTEM=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --no-venv) VENV=0; shift ;;
    --no-system) SYSTEM=0; shift ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$VENV" = 1 ]; then
  # The device venv: Raspberry Pi OS's python3 with --system-site-packages, so apt's numpy and picamera2 (built
  # against that numpy) stay the ones imported; it adds only the locked wheels, offline from the bundle's
  # wheelhouse, and never a numpy of its own. It is rebuilt from scratch when the lock changes (the old one is
  # kept aside and restored if the new one fails). See docs/pi-target.md.
  VENV_DIR="$PREFIX/venv"
  TAG=$(python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])') || {
    echo "install.sh: python3 is missing: sudo apt install python3-venv python3-numpy" >&2; exit 1; }
  LOCK="$HERE/requirements/device-$TAG.lock"
  WHEELS="$HERE/wheelhouse/$TAG"
  if [ ! -f "$LOCK" ]; then
    echo "install.sh: this bundle has no lock for Python $TAG (it has: $(cd "$HERE/requirements" && ls device-*.lock 2>/dev/null | tr '\n' ' ')); add the target to pi_target/targets.py and run make lock" >&2
    exit 1
  fi
  WANT=$(sha256sum "$LOCK" | cut -d' ' -f1)
  STAMP="$VENV_DIR/.lock.sha256"
  if [ ! -x "$VENV_DIR/bin/python" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    if [ ! -d "$WHEELS" ]; then
      echo "install.sh: this bundle carries no wheelhouse for $TAG (built with --no-wheelhouse); rebuild it with make bundle" >&2
      exit 1
    fi
    rm -rf "$VENV_DIR.previous"
    [ -d "$VENV_DIR" ] && mv "$VENV_DIR" "$VENV_DIR.previous"
    if python3 -m venv --system-site-packages "$VENV_DIR" \
       && "$VENV_DIR/bin/python" -m pip install -q --no-index --require-hashes --no-deps --find-links "$WHEELS" -r "$LOCK" \
       && "$VENV_DIR/bin/python" -m pip check \
       && "$VENV_DIR/bin/python" -c 'import numpy, sys; sys.exit(numpy.__file__.startswith(sys.prefix))'; then
      echo "$WANT" > "$STAMP"
      rm -rf "$VENV_DIR.previous"
    else
      echo "install.sh: the device venv could not be built offline from $WHEELS (a dependency missing above needs apt: sudo apt install python3-numpy python3-venv); the previous venv is kept" >&2
      rm -rf "$VENV_DIR"
      [ -d "$VENV_DIR.previous" ] && mv "$VENV_DIR.previous" "$VENV_DIR"
      exit 1
    fi
  fi
fi

if [ "$SYSTEM" = 1 ]; then
  id cancernet-sca >/dev/null 2>&1 || useradd --system --no-create-home --user-group --groups video,dialout \
    cancernet-sca
  install -d -m 0755 /etc/cancernet-sca
  # The settings file is the site's: installed only when absent (like a Debian conffile), never overwritten.
  [ -f /etc/cancernet-sca/scanner.toml ] || install -m 0644 "$HERE/config/scanner.toml" /etc/cancernet-sca/scanner.toml
  if [ -f /etc/cancernet-sca/edge_sca.env ]; then
    echo "install.sh: /etc/cancernet-sca/edge_sca.env is no longer read: move any options you changed in its EDGE_SCA_ARGS into /etc/cancernet-sca/scanner.toml (docs/deploy.md, section 7), then delete it" >&2
  fi
  install -m 0644 "$HERE/systemd/cancernet-sca.service" /etc/systemd/system/cancernet-sca.service
  systemctl daemon-reload
  systemctl enable cancernet-sca.service >/dev/null 2>&1 || true
fi
echo "install.sh: release $HERE prepared"
