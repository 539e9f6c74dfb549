"""k-means for the tokenisers: Lloyd's algorithm with k-means++ seeding, optionally balanced
(every cluster holding about ``n / k`` points). numpy only; deterministic in the generator."""

from __future__ import annotations

import math

import numpy as np


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    iters: int = 30,
    balanced: bool = False,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        x: ``(n, d)`` float32 points.
        k: clusters; when ``k > n`` the surplus centroids duplicate points (and stay unused).
        balanced: assign under a capacity of ``ceil(n / k)`` points per cluster (greedy by
            distance), so codes are used evenly.

    Returns:
        ``(centroids (k, d) float32, labels (n,) int64)``.
    """
    n = len(x)
    centroids = _kmeans_pp(x, k, rng)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iters):
        dist = _sq_dist(x, centroids)
        new = _balanced_assign(dist, k) if balanced else dist.argmin(axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        centroids = _update_centroids(x, labels, centroids, dist)
    return centroids.astype(np.float32), labels


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    centroids[0] = x[rng.integers(n)]
    closest = _sq_dist(x, centroids[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        idx = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[j] = x[idx]
        closest = np.minimum(closest, _sq_dist(x, centroids[j : j + 1])[:, 0])
    return centroids


def _balanced_assign(dist: np.ndarray, k: int) -> np.ndarray:
    """Nearest centroid under a capacity of ``ceil(n / k)``: pairs taken closest first."""
    n = dist.shape[0]
    cap = math.ceil(n / k)
    order = np.argsort(dist, axis=None, kind="stable")
    labels = np.full(n, -1, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    left = n
    for flat in order:
        point, cluster = divmod(int(flat), k)
        if labels[point] < 0 and load[cluster] < cap:
            labels[point] = cluster
            load[cluster] += 1
            left -= 1
            if not left:
                break
    return labels


def _update_centroids(
    x: np.ndarray,
    labels: np.ndarray,
    old: np.ndarray,
    dist: np.ndarray,
) -> np.ndarray:
    k = len(old)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros_like(old)
    np.add.at(sums, labels, x)
    new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], old)
    empty = np.flatnonzero(counts == 0)
    if len(empty) and len(x) >= k:
        # an empty cluster restarts at the points worst served now, so no code stays dead
        far = np.argsort(-dist[np.arange(len(x)), labels])[: len(empty)]
        new[empty] = x[far]
    return new
