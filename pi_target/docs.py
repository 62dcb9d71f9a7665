"""Keeping docs/pi-target.md's Arm-vs-x86 table equal to what a pi-check report says."""

from __future__ import annotations

import json
from pathlib import Path

from edge_sca.fileio import replace_between_markers
from pi_target.errors import PiTargetError
from pi_target.parity import parity_table

BEGIN, END = "<!-- parity-table:begin (python -m pi_target docs) -->", "<!-- parity-table:end -->"


def table_from_report(report: Path) -> str:
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        raise PiTargetError(f"cannot read the pi-check report {report} ({exc}); run `make pi-check`") from exc
    if not data.get("parity"):
        raise PiTargetError(f"{report} has no parity section (the check stopped early); run `make pi-check`")
    p = data["parity"]
    return (f"From `{report.name}` ({data['target']}, {p['images']['n']} ISIC test images, "
            f"{p['images']['malignant']} malignant; bound = the self-test's {p['bound']}):\n\n{parity_table(p)}")


def update_docs(report: Path, docs: Path) -> bool:
    """Replace the text between the markers; True when the file changed."""
    try:
        return replace_between_markers(docs, BEGIN, END, table_from_report(report))
    except ValueError as exc:
        raise PiTargetError(str(exc)) from exc
