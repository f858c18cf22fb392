"""The Fréchet distance between two feature sets, and a bootstrap interval for it."""

from __future__ import annotations

import numpy as np


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two feature sets (rows are samples)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # Tr((S1 S2)^(1/2)) = sum of sqrt of the eigenvalues of S1 S2 (real and >= 0 up to round-off)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def bootstrap_frechet_distance(f1: np.ndarray, f2: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(distance, low, high): the Fréchet distance and a 95% bootstrap interval around it.

    Resampling rows with replacement shifts the distance up (repeated rows act like a smaller sample, and the
    estimator's finite-sample bias grows as samples shrink), by more than the spread of the resampled values here:
    a plain percentile interval lies wholly above the estimate, and the reverse-percentile one wholly below. So the
    resampled values are re-centred on the estimate (their mean shift removed) and their 2.5/97.5 percentiles taken:
    the interval gives the sampling spread, not a correction of the estimator's bias. Clipped at 0.
    """
    d = frechet_distance(f1, f2)
    if n_boot < 1:
        return d, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = np.array([frechet_distance(f1[rng.integers(0, len(f1), len(f1))], f2[rng.integers(0, len(f2), len(f2))])
                     for _ in range(n_boot)])
    q_lo, q_hi = np.percentile(vals - vals.mean() + d, [2.5, 97.5])
    return d, float(max(0.0, q_lo)), float(max(0.0, q_hi))
