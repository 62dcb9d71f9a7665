"""The serial protocol: round trips, every rejection path, and random bytes thrown at the parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol
from firmware_bridge.errors import FrameError

VALID = [
    protocol.Message(protocol.MsgType.PING, 1),
    protocol.Message(protocol.MsgType.SET_ILLUM, 2, protocol.illum_payload("polarised", 200)),
    protocol.Message(protocol.MsgType.SET_ILLUM, 3, protocol.illum_payload("off", 0)),
    protocol.Message(protocol.MsgType.SHOW_RESULT, 0xFFFF,
                     protocol.result_payload("malignant", 0.8731, "p above threshold")),
    protocol.Message(protocol.MsgType.SHOW_RESULT, 0,
                     protocol.result_payload("retake", None, "blurred: move closer ü")),
    protocol.Message(protocol.MsgType.STATUS_LED, 7, protocol.led_payload("busy")),
    protocol.Message(protocol.MsgType.VERSION, 8, protocol.version_payload((1, 2, 3), "board-x")),
    protocol.Message(protocol.MsgType.ACK, 9, b"\x00"),
    protocol.Message(protocol.MsgType.TRIGGER, 10, b"\x05\x00"),
]


def raw_frame(version=protocol.PROTOCOL_VERSION, mtype=0x01, seq=1, payload=b"", length=None, crc=None) -> bytes:
    """A frame built by hand (without the delimiter), to make each kind of bad frame."""
    body = protocol.HEADER.pack(version, mtype, seq, len(payload) if length is None else length) + payload
    crc = protocol.crc16_ccitt_false(body) if crc is None else crc
    return protocol.cobs_encode(body + struct.pack(">H", crc))


#: version 1 | PING | seq 1 LE | length 0 | CRC 0x9755 BE, COBS-encoded, then the 0x00 delimiter. Produced by the
#: table-driven CRC this module had before it used binascii.crc_hqx; the bytes a firmware author can test against.
GOLDEN_PING = bytes.fromhex("04 01 01 01 01 01 03 97 55 00")


def _crc_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit, straight from its definition, as a firmware author would write it."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_crc_is_ccitt_false():
    assert protocol.crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogue's check value
    assert protocol.crc16_ccitt_false(b"") == 0xFFFF
    # a golden frame: PING, seq 1, no payload (what the Pi sends first), byte for byte
    assert protocol.encode_frame(protocol.Message(protocol.MsgType.PING, 1)) == GOLDEN_PING


@given(st.binary(max_size=600))
@settings(max_examples=200, deadline=None)
def test_crc_matches_the_bitwise_definition(data):
    assert protocol.crc16_ccitt_false(data) == _crc_bitwise(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\x11" * 253, b"\x11" * 254, b"\x11" * 255,
                                  b"\x11" * 253 + b"\x00", bytes(range(256)) * 3])
def test_cobs_round_trip_has_no_zero(data):
    enc = protocol.cobs_encode(data)
    assert 0 not in enc
    assert protocol.cobs_decode(enc) == data


@pytest.mark.parametrize("msg", VALID, ids=lambda m: m.type.name)
def test_frame_round_trip(msg):
    wire = protocol.encode_frame(msg)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) - 1 <= protocol.MAX_ENCODED
    assert protocol.decode_frame(wire[:-1]) == msg


def test_payload_helpers_round_trip():
    assert protocol.parse_illum(protocol.illum_payload("non-polarised", 17)) == ("non-polarised", 17)
    assert protocol.parse_result(protocol.result_payload("benign", 0.12346, "ok")) == ("benign", 0.1235, "ok")
    assert protocol.parse_result(protocol.result_payload("retake", None, "x" * 500))[2] == "x" * protocol.MAX_REASON
    assert protocol.parse_version(protocol.version_payload((2, 0, 1), "b"))["firmware"] == "2.0.1"


@pytest.mark.parametrize("call", [lambda: protocol.illum_payload("ultraviolet", 1),
                                  lambda: protocol.illum_payload("off", 256),
                                  lambda: protocol.result_payload("maybe", 0.5),
                                  lambda: protocol.result_payload("benign", 1.5),
                                  lambda: protocol.led_payload("blink"),
                                  lambda: protocol.encode_frame(protocol.Message(protocol.MsgType.PING, 70000)),
                                  lambda: protocol.encode_frame(protocol.Message(protocol.MsgType.ACK, 1, b"\x09"))])
def test_encoder_refuses_what_the_parser_would_reject(call):
    with pytest.raises(ValueError):
        call()


BAD = {
    "empty": b"",
    "cobs": b"\x05\x01\x02",  # code runs past the end
    "oversized": b"\x01" * (protocol.MAX_ENCODED + 1),
    "truncated": protocol.cobs_encode(b"\x01\x01\x00"),
    "crc": raw_frame(crc=0x1234),
    "version": raw_frame(version=2),
    "unknown_type": raw_frame(mtype=0x55),
    "length": raw_frame(payload=b"", length=3, mtype=0x01),
    "payload": raw_frame(mtype=protocol.MsgType.SET_ILLUM, payload=b"\x07\x10"),
}


@pytest.mark.parametrize("reason", list(BAD))
def test_each_rejection_reason(reason):
    with pytest.raises(FrameError) as exc:
        protocol.decode_frame(BAD[reason])
    assert exc.value.reason == reason
    dec = protocol.StreamDecoder()
    assert dec.feed(BAD[reason] + b"\x00") == []
    if reason != "empty":  # an empty frame between delimiters is idle line, not an error
        assert dec.rejected == {reason: 1}


@pytest.mark.parametrize("payload", [b"\x03\x00\x00", b"\x00\x11\x27", b"\x00\x00\x00\xff\xfe",
                                     b"\x00\x00\x00" + b"a" * (protocol.MAX_REASON + 1)])
def test_bad_show_result_payloads(payload):
    """Unknown decision, p above 1.0 (10001), invalid UTF-8, over-long reason."""
    with pytest.raises(FrameError, match="payload"):
        protocol.decode_frame(raw_frame(mtype=protocol.MsgType.SHOW_RESULT, payload=payload))


def test_oversized_decoded_frame_is_rejected():
    big = raw_frame(mtype=protocol.MsgType.SHOW_RESULT, payload=b"\x00" * (protocol.MAX_PAYLOAD + 1))
    assert len(big) <= protocol.MAX_ENCODED + 2
    with pytest.raises(FrameError) as exc:
        protocol.decode_frame(big)
    assert exc.value.reason == "oversized"


def test_stream_resynchronises_after_garbage_and_split_reads():
    good = [protocol.encode_frame(m) for m in VALID]
    noise = b"\x13\x37garbage\x00" + BAD["crc"] + b"\x00" + b"\xff" * 600 + b"\x00"
    stream = noise + b"".join(good[:3]) + b"\x00\x00" + b"half a fr" + b"\x00" + b"".join(good[3:])
    dec = protocol.StreamDecoder()
    got = []
    for i in range(0, len(stream), 7):  # serial reads come in arbitrary pieces
        got += dec.feed(stream[i:i + 7])
    assert got == VALID
    assert dec.accepted == len(VALID)
    assert dec.rejected["crc"] == 1 and dec.rejected["oversized"] == 1
    assert sum(dec.rejected.values()) >= 4


def test_stream_without_delimiter_stays_bounded():
    dec = protocol.StreamDecoder()
    for _ in range(100):
        assert dec.feed(b"\x01" * 1000) == []
    assert len(dec._buf) <= protocol.MAX_ENCODED
    assert dec.feed(b"\x00" + protocol.encode_frame(VALID[0])) == [VALID[0]]
    assert dec.rejected == {"oversized": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_parser(data):
    dec = protocol.StreamDecoder()
    msgs = dec.feed(data)
    for m in msgs:  # anything accepted re-encodes to a frame the parser accepts again
        assert protocol.decode_frame(protocol.encode_frame(m)[:-1]) == m
    try:
        protocol.decode_frame(data)
    except FrameError as exc:
        assert exc.reason in protocol.REJECT_REASONS
    assert len(dec._buf) <= protocol.MAX_ENCODED


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_valid_frames_are_rejected_or_parsed_never_crash(msg, data):
    wire = bytearray(protocol.encode_frame(msg)[:-1])
    i = data.draw(st.integers(0, len(wire) - 1))
    op = data.draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
    if op == "flip":
        wire[i] ^= data.draw(st.integers(1, 255))
    elif op == "drop":
        del wire[i]
    elif op == "insert":
        wire.insert(i, data.draw(st.integers(1, 255)))
    else:
        del wire[i:]
    dec = protocol.StreamDecoder()
    got = dec.feed(bytes(wire) + b"\x00" + protocol.encode_frame(VALID[0]))
    assert got[-1] == VALID[0]  # resynchronised on the next frame whatever happened to this one
    assert len(got) <= 2 and (len(got) == 1 or sum(dec.rejected.values()) == 0)
    if len(got) == 1:
        assert sum(dec.rejected.values()) >= 1 or not wire
