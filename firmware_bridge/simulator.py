"""A dermoscope-board simulator on a pseudo-terminal: stands in for the board in tests and on a desk.

It speaks protocol.py from the pty's master end; open `sim.port` as the serial port. With `link_path` the port is
a stable symlink to the current pty (as udev's /dev/serial/by-id links are), so `unplug()` and `replug()` can take
the board away and bring it back on a new pty under the same name. Tests steer it: `press_trigger()` emits an
event, `drop_replies` / `corrupt_replies` / `busy_replies` lose, damage or refuse ("busy") the next replies,
`silent` stops it answering, `inject()` writes raw bytes onto the line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import tty
from pathlib import Path

from edge_sca.fileio import atomic_symlink
from firmware_bridge import protocol

log = logging.getLogger(__name__)

FIRMWARE = (1, 0, 0)
BOARD_NAME = "sca-dermoscope-sim"
ACK_OK, ACK_BUSY = b"\x00", bytes([protocol.ACK_STATUS.index("busy")])


class BoardSimulator:
    """The board: answers requests, keeps the illumination / LED / display state, emits trigger events."""

    def __init__(self, firmware: tuple[int, int, int] = FIRMWARE, board: str = BOARD_NAME,
                 link_path: str | Path | None = None) -> None:
        self.firmware, self.board = firmware, board
        self.link_path = Path(link_path) if link_path else None
        self.master: int | None = None
        self._slave: int | None = None
        self.pty = ""
        self.decoder = protocol.StreamDecoder()
        self.illumination: tuple[str, int] = ("off", 0)
        self.led = "off"
        self.display: tuple[str, float | None, str] | None = None
        self.requests: list[protocol.Message] = []
        self.drop_replies = 0
        self.corrupt_replies = 0
        self.busy_replies = 0
        self.silent = False
        self.presses = 0
        self._event_seq = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="board-sim", daemon=True)
        self._plug()

    @property
    def port(self) -> str:
        return str(self.link_path) if self.link_path else self.pty

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        with self._lock:
            self.master, self._slave, self.pty = master, slave, os.ttyname(slave)
            self.decoder = protocol.StreamDecoder()
        if self.link_path:  # a stable name, re-pointed atomically at every re-plug, as udev gives a board
            atomic_symlink(self.link_path, self.pty, sync_dir=False)

    def start(self) -> BoardSimulator:
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The USB cable is pulled: the port disappears and the Pi's reads fail."""
        with self._lock:
            fds, self.master, self._slave = (self.master, self._slave), None, None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.link_path:
            self.link_path.unlink(missing_ok=True)
        # a re-plugged board starts fresh: nothing lit, nothing shown
        self.illumination, self.led, self.display = ("off", 0), "off", None

    def replug(self) -> None:
        """The cable is plugged back in: a new pty behind the same link_path."""
        if not self.plugged:
            self._plug()

    def _loop(self) -> None:
        while not self._stop.is_set():
            master = self.master
            if master is None:
                self._stop.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(master, 1024)
            except (OSError, ValueError):  # no reader on the slave side just now, or unplugged under us
                self._stop.wait(0.02)
                continue
            for msg in self.decoder.feed(data):
                self._handle(msg)

    def _handle(self, msg: protocol.Message) -> None:
        with self._lock:
            self.requests.append(msg)
            if msg.type not in protocol.REQUESTS or self.silent:
                return
            reply = self._answer(msg)
            if self.drop_replies:
                self.drop_replies -= 1
                log.debug("sim: dropping reply to seq %d", msg.seq)
                return
            frame = protocol.encode_frame(reply)
            if self.corrupt_replies:
                self.corrupt_replies -= 1
                frame = bytes([frame[0], frame[1] ^ 0x5A]) + frame[2:]  # a flipped byte: fails CRC or COBS
        self._write(frame)

    def _answer(self, msg: protocol.Message) -> protocol.Message:
        if msg.type == protocol.MsgType.PING:
            return protocol.Message(protocol.MsgType.VERSION, msg.seq,
                                    protocol.version_payload(self.firmware, self.board))
        if self.busy_replies:
            self.busy_replies -= 1
            return protocol.Message(protocol.MsgType.ACK, msg.seq, ACK_BUSY)
        if msg.type == protocol.MsgType.SET_ILLUM:
            self.illumination = protocol.parse_illum(msg.payload)
        elif msg.type == protocol.MsgType.SHOW_RESULT:
            self.display = protocol.parse_result(msg.payload)
        elif msg.type == protocol.MsgType.STATUS_LED:
            self.led = protocol.LED_STATES[msg.payload[0]]
        return protocol.Message(protocol.MsgType.ACK, msg.seq, ACK_OK)

    def _write(self, data: bytes) -> None:
        master = self.master
        if master is None:
            return
        try:
            os.write(master, data)
        except OSError as exc:
            log.warning("sim: write failed: %s", exc)

    def press_trigger(self) -> None:
        """The user pressed the trigger button: send a TRIGGER event (lost while unplugged, as on the wire)."""
        with self._lock:
            self.presses += 1
            self._event_seq = (self._event_seq + 1) & 0xFFFF
            frame = protocol.encode_frame(protocol.Message(protocol.MsgType.TRIGGER, self._event_seq,
                                             (self.presses & 0xFFFF).to_bytes(2, "little")))
        self._write(frame)

    def inject(self, data: bytes) -> None:
        """Raw bytes onto the line (line noise, garbage frames)."""
        self._write(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)
        self.unplug()

    def __enter__(self) -> BoardSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
