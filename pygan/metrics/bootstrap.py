"""Percentile-bootstrap intervals of means: the one resampling every pygan evaluation reports its intervals with."""

from __future__ import annotations

import warnings

import numpy as np


def percentile_ci(boot: np.ndarray) -> list:
    """[low, high]: the 2.5 and 97.5 percentiles of bootstrap values (along axis 0; per column for 2-D values, as
    lists). NaN resamples (e.g. a class absent from one) are left out; all-NaN gives NaN."""
    with warnings.catch_warnings():  # an all-NaN column: NaN, said by the value itself
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    return [float(lo), float(hi)] if np.ndim(lo) == 0 else [lo.tolist(), hi.tolist()]


def bootstrap_means(values, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot,) means of resamples (with replacement) of the 1-D `values`."""
    v = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    return v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)


def mean_ci(values, n_boot: int = 1000, seed: int = 0) -> dict:
    """{'mean', 'ci95', 'n'}: the mean of per-item values (array-like or tensor) and its 95% percentile-bootstrap
    interval (NaN without values or with n_boot 0)."""
    if hasattr(values, "detach"):
        values = values.detach().double().cpu().numpy()
    v = np.asarray(values, np.float64)
    if len(v) == 0 or n_boot < 1:
        return {"mean": float(v.mean()) if len(v) else float("nan"), "ci95": [float("nan"), float("nan")],
                "n": int(len(v))}
    return {"mean": float(v.mean()), "ci95": percentile_ci(bootstrap_means(v, n_boot, seed)), "n": int(len(v))}
