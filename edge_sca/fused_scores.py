"""The learned checks' three scores for one frame in about ten numpy calls instead of a few dozen.

On a single 38-value row every numpy call costs a few microseconds whatever its arithmetic (more once an invoke
has evicted the caches), and the check has a budget of a tenth of an int8 invoke. So every score that is a quadratic
form of the standardised row z is one: the mixture's log-density of component k, -0.5 |z P_k - s_k|^2 plus its log
normaliser, expands to z A_k z' + z l_k' + c_k; each quadratic regression is z Q z' + z w' + b. Their matrices,
their linear weights and the networks' first layers are column blocks of a single matrix, so one product gives
z A_k, z Q, every linear term and every first layer; one more gives the quadratic forms. The networks' later layers
are stacked: one batched product per layer for all of them (a block-diagonal matrix gives the same in one plain
product, but it is mostly zeros: 300 KB that an invoke evicts from the caches). What follows on a handful of
floats (the log-sum-exp of the mixture's components, the ensemble's weighted mean) is plain Python. The separate
models in edge_sca.input_checks stay the definition; tests check that this gives the same scores.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edge_sca.input_checks import GaussianMixture, Logistic, Member, Mlp


class FusedScores:
    """Mixture negative log-likelihood, the ensemble's mean normalised score and the no-lesion logit, fused."""

    def __init__(self, mixture: GaussianMixture, members: list[Member], lesion: Logistic) -> None:
        from edge_sca.input_checks import Logistic, Mlp

        quads: list[Logistic] = [m.model for m in members if isinstance(m.model, Logistic)] + [lesion]
        nets: list[Mlp] = [m.model for m in members if isinstance(m.model, Mlp)]
        if len({tuple(w.shape for w, _ in n.layers) for n in nets}) > 1 or any(len(n.layers) < 2 for n in nets):
            raise ValueError("the ensemble's networks must all have the same layer sizes, with a hidden layer")
        order = [m for m in members if isinstance(m.model, Logistic)] + [m for m in members if isinstance(m.model, Mlp)]
        self.k, self.d = mixture.means.shape
        self.forms = self.k + len(quads)  # quadratic forms: the mixture's components, then the regressions
        p = mixture.prec_chol
        squares = [-0.5 * p[i] @ p[i].T for i in range(self.k)] + [q.pairs for q in quads]
        linear = [p[i] @ mixture.shift[i] for i in range(self.k)] + [q.linear for q in quads]
        blocks = [*squares, np.stack(linear, axis=1), *[n.layers[0][0] for n in nets]]
        self.first = np.ascontiguousarray(np.hstack(blocks))
        self.constant_terms = np.concatenate([mixture.log_norm - 0.5 * (mixture.shift ** 2).sum(axis=1),
                                              [q.bias for q in quads]])
        self.net_bias = np.concatenate([n.layers[0][1] for n in nets]) if nets else np.zeros(0)
        self.nets = len(nets)
        later: list[tuple[np.ndarray, np.ndarray]] = []  # hidden layers: (nets x inputs x outputs, biases)
        for i in range(1, len(nets[0].layers) if nets else 1):
            weights, biases = [n.layers[i][0] for n in nets], [n.layers[i][1] for n in nets]
            later.append((np.stack(weights), np.concatenate(biases)))
        # the ensemble's mean of (raw - at) / spread as weights on the raw scores and one constant; the networks'
        # last layer folded into those weights (it is linear)
        spread = np.array([m.spread for m in order]) * len(order)
        weight = 1.0 / spread
        self.constant = -float(np.sum(np.array([m.at for m in order]) / spread))
        self.quad_weight = np.append(weight[:len(quads) - 1], 0.0)  # the lesion's logit is not a member
        if later:  # the last layer (one output per network) as one weight vector over all their inputs
            w, b = later.pop()
            net_weight = weight[len(quads) - 1:]
            later.append((np.concatenate([w[i, :, 0] * net_weight[i] for i in range(len(nets))]),
                          np.asarray(b @ net_weight)))
        self.later = later
        self._quad_weight = self.quad_weight.tolist()

    def _networks(self, first_layer: np.ndarray) -> np.ndarray:
        """The networks' summed, weighted outputs from their first layers' products (rows or one row)."""
        a = np.maximum(first_layer + self.net_bias, 0.0)
        rows = a.shape[:-1]  # () for one row
        for w, b in self.later[:-1]:
            each = np.matmul(a.reshape(*rows, self.nets, 1, w.shape[1]), w)  # every network's own layer
            a = np.maximum(each.reshape(*rows, -1) + b, 0.0)
        w, b = self.later[-1]
        return a @ w + b

    def scores(self, z: np.ndarray) -> np.ndarray:
        """N x 3 (MIXTURE, NOT_DERMOSCOPY, NO_LESION) for standardised rows, as DermoscopyCheck.scores defines them."""
        n, d, f = len(z), self.d, self.forms
        h = z @ self.first
        q = np.einsum("nfd,nd->nf", h[:, :f * d].reshape(n, f, d), z) + h[:, f * d:f * d + f] + self.constant_terms
        logp = q[:, :self.k]
        top = logp.max(axis=1)
        nll = -(top + np.log(np.exp(logp - top[:, None]).sum(axis=1)))
        quad = q[:, self.k:]
        ensemble = quad @ self.quad_weight + self.constant
        if self.later:
            ensemble = ensemble + self._networks(h[:, f * d + f:])
        return np.stack([nll, ensemble, quad[:, -1]], axis=1)

    def score_one(self, z: np.ndarray) -> tuple[float, float, float]:
        """The three scores of one standardised row (d values): what the gate calls on every frame."""
        d, f = self.d, self.forms
        h = z @ self.first
        q = (h[:f * d].reshape(f, d) @ z + h[f * d:f * d + f] + self.constant_terms).tolist()
        logp = q[:self.k]
        top = max(logp)
        nll = -(top + math.log(sum(math.exp(x - top) for x in logp)))
        quad = q[self.k:]
        ensemble = sum(w * s for w, s in zip(self._quad_weight, quad, strict=True)) + self.constant
        if self.later:
            ensemble += float(self._networks(h[f * d + f:]))
        return nll, ensemble, quad[-1]
