"""A dermoscope-board simulator on a pseudo-terminal: stands in for the board in tests and on a desk.

It speaks protocol.py from the pty's master end; open `sim.port` (the slave's /dev/pts/N path) as the serial port.
Tests steer it: `press_trigger()` emits an event, `drop_replies` / `corrupt_replies` lose or damage the next
replies, `silent` stops it answering, `inject()` writes raw bytes onto the line.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import tty

from firmware_bridge import protocol as P

log = logging.getLogger(__name__)

FIRMWARE = (1, 0, 0)
BOARD_NAME = "sca-dermoscope-sim"


class BoardSimulator:
    """The board: answers requests, keeps the illumination / LED / display state, emits trigger events."""

    def __init__(self, firmware: tuple[int, int, int] = FIRMWARE, board: str = BOARD_NAME) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.firmware, self.board = firmware, board
        self.decoder = P.StreamDecoder()
        self.illumination: tuple[str, int] = ("off", 0)
        self.led = "off"
        self.display: tuple[str, float | None, str] | None = None
        self.requests: list[P.Message] = []
        self.drop_replies = 0
        self.corrupt_replies = 0
        self.silent = False
        self.presses = 0
        self._event_seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="board-sim", daemon=True)

    def start(self) -> "BoardSimulator":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 1024)
            except OSError:  # no reader on the slave side just now; keep serving
                continue
            for msg in self.decoder.feed(data):
                self._handle(msg)

    def _handle(self, msg: P.Message) -> None:
        with self._lock:
            self.requests.append(msg)
            if msg.type not in P.REQUESTS or self.silent:
                return
            reply = self._answer(msg)
            if self.drop_replies:
                self.drop_replies -= 1
                log.debug("sim: dropping reply to seq %d", msg.seq)
                return
            frame = P.encode_frame(reply)
            if self.corrupt_replies:
                self.corrupt_replies -= 1
                frame = bytes([frame[0], frame[1] ^ 0x5A]) + frame[2:]  # a flipped byte: fails CRC or COBS
        self._write(frame)

    def _answer(self, msg: P.Message) -> P.Message:
        if msg.type == P.MsgType.PING:
            return P.Message(P.MsgType.VERSION, msg.seq, P.version_payload(self.firmware, self.board))
        if msg.type == P.MsgType.SET_ILLUM:
            self.illumination = P.parse_illum(msg.payload)
        elif msg.type == P.MsgType.SHOW_RESULT:
            self.display = P.parse_result(msg.payload)
        elif msg.type == P.MsgType.STATUS_LED:
            self.led = P.LED_STATES[msg.payload[0]]
        return P.Message(P.MsgType.ACK, msg.seq, b"\x00")

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except OSError as exc:
            log.warning("sim: write failed: %s", exc)

    def press_trigger(self) -> None:
        """The user pressed the trigger button: send a TRIGGER event."""
        with self._lock:
            self.presses += 1
            self._event_seq = (self._event_seq + 1) & 0xFFFF
            frame = P.encode_frame(P.Message(P.MsgType.TRIGGER, self._event_seq,
                                             (self.presses & 0xFFFF).to_bytes(2, "little")))
        self._write(frame)

    def inject(self, data: bytes) -> None:
        """Raw bytes onto the line (line noise, garbage frames)."""
        self._write(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "BoardSimulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
