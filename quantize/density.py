"""Small fits for the input checks: a Gaussian mixture by EM (numpy), weighted logistic regressions by L-BFGS and
small ReLU networks by Adam (Keras).

Each is fitted on a few tens of thousands of 38-value rows in seconds to a minute; the runtime only evaluates them
(edge_sca.input_checks) in numpy.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_sca.input_checks import GaussianMixture, logistic_score, quadratic_terms

log = logging.getLogger(__name__)


def _kmeans_pp(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [z[rng.integers(len(z))]]
    for _ in range(1, k):
        d2 = np.min([((z - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(z[rng.choice(len(z), p=d2 / d2.sum())])
    return np.array(centres)


def _as_dict(weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> dict:
    """Mixture parameters in the form edge_sca.input_checks reads: precision Cholesky factors, not covariances."""
    prec_chol = np.linalg.inv(np.linalg.cholesky(covs)).transpose(0, 2, 1)  # (x - mean) @ it whitens x
    return {"weights": weights.tolist(), "means": means.tolist(), "prec_chol": prec_chol.tolist()}


def fit_mixture(z: np.ndarray, k: int, seed: int = 0, reg: float = 1e-3, iters: int = 200,
                tol: float = 1e-5) -> dict:
    """EM for a full-covariance Gaussian mixture on standardised rows `z`; returns the parameter dict."""
    rng = np.random.default_rng(seed)
    n, d = z.shape
    means = _kmeans_pp(z, k, rng)
    resp = np.eye(k)[np.argmin(((z[:, None] - means[None]) ** 2).sum(2), axis=1)]
    prev = -np.inf
    steps = 0
    for _ in range(iters):
        steps += 1
        nk = resp.sum(0) + 1e-10
        weights, means = nk / n, (resp.T @ z) / nk[:, None]
        covs = np.array([((resp[:, j, None] * (z - means[j])).T @ (z - means[j])) / nk[j] + reg * np.eye(d)
                         for j in range(k)])
        params = GaussianMixture.from_dict(_as_dict(weights, means, covs))
        logp = _component_logp(params, z)
        top = logp.max(1, keepdims=True)
        total = top[:, 0] + np.log(np.exp(logp - top).sum(1))
        resp = np.exp(logp - total[:, None])
        ll = float(total.mean())
        if ll - prev < tol:
            break
        prev = ll
    log.info("mixture of %d: mean log-likelihood %.3f after %d EM steps", k, ll, steps)
    return _as_dict(weights, means, covs)


def _component_logp(params: GaussianMixture, z: np.ndarray) -> np.ndarray:
    y = np.einsum("nd,kde->nke", z, params.prec_chol) - params.shift
    return params.log_norm - 0.5 * (y * y).sum(axis=2)


def fit_logistic(z: np.ndarray, y: np.ndarray, quadratic: bool = True, l2: float = 1e-3,
                 steps: int = 500) -> tuple[np.ndarray, float]:
    """Class-balanced, L2-regularised logistic regression (y = 1: the kind to refuse) by L-BFGS; (weights, bias).

    L-BFGS (scipy, a scikit-image dependency on the workstation) needs a few hundred gradient evaluations where
    plain gradient descent needed thousands: the 38-value quadratic fits take seconds, not minutes."""
    from scipy.optimize import minimize

    x = quadratic_terms(z) if quadratic else z
    w = np.where(y == 1, 0.5 / max(1, int(y.sum())), 0.5 / max(1, int((1 - y).sum())))
    sign = np.where(y == 1, -1.0, 1.0)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = logistic_score(x, theta[:-1], theta[-1], False)
        loss = float(w @ np.logaddexp(0.0, sign * s)) + 0.5 * l2 * float(theta[:-1] @ theta[:-1])
        g = (1.0 / (1.0 + np.exp(-np.clip(s, -30, 30))) - y) * w
        return loss, np.append(x.T @ g + l2 * theta[:-1], g.sum())

    result = minimize(loss_and_grad, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": steps})
    log.info("logistic regression on %d values: loss %.4f after %d L-BFGS steps (%s)", x.shape[1], result.fun,
             result.nit, "converged" if result.success else result.message)
    return result.x[:-1], float(result.x[-1])


def fit_mlp(z: np.ndarray, y: np.ndarray, hidden: int = 64, seed: int = 1, epochs: int = 60,
            l2: float = 1e-4) -> dict:
    """A class-balanced two-hidden-layer ReLU network (y = 1: the kind to refuse) by Adam, in the form
    edge_sca.input_checks.Mlp reads. Keras trains it (the workstation has TensorFlow); the runtime evaluates it in
    numpy: a few thousand weights, two small matmuls a frame."""
    import keras

    keras.utils.set_random_seed(seed)
    weight = np.where(y == 1, 0.5 / max(1, int(y.sum())), 0.5 / max(1, int((1 - y).sum()))) * len(y)
    reg = keras.regularizers.l2(l2)
    model = keras.Sequential([keras.Input((z.shape[1],)),
                              keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg),
                              keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit(z.astype(np.float32), y.astype(np.float32), sample_weight=weight, batch_size=256,
                        epochs=epochs, verbose=0, shuffle=True)
    log.info("network %d-%d-%d-1 (seed %d): loss %.4f after %d epochs", z.shape[1], hidden, hidden, seed,
             history.history["loss"][-1], epochs)
    return {"layers": [{"weights": layer.get_weights()[0].astype(np.float64).tolist(),
                        "bias": layer.get_weights()[1].astype(np.float64).tolist()} for layer in model.layers]}
