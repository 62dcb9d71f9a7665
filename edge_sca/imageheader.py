"""Width and height from an image file's header, without decoding it: a 20000x20000 PNG is 1.25 MB on disk but
1.2 GB decoded, so its size is checked before OpenCV allocates anything.

JPEG (SOF marker), PNG (IHDR), BMP, TIFF (first IFD), WebP (VP8 / VP8L / VP8X) and PNM are read; anything else is
not an image format the scanner takes.
"""

from __future__ import annotations

import struct

from edge_sca.errors import ImageError

FORMATS = "JPEG, PNG, BMP, TIFF, WebP or PNM"


def image_size(data: bytes, source: str = "<bytes>") -> tuple[int, int]:
    """(width, height) from the header; ImageError naming `source` when the header is unknown or cut short."""
    try:
        for magic, reader in _READERS:
            if data.startswith(magic):
                return reader(data)
    except (struct.error, IndexError, ValueError) as exc:
        raise ImageError(f"{source}: the image header is truncated or corrupt ({exc}); re-export the image") from exc
    raise ImageError(f"{source}: not a {FORMATS} image (unknown header); convert it to JPEG or PNG")


def _png(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _jpeg(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise ValueError("no start-of-frame marker")


def _bmp(data: bytes) -> tuple[int, int]:
    header = struct.unpack("<I", data[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff(data: bytes) -> tuple[int, int]:
    e = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(e + "I", data[4:8])[0]
    count = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
    found: dict[int, int] = {}
    for k in range(count):
        tag, kind = struct.unpack(e + "HH", data[ifd + 2 + 12 * k: ifd + 6 + 12 * k])
        if tag in (256, 257):
            fmt = e + ("H" if kind == 3 else "I")
            found[tag] = struct.unpack(fmt, data[ifd + 10 + 12 * k: ifd + 10 + 12 * k + struct.calcsize(fmt)])[0]
    if len(found) < 2:
        raise ValueError("no ImageWidth / ImageLength tags")
    return found[256], found[257]


def _webp(data: bytes) -> tuple[int, int]:
    if data[8:12] != b"WEBP":
        raise ValueError("RIFF file that is not WebP")
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise ValueError(f"unknown WebP chunk {chunk!r}")


def _pnm(data: bytes) -> tuple[int, int]:
    tokens: list[bytes] = []
    for line in data[2:4096].split(b"\n"):
        tokens += line.split(b"#")[0].split()
        if len(tokens) >= 2:
            return int(tokens[0]), int(tokens[1])
    raise ValueError("no width and height")


_READERS = ((b"\x89PNG\r\n\x1a\n", _png), (b"\xff\xd8", _jpeg), (b"BM", _bmp), (b"II*\x00", _tiff),
            (b"MM\x00*", _tiff), (b"RIFF", _webp)) + tuple((m, _pnm) for m in (b"P1", b"P2", b"P3", b"P4", b"P5",
                                                                                   b"P6"))
