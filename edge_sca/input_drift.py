"""Input drift: does what this scanner sees still look like the data the model was trained on?

For every judged frame the monitor bins a few statistics into the training split's deciles (stored in
models/input_checks.json): the frame's distance to the training images in the space of the statistics every
judged frame has (the input checks' first stage, edge_sca.frame_stats.SCREEN_FEATURES), its mean L, a and b
(colour), its sharpness, and p(malignant) (reference: the validation split, per model). Each is compared with the
reference by the population stability index (PSI, bias-corrected for the number of frames) after fitting the
malignant share: melanomas are darker and less red than naevi, so a clinic that sees more of them shifts colour and
p(malignant) without any change in the camera. The reference is kept per label, one share is fitted to all the
statistics together, and only what no benign/malignant mix explains counts as drift. Past DRIFT_MIN_FRAMES frames,
a PSI above DRIFT_PSI_WARN raises the warning DRIFT_WARNING.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_sca.frame_stats import COLOUR, SCREEN_FEATURES
from edge_sca.input_checks import InputChecks
from edge_sca.policy import DRIFT_MIN_FRAMES, DRIFT_PSI_WARN, DRIFT_WARNING

log = logging.getLogger(__name__)

INPUT_STATS = ("training_distance", "L_mean", "a_mean", "b_mean", "sharpness")
_SHARES = np.linspace(0.0, 1.0, 101)


def psi(counts: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index of observed counts against expected fractions, minus its sampling bias."""
    n, bins = float(counts.sum()), len(counts)
    observed = (counts + 0.5) / (n + 0.5 * bins)
    expected = np.maximum(expected, 1e-4)
    raw = float(((observed - expected) * np.log(observed / expected)).sum())
    return max(0.0, raw - (bins - 1) / max(n, 1.0))


def _psi_by_share(counts: np.ndarray, benign: np.ndarray, malignant: np.ndarray) -> np.ndarray:
    """Raw PSI of the counts against every benign/malignant mixture of _SHARES (one value per share)."""
    observed = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))
    mix = np.maximum(_SHARES[:, None] * malignant + (1 - _SHARES[:, None]) * benign, 1e-4)
    return ((observed - mix) * np.log(observed / mix)).sum(axis=1)


def _label_shift_psi(counts: np.ndarray, benign: np.ndarray, malignant: np.ndarray) -> tuple[float, float]:
    """(malignant share that best explains the counts, the bias-corrected PSI left over at that share)."""
    raw = _psi_by_share(counts, benign, malignant)
    best = int(np.argmin(raw))
    return float(_SHARES[best]), max(0.0, float(raw[best]) - (len(counts) - 1) / max(float(counts.sum()), 1.0))


class _Stat:
    """One statistic: the reference's bins, benign and malignant fractions, and the running counts."""

    def __init__(self, ref: dict):
        self.edges = np.asarray(ref["edges"])
        self.benign, self.malignant = np.asarray(ref["benign"]), np.asarray(ref["malignant"])
        self.ref_mean = float(ref["mean"])
        self.counts = np.zeros(len(self.benign))
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[int(np.searchsorted(self.edges, value, side="right"))] += 1
        self.total += value


class InputDriftMonitor:
    """Running histograms of the judged frames' statistics against the training reference.

    Every statistic's reference is split by label, so the monitor can fit the malignant share that best explains
    all of them together; drift is what is left at that share.
    """

    def __init__(self, checks: InputChecks, model_sha256: str):
        ref = checks.reference
        self.checks = checks
        self.stats = {s: _Stat(ref["stats"][s]) for s in INPUT_STATS}
        gauss = ref["training_gaussian"]
        self.train_mean = np.asarray(gauss["mean"])
        self.train_prec_chol = np.asarray(gauss["prec_chol"])
        self.reference_share = float(ref["malignant_share"])
        p_ref = checks.p_reference(model_sha256)
        if p_ref is None:
            log.warning("%s has no p(malignant) reference for model %s...: p(malignant) drift is not followed; "
                        "rerun `python -m quantize input-checks fit --p-reference-only`", checks.path,
                        model_sha256[:12])
        else:
            self.stats["p_malignant"] = _Stat(p_ref)
        self.n = 0
        self.warned = False
        self.frames_warned = 0  # judged frames whose status carried the warning
        self.first_warning_at: int | None = None

    def training_distance(self, screen: np.ndarray) -> float:
        """Mahalanobis distance of a frame's standardised first-stage statistics to the training split's Gaussian."""
        y = (self.checks.screen.check.standardise(screen) - self.train_mean) @ self.train_prec_chol
        return float(np.sqrt(y @ y))

    def update(self, screen: np.ndarray, sharpness: float, p_malignant: float | None) -> dict:
        """Add one judged frame (`screen`: its SCREEN_FEATURES values); returns the status the audit log records."""
        values = {"training_distance": self.training_distance(screen), "sharpness": sharpness}
        values.update({SCREEN_FEATURES[i]: float(screen[i]) for i in COLOUR})
        if p_malignant is not None and "p_malignant" in self.stats:
            values["p_malignant"] = p_malignant
        for name, value in values.items():
            self.stats[name].add(value)
        self.n += 1
        status = self.status()
        if status["warning"]:
            self.frames_warned += 1
            self.first_warning_at = self.first_warning_at or self.n
        if status["warning"] and not self.warned:
            self.warned = True
            log.warning("input drift after %d frames (%s): %s", self.n, ", ".join(status["drifted"]),
                        DRIFT_WARNING)
        return status

    def _fit(self) -> tuple[float, dict[str, float]]:
        """The malignant share best explaining every statistic at once, and each one's PSI left over there."""
        used = {k: st for k, st in self.stats.items() if st.counts.sum()}
        if not used:
            return self.reference_share, dict.fromkeys(self.stats, 0.0)
        raw = {k: _psi_by_share(st.counts, st.benign, st.malignant) for k, st in used.items()}
        best = int(np.argmin(np.sum(list(raw.values()), axis=0)))
        left = {k: max(0.0, float(r[best]) - (len(self.stats[k].counts) - 1) / max(self.stats[k].counts.sum(), 1.0))
                for k, r in raw.items()}
        return float(_SHARES[best]), left

    def status(self) -> dict:
        """n, the largest PSI, which statistics drifted and whether to warn."""
        _, left = self._fit()
        drifted = sorted(s for s, v in left.items() if v > DRIFT_PSI_WARN)
        warning = self.n >= DRIFT_MIN_FRAMES and bool(drifted)
        return {"n": self.n, "max_psi": round(max(left.values(), default=0.0), 4), "drifted": drifted if warning
                else [], "warning": warning}

    def summary(self) -> dict:
        """The report: per statistic the PSI left after fitting the malignant share, the observed and reference
        means, and the verdict now; and how many judged frames carried the warning, from which one on (a warning
        can come and go as frames accumulate)."""
        share, left = self._fit()
        stats = {k: {"psi": left.get(k, 0.0), "mean": st.total / st.counts.sum() if st.counts.sum() else None,
                     "reference_mean": st.ref_mean} for k, st in self.stats.items()}
        status = self.status()
        return {"n": self.n, "min_frames": DRIFT_MIN_FRAMES, "psi_warn": DRIFT_PSI_WARN,
                "malignant_share_fitted": share if self.n else None, "reference_malignant_share": self.reference_share,
                "stats": stats, "drifted": status["drifted"],
                "warning": DRIFT_WARNING if status["warning"] else None,
                "frames_warned": self.frames_warned, "first_warning_at": self.first_warning_at,
                "p_reference": "p_malignant" in self.stats}


def format_input_drift(s: dict) -> str:
    """One line for people: the verdict, then PSI per statistic."""
    if not s.get("n"):
        return "input drift: no frame judged yet"
    parts = ", ".join(f"{k} {v['psi']:.2f}" for k, v in s["stats"].items())
    verdict = (f"WARNING: {s['warning']} (drifted: {', '.join(s['drifted'])})" if s["warning"] else
               f"no drift warning ({'too few frames to tell, ' if s['n'] < s['min_frames'] else ''}"
               f"PSI <= {s['psi_warn']:g})")
    return (f"input drift over {s['n']} judged frames: {verdict}; PSI {parts}; malignant share fitted "
            f"{s['malignant_share_fitted']:.2f} (training {s['reference_malignant_share']:.2f})")
