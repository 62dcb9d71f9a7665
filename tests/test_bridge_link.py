"""ScannerLink and the edge_sca controller against the board simulator on a pseudo-terminal."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError
from firmware_bridge.link import ScannerLink, open_controller
from firmware_bridge.simulator import BoardSimulator


@pytest.fixture
def sim():
    with BoardSimulator() as s:
        yield s


@pytest.fixture
def link(sim):
    with ScannerLink(sim.port, timeout_s=0.3, retries=2) as lk:
        yield lk


def test_request_response(link, sim):
    assert link.ping() == {"protocol": 1, "firmware": "1.0.0", "board": "sca-dermoscope-sim"}
    link.set_illumination("non-polarised", 77)
    link.set_status_led("busy")
    link.show_result("malignant", 0.91, "above threshold")
    assert sim.illumination == ("non-polarised", 77)
    assert sim.led == "busy"
    assert sim.display == ("malignant", 0.91, "above threshold")
    assert link.stats() == {"accepted": 4, "rejected": {}, "retried": 0}
    assert [m.seq for m in sim.requests] == [1, 2, 3, 4]


def test_dropped_reply_is_retried(link, sim):
    sim.drop_replies = 1
    link.set_illumination("polarised", 10)
    assert link.retried == 1
    assert sim.illumination == ("polarised", 10)
    assert [m.seq for m in sim.requests] == [1, 1]  # the retry reuses the seq


def test_corrupted_reply_is_counted_and_retried(link, sim):
    sim.corrupt_replies = 1
    assert link.ping()["board"] == "sca-dermoscope-sim"
    assert link.retried == 1
    assert sum(link.decoder.rejected.values()) >= 1


def test_line_noise_does_not_disturb_requests(link, sim):
    sim.inject(b"\x00\xde\xad\xbe\xef\x00" + b"\x07" * 500 + b"\x00")
    link.set_status_led("ready")
    assert sim.led == "ready"
    deadline = time.monotonic() + 2
    while sum(link.decoder.rejected.values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert link.decoder.rejected["oversized"] == 1


def test_silent_board_times_out_with_a_clear_error(link, sim):
    sim.silent = True
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="did not answer PING after 3 tries"):
        link.ping()
    assert time.monotonic() - t0 < 5
    assert len(sim.requests) == 3


def test_refused_request_raises(link, sim, monkeypatch):
    monkeypatch.setattr(sim, "_answer", lambda msg: P.Message(P.MsgType.ACK, msg.seq, b"\x01"))
    with pytest.raises(LinkError, match="refused SET_ILLUM: bad argument"):
        link.set_illumination("off", 0)


def test_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(LinkError, match="cannot open serial port .*ttyACM"):
        ScannerLink(str(tmp_path / "ttyACM9"))


def test_controller_trigger_illumination_result(sim):
    ctl = open_controller(sim.port, timeout_s=0.3)
    try:
        assert sim.led == "ready"
        assert ctl.wait_trigger(0.05) is False
        sim.press_trigger()
        sim.press_trigger()
        assert ctl.wait_trigger(2.0) is True
        assert ctl.wait_trigger(2.0) is True  # presses are queued, not lost
        assert ctl.wait_trigger(0.05) is False
        ctl.set_illumination("polarised", 0.5)
        assert sim.illumination == ("polarised", 128)
        with pytest.raises(LinkError, match="outside 0.0-1.0"):
            ctl.set_illumination("polarised", 3)
        ctl.show_result(SimpleNamespace(decision="retake", p_malignant=None, reason="too dark"))
        assert sim.display == ("retake", None, "too dark")
    finally:
        ctl.close()
    assert sim.illumination == ("off", 0) and sim.led == "off"


def test_controller_satisfies_the_edge_sca_protocol(sim):
    controller_mod = pytest.importorskip("edge_sca.controller")
    ctl = open_controller(sim.port)
    try:
        assert isinstance(ctl, controller_mod.ScannerController)
    finally:
        ctl.close()


def test_open_controller_on_a_silent_board_fails_and_closes(sim):
    sim.silent = True
    with pytest.raises(LinkError, match="did not answer"):
        open_controller(sim.port, timeout_s=0.1, retries=1)


def test_simulate_cli_prints_its_pty_path():
    proc = subprocess.run([sys.executable, "-m", "firmware_bridge", "simulate", "--seconds", "0.3", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '"port": "/dev/pts/' in proc.stdout


@pytest.mark.slow
def test_edge_sca_run_with_bridge_drives_the_board(random_models, sim):
    """`python -m edge_sca run --bridge PORT`: trigger -> illumination on -> capture -> off -> result shown."""
    import json
    import threading

    pytest.importorskip("edge_sca.cli")
    done = threading.Event()

    def press():
        while not done.wait(0.2):
            sim.press_trigger()

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "edge_sca", "run", "--bridge", sim.port, "--camera",
                               "synthetic", "--frames", "2", "--model", str(random_models["int8"]), "--json"],
                              capture_output=True, text=True, timeout=120)
    finally:
        done.set()
        presser.join()
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["stopped_by"] == "frames"
    kinds = [m.type for m in sim.requests]
    assert kinds.count(P.MsgType.SHOW_RESULT) == 2
    illum = [P.parse_illum(m.payload)[0] for m in sim.requests if m.type == P.MsgType.SET_ILLUM]
    assert illum[0] != "off" and illum[1] == "off"  # lit for the capture only
    assert sim.display[0] in P.DECISIONS
    assert sim.illumination == ("off", 0) and sim.led == "off"  # close() switched the board off
