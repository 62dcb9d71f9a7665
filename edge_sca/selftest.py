"""The on-device self-test: run the manifest's reference vectors and compare with the workstation's outputs.

A different runtime, CPU or kernel set can change int8 results; past SELFTEST_MAX_DELTA the device is
not computing what was validated, and the runtime refuses to classify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edge_sca.contract import CLASS_NAMES, SELFTEST_MAX_DELTA
from edge_sca.errors import ModelError
from edge_sca.manifest import decode_pixels


@dataclass
class SelftestResult:
    passed: bool
    max_delta: float
    bound: float
    n: int
    model_sha256: str
    backend: str
    vectors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def run_selftest(model, max_delta: float = SELFTEST_MAX_DELTA) -> SelftestResult:
    """Run every reference vector of `model.manifest` (a TFLiteModel); ModelError if there are none."""
    manifest = model.manifest
    if manifest is None or not manifest.reference_vectors:
        where = manifest.path if manifest is not None else f"{model.path} (no manifest)"
        raise ModelError(f"{where}: no reference vectors to self-test with; rebuild the model with `make quantize`")
    vectors = []
    for ref in manifest.reference_vectors:
        expected = np.asarray(ref.get("expected_probs", []), dtype=np.float64)
        if expected.shape != (len(CLASS_NAMES),):
            raise ModelError(f"{manifest.path}: reference vector {ref.get('id')!r} has no valid expected_probs; "
                             "rebuild the manifest with `make quantize`")
        got = model.predict(decode_pixels(ref["pixels"]))[0]
        vectors.append({"id": ref.get("id"), "expected": expected.tolist(), "got": [float(p) for p in got],
                        "delta": float(np.abs(got - expected).max())})
    worst = max(v["delta"] for v in vectors)
    return SelftestResult(worst <= max_delta, worst, max_delta, len(vectors), model.sha256, model.backend, vectors)


def format_selftest(r: SelftestResult) -> str:
    verdict = "PASS" if r.passed else "FAIL"
    return (f"self-test {verdict}: {r.n} reference vectors, max |delta p| {r.max_delta:.5f} "
            f"(bound {r.bound}) on {r.backend}, model sha256 {r.model_sha256[:12]}...")
