"""KID and the k-NN manifold metrics against their definitions: brute-force re-implementations, closed forms and
hand-made sets with a known answer."""

import itertools

import numpy as np
import pytest

from pygan.metrics import kernel_distance, manifold_metrics
from pygan.metrics.kid import mmd2_unbiased


def _mmd2_loops(x, y):
    """The unbiased MMD^2 estimate written out term by term."""
    k = lambda a, b: (np.dot(a, b) / len(a) + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_its_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(5, 3))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)


def _gaussian_moments(mu):
    """First three moment tensors of N(mu, I)."""
    d = len(mu)
    eye = np.eye(d)
    m2 = eye + np.outer(mu, mu)
    m3 = (np.einsum("i,j,k->ijk", mu, mu, mu) + np.einsum("i,jk->ijk", mu, eye) + np.einsum("j,ik->ijk", mu, eye)
          + np.einsum("k,ij->ijk", mu, eye))
    return mu, m2, m3


def _expected_kernel(mu_a, mu_b):
    # E (x.y/d + 1)^3 for independent x ~ N(mu_a, I), y ~ N(mu_b, I): E (x.y)^n = <n-th moment of x, n-th of y>
    d = len(mu_a)
    a, b = _gaussian_moments(mu_a), _gaussian_moments(mu_b)
    e1, e2, e3 = ((p * q).sum() for p, q in zip(a, b))
    return 1 + 3 * e1 / d + 3 * e2 / d ** 2 + e3 / d ** 3


def test_kid_of_shifted_gaussians_matches_the_closed_form():
    d, mu = 4, np.array([0.6, -0.3, 0.0, 0.4])
    zero = np.zeros(d)
    exact = _expected_kernel(zero, zero) + _expected_kernel(mu, mu) - 2 * _expected_kernel(zero, mu)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40000, d)), rng.normal(size=(40000, d)) + mu
    # 100 subsets of 1000 from pools of 40000: nearly independent draws, each with a spread of about 0.09 here
    kid, spread = kernel_distance(x, y, subset_size=1000, n_subsets=100, seed=0)
    assert exact > 0.1 and abs(kid - exact) < 4 * spread / np.sqrt(100)
    assert 0 < spread < exact / 3


def test_kid_of_one_distribution_is_zero_within_its_spread_and_unbiased_at_small_sizes():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(2000, 8))
    kid, spread = kernel_distance(f[:1000], f[1000:], subset_size=100, n_subsets=200, seed=0)
    assert abs(kid) < 3 * spread / np.sqrt(200) + 1e-3  # the mean over subsets of an unbiased estimate of 0
    assert kernel_distance(f, f + 3.0, subset_size=50, n_subsets=5)[0] > 10 * spread


def _manifold_loops(real, fake, k_pr, k_dc):
    """Both papers' definitions with plain loops."""
    dist = lambda a, b: float(np.sqrt(((a - b) ** 2).sum()))  # noqa: E731

    def radii(s, k):
        return [sorted(dist(a, b) for j, b in enumerate(s) if j != i)[k - 1] for i, a in enumerate(s)]

    rr, gr, rd = radii(real, k_pr), radii(fake, k_pr), radii(real, k_dc)
    precision = np.mean([any(dist(g, r) <= rr[i] for i, r in enumerate(real)) for g in fake])
    recall = np.mean([any(dist(r, g) <= gr[j] for j, g in enumerate(fake)) for r in real])
    density = np.mean([sum(dist(g, r) <= rd[i] for i, r in enumerate(real)) for g in fake]) / k_dc
    coverage = np.mean([min(dist(r, g) for g in fake) <= rd[i] for i, r in enumerate(real)])
    return precision, recall, density, coverage


@pytest.mark.parametrize("seed", [0, 1])
def test_manifold_metrics_match_their_definitions(seed):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(40, 3)), rng.normal(0.4, 1.3, size=(30, 3))
    m = manifold_metrics(real, fake, k_pr=3, k_dc=5, n_boot=20)
    expected = _manifold_loops(real, fake, 3, 5)
    got = (m["precision"], m["recall"], m["density"], m["coverage"])
    assert got == pytest.approx(expected, abs=1e-12)
    for name in ("precision", "recall", "density", "coverage"):
        lo, hi = m[name + "_ci95"]
        assert lo <= m[name] <= hi


def test_manifold_metrics_on_identical_disjoint_and_half_overlapping_sets():
    rng = np.random.default_rng(4)
    f = rng.normal(size=(300, 5))
    same = manifold_metrics(f, f, n_boot=0)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] >= 1.0  # each sample in its own ball, and in its neighbours' often
    far = manifold_metrics(f, f + 100.0, n_boot=0)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0
    # uniform on [0, 1]^2 against the same square shifted by half its width: half of each lies in the other
    real, fake = rng.uniform(size=(3000, 2)), rng.uniform(size=(3000, 2)) + [0.5, 0.0]
    half = manifold_metrics(real, fake, n_boot=0)
    for name in ("precision", "recall", "density", "coverage"):
        assert half[name] == pytest.approx(0.5, abs=0.05), name


def test_real_vs_real_splits_agree():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(2000, 6))
    m = manifold_metrics(f[:1000], f[1000:], n_boot=0)
    assert abs(m["precision"] - m["recall"]) < 0.05
    assert m["density"] == pytest.approx(1.0, abs=0.1)
    assert m["coverage"] > 0.9
    # a generator that repeats a tenth of the real variety: precise, but recall and coverage fall
    narrow = f[1000:1100].repeat(10, axis=0) + rng.normal(scale=1e-3, size=(1000, 6))
    n = manifold_metrics(f[:1000], narrow, n_boot=0)
    assert n["precision"] > 0.8 and n["recall"] < 0.5 and n["coverage"] < 0.5


@pytest.mark.parametrize("call, match", [
    (lambda: kernel_distance(np.zeros(5), np.zeros((5, 2))), "f1 must be a 2-d array"),
    (lambda: kernel_distance(np.zeros((5, 2)), np.zeros((5, 3))), "same feature dimension"),
    (lambda: kernel_distance(np.zeros((5, 2)), np.zeros((5, 2)), subset_size=1), "subset_size"),
    (lambda: manifold_metrics(np.zeros((1, 2)), np.zeros((5, 2))), "real must be a 2-d array"),
    (lambda: manifold_metrics(np.zeros((5, 2)), np.zeros((5, 3))), "same feature dimension"),
    (lambda: manifold_metrics(np.zeros((5, 2)), np.zeros((5, 2)), k_dc=5), r"k must be in \[1, 4\]"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_chunked_distances_match_one_shot():
    # the chunked computation must agree with the one-shot one across chunk boundaries
    from pygan.metrics import manifold

    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(37, 4)), rng.normal(size=(23, 4))
    ta, tb = manifold._as_features("a", a), manifold._as_features("b", b)
    chunks = list(itertools.chain.from_iterable(d for _, d in manifold._distances(ta, tb, chunk=5)))
    assert np.allclose(np.stack([c.numpy() for c in chunks]), np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)))
