"""Using a trained DCGAN: the sampling generator of a checkpoint (BatchNorm statistics recalibrated for its own
weights), the digits metrics of its samples, and the critic's Wasserstein estimate."""

from __future__ import annotations


import torch

from pygan._io import write_json
from pygan.data import ImageData, digits_split, to_float
from pygan.dcgan.models import DCGANDiscriminator, DCGANGenerator
from pygan.training import CheckpointFormat, recalibrate_batch_norm
from pygan.metrics import evaluate_digits

CHECKPOINT = CheckpointFormat("pygan-dcgan-checkpoint-v1", "DCGAN")
read_checkpoint = CHECKPOINT.read


@torch.no_grad()
def sample_in_chunks(G, z: torch.Tensor, labels: torch.Tensor | None = None, chunk: int = 500) -> torch.Tensor:
    """G(z, labels) evaluated `chunk` latents at a time."""
    return torch.cat([G(z[i:i + chunk], None if labels is None else labels[i:i + chunk])
                      for i in range(0, len(z), chunk)])


def digits_metrics(sample, latent_dim: int, num_classes: int, n: int, device, n_boot: int = 100,
                   seed: int = 12345) -> dict:
    """Digits metrics of n samples of `sample(z, labels)` from fixed evaluation noise (`seed`, independent of
    training); labels balanced over the classes when conditional."""
    g = torch.Generator(device).manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=g, device=device)
    y = torch.arange(n, device=device) % num_classes if num_classes else None
    return evaluate_digits(sample(z, y).cpu(), y, n_boot=n_boot)


def write_digits_metrics(sample, latent_dim: int, num_classes: int, step: int, device, n: int, path: str,
                         extra: dict | None = None) -> dict:
    """digits_metrics with the step (and `extra`), written (atomically) to `path` as JSON; returned."""
    metrics = {"step": step, **digits_metrics(sample, latent_dim, num_classes, n, device), **(extra or {})}
    write_json(path, metrics)
    return metrics


WASSERSTEIN_BATCH = 500   # at most this many real images (and as many samples) per estimate
WASSERSTEIN_SEED = 7919   # offset of the estimate's latent seed from the run's: a stream of its own


def wasserstein_batch(data, source: str, size: int, channels: int, latent_dim: int, num_classes: int,
                      seed: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The fixed batch of the critic's Wasserstein estimate: (real images, latents, labels or None). Real images are
    the held-out digits for the embedded digits; for other data (which has no held-out split) a fixed random subset
    of the training images. Drawn from generators of their own: the training's random stream is untouched."""
    g = torch.Generator().manual_seed(seed + WASSERSTEIN_SEED)
    if source == "digits" and channels == 1:
        data = digits_split(size)[1]
    idx = torch.randperm(len(data), generator=g)[:WASSERSTEIN_BATCH]
    if isinstance(data, ImageData):
        real, labels = to_float(data.images[idx]), data.labels[idx] if data.labels is not None else None
    else:  # a batch source (pygan.data.batches)
        real, labels = data.take(idx)
    labels = labels.long() if num_classes else None
    z = torch.randn(len(idx), latent_dim, generator=g)
    return real.to(device), z.to(device), None if labels is None else labels.to(device)


@torch.no_grad()
def critic_estimate(D, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None,
                    chunk: int = 500) -> float:
    """E[D(real)] - E[D(fake)] with D in eval mode (restored after): the critic's estimate of the Wasserstein
    distance (up to its Lipschitz constant) between the two batches."""
    training = D.training
    D.eval()
    try:
        def mean(x):
            parts = [x[i:i + chunk].float() for i in range(0, len(x), chunk)]
            if labels is not None:
                return torch.cat([D(p, labels[i * chunk:(i + 1) * chunk]) for i, p in enumerate(parts)]).float().mean()
            return torch.cat([D(p) for p in parts]).float().mean()

        return float(mean(real) - mean(fake))
    finally:
        D.train(training)


def load_critic(ckpt: dict, device: str = "cpu") -> DCGANDiscriminator:
    D = DCGANDiscriminator(**ckpt["D_config"])
    D.load_state_dict(ckpt["D"])
    return D.to(device).eval()


def checkpoint_wasserstein_estimate(G, ckpt: dict) -> float:
    """The critic's Wasserstein estimate of a checkpoint for generator G, on the batch its run logged."""
    cfg = ckpt["config"]
    D = load_critic(ckpt)
    data = digits_split(cfg["size"])[1] if cfg["data"] == "digits" else None
    if data is None:
        raise ValueError("the Wasserstein estimate of a checkpoint needs its data: only --data digits is supported")
    real, z, y = wasserstein_batch(data, cfg["data"], cfg["size"], G.channels, G.latent_dim, ckpt["num_classes"],
                                   cfg["seed"], "cpu")
    return critic_estimate(D, real, sample_in_chunks(G, z, y), y)


def format_metrics(m: dict) -> str:
    lo, hi = m["frechet_distance_ci95"]
    rlo, rhi = m["real_train_frechet_distance_ci95"]
    lines = [
        f"digits classifier held-out accuracy: {m['classifier_held_out_accuracy']:.3f}",
        f"samples: {m['n_samples']}, mean classifier confidence: {m['mean_confidence']:.3f}",
        "class histogram: " + " ".join(f"{c}:{h:.3f}" for c, h in enumerate(m["class_histogram"]))
        + f"  (min {m['min_class_fraction']:.3f}, KL from uniform {m['kl_from_uniform']:.4f})",
        f"classifier Fréchet distance to held-out digits: {m['frechet_distance']:.3f} [95% CI {lo:.3f}, {hi:.3f}]; "
        f"real train vs held-out: {m['real_train_frechet_distance']:.3f} [{rlo:.3f}, {rhi:.3f}]; "
        f"ratio {m['frechet_ratio']:.2f}",
    ]
    if "kid" in m:
        lines.append(f"KID to held-out digits: {m['kid']:.4g} (spread {m['kid_std']:.3g}); real train vs held-out: "
                     f"{m['real_train_kid']:.4g} ({m['real_train_kid_std']:.3g})")
    if "recall" in m:
        lines.append("vs held-out digits (real train's in parentheses): " + ", ".join(
            f"{k} {m[k]:.3f} [95% CI {m[k + '_ci95'][0]:.3f}, {m[k + '_ci95'][1]:.3f}] ({m['real_train_' + k]:.3f})"
            for k in ("precision", "recall", "density", "coverage")) + f"; recall ratio {m['recall_ratio']:.2f}")
    if "label_accuracy" in m:
        lines.append(f"conditional label accuracy: {m['label_accuracy']:.3f}")
    if "wasserstein_estimate" in m:
        lines.append(f"critic's Wasserstein estimate (held-out digits vs samples): {m['wasserstein_estimate']:.4f}")
    return "\n".join(lines)


def recalibrate_bn(G: DCGANGenerator, num_classes: int, batches: int = 8, batch_size: int = 256,
                   seed: int = 0) -> DCGANGenerator:
    """G with its BatchNorm statistics recomputed over fresh latent batches (own seeded generator), in eval mode."""
    p = next(G.parameters())
    g = torch.Generator(p.device).manual_seed(seed)

    def forward(_):
        z = torch.randn(batch_size, G.latent_dim, generator=g, device=p.device)
        y = torch.randint(0, num_classes, (batch_size,), generator=g, device=p.device) if num_classes else None
        G(z, y)

    return recalibrate_batch_norm(G, forward, batches)


def load_generator(path: str, ema: bool = True, device: str = "cpu") -> tuple[DCGANGenerator, dict]:
    """(generator in eval mode, checkpoint) from a checkpoint file: the sampling generator (EMA weights when
    trained with EMA, BatchNorm statistics recalibrated), or with ema=False the trained G itself."""
    ckpt = read_checkpoint(path)
    G = DCGANGenerator(**ckpt["G_config"])
    if ema:
        G.load_state_dict(CHECKPOINT.generator_state(ckpt))
    else:
        G.load_state_dict(ckpt["G"])
        recalibrate_bn(G, ckpt["num_classes"], seed=ckpt["config"]["seed"])
    return G.to(device).eval(), ckpt
