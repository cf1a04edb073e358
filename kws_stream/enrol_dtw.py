"""Dynamic time warping between feature sequences, one numpy step per row.

The symmetric step pattern (diagonal, vertical, horizontal moves, each adding the cost of
the cell it enters) is made row-vectorised by writing the horizontal recurrence
x[j] = min(a[j], x[j-1] + c[j]) as a running minimum over the row's cumulative cost:
x = C + minimum.accumulate(a - C). The same code aligns a whole batch of equally shaped
cost matrices at once (`dtw_distances`): enrolment compares each take with thousands of
stretches of negative speech that way.
"""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """`x` (n, d) with each row scaled to length 1 (cosine distance is then 1 - dot)."""
    normed: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    return normed


def cosine_costs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) cosine distances between the rows of `a` (n, d) and `b` (m, d)."""
    costs: np.ndarray = 1.0 - unit_rows(a) @ unit_rows(b).T
    return costs


def dtw_distances(costs: np.ndarray) -> np.ndarray:
    """For each (n, m) cost matrix of the batch `costs` (..., n, m): the cheapest monotonic
    alignment from cell (0, 0) to (n-1, m-1), divided by n + m (so that lengths compare)."""
    n, m = costs.shape[-2:]
    batch = costs.shape[:-2]
    previous = np.full((*batch, m), np.inf)
    a = np.full((*batch, m), np.inf)
    for i in range(n):
        row = costs[..., i, :]
        if i == 0:
            a[..., 0] = row[..., 0]
        else:
            a[..., 0] = row[..., 0] + previous[..., 0]
            a[..., 1:] = row[..., 1:] + np.minimum(previous[..., 1:], previous[..., :-1])
        cumulative = np.cumsum(row, axis=-1)
        previous = cumulative + np.minimum.accumulate(a - cumulative, axis=-1)
    distances: np.ndarray = previous[..., -1] / (n + m)
    return distances


def dtw_distance(costs: np.ndarray) -> float:
    """`dtw_distances` of one (n, m) cost matrix."""
    return float(dtw_distances(costs))
