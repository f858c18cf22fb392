"""The DCGAN system's commands: `pygan train dcgan`, `pygan interpolate`, and `pygan sample` / `pygan eval` on its
checkpoints."""

from __future__ import annotations

import json

import torch

from pygan._io import save_grid
from pygan.dcgan.evaluate import (CHECKPOINT, checkpoint_wasserstein_estimate, format_metrics, load_generator,
                                  sample_in_chunks)
from pygan.dcgan.trainer import DCGANTrainer
from pygan.metrics import evaluate_digits
from pygan.training.cli import CheckpointCommand, CLIError, add_checkpoint_command, add_train_command, positive


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "dcgan", DCGANTrainer, "DCGAN (optionally class-conditional)",
                      "Train a DCGAN. With no options: the embedded digits at 32x32, finishing in minutes on a CPU, "
                      "then scored by the digits classifier.", report=format_metrics)
    what = "`pygan train dcgan`"

    def generator_options(p):
        p.add_argument("--no-ema", action="store_true", help="use the trained generator instead of its EMA")
        p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
        return p

    s = generator_options(CheckpointCommand("sample", "write a grid of generated images",
                                            "Write a PNG grid of generated images.", _sample, what))
    s.add_argument("--n", type=int, default=64, help="number of images (default: 64)")
    s.add_argument("--out", default="samples.png", help="output PNG (default: samples.png)")
    s.add_argument("--label", type=int, default=None,
                   help="conditional models: generate this class only (default: classes in turn)")
    s.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG (default: 2)")

    i = generator_options(add_checkpoint_command(
        commands, "interpolate", "latent-space interpolation rows",
        "Write a PNG whose rows walk in a straight line between two random latent vectors.", _interpolate, what))
    i.add_argument("--rows", type=int, default=8, help="number of interpolations (default: 8)")
    i.add_argument("--steps", type=int, default=10, help="images per row (default: 10)")
    i.add_argument("--out", default="interpolate.png", help="output PNG (default: interpolate.png)")
    i.add_argument("--label", type=int, default=None, help="conditional models: class of every row (default: row index)")
    i.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG (default: 2)")

    e = generator_options(CheckpointCommand(
        "eval", "score a digits generator", "Score a generator trained on the digits with the digits classifier: "
        "confidence, class histogram, Fréchet distances with bootstrap intervals.", _eval, what))
    e.add_argument("--n", type=int, default=1000, help="generated images to score (default: 1000)")
    e.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the intervals (default: 100)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return {CHECKPOINT.name: {"eval": e, "sample": s}}


def _labels(ckpt: dict, n: int, label: int | None):
    k = ckpt["num_classes"]
    if not k:
        if label is not None:
            raise CLIError("--label given but the model is not conditional")
        return None
    if label is not None and not 0 <= label < k:
        raise CLIError(f"--label must be in 0..{k - 1}, got {label}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % k


def _sample(a) -> int:
    positive("--n", a.n)
    positive("--scale", a.scale)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    y = _labels(ckpt, a.n, a.label)
    z = torch.randn(a.n, G.latent_dim, generator=torch.Generator().manual_seed(a.seed))
    with torch.no_grad():
        x = G(z, y) if y is not None else G(z)
    nrow = ckpt["num_classes"] if y is not None and a.label is None and a.n % ckpt["num_classes"] == 0 else None
    save_grid(x, a.out, nrow, a.scale)
    print(a.out)
    return 0


def _interpolate(a) -> int:
    positive("--rows", a.rows)
    positive("--steps", a.steps)
    positive("--scale", a.scale)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    g = torch.Generator().manual_seed(a.seed)
    z0, z1 = torch.randn(2, a.rows, G.latent_dim, generator=g)
    t = torch.linspace(0, 1, a.steps)[None, :, None]
    z = (z0[:, None] * (1 - t) + z1[:, None] * t).reshape(-1, G.latent_dim)
    y = None
    if ckpt["num_classes"]:
        y = _labels(ckpt, a.rows, a.label).repeat_interleave(a.steps)
    with torch.no_grad():
        x = G(z, y) if y is not None else G(z)
    save_grid(x, a.out, a.steps, a.scale)
    print(a.out)
    return 0


def _eval(a) -> int:
    positive("--n", a.n)
    positive("--bootstrap", a.bootstrap)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    if ckpt["config"]["data"] != "digits" or G.channels != 1:
        raise CLIError("pygan eval scores generators trained on the embedded digits (--data digits); "
                       "for other data use pygan.metrics.fid with a feature extractor")
    y = _labels(ckpt, a.n, None)
    z = torch.randn(a.n, G.latent_dim, generator=torch.Generator().manual_seed(a.seed))
    x = sample_in_chunks(G, z, y)
    m = {"step": ckpt["step"], **evaluate_digits(x, y, n_boot=a.bootstrap, seed=a.seed)}
    if ckpt["config"].get("loss") == "wasserstein":  # a critic: its estimate means something
        m["wasserstein_estimate"] = checkpoint_wasserstein_estimate(G, ckpt)
    if a.json:
        print(json.dumps(m, indent=1))
    else:
        print(f"checkpoint {a.checkpoint} (step {m['step']})")
        print(format_metrics(m))
    return 0
