"""Small verifiers for `benchmarks.judge_compare`, trained with scipy's L-BFGS (no ML framework).

`Logistic`: L2-regularised logistic regression on a feature vector. `SeqConv`: a 1-D
convolution over a (T, D) sequence (kernel `k` frames, `hidden` ReLU filters), max- and
mean-pooled over time, then logistic together with a vector of extra features. Both
standardise their inputs with the training set's mean and spread, and `weights()` gives
the plain arrays a numpy-only judge needs at run time.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _bce(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted binary cross-entropy on logits and its gradient wrt the logits."""
    loss = np.sum(w * (np.logaddexp(0.0, z) - y * z)) / w.sum()
    return float(loss), w * (_sigmoid(z) - y) / w.sum()


def balance(y: np.ndarray) -> np.ndarray:
    """Sample weights giving both classes the same total weight."""
    pos = max(1, int(y.sum()))
    neg = max(1, len(y) - pos)
    return np.where(y > 0, 0.5 / pos, 0.5 / neg) * len(y)


class Logistic:
    def __init__(self, l2: float = 1e-2) -> None:
        self.l2 = l2

    def fit(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> Logistic:
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        z = (x - self.mu) / self.sd
        w = balance(y) if w is None else w
        d = z.shape[1]

        def f(p: np.ndarray) -> tuple[float, np.ndarray]:
            loss, g = _bce(z @ p[:d] + p[d], y, w)
            return loss + 0.5 * self.l2 * p[:d] @ p[:d], np.append(z.T @ g + self.l2 * p[:d], g.sum())

        p = minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
        self.coef, self.bias = p[:d], p[d]
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mu) / self.sd) @ self.coef + self.bias


def unfold(x: np.ndarray, k: int) -> np.ndarray:
    """(N, T, D) -> (N, T - k + 1, k D): k consecutive frames side by side."""
    t = x.shape[1] - k + 1
    return np.concatenate([x[:, i:i + t] for i in range(k)], axis=2)


class SeqConv:
    def __init__(self, k: int = 3, hidden: int = 16, l2: float = 1e-2, seed: int = 0) -> None:
        self.k, self.hidden, self.l2, self.seed = k, hidden, l2, seed

    def _prep(self, seq: np.ndarray, aux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return unfold((seq - self.mu) / self.sd, self.k), (aux - self.amu) / self.asd

    def fit(self, seq: np.ndarray, aux: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> SeqConv:
        self.mu, self.sd = seq.reshape(-1, seq.shape[2]).mean(0), seq.reshape(-1, seq.shape[2]).std(0) + 1e-6
        self.amu, self.asd = aux.mean(0), aux.std(0) + 1e-6
        u, a = self._prep(seq, aux)
        w = balance(y) if w is None else w
        n, t, d = u.shape
        h, m = self.hidden, a.shape[1]
        shapes = [(d, h), (h,), (2 * h,), (m,), (1,)]
        sizes = [int(np.prod(s)) for s in shapes]

        def split(p: np.ndarray) -> list[np.ndarray]:
            out, i = [], 0
            for s, z in zip(shapes, sizes):
                out.append(p[i:i + z].reshape(s))
                i += z
            return out

        u2 = u.reshape(n * t, d)

        def f(p: np.ndarray) -> tuple[float, np.ndarray]:
            wc, bc, v, wa, c = split(p)
            pre = (u2 @ wc).reshape(n, t, h) + bc
            act = np.maximum(pre, 0.0)
            top = act.max(1)
            pooled = np.concatenate([top, act.mean(1)], axis=1)
            z = pooled @ v + a @ wa + c[0]
            loss, g = _bce(z, y, w)
            gp = g[:, None] * v[None]  # (n, 2h)
            first = (act == top[:, None]) & (np.cumsum(act == top[:, None], axis=1) == 1)  # the argmax, once
            gpre = (first * gp[:, None, :h] + gp[:, None, h:] / t) * (pre > 0)
            g2 = gpre.reshape(n * t, h)
            grads = [u2.T @ g2 + self.l2 * wc, g2.sum(0), pooled.T @ g + self.l2 * v,
                     a.T @ g + self.l2 * wa, np.array([g.sum()])]
            reg = 0.5 * self.l2 * (np.sum(wc * wc) + v @ v + wa @ wa)
            return loss + reg, np.concatenate([x.ravel() for x in grads])

        rng = np.random.default_rng(self.seed)
        p0 = np.concatenate([rng.normal(0, 1 / np.sqrt(d), sizes[0]), np.full(h, 0.1), rng.normal(0, 0.1, 2 * h),
                             np.zeros(m), np.zeros(1)])
        p = minimize(f, p0, jac=True, method="L-BFGS-B", options={"maxiter": 400}).x
        self.wc, self.bc, self.v, self.wa, self.c = split(p)
        return self

    def score(self, seq: np.ndarray, aux: np.ndarray) -> np.ndarray:
        u, a = self._prep(seq, aux)
        act = np.maximum(u @ self.wc + self.bc, 0.0)
        return np.concatenate([act.max(1), act.mean(1)], axis=1) @ self.v + a @ self.wa + self.c[0]
