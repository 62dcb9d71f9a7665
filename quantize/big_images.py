"""Huge images made cheaply, and what reading one costs: the evidence for the image size limits.

`write_black_png` writes a valid PNG of any size without holding it in memory; `peak_memory` reads an image through
edge_sca's own read_image + preprocess in a fresh process and reports how far its peak resident memory rose.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from edge_sca.devpaths import REPO_ROOT


def write_black_png(path: Path, width: int, height: int, rows_per_block: int = 64) -> None:
    """A real, valid all-black RGB PNG of any size, written without holding the image in memory.

    Each block of rows is compressed once with a full flush (no back-references across it), so the same bytes stand
    for every block; the Adler-32 of all-zero data is (length mod 65521) << 16 | 1.
    """
    row = width * 3 + 1  # filter byte + RGB
    comp = zlib.compressobj(9)
    block = comp.compress(b"\0" * row * rows_per_block) + comp.flush(zlib.Z_FULL_FLUSH)
    header, body = block[:2], block[2:]
    full, rest = divmod(height, rows_per_block)
    tail_comp = zlib.compressobj(9)
    tail = (tail_comp.compress(b"\0" * row * rest) + tail_comp.flush(zlib.Z_FULL_FLUSH))[2:] if rest else b""
    final = b"\x03\x00"  # an empty final deflate block (fixed Huffman, end-of-block only)
    adler = ((row * height) % 65521) << 16 | 1

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", header + body * full + tail + final + struct.pack(">I", adler)))
        f.write(chunk(b"IEND", b""))



# ru_maxrss survives exec (it would report the parent's peak); VmHWM is per process and can be reset to VmRSS.
PEAK_SCRIPT = r"""
import json, sys
from edge_sca.errors import ImageTooLargeError
from edge_sca.preprocess import preprocess, read_image
def kb(key):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key + ':'))
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
before = kb('VmRSS')
try:
    shape = list(preprocess(read_image(sys.argv[1])).shape)
except ImageTooLargeError as exc:
    shape = str(exc)
print(json.dumps({"result": shape, "peak_increase_mb": (kb('VmHWM') - before) / 1024}))
"""


def peak_memory(path: Path) -> dict:
    """{'result': the 224x224 shape or the refusal, 'peak_increase_mb'} of reading `path` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def memory_report(sizes: tuple[tuple[int, int], ...] = ((20000, 20000), (7000, 7000), (4056, 3040))) -> list[dict]:
    """Peak memory of reading black PNGs of these sizes (Linux: needs /proc/self/clear_refs)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            path = Path(tmp) / f"{w}x{h}.png"
            write_black_png(path, w, h)
            rows.append({"width": w, "height": h, "file_mb": path.stat().st_size / 2**20} | peak_memory(path))
            path.unlink()
    return rows
