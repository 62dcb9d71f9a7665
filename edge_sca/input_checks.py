"""models/input_checks.json: the fitted thresholds and models of the input checks, loaded by the runtime.

`python -m quantize input-checks fit` writes it (and the bundle carries it) with:
- `focus.min_sharpness` and `grayscale.min_saturation`, measured on ISIC images;
- `dermoscopy`: the "not a dermoscopy frame" check on edge_sca.frame_stats features. Two scores, each with its
  threshold: a Gaussian mixture's negative log-likelihood (how unlike every dermoscopy image the frame is; fitted on
  dermoscopy alone) and `not_dermoscopy`, the mean of an ensemble's normalised scores (quadratic logistic regressions
  and small ReLU networks on the standardised features, fitted against generated non-dermoscopy with different
  seeds and negatives: one model learns the fitted images, the mean of several generalises better to unseen ones).
  A frame past either threshold is not judged. A third score, `dermoscopy.lesion`, is a quadratic logistic
  regression fitted against lesion-free skin (ISIC training images' corners): past its threshold the frame is skin
  with no lesion in view;
- `screen`: the first stage of the two above, the same three kinds of score fitted on the cheaper half of the
  statistics (edge_sca.frame_stats.SCREEN_FEATURES), with the limits under which it clears a frame by itself; any
  frame it does not clear gets all the statistics and the full check (`InputChecks.judge`);
- `reference`: the training split's statistics for the input drift monitor (edge_sca.input_drift), and per model
  sha256, the distribution of p(malignant) on the validation split.
The file records the preprocessing version it was fitted under; another version is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sca.contract import INPUT_CHECKS_FILE, PREPROCESS_VERSION
from edge_sca.errors import ModelError
from edge_sca.frame_stats import FEATURE_NAMES, SCREEN_FEATURES, FirstStage, complete
from edge_sca.fused_scores import FusedScores

FORMAT = 4
FIT_HINT = "run `python -m quantize input-checks fit` on the workstation (or re-flash the bundle)"


def default_path(model_path: str | Path | None = None) -> Path:
    """Beside the model if there is one there (always, in a release), else in the checkout's models folder."""
    if model_path is not None:
        beside = Path(model_path).with_name(INPUT_CHECKS_FILE)
        if beside.is_file():
            return beside
    from edge_sca.devpaths import MODELS_DIR  # development only: a release has the file beside its models

    return MODELS_DIR / INPUT_CHECKS_FILE


@dataclass
class GaussianMixture:
    """Weights (K), means (K x d) and Cholesky factors of the precisions (K x d x d), standardised features."""

    log_weights: np.ndarray
    means: np.ndarray
    prec_chol: np.ndarray
    log_norm: np.ndarray  # log weight + log det(prec_chol) - d/2 log(2 pi), per component
    shift: np.ndarray  # means projected by their precision factors (K x d), computed once
    flat: np.ndarray  # the precision factors side by side (d x K*d): one matmul whitens a row for every component

    @classmethod
    def from_dict(cls, params: dict) -> GaussianMixture:
        w = np.log(np.asarray(params["weights"], np.float64))
        means = np.asarray(params["means"], np.float64)
        chol = np.asarray(params["prec_chol"], np.float64)
        logdet = np.log(np.abs(np.diagonal(chol, axis1=1, axis2=2))).sum(axis=1)
        k, dim = means.shape
        return cls(w, means, chol, w + logdet - 0.5 * dim * np.log(2 * np.pi), np.einsum("kd,kde->ke", means, chol),
                   np.ascontiguousarray(chol.transpose(1, 0, 2).reshape(dim, k * dim)))

    def neg_log_likelihood(self, z: np.ndarray) -> np.ndarray:
        """-log p(z) for rows of standardised features (N x d)."""
        y = (z @ self.flat).reshape(len(z), *self.shift.shape) - self.shift
        logp = self.log_norm - 0.5 * (y * y).sum(axis=2)
        top = logp.max(axis=1)
        return -(top + np.log(np.exp(logp - top[:, None]).sum(axis=1)))


@dataclass
class Logistic:
    """A logistic regression on standardised values and (if quadratic) their pairwise products, with its threshold
    (unused inside an ensemble, whose mean has one)."""

    linear: np.ndarray  # weights of the standardised values (d)
    pairs: np.ndarray  # weights of their products as an upper-triangular d x d matrix (zero if linear)
    bias: float
    threshold: float

    @classmethod
    def from_dict(cls, lr: dict, d: int, threshold: float) -> Logistic:
        linear, pairs = split_logistic(np.asarray(lr["weights"], np.float64), d, bool(lr["quadratic"]))
        return cls(linear, pairs, float(lr["bias"]), float(threshold))

    def score(self, z: np.ndarray) -> np.ndarray:
        return z @ self.linear + ((z @ self.pairs) * z).sum(axis=1) + self.bias


@dataclass
class Mlp:
    """A small ReLU network on standardised values: (weights, bias) per layer, the last layer linear with one output."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_dict(cls, d: dict) -> Mlp:
        return cls([(np.asarray(layer["weights"], np.float64), np.asarray(layer["bias"], np.float64))
                    for layer in d["layers"]])

    def score(self, z: np.ndarray) -> np.ndarray:
        h = z
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self.layers[-1]
        return (h @ w + b)[:, 0]


@dataclass
class Member:
    """One model of the ensemble, with the dermoscopy quantile its score is measured from and the spread it is
    measured in (that quantile minus the dermoscopy median): normalised, every member's score means the same."""

    model: Logistic | Mlp
    at: float
    spread: float

    @classmethod
    def from_dict(cls, m: dict, d: int) -> Member:
        if m["kind"] not in ("logistic", "mlp"):
            raise ValueError(f"member kind {m['kind']!r}")
        model = Logistic.from_dict(m, d, 0.0) if m["kind"] == "logistic" else Mlp.from_dict(m)
        return cls(model, float(m["at"]), float(m["spread"]))

    def score(self, z: np.ndarray) -> np.ndarray:
        return (self.model.score(z) - self.at) / self.spread


@dataclass
class Ensemble:
    """The not-dermoscopy score: the mean of its members' normalised scores, with its threshold."""

    members: list[Member]
    threshold: float

    @classmethod
    def from_dict(cls, e: dict, d: int) -> Ensemble:
        if not e["members"]:
            raise ValueError("an ensemble without members")
        return cls([Member.from_dict(m, d) for m in e["members"]], float(e["threshold"]))

    def score(self, z: np.ndarray) -> np.ndarray:
        total = self.members[0].score(z)
        for member in self.members[1:]:
            total = total + member.score(z)
        return total / len(self.members)


#: Columns of DermoscopyCheck.scores.
MIXTURE, NOT_DERMOSCOPY, NO_LESION = 0, 1, 2


@dataclass
class DermoscopyCheck:
    """Standardisation, the mixture and its threshold, the not-dermoscopy ensemble and the no-lesion regression."""

    mean: np.ndarray
    scale: np.ndarray
    clip: float
    mixture: GaussianMixture
    mixture_threshold: float
    not_dermoscopy: Ensemble
    lesion: Logistic
    fused: FusedScores = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fused = FusedScores(self.mixture, self.not_dermoscopy.members, self.lesion)

    @classmethod
    def from_dict(cls, d: dict) -> DermoscopyCheck:
        mean = np.asarray(d["mean"], np.float64)
        return cls(mean, np.asarray(d["scale"], np.float64), float(d["clip"]), GaussianMixture.from_dict(d["mixture"]),
                   float(d["mixture_threshold"]), Ensemble.from_dict(d["not_dermoscopy"], len(mean)),
                   Logistic.from_dict(d["lesion"], len(mean), d["lesion"]["threshold"]))

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Rows (N x d) of standardised, clipped values; one row of d values stays one row."""
        z = (features - self.mean) / self.scale
        return np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """N x 3 (columns MIXTURE, NOT_DERMOSCOPY, NO_LESION): higher = less like dermoscopy of a lesion; 1 x 3 for
        one frame's d values. Computed fused (edge_sca.fused_scores); `separate_scores` is the definition."""
        z = self.standardise(features)
        if z.ndim == 1:
            return np.array([self.fused.score_one(z)])
        return self.fused.scores(z)

    def separate_scores(self, features: np.ndarray) -> np.ndarray:
        """The same scores model by model: what each score means, and what the fused version is tested against."""
        z = self.standardise(np.atleast_2d(features))
        columns = [self.mixture.neg_log_likelihood(z), self.not_dermoscopy.score(z), self.lesion.score(z)]
        return np.stack(columns, axis=1)

    def refuses(self, scores: np.ndarray) -> np.ndarray:
        """Not a dermoscopy frame: past the mixture's or the not-dermoscopy ensemble's threshold."""
        return ((scores[..., MIXTURE] > self.mixture_threshold)
                | (scores[..., NOT_DERMOSCOPY] > self.not_dermoscopy.threshold))

    def lacks_lesion(self, scores: np.ndarray) -> np.ndarray:
        """Skin with no lesion in view: past the no-lesion logistic's threshold."""
        return scores[..., NO_LESION] > self.lesion.threshold

    def refuses_any(self, scores: np.ndarray) -> np.ndarray:
        """Refused by either learned check (what the evaluation counts as this check's refusals)."""
        return self.refuses(scores) | self.lacks_lesion(scores)


def quadratic_terms(z: np.ndarray) -> np.ndarray:
    """Each row's values followed by the products of every pair (squares included): the logistic's inputs."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], axis=1)


def logistic_score(z: np.ndarray, w: np.ndarray, b: float, quadratic: bool) -> np.ndarray:
    """The logit of "not dermoscopy" for standardised rows (the fit's form; the runtime uses split_logistic's)."""
    return (quadratic_terms(z) if quadratic else z) @ w + b


def split_logistic(w: np.ndarray, d: int, quadratic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weights over quadratic_terms as (linear d, upper-triangular d x d): z.lin + z'Pz costs two small matmuls."""
    pairs = np.zeros((d, d))
    if quadratic:
        pairs[np.triu_indices(d)] = w[d:]
    return w[:d], pairs


@dataclass
class Screen:
    """The first stage: the same three kinds of score, fitted on the SCREEN_FEATURES alone. It never refuses: a frame
    whose scores are all at or below `clears_below` (quantiles of the fit's dermoscopy) is cleared without the
    second stage; any other goes on to the full check, which decides. So the screen can only let through what it
    finds more typical of dermoscopy than `quantile` of the dermoscopy it was fitted on."""

    check: DermoscopyCheck
    clears_below: np.ndarray
    quantile: float
    limits: list[float] = field(init=False, repr=False)  # clears_below as floats: one frame's test in plain Python

    def __post_init__(self) -> None:
        self.limits = self.clears_below.tolist()

    @classmethod
    def from_dict(cls, d: dict) -> Screen:
        if tuple(d["features"]) != SCREEN_FEATURES:
            raise ValueError("screen.features")
        return cls(DermoscopyCheck.from_dict(d["check"]), np.asarray(d["clears_below"], np.float64),
                   float(d["quantile"]))

    def clears(self, scores: np.ndarray) -> np.ndarray:
        """Cleared by the first stage, for rows of its scores (N x 3) or one frame's (3)."""
        return np.asarray((scores <= self.clears_below).all(axis=-1))


@dataclass
class LearnedVerdict:
    """The learned checks' outcome for one frame: the screen's scores, whether it cleared the frame, and (only when
    it did not) all the statistics and the full check's scores."""

    screen_scores: np.ndarray
    cleared: bool
    features: np.ndarray | None = None
    scores: np.ndarray | None = None
    refused: bool = False
    no_lesion: bool = False


@dataclass
class InputChecks:
    """Everything the quality gate and the drift monitor need from models/input_checks.json."""

    path: Path
    data: dict
    min_sharpness: float
    min_saturation: float
    dermoscopy: DermoscopyCheck
    screen: Screen

    def judge(self, first: FirstStage) -> LearnedVerdict:
        """One frame through both stages: the screen on the first stage's statistics; unless it clears the frame,
        the second stage's statistics and the full check."""
        screen = self.screen.check
        screen_scores = screen.fused.score_one(screen.standardise(first.screen))
        if all(x <= limit for x, limit in zip(screen_scores, self.screen.limits, strict=True)):  # Screen.clears
            return LearnedVerdict(np.array(screen_scores), True)
        features = complete(first)
        scores = self.dermoscopy.scores(features)[0]
        return LearnedVerdict(np.array(screen_scores), False, features, scores, bool(self.dermoscopy.refuses(scores)),
                              bool(self.dermoscopy.lacks_lesion(scores)))

    @property
    def reference(self) -> dict:
        return self.data["reference"]

    def p_reference(self, model_sha256: str) -> dict | None:
        """The p(malignant) reference for this exact model, or None when it was fitted for other models."""
        return self.data["reference"].get("p_malignant", {}).get(model_sha256)


def load_input_checks(path: str | Path | None = None, model_path: str | Path | None = None) -> InputChecks:
    """Read and check the file; ModelError saying how to rebuild it when missing, malformed or stale."""
    path = Path(path) if path else default_path(model_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: input checks not found; {FIT_HINT}") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable input checks ({exc}); {FIT_HINT}") from exc
    try:
        if data["format"] != FORMAT:
            raise ModelError(f"{path}: input checks format {data['format']}, this runtime reads {FORMAT}; {FIT_HINT}")
        if data["preprocess_version"] != PREPROCESS_VERSION:
            raise ModelError(f"{path}: fitted for preprocessing v{data['preprocess_version']}, this runtime "
                             f"implements v{PREPROCESS_VERSION}; {FIT_HINT}")
        if tuple(data["features"]) != FEATURE_NAMES:
            raise ModelError(f"{path}: fitted on other frame statistics than this runtime computes; {FIT_HINT}")
        return InputChecks(path, data, float(data["focus"]["min_sharpness"]),
                           float(data["grayscale"]["min_saturation"]), DermoscopyCheck.from_dict(data["dermoscopy"]),
                           Screen.from_dict(data["screen"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: malformed input checks (missing or bad {exc}); {FIT_HINT}") from exc
