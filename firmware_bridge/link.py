"""ScannerLink: the Pi's side of the serial link to the dermoscope board (protocol.py), and the
`ScannerController` that `python -m edge_sca run --bridge PORT` drives.

A reader thread owns the port's input: it decodes frames, hands responses to the waiting request by sequence
number, and queues trigger events. Requests are retried (same seq, every request is idempotent) when no answer
comes in time, so one lost or corrupted frame costs a retry, not a failed scan.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
DEFAULT_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 2


class ScannerLink:
    """Request/response and events over one serial port; use as a context manager or call close()."""

    def __init__(self, port: str, baudrate: int = DEFAULT_BAUD, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, serial_factory: Any = None) -> None:
        self.port, self.timeout_s, self.retries = port, timeout_s, retries
        self._serial = _open_serial(port, baudrate, serial_factory)
        self.decoder = P.StreamDecoder()
        self.events: queue.Queue[P.Message] = queue.Queue()
        self.retried = 0
        self._seq = 0
        self._pending: dict[int, P.Message | None] = {}
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
                    log.error("serial port %s failed: %s", self.port, exc)
                break
            if data:
                for msg in self.decoder.feed(data):
                    self._dispatch(msg)

    def _dispatch(self, msg: P.Message) -> None:
        if msg.type in P.EVENTS:
            self.events.put(msg)
            return
        if msg.type not in P.RESPONSES:
            self.decoder.rejected["unexpected"] += 1
            return
        with self._cond:
            if msg.seq in self._pending and self._pending[msg.seq] is None:
                self._pending[msg.seq] = msg
                self._cond.notify_all()
            else:
                self.decoder.rejected["unmatched"] += 1

    # --- requests -----------------------------------------------------------------------------------------
    def request(self, mtype: P.MsgType, payload: bytes = b"") -> P.Message:
        """Send a request and return its response; LinkError after 1 + retries unanswered tries."""
        with self._request_lock:
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            frame = P.encode_frame(P.Message(mtype, seq, payload))
            with self._cond:
                self._pending[seq] = None
            try:
                for attempt in range(self.retries + 1):
                    if attempt:
                        self.retried += 1
                        log.debug("no answer to %s seq %d, retry %d", mtype.name, seq, attempt)
                    self._write(frame)
                    with self._cond:
                        self._cond.wait_for(lambda: self._pending[seq] is not None, timeout=self.timeout_s)
                        reply = self._pending[seq]
                    if reply is not None:
                        return self._check_reply(mtype, reply)
            finally:
                with self._cond:
                    self._pending.pop(seq, None)
        raise LinkError(f"the board on {self.port} did not answer {mtype.name} after {self.retries + 1} tries "
                        f"({self.timeout_s:g} s each); check its power and cable, that PORT is the board's port, "
                        f"and the baud rate (rejected frames: {dict(self.decoder.rejected) or 'none'})")

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            try:
                self._serial.write(frame)
                self._serial.flush()
            except Exception as exc:
                raise LinkError(f"cannot write to serial port {self.port}: {exc}; is the board still plugged in?") \
                    from exc

    def _check_reply(self, mtype: P.MsgType, reply: P.Message) -> P.Message:
        expected = P.REPLY_TO[mtype]
        if reply.type != expected:
            raise LinkError(f"the board answered {mtype.name} with {reply.type.name}, expected {expected.name}; "
                            f"is its firmware current?")
        if reply.type == P.MsgType.ACK and reply.payload[0] != 0:
            raise LinkError(f"the board refused {mtype.name}: {P.ACK_STATUS[reply.payload[0]]}")
        return reply

    # --- typed calls --------------------------------------------------------------------------------------
    def ping(self) -> dict:
        """The board's protocol and firmware version; LinkError if it speaks another protocol version."""
        info = P.parse_version(self.request(P.MsgType.PING).payload)
        if info["protocol"] != P.PROTOCOL_VERSION:
            raise LinkError(f"the board speaks protocol {info['protocol']}, this runtime {P.PROTOCOL_VERSION}; "
                            f"update the board's firmware or this bundle")
        return info

    def set_illumination(self, mode: str, intensity: int) -> None:
        self.request(P.MsgType.SET_ILLUM, P.illum_payload(mode, intensity))

    def show_result(self, decision: str, p_malignant: float | None, reason: str = "") -> None:
        self.request(P.MsgType.SHOW_RESULT, P.result_payload(decision, p_malignant, reason))

    def set_status_led(self, state: str) -> None:
        self.request(P.MsgType.STATUS_LED, P.led_payload(state))

    def wait_event(self, timeout_s: float | None) -> P.Message | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def stats(self) -> dict:
        return {"accepted": self.decoder.accepted, "rejected": dict(self.decoder.rejected), "retried": self.retried}

    def close(self) -> None:
        self._stop.set()
        try:
            self._serial.cancel_read()
        except Exception:
            pass
        self._reader.join(timeout=1.0)
        try:
            self._serial.close()
        except Exception:
            pass

    def __enter__(self) -> "ScannerLink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_serial(port: str, baudrate: int, factory: Any) -> Any:
    try:
        import serial
    except ImportError as exc:
        raise LinkError("pyserial is not installed; `pip install -r requirements/device.txt`") from exc
    try:
        return (factory or serial.Serial)(port, baudrate=baudrate, timeout=0.05, write_timeout=1.0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise LinkError(f"cannot open serial port {port!r} ({exc}); is the board plugged in? `ls /dev/ttyACM* "
                        f"/dev/ttyUSB*` lists candidates, and the user needs the `dialout` group") from exc


class BridgeController:
    """edge_sca's ScannerController over a ScannerLink: trigger in, illumination and result display out."""

    def __init__(self, link: ScannerLink) -> None:
        self.link = link
        self.board = link.ping()
        link.set_status_led("ready")

    def wait_trigger(self, timeout_s: float | None) -> bool:
        """True when the trigger was pressed within timeout_s (earlier presses are queued, not lost)."""
        return self.link.wait_event(timeout_s) is not None

    def set_illumination(self, mode: str, intensity: float) -> None:
        """mode: off | polarised | non-polarised; intensity: 0.0-1.0 of full brightness."""
        if not 0.0 <= float(intensity) <= 1.0:
            raise LinkError(f"illumination intensity {intensity} is outside 0.0-1.0")
        self.link.set_illumination(mode, round(float(intensity) * 255))

    def show_result(self, decision: Any) -> None:
        """decision: an object with .decision (malignant | benign | retake), .p_malignant and .reason."""
        self.link.show_result(decision.decision, getattr(decision, "p_malignant", None),
                              str(getattr(decision, "reason", "") or ""))

    def close(self) -> None:
        try:
            self.link.set_illumination("off", 0)
            self.link.set_status_led("off")
        except LinkError as exc:
            log.warning("could not switch the board off cleanly: %s", exc)
        finally:
            self.link.close()


def open_controller(port: str, **link_options: Any) -> BridgeController:
    """Open PORT, check the board answers and speaks our protocol; LinkError with what to do otherwise."""
    link = ScannerLink(port, **link_options)
    try:
        controller = BridgeController(link)
    except Exception:
        link.close()
        raise
    log.info("board on %s: %s firmware %s, protocol %d", port, controller.board["board"],
             controller.board["firmware"], controller.board["protocol"])
    return controller
