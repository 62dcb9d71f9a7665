"""The learned checks' three scores for one frame in a dozen numpy calls instead of a few dozen.

On a single 38-value row every numpy call costs a few microseconds whatever its arithmetic, and the check has a
budget of a tenth of an int8 invoke. So every first layer (the mixture's whitening for each component, each
quadratic regression's pair weights and linear weights, each network's first layer) is one column block of a single
matrix, and the networks' later layers are block-diagonal: one product per layer for all of them. The separate
models in edge_sca.input_checks stay the definition; tests check that this gives the same scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edge_sca.input_checks import GaussianMixture, Logistic, Member, Mlp


def _block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


class FusedScores:
    """Mixture negative log-likelihood, the ensemble's mean normalised score and the no-lesion logit, fused."""

    def __init__(self, mixture: GaussianMixture, members: list[Member], lesion: Logistic) -> None:
        from edge_sca.input_checks import Logistic, Mlp

        quads: list[Logistic] = [m.model for m in members if isinstance(m.model, Logistic)] + [lesion]
        nets: list[Mlp] = [m.model for m in members if isinstance(m.model, Mlp)]
        if len({len(n.layers) for n in nets}) > 1 or any(len(n.layers) < 2 for n in nets):
            raise ValueError("the ensemble's networks must all have the same depth, with a hidden layer")
        order = [m for m in members if isinstance(m.model, Logistic)] + [m for m in members if isinstance(m.model, Mlp)]
        self.k, self.d = mixture.means.shape
        self.nq, self.nn = len(quads), len(nets)
        self.mixture = mixture
        blocks = [mixture.flat, *[q.pairs for q in quads], np.stack([q.linear for q in quads], axis=1)]
        blocks += [n.layers[0][0] for n in nets]
        self.first = np.ascontiguousarray(np.hstack(blocks))
        self.quad_bias = np.array([q.bias for q in quads])
        self.net_bias = np.concatenate([n.layers[0][1] for n in nets]) if nets else np.zeros(0)
        later: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(1, len(nets[0].layers) if nets else 1):
            weights, biases = [n.layers[i][0] for n in nets], [n.layers[i][1] for n in nets]
            later.append((_block_diagonal(weights), np.concatenate(biases)))
        # the ensemble's mean of (raw - at) / spread as weights on the raw scores and one constant; the networks'
        # last layer folded into those weights (it is linear)
        spread = np.array([m.spread for m in order]) * len(order)
        weight = 1.0 / spread
        self.constant = -float(np.sum(np.array([m.at for m in order]) / spread))
        self.quad_weight = np.append(weight[:len(quads) - 1], 0.0)  # the lesion's logit is not a member
        if later:
            w, b = later.pop()
            net_weight = weight[len(quads) - 1:]
            later.append((w @ net_weight, np.asarray(b @ net_weight)))
        self.later = later

    def scores(self, z: np.ndarray) -> np.ndarray:
        """N x 3 (MIXTURE, NOT_DERMOSCOPY, NO_LESION) for standardised rows, as DermoscopyCheck.scores defines them."""
        n, k, d = len(z), self.k, self.d
        h = z @ self.first
        kd, qd = k * d, self.nq * d
        y = h[:, :kd].reshape(n, k, d) - self.mixture.shift
        logp = self.mixture.log_norm - 0.5 * (y * y).sum(axis=2)
        top = logp.max(axis=1)
        nll = -(top + np.log(np.exp(logp - top[:, None]).sum(axis=1)))
        quad = ((h[:, kd:kd + qd].reshape(n, self.nq, d) * z[:, None, :]).sum(axis=2)
                + h[:, kd + qd:kd + qd + self.nq] + self.quad_bias)
        ensemble = quad @ self.quad_weight + self.constant
        if self.nn:
            a = np.maximum(h[:, kd + qd + self.nq:] + self.net_bias, 0.0)
            for w, b in self.later[:-1]:
                a = np.maximum(a @ w + b, 0.0)
            w, b = self.later[-1]
            ensemble += a @ w + b
        out = np.empty((n, 3))
        out[:, 0], out[:, 1], out[:, 2] = nll, ensemble, quad[:, -1]
        return out
