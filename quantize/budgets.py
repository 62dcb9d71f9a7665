"""The int8 budgets `make quantize` enforces, in one place, and the check that applies them.

What the int8 model must keep of the float32 model, measured on the val and test splits together (2,075 images on
the shared ISIC folder; never on train or the calibration images, which the int8 model was fitted to). Each split
is reported too, but the budgets apply to the pooled figure: 450 test images alone cannot tell 98.4% from 99%.

- Agreement >= 99.0%: the int8 model takes the float model's decision (at the manifest's threshold) on at least
  99 images in 100. The decision is what the scanner shows, so this is the budget a user feels.
- Malignant -> benign flips <= 0.5% of the malignant images: malignant images that the float model calls malignant
  and the int8 model benign, i.e. cancers the float model caught and the int8 model misses, as a fraction of the
  malignant images. A missed cancer is the costly error, so it gets its own, tighter budget. (A benign image that
  moves from malignant to benign is a correction, not a danger; the report still counts flips of every label.)
- |delta sensitivity| <= 1 point: the threshold was chosen on val for a stated sensitivity; int8 must not move it.
- int8 AUROC >= float32 AUROC - 0.003: the ranking of all images, not just the decisions at one threshold, must
  survive (a later re-thresholding relies on it).
- int8 file <= 35% of float32: int8 weights are a quarter of float32; per-channel scales and zero points are part
  of a correct per-channel model and take the rest. The budget catches a conversion that fell back to float, not
  per-channel quantisation.
- Latency <= 1.05 x post-training int8: a better int8 model must not be a slower one. Checked by the benchmark that
  times both in one run (`python -m benchmarks.int8_latency`), not by `make quantize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Budget(StrEnum):
    """The budget kinds; program logic keys on these, messages are for people."""

    AGREEMENT = "agreement"
    MALIGNANT_TO_BENIGN = "malignant_to_benign"
    DELTA_SENSITIVITY = "delta_sensitivity"
    DELTA_AUROC = "delta_auroc"
    SIZE_RATIO = "size_ratio"
    LATENCY_RATIO = "latency_ratio"


#: Minimum top-1 agreement (decision at the manifest threshold) between the int8 and float32 .tflite.
MIN_AGREEMENT = 0.99
#: Maximum malignant -> benign decision flips, as a fraction of the malignant images.
MAX_MALIGNANT_TO_BENIGN = 0.005
#: Maximum |sensitivity(int8) - sensitivity(float32)|, as a fraction (0.01 = 1 point).
MAX_DELTA_SENSITIVITY = 0.01
#: Largest drop of AUROC from float32 to int8.
MAX_AUROC_DROP = 0.003
#: Maximum int8 file size as a fraction of the float32 file.
MAX_SIZE_RATIO = 0.35
#: Maximum median latency of the shipped int8 model over the post-training int8 model, timed in one run.
MAX_LATENCY_RATIO = 1.05


def limits() -> dict[str, float]:
    """The limits by budget kind (read at call time, so a test can patch one)."""
    return {Budget.AGREEMENT.value: MIN_AGREEMENT, Budget.MALIGNANT_TO_BENIGN.value: MAX_MALIGNANT_TO_BENIGN,
            Budget.DELTA_SENSITIVITY.value: MAX_DELTA_SENSITIVITY, Budget.DELTA_AUROC.value: MAX_AUROC_DROP,
            Budget.SIZE_RATIO.value: MAX_SIZE_RATIO, Budget.LATENCY_RATIO.value: MAX_LATENCY_RATIO}


@dataclass
class BudgetResult:
    """One budget: its kind, the measured value, the limit, and whether it holds."""

    kind: Budget
    value: float
    limit: float
    ok: bool
    message: str

    def as_dict(self) -> dict:
        return {"name": self.kind.value, "value": self.value, "limit": self.limit, "ok": self.ok,
                "message": self.message}


@dataclass(frozen=True)
class Drift:
    """The measured int8-vs-float32 figures the budgets apply to."""

    agreement: float
    malignant_to_benign: int  # on malignant images only: missed cancers
    malignant_images: int
    delta_sensitivity: float
    delta_auroc: float
    size_ratio: float

    @property
    def malignant_to_benign_rate(self) -> float:
        return self.malignant_to_benign / self.malignant_images if self.malignant_images else math.nan


def check_budgets(d: Drift) -> list[BudgetResult]:
    """Apply the drift and size budgets; NaN (e.g. no malignant image) counts as broken, never as passing."""
    m2b = d.malignant_to_benign_rate
    allowed = math.floor(MAX_MALIGNANT_TO_BENIGN * d.malignant_images + 1e-9)
    results = [
        BudgetResult(Budget.AGREEMENT, d.agreement, MIN_AGREEMENT, d.agreement >= MIN_AGREEMENT,
                     f"int8/float32 top-1 agreement {d.agreement:.2%} (budget >= {MIN_AGREEMENT:.1%})"),
        BudgetResult(Budget.MALIGNANT_TO_BENIGN, m2b, MAX_MALIGNANT_TO_BENIGN, m2b <= MAX_MALIGNANT_TO_BENIGN,
                     f"malignant -> benign flips of malignant images (missed cancers) {d.malignant_to_benign} of "
                     f"{d.malignant_images} "
                     f"= {m2b:.2%} (budget <= {MAX_MALIGNANT_TO_BENIGN:.1%}, i.e. at most {allowed})"),
        BudgetResult(Budget.DELTA_SENSITIVITY, d.delta_sensitivity, MAX_DELTA_SENSITIVITY,
                     abs(d.delta_sensitivity) <= MAX_DELTA_SENSITIVITY,
                     f"int8 - float32 sensitivity {d.delta_sensitivity * 100:+.2f} points "
                     f"(budget |delta| <= {MAX_DELTA_SENSITIVITY * 100:.0f} point)"),
        BudgetResult(Budget.DELTA_AUROC, d.delta_auroc, -MAX_AUROC_DROP, d.delta_auroc >= -MAX_AUROC_DROP,
                     f"int8 - float32 AUROC {d.delta_auroc:+.4f} (budget >= -{MAX_AUROC_DROP})"),
        BudgetResult(Budget.SIZE_RATIO, d.size_ratio, MAX_SIZE_RATIO, d.size_ratio <= MAX_SIZE_RATIO,
                     f"int8 file is {d.size_ratio:.1%} of float32 (budget <= {MAX_SIZE_RATIO:.0%})"),
    ]
    for r in results:
        if math.isnan(r.value):
            r.ok = False
            r.message += " - not measurable (NaN): the split needs both classes"
    return results


def check_latency(ratio: float) -> BudgetResult:
    """The speed budget: median latency of a candidate int8 model over the post-training one, same run."""
    ok = not math.isnan(ratio) and ratio <= MAX_LATENCY_RATIO
    return BudgetResult(Budget.LATENCY_RATIO, ratio, MAX_LATENCY_RATIO, ok,
                        f"median latency {ratio:.3f} x the post-training int8 model (budget <= {MAX_LATENCY_RATIO})")


def broken(results: list[BudgetResult]) -> list[BudgetResult]:
    return [r for r in results if not r.ok]
