#!/bin/sh
# Prepare one unpacked CancerNet-SCa release on the scanner (flash runs it before the self-test; it never
# switches the `current` link). Idempotent: safe to run again.
#   sh install.sh [--prefix /opt/cancernet-sca] [--no-venv] [--no-system]
#   --no-venv     do not create / update PREFIX/venv (it must already hold the device requirements)
#   --no-system   do not touch /etc or systemd (no user, unit or config); for tests and unprivileged trials
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
  if [ ! -x "$PREFIX/venv/bin/python" ]; then
    # --system-site-packages: picamera2 comes from Raspberry Pi OS (apt install python3-picamera2)
    python3 -m venv --system-site-packages "$PREFIX/venv"
  fi
  STAMP="$PREFIX/venv/.requirements.sha256"
  WANT=$(sha256sum "$HERE/requirements/device.txt" | cut -d' ' -f1)
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$PREFIX/venv/bin/python" -m pip install -q -r "$HERE/requirements/device.txt"
    echo "$WANT" > "$STAMP"
  fi
fi

if [ "$SYSTEM" = 1 ]; then
  id cancernet-sca >/dev/null 2>&1 || useradd --system --no-create-home --user-group --groups video,dialout \
    cancernet-sca
  install -d -m 0755 /etc/cancernet-sca
  [ -f /etc/cancernet-sca/edge_sca.env ] || install -m 0644 "$HERE/config/edge_sca.env" /etc/cancernet-sca/edge_sca.env
  install -m 0644 "$HERE/systemd/cancernet-sca.service" /etc/systemd/system/cancernet-sca.service
  systemctl daemon-reload
  systemctl enable cancernet-sca.service >/dev/null 2>&1 || true
fi
echo "install.sh: release $HERE prepared"
