"""ScannerLink: the Pi's side of the serial link to the dermoscope board (protocol.py), and the
`BridgeController` that `python -m edge_sca run --bridge PORT` drives.

A reader thread owns the port's input: it decodes frames, hands responses to the waiting request by sequence
number, and queues trigger events (a bounded queue). Requests are retried (same seq, every request is idempotent)
when no answer comes in time, so one lost or corrupted frame costs a retry, not a failed scan; an ACK "busy" is
retried after a short backoff.

A board that goes away is noticed fast: a port that fails (unplugged) marks the link lost at once, and an idle
board is pinged every LIVENESS_S so one that stops answering is noticed within about 1.6 s. The link then raises
BoardLost (edge_sca's ControllerLost), and the run loop calls BridgeController.reopen() with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any

from firmware_bridge import protocol
from firmware_bridge.errors import BoardLost, LinkError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
DEFAULT_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 2
#: An ACK "busy" is retried this many times, after BUSY_BACKOFF_S doubling each time (about 1.5 s in all).
BUSY_RETRIES = 5
BUSY_BACKOFF_S = 0.05
ACK_BUSY = protocol.ACK_STATUS.index("busy")
#: An idle board is pinged after LIVENESS_S without a frame from it, with a short timeout and one retry, so one
#: that stops answering is noticed within LIVENESS_S + (1 + LIVENESS_RETRIES) * LIVENESS_TIMEOUT_S = 1.6 s.
LIVENESS_S = 1.0
LIVENESS_TIMEOUT_S = 0.3
LIVENESS_RETRIES = 1
#: Trigger events waiting to be taken; more are dropped and counted (they would be coalesced anyway).
EVENT_QUEUE_MAX = 8
#: How often a wait for an event looks whether the link was lost.
EVENT_POLL_S = 0.05

Event = tuple[float, protocol.Message]  # (time.monotonic() on arrival, the message)


class ScannerLink:
    """Request/response and events over one serial port; use as a context manager or call close()."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, serial_factory: Any = None, busy_retries: int = BUSY_RETRIES) -> None:
        self.port, self.timeout_s, self.retries, self.busy_retries = port, timeout_s, retries, busy_retries
        self._serial = _open_serial(port, baudrate, serial_factory)
        self.decoder = protocol.StreamDecoder()
        self.events: queue.Queue[Event] = queue.Queue(maxsize=EVENT_QUEUE_MAX)
        self.retried = self.busy_retried = self.events_dropped = 0
        self.last_rx = time.monotonic()
        self.lost_reason: str | None = None
        self._lost = threading.Event()
        self._seq = 0
        self._pending: dict[int, protocol.Message | None] = {}
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name=f"scanner-link {port}", daemon=True)
        self._reader.start()

    # --- reader -------------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._serial.read(256)
            except Exception as exc:  # the port vanished (unplugged) or was closed under us
                if not self._stop.is_set():
                    self._mark_lost(f"serial port {self.port} failed: {exc}")
                return
            if data:
                for msg in self.decoder.feed(data):
                    self.last_rx = time.monotonic()
                    self._dispatch(msg)

    def _mark_lost(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            log.error("%s", reason)
        self._lost.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def _check_lost(self) -> None:
        if self._lost.is_set():
            raise BoardLost(f"{self.lost_reason}; is the board still plugged in?")

    def _dispatch(self, msg: protocol.Message) -> None:
        if msg.type in protocol.EVENTS:
            try:
                self.events.put_nowait((time.monotonic(), msg))
            except queue.Full:
                self.events_dropped += 1
            return
        if msg.type not in protocol.RESPONSES:
            self.decoder.rejected["unexpected"] += 1
            return
        with self._cond:
            if msg.seq in self._pending and self._pending[msg.seq] is None:
                self._pending[msg.seq] = msg
                self._cond.notify_all()
            else:
                self.decoder.rejected["unmatched"] += 1

    # --- requests -----------------------------------------------------------------------------------------
    def request(self, mtype: protocol.MsgType, payload: bytes = b"", timeout_s: float | None = None,
                retries: int | None = None) -> protocol.Message:
        """Send a request and return its response. BoardLost when the board does not answer after 1 + retries
        tries, stays busy, or its port failed; LinkError when it refuses the request."""
        for busy in range(self.busy_retries + 1):
            reply = self._exchange(mtype, payload, self.timeout_s if timeout_s is None else timeout_s,
                                   self.retries if retries is None else retries)
            if reply.type == protocol.MsgType.ACK and reply.payload[0] == ACK_BUSY:
                if busy < self.busy_retries:
                    self.busy_retried += 1
                    log.debug("board busy for %s, retry %d", mtype.name, busy + 1)
                    time.sleep(BUSY_BACKOFF_S * 2 ** busy)
                continue
            return self._check_reply(mtype, reply)
        raise BoardLost(f"the board on {self.port} stayed busy for {mtype.name} after {self.busy_retries + 1} tries; "
                        "reopening it")

    def _exchange(self, mtype: protocol.MsgType, payload: bytes, timeout_s: float, retries: int) -> protocol.Message:
        """One request (a fresh seq) with its retries; the reply, whatever it says."""
        self._check_lost()
        with self._request_lock:
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            frame = protocol.encode_frame(protocol.Message(mtype, seq, payload))
            with self._cond:
                self._pending[seq] = None
            try:
                for attempt in range(retries + 1):
                    if attempt:
                        self.retried += 1
                        log.debug("no answer to %s seq %d, retry %d", mtype.name, seq, attempt)
                    self._write(frame)
                    with self._cond:
                        self._cond.wait_for(lambda: self._pending[seq] is not None or self._lost.is_set(),
                                            timeout=timeout_s)
                        reply = self._pending[seq]
                    if reply is not None:
                        return reply
                    self._check_lost()
            finally:
                with self._cond:
                    self._pending.pop(seq, None)
        raise BoardLost(f"the board on {self.port} did not answer {mtype.name} after {retries + 1} tries "
                        f"({timeout_s:g} s each); check its power and cable, that PORT is the board's port, "
                        f"and the baud rate (rejected frames: {dict(self.decoder.rejected) or 'none'})")

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            try:
                self._serial.write(frame)
                self._serial.flush()
            except Exception as exc:
                self._mark_lost(f"cannot write to serial port {self.port}: {exc}")
                raise BoardLost(f"cannot write to serial port {self.port}: {exc}; is the board still plugged in?") \
                    from exc

    def _check_reply(self, mtype: protocol.MsgType, reply: protocol.Message) -> protocol.Message:
        expected = protocol.REPLY_TO[mtype]
        if reply.type != expected:
            raise LinkError(f"the board answered {mtype.name} with {reply.type.name}, expected {expected.name}; "
                            f"is its firmware current?")
        if reply.type == protocol.MsgType.ACK and reply.payload[0] != 0:
            raise LinkError(f"the board refused {mtype.name}: {protocol.ACK_STATUS[reply.payload[0]]}")
        return reply

    # --- typed calls --------------------------------------------------------------------------------------
    def ping(self, timeout_s: float | None = None, retries: int | None = None) -> dict:
        """The board's protocol and firmware version; LinkError if it speaks another protocol version."""
        info = protocol.parse_version(self.request(protocol.MsgType.PING, timeout_s=timeout_s, retries=retries).payload)
        if info["protocol"] != protocol.PROTOCOL_VERSION:
            raise LinkError(f"the board speaks protocol {info['protocol']}, this runtime {protocol.PROTOCOL_VERSION}; "
                            f"update the board's firmware or this bundle")
        return info

    def set_illumination(self, mode: str, intensity: int) -> None:
        self.request(protocol.MsgType.SET_ILLUM, protocol.illum_payload(mode, intensity))

    def show_result(self, decision: str, p_malignant: float | None, reason: str = "") -> None:
        self.request(protocol.MsgType.SHOW_RESULT, protocol.result_payload(decision, p_malignant, reason))

    def set_status_led(self, state: str) -> None:
        self.request(protocol.MsgType.STATUS_LED, protocol.led_payload(state))

    def wait_event(self, timeout_s: float | None) -> Event | None:
        """The next (arrival time, event), None after timeout_s; BoardLost as soon as the link is lost."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._check_lost()
            step = EVENT_POLL_S if deadline is None else min(EVENT_POLL_S, deadline - time.monotonic())
            try:
                return self.events.get(timeout=max(0.0, step))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def drain_events(self) -> int:
        """Drop every queued event; how many there were."""
        n = 0
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return n
            n += 1

    def stats(self) -> dict:
        return {"accepted": self.decoder.accepted, "rejected": dict(self.decoder.rejected), "retried": self.retried,
                "busy_retried": self.busy_retried, "events_dropped": self.events_dropped}

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # a port already gone: nothing left to cancel
            self._serial.cancel_read()
        self._reader.join(timeout=1.0)
        with contextlib.suppress(Exception):
            self._serial.close()

    def __enter__(self) -> ScannerLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_serial(port: str, baudrate: int, factory: Any) -> Any:
    try:
        import serial
    except ImportError as exc:
        raise LinkError("pyserial is not installed; `pip install -r requirements/device.in`") from exc
    try:
        return (factory or serial.Serial)(port, baudrate=baudrate, timeout=0.05, write_timeout=1.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise BoardLost(f"cannot open serial port {port!r} ({exc}); is the board plugged in? `ls /dev/ttyACM* "
                        f"/dev/ttyUSB*` lists candidates, and the user needs the `dialout` group") from exc


class BridgeController:
    """edge_sca's ScannerController over a ScannerLink: trigger in, illumination and result display out.

    Presses are coalesced: one wait returns True once however many presses are queued, and presses that arrived
    before the last result was shown (during a capture) or before the board was (re)opened are dropped, so a
    result never answers a press long past. `reopen()` opens the port afresh after the board went away.
    """

    def __init__(self, port: str, **link_options: Any) -> None:
        self.port, self._link_options = port, link_options
        self.link: ScannerLink | None = None
        self.board: dict = {}
        self.coalesced = 0
        self._armed_at = 0.0
        self._connect()

    def _connect(self) -> None:
        link = ScannerLink(self.port, **self._link_options)
        try:
            self.board = link.ping()
            self._armed_at = time.monotonic()  # presses from before the ready LED are stale
            link.set_status_led("ready")
        except BaseException:
            link.close()
            raise
        self.link = link

    def _live(self) -> ScannerLink:
        if self.link is None:
            raise BoardLost(f"the board on {self.port} is not open")
        return self.link

    def reopen(self) -> None:
        """Open the port again and check the board answers; BoardLost while it is still gone."""
        if self.link is not None:
            self.link.close()
            self.link = None
        self._connect()

    def wait_trigger(self, timeout_s: float | None) -> bool:
        """True once when the trigger was pressed within timeout_s (several queued presses count as one)."""
        link = self._live()
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else float("inf"))
        while True:
            now = time.monotonic()
            if now - link.last_rx >= LIVENESS_S:
                link.ping(timeout_s=LIVENESS_TIMEOUT_S, retries=LIVENESS_RETRIES)
                now = time.monotonic()
            event = link.wait_event(max(0.0, min(deadline - now, link.last_rx + LIVENESS_S - now)))
            if event is not None and event[0] >= self._armed_at:
                self.coalesced += link.drain_events()
                return True
            if event is not None:
                self.coalesced += 1
            if time.monotonic() >= deadline:
                return False

    def set_illumination(self, mode: str, intensity: float) -> None:
        """mode: off | polarised | non-polarised; intensity: 0.0-1.0 of full brightness."""
        if not 0.0 <= float(intensity) <= 1.0:
            raise LinkError(f"illumination intensity {intensity} is outside 0.0-1.0")
        self._live().set_illumination(mode, round(float(intensity) * 255))

    def show_result(self, decision: Any) -> None:
        """decision: an object with .decision (malignant | benign | retake), .p_malignant and .reason."""
        self._live().show_result(decision.decision, getattr(decision, "p_malignant", None),
                                 str(getattr(decision, "reason", "") or ""))
        self._armed_at = time.monotonic()  # presses made during this capture do not start another

    def close(self) -> None:
        if self.link is None:
            return
        try:
            self.link.set_illumination("off", 0)
            self.link.set_status_led("off")
        except LinkError as exc:
            log.warning("could not switch the board off cleanly: %s", exc)
        finally:
            self.link.close()
            self.link = None


def open_controller(port: str, **link_options: Any) -> BridgeController:
    """Open PORT, check the board answers and speaks our protocol; LinkError with what to do otherwise."""
    controller = BridgeController(port, **link_options)
    log.info("board on %s: %s firmware %s, protocol %d", port, controller.board["board"],
             controller.board["firmware"], controller.board["protocol"])
    return controller
