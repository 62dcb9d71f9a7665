"""The Pi <-> dermoscope-board serial protocol, version 1: small, versioned, binary, strict.

Wire format. Each frame is COBS-encoded and ends with one 0x00 delimiter (COBS output has no zero bytes, so a
receiver that lost sync resynchronises at the next 0x00). Decoded, a frame is

    version u8 | type u8 | seq u16 LE | length u16 LE | payload (length bytes) | crc u16 BE

with the CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, xorout 0; check("123456789") = 0x29B1) over
everything before it. Requests come from the Pi; the board answers each with a response carrying the same seq.
Events (trigger pressed) come from the board unasked, numbered by the board's own counter.

Payloads (all integers little-endian):
    PING           ()                               -> VERSION
    SET_ILLUM      mode u8 (0 off, 1 polarised, 2 non-polarised), intensity u8 0-255  -> ACK
    SHOW_RESULT    decision u8 (0 benign, 1 malignant, 2 retake), p u16 (p_malignant x 10000, 0xFFFF none),
                   reason utf-8 (the rest, at most MAX_REASON bytes)                  -> ACK
    STATUS_LED     state u8 (0 off, 1 ready, 2 busy, 3 error)                         -> ACK
    VERSION        protocol u8, firmware major u8, minor u8, patch u8, board name ascii (<= 32 bytes)
    ACK            status u8 (0 ok, 1 bad argument, 2 unsupported, 3 busy)
    TRIGGER        presses u16 (the board's running count of trigger presses)

The parser rejects (and a StreamDecoder counts, per reason) anything else: see REJECT_REASONS.
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections import Counter
from dataclasses import dataclass

from firmware_bridge.errors import FrameError

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBHH")
CRC_SIZE = 2
#: Largest payload a frame may carry (the board's RAM is small).
MAX_PAYLOAD = 96
#: Largest decoded frame: header + payload + CRC.
MAX_FRAME = HEADER.size + MAX_PAYLOAD + CRC_SIZE
#: Largest encoded frame on the wire without its delimiter (COBS adds one byte per 254, plus one).
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1
MAX_REASON = 64
MAX_BOARD_NAME = 32
P_NONE = 0xFFFF

REJECT_REASONS = ("empty", "cobs", "oversized", "truncated", "crc", "version", "unknown_type", "length", "payload")


class MsgType(enum.IntEnum):
    PING = 0x01
    SET_ILLUM = 0x02
    SHOW_RESULT = 0x03
    STATUS_LED = 0x04
    VERSION = 0x81
    ACK = 0x82
    TRIGGER = 0xC1


REQUESTS = {MsgType.PING, MsgType.SET_ILLUM, MsgType.SHOW_RESULT, MsgType.STATUS_LED}
RESPONSES = {MsgType.VERSION, MsgType.ACK}
EVENTS = {MsgType.TRIGGER}
#: Which response each request gets.
REPLY_TO = {MsgType.PING: MsgType.VERSION, MsgType.SET_ILLUM: MsgType.ACK, MsgType.SHOW_RESULT: MsgType.ACK,
            MsgType.STATUS_LED: MsgType.ACK}

ILLUM_MODES = ("off", "polarised", "non-polarised")
DECISIONS = ("benign", "malignant", "retake")
LED_STATES = ("off", "ready", "busy", "error")
ACK_STATUS = ("ok", "bad argument", "unsupported", "busy")


@dataclass(frozen=True)
class Message:
    type: MsgType
    seq: int
    payload: bytes = b""


# --- CRC and COBS ---------------------------------------------------------------------------------------------

def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor (the standard library's
    CRC-CCITT, `binascii.crc_hqx`, started at 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the output has no 0x00 bytes (the delimiter is not appended)."""
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
            continue
        out.append(b)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; FrameError('cobs') on a zero byte or a code that runs past the end."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("cobs", "zero byte inside a frame")
        end = i + code
        if end > n:
            raise FrameError("cobs", "code byte runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise FrameError("cobs", "zero byte inside a frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- payloads -------------------------------------------------------------------------------------------------

def illum_payload(mode: str, intensity: int) -> bytes:
    if mode not in ILLUM_MODES:
        raise ValueError(f"illumination mode {mode!r} is not one of {', '.join(ILLUM_MODES)}")
    if not 0 <= int(intensity) <= 255:
        raise ValueError(f"intensity {intensity} is outside 0-255")
    return bytes([ILLUM_MODES.index(mode), int(intensity)])


def parse_illum(payload: bytes) -> tuple[str, int]:
    return ILLUM_MODES[payload[0]], payload[1]


def result_payload(decision: str, p_malignant: float | None, reason: str = "") -> bytes:
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if p_malignant is not None and not 0.0 <= float(p_malignant) <= 1.0:
        raise ValueError(f"p_malignant {p_malignant} is outside 0-1")
    p = P_NONE if p_malignant is None else round(float(p_malignant) * 10000)
    text = reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("<BH", DECISIONS.index(decision), p) + text


def parse_result(payload: bytes) -> tuple[str, float | None, str]:
    d, p = struct.unpack_from("<BH", payload)
    return DECISIONS[d], None if p == P_NONE else p / 10000, payload[3:].decode("utf-8")


def led_payload(state: str) -> bytes:
    if state not in LED_STATES:
        raise ValueError(f"status LED state {state!r} is not one of {', '.join(LED_STATES)}")
    return bytes([LED_STATES.index(state)])


def version_payload(fw: tuple[int, int, int], board: str) -> bytes:
    return bytes([PROTOCOL_VERSION, *fw]) + board.encode("ascii")[:MAX_BOARD_NAME]


def parse_version(payload: bytes) -> dict:
    return {"protocol": payload[0], "firmware": f"{payload[1]}.{payload[2]}.{payload[3]}",
            "board": payload[4:].decode("ascii")}


def _check_result(p: bytes) -> bool:
    if len(p) < 3 or len(p) > 3 + MAX_REASON or p[0] >= len(DECISIONS):
        return False
    value = struct.unpack_from("<H", p, 1)[0]
    try:
        p[3:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return value <= 10000 or value == P_NONE


def _check_version(p: bytes) -> bool:
    return 4 <= len(p) <= 4 + MAX_BOARD_NAME and all(32 <= c < 127 for c in p[4:])


_PAYLOAD_OK = {
    MsgType.PING: lambda p: len(p) == 0,
    MsgType.SET_ILLUM: lambda p: len(p) == 2 and p[0] < len(ILLUM_MODES),
    MsgType.SHOW_RESULT: _check_result,
    MsgType.STATUS_LED: lambda p: len(p) == 1 and p[0] < len(LED_STATES),
    MsgType.VERSION: _check_version,
    MsgType.ACK: lambda p: len(p) == 1 and p[0] < len(ACK_STATUS),
    MsgType.TRIGGER: lambda p: len(p) == 2,
}


# --- frames ---------------------------------------------------------------------------------------------------

def encode_frame(msg: Message) -> bytes:
    """A message as wire bytes, delimiter included; ValueError for a payload the parser would reject."""
    if not 0 <= msg.seq <= 0xFFFF:
        raise ValueError(f"sequence number {msg.seq} is outside 0-65535")
    if len(msg.payload) > MAX_PAYLOAD or not _PAYLOAD_OK[MsgType(msg.type)](msg.payload):
        raise ValueError(f"invalid {MsgType(msg.type).name} payload {msg.payload!r}")
    body = HEADER.pack(PROTOCOL_VERSION, int(msg.type), msg.seq, len(msg.payload)) + msg.payload
    return cobs_encode(body + struct.pack(">H", crc16_ccitt_false(body))) + b"\x00"


def decode_frame(encoded: bytes) -> Message:
    """Wire bytes of one frame (without the delimiter) to a Message; FrameError(reason) for anything wrong."""
    if not encoded:
        raise FrameError("empty")
    if len(encoded) > MAX_ENCODED:
        raise FrameError("oversized", f"{len(encoded)} bytes > {MAX_ENCODED}")
    raw = cobs_decode(encoded)
    if len(raw) > MAX_FRAME:
        raise FrameError("oversized", f"{len(raw)} bytes > {MAX_FRAME}")
    if len(raw) < HEADER.size + CRC_SIZE:
        raise FrameError("truncated", f"{len(raw)} bytes is shorter than a header and CRC")
    body, crc = raw[:-CRC_SIZE], struct.unpack(">H", raw[-CRC_SIZE:])[0]
    if crc16_ccitt_false(body) != crc:
        raise FrameError("crc", f"CRC {crc:#06x} != computed {crc16_ccitt_false(body):#06x}")
    version, mtype, seq, length = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise FrameError("version", f"protocol version {version}, this side speaks {PROTOCOL_VERSION}")
    if mtype not in MsgType._value2member_map_:
        raise FrameError("unknown_type", f"type {mtype:#04x}")
    payload = body[HEADER.size:]
    if length != len(payload):
        raise FrameError("length", f"header says {length} payload bytes, frame has {len(payload)}")
    if not _PAYLOAD_OK[MsgType(mtype)](payload):
        raise FrameError("payload", f"invalid {MsgType(mtype).name} payload")
    return Message(MsgType(mtype), seq, bytes(payload))


class StreamDecoder:
    """Bytes from a serial port in, Messages out. Bad frames are dropped and counted in `rejected` (per reason);
    an over-long run without a delimiter is discarded up to the next delimiter, so memory stays bounded."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.rejected: Counter[str] = Counter()
        self.accepted = 0

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        for chunk_end, part in _split_keep(data):
            if not self._overflow:
                self._buf += part
                if len(self._buf) > MAX_ENCODED:
                    self._buf.clear()
                    self._overflow = True
            if not chunk_end:
                continue
            if self._overflow:
                self.rejected["oversized"] += 1
                self._overflow = False
            elif self._buf:
                self._take(bytes(self._buf), out)
            self._buf.clear()
        return out

    def _take(self, frame: bytes, out: list[Message]) -> None:
        try:
            out.append(decode_frame(frame))
            self.accepted += 1
        except FrameError as exc:
            self.rejected[exc.reason] += 1


def _split_keep(data: bytes):
    """Yield (ends_with_delimiter, bytes before it) for each delimiter-separated piece of data."""
    parts = bytes(data).split(b"\x00")
    for i, part in enumerate(parts):
        yield i < len(parts) - 1, part
