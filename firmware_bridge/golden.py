"""Golden frames of the serial protocol: one frame of each message type, for firmware authors' own tests.

`python -m firmware_bridge.golden` writes them to docs/serial-golden-frames.json; a test checks that the committed
file still matches what the encoder produces, so the file and the code cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from firmware_bridge import protocol
from firmware_bridge.protocol import Message, MsgType

#: The committed copy, next to the protocol's documentation.
GOLDEN_PATH = Path(__file__).resolve().parent.parent / "docs" / "serial-golden-frames.json"


def golden_messages() -> list[tuple[str, Message]]:
    """One representative message of each type, with a description a firmware author can match."""
    return [
        ("PING, seq 1 (the Pi's first request)", Message(MsgType.PING, 1)),
        ("SET_ILLUM polarised at 200, seq 2", Message(MsgType.SET_ILLUM, 2, protocol.illum_payload("polarised", 200))),
        ("SHOW_RESULT malignant p=0.7312, seq 3",
         Message(MsgType.SHOW_RESULT, 3, protocol.result_payload("malignant", 0.7312))),
        ("SHOW_RESULT retake, no p, reason 'too dark', seq 4",
         Message(MsgType.SHOW_RESULT, 4, protocol.result_payload("retake", None, "too dark"))),
        ("STATUS_LED busy, seq 5", Message(MsgType.STATUS_LED, 5, protocol.led_payload("busy"))),
        ("VERSION protocol 1, firmware 1.2.3, board 'dermo-v1', answering seq 1",
         Message(MsgType.VERSION, 1, protocol.version_payload((1, 2, 3), "dermo-v1"))),
        ("ACK ok, answering seq 2", Message(MsgType.ACK, 2, bytes([0]))),
        ("ACK busy, answering seq 3", Message(MsgType.ACK, 3, bytes([3]))),
        ("TRIGGER, 7th press, board seq 7", Message(MsgType.TRIGGER, 7, (7).to_bytes(2, "little"))),
    ]


def golden_frames() -> list[dict]:
    """The golden messages as JSON-ready records: fields, payload and the wire bytes (delimiter included)."""
    return [{"description": text, "type": MsgType(m.type).name, "seq": m.seq, "payload_hex": m.payload.hex(" "),
             "wire_hex": protocol.encode_frame(m).hex(" ")} for text, m in golden_messages()]


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else GOLDEN_PATH
    out.write_text(json.dumps({"protocol_version": protocol.PROTOCOL_VERSION, "frames": golden_frames()},
                              indent=2) + "\n")
    print(f"wrote {len(golden_frames())} golden frames to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
