"""k-nearest-neighbour estimates of how two feature sets overlap: improved precision and recall (Kynkäänniemi et
al. 2019) and density and coverage (Naeem et al. 2020).

Each set's manifold is estimated as the union of balls around its samples, each ball's radius the distance to the
sample's k-th nearest neighbour in its own set. Precision: the share of generated samples inside the real
manifold (quality); recall: the share of real samples inside the generated manifold (how much of the real variety
is produced). Density counts how many real balls hold each generated sample (divided by k; about 1 when the two
sets come from one distribution) and, unlike precision, is not fooled by a few real outliers with huge balls;
coverage is the share of real samples whose own ball holds a generated sample, the outlier-robust partner of
recall. All four depend on k and on the sample sizes: compare them only with the same figure for real data at
the same sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from pygan.metrics.bootstrap import mean_ci


def _as_features(name: str, f) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(f), dtype=torch.float64)
    if t.dim() != 2 or len(t) < 2:
        raise ValueError(f"{name} must be a 2-d array of features (samples, dims) with at least 2 rows, "
                         f"got shape {tuple(t.shape)}")
    return t


def _distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048):
    """Rows of the a-to-b Euclidean distance matrix, `chunk` rows of a at a time (memory stays O(chunk * len(b)))."""
    for i in range(0, len(a), chunk):
        yield i, torch.cdist(a[i:i + chunk], b)


def knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row of the same set."""
    if not 1 <= k < len(f):
        raise ValueError(f"k must be in [1, {len(f) - 1}] for a set of {len(f)} samples, got {k}")
    out = torch.empty(len(f), dtype=f.dtype)
    for i, d in _distances(f, f):
        out[i:i + len(d)] = d.kthvalue(k + 1, dim=1).values  # the (k+1)-th smallest: the 0 to itself comes first
    return out


def _in_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point, the number of balls (centres, radii) that hold it."""
    counts = torch.empty(len(points), dtype=torch.long)
    for i, d in _distances(points, centres):
        counts[i:i + len(d)] = (d <= radii).sum(1)
    return counts


def _with_interval(values: torch.Tensor, n_boot: int, seed: int) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-sample values and a 95% percentile bootstrap interval over the samples
    (the balls held fixed: it gives the spread from which samples were scored, not from the k-NN radii)."""
    m = mean_ci(values, n_boot, seed)
    return m["mean"], *m["ci95"]


def manifold_metrics(real, fake, k_pr: int = 3, k_dc: int = 5, n_boot: int = 100, seed: int = 0) -> dict:
    """Precision and recall (k = k_pr, the paper's 3) and density and coverage (k = k_dc, the paper's 5) of a
    generated feature set `fake` against a real one `real` (rows are samples), each as (value, [low, high]) with
    95% bootstrap intervals."""
    r, g = _as_features("real", real), _as_features("fake", fake)
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"real and fake must have the same feature dimension, got {r.shape[1]} and {g.shape[1]}")
    out = {}
    r_radii, g_radii = knn_radii(r, k_pr), knn_radii(g, k_pr)
    for name, values in (("precision", _in_balls(g, r, r_radii) > 0), ("recall", _in_balls(r, g, g_radii) > 0)):
        v, lo, hi = _with_interval(values, n_boot, seed)
        out[name], out[name + "_ci95"] = v, [lo, hi]
    r_radii = knn_radii(r, k_dc)
    # coverage: a real sample is covered when its nearest generated sample lies inside its own ball
    nearest = torch.cat([d.min(1).values for _, d in _distances(r, g)])
    for name, values in (("density", _in_balls(g, r, r_radii).double() / k_dc), ("coverage", nearest <= r_radii)):
        v, lo, hi = _with_interval(values, n_boot, seed)
        out[name], out[name + "_ci95"] = v, [lo, hi]
    out["k_precision_recall"], out["k_density_coverage"] = k_pr, k_dc
    return out
