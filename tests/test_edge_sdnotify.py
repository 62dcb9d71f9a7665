"""systemd's notify protocol: READY only once the runtime can scan, WATCHDOG pings from the frame loop, and the
whole scanner loop against the simulated board (unplugged and re-plugged mid-run) under a stand-in NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from edge_sca.devpaths import REPO_ROOT
from edge_sca.sdnotify import Notifier
from firmware_bridge import protocol
from firmware_bridge.simulator import BoardSimulator


@pytest.fixture
def notify_socket(tmp_path):
    """A datagram socket standing in for systemd's; yields (env value, socket)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.05)
    yield str(path), sock
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return out


def test_notifier_speaks_the_protocol(notify_socket):
    path, sock = notify_socket
    clock = [0.0]
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}, clock=lambda: clock[0])
    assert n.enabled and n.watchdog_s == 2.0
    assert n.ready("self-test passed")
    for t in (0.0, 0.1, 0.2, 0.6, 0.7):  # rate-limited to a quarter of the interval
        clock[0] = t
        n.watchdog()
    assert _drain(sock) == ["READY=1\nSTATUS=self-test passed", "WATCHDOG=1", "WATCHDOG=1"]
    abstract = Notifier({"NOTIFY_SOCKET": "@cancernet-test-none"})
    assert abstract.address == "\0cancernet-test-none" and abstract.ready() is False  # nobody listening: no error
    off = Notifier({})
    assert not off.enabled and off.ready() is False and off.watchdog() is None
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_s is None  # the watchdog is meant for another process


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.slow
def test_scanner_loop_under_systemd_survives_a_lost_board(random_models, notify_socket, tmp_path):
    """`edge_sca run --bridge` as systemd runs it: READY after the self-test with the board open, watchdog pings,
    trigger -> lit capture -> result; the board is unplugged (noticed, nothing shown late), re-plugged (reopened,
    the next press served), then SIGTERM: exit 0 with the board switched off."""
    path, sock = notify_socket
    messages: list[str] = []
    with BoardSimulator(link_path=tmp_path / "ttyACM0") as sim:
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.Popen([sys.executable, "-m", "edge_sca", "run", "--bridge", sim.port, "--camera",
                                 "synthetic", "--model-file", str(random_models["int8"]), "--threads", "1", "--json",
                                 "--board-timeout", "30"], cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: messages.extend(_drain(sock)) or any("READY=1" in m for m in messages), 90, "no READY")
            # the board is opened first
            assert sim.led == "ready" and any(m.type == protocol.MsgType.PING for m in sim.requests)
            sim.press_trigger()
            _wait(lambda: sim.display is not None, 20, "no result shown")
            illum = [protocol.parse_illum(m.payload)[0] for m in sim.requests if m.type == protocol.MsgType.SET_ILLUM]
            assert illum[:2] == ["polarised", "off"]  # lit for the capture only

            sim.unplug()
            time.sleep(2.0)
            sim.press_trigger()  # lost on the wire: the board is away
            sim.replug()
            _wait(lambda: sim.led == "ready", 15, "board not reopened")
            assert sim.display is None  # the re-plugged board shows nothing old
            sim.press_trigger()
            _wait(lambda: sim.display is not None, 20, "no result after the board came back")
            messages.extend(_drain(sock))
            assert messages.count("WATCHDOG=1") >= 4  # pings went on through the outage
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err[-2000:]
        report = json.loads(out)
        assert report["board"]["lost"] == 1 and report["board"]["reopened"] == 1 and report["frames"] == 2
        assert "board lost" in err and "board is back" in err
        assert sim.illumination == ("off", 0) and sim.led == "off"
    assert messages[-1] != "READY=1" and "STOPPING=1" in _drain(sock) + messages
