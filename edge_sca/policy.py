"""The project's rules for choosing and judging thresholds: what a validation-chosen threshold must reach, when a
site's images may move it, how the input checks are fitted, and when input drift is worth a warning.

Kept apart from the model contract (edge_sca.contract) because these are decisions about evidence, not facts a
model file depends on: changing one changes what the next `make quantize` or `input-checks fit` chooses, not
whether an existing model loads. Kept apart from the scanner settings (edge_sca.settings) because a site must not
tune them: the thresholds they produce are calibrated on the workstation and shipped (manifests,
models/input_checks.json).
"""

from __future__ import annotations

__all__ = ["DERMOSCOPY_MAX_REFUSED_PER_SCORE", "DRIFT_BINS", "DRIFT_MIN_FRAMES", "DRIFT_PSI_WARN", "DRIFT_WARNING",
           "FOCUS_BLUR_SIGMA", "FOCUS_MAX_REFUSED", "FOCUS_MIN_BLUR_REFUSED", "GRAYSCALE_FRACTION",
           "GRAYSCALE_QUANTILE", "INPUT_CHECKS_MAX_SHARE_OF_INVOKE", "RECALIBRATION_MAX_SHORTFALL",
           "RECALIBRATION_MIN_BENIGN", "SCREEN_CLEARS_QUANTILE", "TARGET_SENSITIVITY"]

#: Malignant sensitivity the validation-chosen threshold must reach.
TARGET_SENSITIVITY = 0.90
#: Re-checking the threshold on a site's own images (`python -m quantize recalibrate`): a threshold is proposed
#: only when the 95% lower confidence bound of the sensitivity it gives there is at most this far below the target,
#: which fixes how many malignant images the site needs (62 for 90% with a 0.10 margin)...
RECALIBRATION_MAX_SHORTFALL = 0.10
#: ... and only with at least this many benign images, so that the specificity it costs is seen too.
RECALIBRATION_MIN_BENIGN = 30

# --- Input checks: the rules `quantize input-checks fit` applies when it chooses the thresholds ---
#: Focus: the threshold refuses at least this fraction of ISIC test images blurred with Gaussian sigma
#: FOCUS_BLUR_SIGMA at capture size, and refuses no more than FOCUS_MAX_REFUSED of the unblurred ones.
FOCUS_BLUR_SIGMA = 1.5
FOCUS_MIN_BLUR_REFUSED = 0.99
FOCUS_MAX_REFUSED = 0.02
#: Grayscale: mean HSV saturation below GRAYSCALE_FRACTION of the ISIC training images' GRAYSCALE_QUANTILE.
GRAYSCALE_QUANTILE = 0.001
GRAYSCALE_FRACTION = 0.7
#: The learned checks (not dermoscopy, no lesion): each score refuses at most this fraction of every training source
#: (together they must stay under 1% of every ISIC source; the ensemble, the one that generalises to unseen kinds,
#: gets the smallest share).
DERMOSCOPY_MAX_REFUSED_PER_SCORE = {"mixture": 0.003, "not_dermoscopy": 0.002, "no_lesion": 0.003}
#: The learned checks' budget: their median time (frame statistics and scores) at most this share of the int8
#: model's median invoke, measured in the same run (`input-checks evaluate`; on the scanner, the benchmark's
#: end-to-end rows).
INPUT_CHECKS_MAX_SHARE_OF_INVOKE = 0.10
#: The learned checks' first stage clears a frame (no second stage) only when each of its three scores is at or
#: below this quantile of the same score over the fit's dermoscopy (all three together: about 79% of it), at about
#: half the cost; everything less typical goes on to the full check. (0.95 cleared no more evaluated
#: non-dermoscopy than 0.9; at 0.98 the first unseen photos were cleared: docs/input-checks.md.)
SCREEN_CLEARS_QUANTILE = 0.90
#: Input drift: the reference histograms have this many bins; warn once at least DRIFT_MIN_FRAMES frames were
#: judged and a statistic's population stability index (bias-corrected for the sample size) exceeds DRIFT_PSI_WARN
#: (0.25 is the usual "major shift").
DRIFT_BINS = 10
DRIFT_MIN_FRAMES = 50
DRIFT_PSI_WARN = 0.25
DRIFT_WARNING = "validate this scanner locally before trusting its decisions"
