"""A small CNN classifier for evaluation: trained on real images of a dataset, it scores generated or translated
ones (confidence, class histogram, the label kept) and gives features for Fréchet distances."""

from __future__ import annotations

import hashlib
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pygan._io import atomic_torch_save, cache_root

FIT_VERSION = 1  # bump when fit_classifier changes: cached classifiers are then retrained


def cache_dir() -> str:
    """$PYGAN_CACHE, else $XDG_CACHE_HOME/pygan or ~/.cache/pygan (created)."""
    d = cache_root()
    os.makedirs(d, exist_ok=True)
    return d


class SmallClassifier(nn.Module):
    """A small CNN for images of any size >= 16; `features` is its 64-d penultimate layer."""

    def __init__(self, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, 64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def random_shifts(x: Tensor, max_shift: int, gen: torch.Generator, fill: float = -1.0) -> Tensor:
    """Each image of (N, C, H, W) moved by its own random offset in [-max_shift, max_shift]^2, uncovered pixels
    set to `fill` (the background): pad, then one gathered crop per image."""
    n, _, h, w = x.shape
    p = max_shift
    xp = F.pad(x, (p, p, p, p), value=fill)
    oy = torch.randint(0, 2 * p + 1, (n, 1), generator=gen) + torch.arange(h)
    ox = torch.randint(0, 2 * p + 1, (n, 1), generator=gen) + torch.arange(w)
    return xp[torch.arange(n)[:, None, None], :, oy[:, :, None], ox[:, None, :]].permute(0, 3, 1, 2)


def fit_classifier(x: Tensor, y: Tensor, num_classes: int, epochs: int = 30, batch: int = 64, max_shift: int = 0,
                   seed: int = 0) -> SmallClassifier:
    """A SmallClassifier trained on images x (N, C, H, W) in [-1, 1] with labels y: Adam, one-cycle schedule
    (peak 3e-3), `max_shift` > 0 adds per-image random shifts (background -1). Deterministic (own seeds);
    returned in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SmallClassifier(x.shape[1], num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    per_epoch = (len(y) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            xb = random_shifts(x[idx], max_shift, g) if max_shift else x[idx]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def classify(model: SmallClassifier, images: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
    """(class probabilities, features) of images, in batches, on the CPU."""
    probs, feats = [], []
    for i in range(0, images.shape[0], batch):
        f = model.features(images[i:i + batch].float().cpu())
        feats.append(f)
        probs.append(model.head(f).softmax(1))
    return torch.cat(probs), torch.cat(feats)


def cached_classifier(x: Tensor, y: Tensor, num_classes: int, epochs: int = 30) -> SmallClassifier:
    """fit_classifier(x, y, num_classes, epochs), trained on first use and cached under cache_dir(), keyed by the
    data itself (so a change of data never reuses a stale model)."""
    h = hashlib.sha1(f"{FIT_VERSION}-{num_classes}-{epochs}-{torch.__version__}-{tuple(x.shape)}".encode())
    h.update(x.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().long().contiguous().numpy().tobytes())
    path = os.path.join(cache_dir(), f"classifier_{h.hexdigest()[:16]}.pt")
    model = SmallClassifier(x.shape[1], num_classes)
    if os.path.isfile(path):
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:
            pass  # unreadable cache: retrain and overwrite
    model = fit_classifier(x, y, num_classes, epochs)
    atomic_torch_save(model.state_dict(), path)
    return model
