"""The installer `flash --host` runs on the scanner: the scanner-side modules packed into one zip application.

It is the flash tool's own code, sent with every flash (whoever flashes over ssh has sudo there anyway); what it
trusts is the scanner's key, never the workstation's. Standard library plus `cryptography` only, so the scanner's
system python3 runs it: `python3 agent.pyz install - --prefix /opt/cancernet-sca < bundle.tar.gz`.
"""

from __future__ import annotations

import io
import zipfile

from edge_sca.devpaths import REPO_ROOT

#: Everything scanner_cli imports (a test runs the zip with these alone, numpy and pyserial blocked).
MODULES = (
    "edge_sca/__init__.py", "edge_sca/errors.py", "edge_sca/cli_common.py", "edge_sca/contract.py",
    "edge_sca/manifest_schema.py", "edge_sca/fileio.py",
    "firmware_bridge/__init__.py", "firmware_bridge/errors.py", "firmware_bridge/signing.py",
    "firmware_bridge/archive.py", "firmware_bridge/rootfs.py", "firmware_bridge/releases.py",
    "firmware_bridge/scanner_cli.py",
)
MAIN = "import sys\nfrom firmware_bridge.scanner_cli import main\nsys.exit(main())\n"


def build_agent() -> bytes:
    """The zip application's bytes (deterministic: fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in [("__main__.py", MAIN), *((m, (REPO_ROOT / m).read_text()) for m in MODULES)]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
    return buf.getvalue()
