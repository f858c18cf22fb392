import numpy as np
import pytest
import torch

from pygan import metrics
from pygan.data import digits_split
from pygan.metrics.classifier import random_shifts


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    d = tmp_path_factory.mktemp("cache")
    mp.setenv("PYGAN_CACHE", str(d))
    yield d
    mp.undo()


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2 + 1
    # N(0, I) vs N(1, 4I): |mu|^2 = 3, trace term 3 * (1 + 4 - 2*2) = 3
    assert abs(metrics.frechet_distance(a, b) - 6.0) < 0.3
    assert abs(metrics.frechet_distance(a, a)) < 1e-6


def test_classifier_cached_and_metrics(cache):
    model, acc = metrics.digits_classifier(16)
    assert acc > 0.97
    files = list(cache.iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".tmp")
    _, acc2 = metrics.digits_classifier(16)  # from the cache
    assert acc2 == acc
    _, held = digits_split(16)
    m = metrics.evaluate_digits(held.images, held.labels, n_boot=5)
    assert m["mean_confidence"] > 0.8 and m["label_accuracy"] == pytest.approx(acc)
    assert m["kl_from_uniform"] < 0.01 and m["frechet_distance"] < 1e-6
    lo, hi = m["real_train_frechet_distance_ci95"]
    assert lo <= hi and m["real_train_frechet_distance"] > 0
    # the held-out digits scored against themselves: inside their own manifold, all of it covered
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert 0.5 < m["real_train_recall"] <= 1 and 0.5 < m["real_train_precision"] <= 1
    assert abs(m["real_train_kid"]) < 3 * m["real_train_kid_std"] and m["real_train_samples_compared"] == len(held)
    # one class repeated: the histogram collapses and the distance grows
    ones = held.images[held.labels == 1]
    c = metrics.evaluate_digits(ones, n_boot=5)
    assert c["min_class_fraction"] < 0.05 and c["kl_from_uniform"] > 1.5
    assert c["frechet_distance"] > 3 * m["real_train_frechet_distance"]
    assert c["recall_ratio"] < 0.3 and c["coverage"] < 0.3 and c["kid"] > 3 * c["real_train_kid_std"]


def test_random_shifts_move_each_image_by_its_own_offset():
    x = torch.arange(2 * 25, dtype=torch.float).reshape(2, 1, 5, 5)
    x = torch.cat([x] * 20)
    out = random_shifts(x, 2, torch.Generator().manual_seed(0), fill=-7.0)
    assert out.shape == x.shape
    offsets = set()
    for a, b in zip(x, out):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(b, _shifted(a, dy, dx, -7.0))]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 5  # per image, not one shift for the batch


def _shifted(a, dy, dx, fill):
    out = torch.full_like(a, fill)
    h, w = a.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = a[..., max(-dy, 0):h + min(-dy, 0),
                                                                     max(-dx, 0):w + min(-dx, 0)]
    return out


def test_fid_needs_features():
    x = torch.rand(20, 3, 8, 8)
    with pytest.raises(ValueError, match="feature_extractor or a local inception_weights"):
        metrics.fid(x, x)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        metrics.fid(x, x, inception_weights="/nonexistent/inception.pt")
    feats = lambda t: t.mean((2, 3))  # noqa: E731
    assert metrics.fid(x, x, feature_extractor=feats) == pytest.approx(0.0, abs=1e-8)
    assert metrics.fid(x, x + 1, feature_extractor=feats) == pytest.approx(3.0, abs=1e-6)
