"""The int8 drift budgets `make quantize` enforces, in one place, and the check that applies them.

The limits: the int8 model must agree with the float32 model on at least 99% of the test split,
move malignant sensitivity by at most 1 percentage point, and be at most 30% of the float32 file's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Minimum top-1 agreement (decision at the manifest threshold) between the int8 and float32 .tflite.
MIN_AGREEMENT = 0.99
#: Maximum |sensitivity(int8) - sensitivity(float32)|, as a fraction (0.01 = 1 point).
MAX_DELTA_SENSITIVITY = 0.01
#: Maximum int8 file size as a fraction of the float32 file.
MAX_SIZE_RATIO = 0.30

BUDGETS = {"min_agreement": MIN_AGREEMENT, "max_abs_delta_sensitivity": MAX_DELTA_SENSITIVITY,
           "max_size_ratio": MAX_SIZE_RATIO}


@dataclass
class BudgetResult:
    """One budget: its name, the measured value, the limit, and whether it holds."""

    name: str
    value: float
    limit: float
    ok: bool
    message: str

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit, "ok": self.ok, "message": self.message}


def check_budgets(agreement: float, delta_sensitivity: float, size_ratio: float) -> list[BudgetResult]:
    """Apply the budgets to measured drift; NaN (e.g. no malignant image) counts as broken, never as passing."""
    abs_ds = abs(delta_sensitivity)
    results = [
        BudgetResult("agreement", agreement, MIN_AGREEMENT, agreement >= MIN_AGREEMENT,
                     f"int8/float32 top-1 agreement {agreement:.2%} (budget >= {MIN_AGREEMENT:.0%})"),
        BudgetResult("delta_sensitivity", delta_sensitivity, MAX_DELTA_SENSITIVITY, abs_ds <= MAX_DELTA_SENSITIVITY,
                     f"int8 - float32 sensitivity {delta_sensitivity * 100:+.2f} points "
                     f"(budget |delta| <= {MAX_DELTA_SENSITIVITY * 100:.0f} point)"),
        BudgetResult("size_ratio", size_ratio, MAX_SIZE_RATIO, size_ratio <= MAX_SIZE_RATIO,
                     f"int8 file is {size_ratio:.1%} of float32 (budget <= {MAX_SIZE_RATIO:.0%})"),
    ]
    for r in results:
        if math.isnan(r.value):
            r.ok = False
            r.message += " - not measurable (NaN): the split needs both classes"
    return results


def broken(results: list[BudgetResult]) -> list[BudgetResult]:
    return [r for r in results if not r.ok]
