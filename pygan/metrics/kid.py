"""KID, the kernel inception distance (Bińkowski et al. 2018): the squared maximum mean discrepancy between two
feature sets under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, estimated without bias.

Unlike the Fréchet distance, whose estimate is biased upwards by an amount that grows as the sample shrinks, the
unbiased MMD estimate has expectation equal to the population value at any sample size (so it can come out
slightly negative): it is the figure to trust on a few hundred images. It is averaged over random subsets, whose
spread is reported with it.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a b^T / d + 1)^3 for rows of a and b (d = feature dimension)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(f1: np.ndarray, f2: np.ndarray) -> float:
    """The unbiased estimate of MMD^2 between the distributions of two feature sets (rows are samples, >= 2 each)."""
    m, n = len(f1), len(f2)
    k11, k22, k12 = polynomial_kernel(f1, f1), polynomial_kernel(f2, f2), polynomial_kernel(f1, f2)
    # the U-statistic: pairs of distinct samples only within each set (the diagonal would bias it upwards)
    within1 = (k11.sum() - np.trace(k11)) / (m * (m - 1))
    within2 = (k22.sum() - np.trace(k22)) / (n * (n - 1))
    return float(within1 + within2 - 2.0 * k12.mean())


def _check_features(name: str, f) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"{name} must be a 2-d array of features (samples, dims) with at least 2 rows, "
                         f"got shape {f.shape}")
    return f


def kernel_distance(f1, f2, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """(KID, spread): the mean and standard deviation of the unbiased MMD^2 over `n_subsets` random subsets of
    `subset_size` rows drawn without replacement from each set (the whole set where it is smaller)."""
    f1, f2 = _check_features("f1", f1), _check_features("f2", f2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"f1 and f2 must have the same feature dimension, got {f1.shape[1]} and {f2.shape[1]}")
    if subset_size < 2 or n_subsets < 1:
        raise ValueError(f"subset_size must be >= 2 and n_subsets >= 1, got {subset_size} and {n_subsets}")
    rng = np.random.default_rng(seed)
    m1, m2 = min(subset_size, len(f1)), min(subset_size, len(f2))
    vals = np.array([mmd2_unbiased(f1[rng.choice(len(f1), m1, replace=False)],
                                   f2[rng.choice(len(f2), m2, replace=False)]) for _ in range(n_subsets)])
    return float(vals.mean()), float(vals.std(ddof=1)) if n_subsets > 1 else 0.0
