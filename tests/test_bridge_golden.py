"""The committed golden frames (docs/serial-golden-frames.json) match the encoder and decode back."""

import json

from firmware_bridge import protocol
from firmware_bridge.golden import GOLDEN_PATH, golden_frames


def test_committed_golden_frames_match_the_encoder():
    committed = json.loads(GOLDEN_PATH.read_text())
    assert committed["protocol_version"] == protocol.PROTOCOL_VERSION
    assert committed["frames"] == golden_frames(), "run `python -m firmware_bridge.golden` and commit the file"


def test_golden_frames_decode_to_their_fields():
    for frame in golden_frames():
        wire = bytes.fromhex(frame["wire_hex"])
        assert wire.endswith(b"\x00") and wire.count(0) == 1
        msg = protocol.decode_frame(wire[:-1])
        assert protocol.MsgType(msg.type).name == frame["type"]
        assert msg.seq == frame["seq"] and msg.payload.hex(" ") == frame["payload_hex"]


def test_the_ping_frame_is_the_one_the_protocol_tests_pin():
    assert golden_frames()[0]["wire_hex"] == "04 01 01 01 01 01 03 97 55 00"
