"""ScannerLink and the edge_sca controller against the board simulator on a pseudo-terminal: requests, retries,
a busy board, coalesced triggers, and a board that is unplugged, goes silent, and comes back."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from edge_sca.errors import ControllerLost, ExitStatus
from firmware_bridge import protocol
from firmware_bridge.errors import BoardLost, LinkError
from firmware_bridge.link import EVENT_QUEUE_MAX, ScannerLink, open_controller
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
    assert link.stats() == {"accepted": 4, "rejected": {}, "retried": 0, "busy_retried": 0, "events_dropped": 0}
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


def test_busy_ack_is_retried(link, sim):
    """One (or a few) ACK busy no longer ends the run: the request goes again after a short backoff."""
    sim.busy_replies = 3
    link.show_result("benign", 0.12, "")
    assert sim.display == ("benign", 0.12, "") and link.busy_retried == 3
    sim.busy_replies = 100
    with pytest.raises(BoardLost, match="stayed busy for SHOW_RESULT"):
        link.show_result("benign", 0.2, "")


def test_refused_request_raises(link, sim, monkeypatch):
    monkeypatch.setattr(sim, "_answer", lambda msg: protocol.Message(protocol.MsgType.ACK, msg.seq, b"\x01"))
    with pytest.raises(LinkError, match="refused SET_ILLUM: bad argument"):
        link.set_illumination("off", 0)


def test_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(BoardLost, match="cannot open serial port .*ttyACM") as exc:
        ScannerLink(str(tmp_path / "ttyACM9"))
    assert isinstance(exc.value, ControllerLost) and exc.value.exit_status == ExitStatus.HARDWARE


def test_controller_trigger_illumination_result(sim):
    ctl = open_controller(sim.port, timeout_s=0.3)
    try:
        assert sim.led == "ready"
        assert ctl.wait_trigger(0.05) is False
        sim.press_trigger()
        sim.press_trigger()
        assert ctl.wait_trigger(2.0) is True
        assert ctl.wait_trigger(0.2) is False  # two queued presses start one capture, not two
        ctl.set_illumination("polarised", 0.5)
        assert sim.illumination == ("polarised", 128)
        with pytest.raises(LinkError, match="outside 0.0-1.0"):
            ctl.set_illumination("polarised", 3)
        ctl.show_result(SimpleNamespace(decision="retake", p_malignant=None, reason="too dark"))
        assert sim.display == ("retake", None, "too dark")
    finally:
        ctl.close()
    assert sim.illumination == ("off", 0) and sim.led == "off"


def test_presses_during_a_capture_do_not_queue_another(sim):
    """A flood of presses while a frame is captured and shown is dropped, and the queue stays bounded."""
    ctl = open_controller(sim.port, timeout_s=0.3)
    try:
        sim.press_trigger()
        assert ctl.wait_trigger(2.0) is True
        for _ in range(3 * EVENT_QUEUE_MAX):  # pressed again and again during the capture
            sim.press_trigger()
        _wait_for(lambda: ctl.link.events.qsize() + ctl.link.events_dropped >= 3 * EVENT_QUEUE_MAX)
        assert ctl.link.events.qsize() <= EVENT_QUEUE_MAX
        ctl.show_result(SimpleNamespace(decision="benign", p_malignant=0.1, reason=""))
        assert ctl.wait_trigger(0.3) is False  # nothing pressed since the result: no stale capture
        sim.press_trigger()
        assert ctl.wait_trigger(2.0) is True
    finally:
        ctl.close()


def _wait_for(cond, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["unplugged", "silent"])
def test_a_board_that_goes_away_is_noticed_within_2_s_and_reopened(tmp_path, how):
    with BoardSimulator(link_path=tmp_path / "ttyACM0") as sim:
        ctl = open_controller(sim.port, timeout_s=0.3)
        try:
            assert ctl.wait_trigger(0.1) is False
            t0 = time.monotonic()
            if how == "unplugged":
                sim.unplug()
            else:
                sim.silent = True  # powered but hung: only the idle pings can tell
            with pytest.raises(BoardLost):
                while time.monotonic() - t0 < 5:
                    ctl.wait_trigger(0.5)
            assert time.monotonic() - t0 < 2.0
            if how == "unplugged":
                with pytest.raises(BoardLost, match="cannot open serial port"):
                    ctl.reopen()
                sim.replug()
            else:
                sim.silent = False
            ctl.reopen()
            assert sim.led == "ready" and ctl.wait_trigger(0.1) is False
            sim.press_trigger()
            assert ctl.wait_trigger(2.0) is True
        finally:
            ctl.close()


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
