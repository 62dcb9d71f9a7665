"""The serial protocol: round trips, every rejection path, and random bytes thrown at the parser."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.errors import FrameError

VALID = [
    P.Message(P.MsgType.PING, 1),
    P.Message(P.MsgType.SET_ILLUM, 2, P.illum_payload("polarised", 200)),
    P.Message(P.MsgType.SET_ILLUM, 3, P.illum_payload("off", 0)),
    P.Message(P.MsgType.SHOW_RESULT, 0xFFFF, P.result_payload("malignant", 0.8731, "p above threshold")),
    P.Message(P.MsgType.SHOW_RESULT, 0, P.result_payload("retake", None, "blurred: move closer ü")),
    P.Message(P.MsgType.STATUS_LED, 7, P.led_payload("busy")),
    P.Message(P.MsgType.VERSION, 8, P.version_payload((1, 2, 3), "board-x")),
    P.Message(P.MsgType.ACK, 9, b"\x00"),
    P.Message(P.MsgType.TRIGGER, 10, b"\x05\x00"),
]


def raw_frame(version=P.PROTOCOL_VERSION, mtype=0x01, seq=1, payload=b"", length=None, crc=None) -> bytes:
    """A frame built by hand (without the delimiter), to make each kind of bad frame."""
    body = P.HEADER.pack(version, mtype, seq, len(payload) if length is None else length) + payload
    crc = P.crc16_ccitt_false(body) if crc is None else crc
    return P.cobs_encode(body + struct.pack(">H", crc))


def test_crc_is_ccitt_false():
    assert P.crc16_ccitt_false(b"123456789") == 0x29B1
    assert P.crc16_ccitt_false(b"") == 0xFFFF


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\x11" * 253, b"\x11" * 254, b"\x11" * 255,
                                  b"\x11" * 253 + b"\x00", bytes(range(256)) * 3])
def test_cobs_round_trip_has_no_zero(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert P.cobs_decode(enc) == data


@pytest.mark.parametrize("msg", VALID, ids=lambda m: m.type.name)
def test_frame_round_trip(msg):
    wire = P.encode_frame(msg)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) - 1 <= P.MAX_ENCODED
    assert P.decode_frame(wire[:-1]) == msg


def test_payload_helpers_round_trip():
    assert P.parse_illum(P.illum_payload("non-polarised", 17)) == ("non-polarised", 17)
    assert P.parse_result(P.result_payload("benign", 0.12346, "ok")) == ("benign", 0.1235, "ok")
    assert P.parse_result(P.result_payload("retake", None, "x" * 500))[2] == "x" * P.MAX_REASON
    assert P.parse_version(P.version_payload((2, 0, 1), "b"))["firmware"] == "2.0.1"


@pytest.mark.parametrize("call", [lambda: P.illum_payload("ultraviolet", 1), lambda: P.illum_payload("off", 256),
                                  lambda: P.result_payload("maybe", 0.5), lambda: P.result_payload("benign", 1.5),
                                  lambda: P.led_payload("blink"),
                                  lambda: P.encode_frame(P.Message(P.MsgType.PING, 70000)),
                                  lambda: P.encode_frame(P.Message(P.MsgType.ACK, 1, b"\x09"))])
def test_encoder_refuses_what_the_parser_would_reject(call):
    with pytest.raises(ValueError):
        call()


BAD = {
    "empty": b"",
    "cobs": b"\x05\x01\x02",  # code runs past the end
    "oversized": b"\x01" * (P.MAX_ENCODED + 1),
    "truncated": P.cobs_encode(b"\x01\x01\x00"),
    "crc": raw_frame(crc=0x1234),
    "version": raw_frame(version=2),
    "unknown_type": raw_frame(mtype=0x55),
    "length": raw_frame(payload=b"", length=3, mtype=0x01),
    "payload": raw_frame(mtype=P.MsgType.SET_ILLUM, payload=b"\x07\x10"),
}


@pytest.mark.parametrize("reason", list(BAD))
def test_each_rejection_reason(reason):
    with pytest.raises(FrameError) as exc:
        P.decode_frame(BAD[reason])
    assert exc.value.reason == reason
    dec = P.StreamDecoder()
    assert dec.feed(BAD[reason] + b"\x00") == []
    if reason != "empty":  # an empty frame between delimiters is idle line, not an error
        assert dec.rejected == {reason: 1}


@pytest.mark.parametrize("payload", [b"\x03\x00\x00", b"\x00\x11\x27", b"\x00\x00\x00\xff\xfe",
                                     b"\x00\x00\x00" + b"a" * (P.MAX_REASON + 1)])
def test_bad_show_result_payloads(payload):
    """Unknown decision, p above 1.0 (10001), invalid UTF-8, over-long reason."""
    with pytest.raises(FrameError, match="payload"):
        P.decode_frame(raw_frame(mtype=P.MsgType.SHOW_RESULT, payload=payload))


def test_oversized_decoded_frame_is_rejected():
    big = raw_frame(mtype=P.MsgType.SHOW_RESULT, payload=b"\x00" * (P.MAX_PAYLOAD + 1))
    assert len(big) <= P.MAX_ENCODED + 2
    with pytest.raises(FrameError) as exc:
        P.decode_frame(big)
    assert exc.value.reason == "oversized"


def test_stream_resynchronises_after_garbage_and_split_reads():
    good = [P.encode_frame(m) for m in VALID]
    noise = b"\x13\x37garbage\x00" + BAD["crc"] + b"\x00" + b"\xff" * 600 + b"\x00"
    stream = noise + b"".join(good[:3]) + b"\x00\x00" + b"half a fr" + b"\x00" + b"".join(good[3:])
    dec = P.StreamDecoder()
    got = []
    for i in range(0, len(stream), 7):  # serial reads come in arbitrary pieces
        got += dec.feed(stream[i:i + 7])
    assert got == VALID
    assert dec.accepted == len(VALID)
    assert dec.rejected["crc"] == 1 and dec.rejected["oversized"] == 1
    assert sum(dec.rejected.values()) >= 4


def test_stream_without_delimiter_stays_bounded():
    dec = P.StreamDecoder()
    for _ in range(100):
        assert dec.feed(b"\x01" * 1000) == []
    assert len(dec._buf) <= P.MAX_ENCODED
    assert dec.feed(b"\x00" + P.encode_frame(VALID[0])) == [VALID[0]]
    assert dec.rejected == {"oversized": 1}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_parser(data):
    dec = P.StreamDecoder()
    msgs = dec.feed(data)
    for m in msgs:  # anything accepted re-encodes to a frame the parser accepts again
        assert P.decode_frame(P.encode_frame(m)[:-1]) == m
    try:
        P.decode_frame(data)
    except FrameError as exc:
        assert exc.reason in P.REJECT_REASONS
    assert len(dec._buf) <= P.MAX_ENCODED


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_mutated_valid_frames_are_rejected_or_parsed_never_crash(msg, data):
    wire = bytearray(P.encode_frame(msg)[:-1])
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
    dec = P.StreamDecoder()
    got = dec.feed(bytes(wire) + b"\x00" + P.encode_frame(VALID[0]))
    assert got[-1] == VALID[0]  # resynchronised on the next frame whatever happened to this one
    assert len(got) <= 2 and (len(got) == 1 or sum(dec.rejected.values()) == 0)
    if len(got) == 1:
        assert sum(dec.rejected.values()) >= 1 or not wire
