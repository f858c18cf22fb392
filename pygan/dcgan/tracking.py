"""Does the critic's Wasserstein estimate track sample quality? Over the kept checkpoints of digits runs
(`--keep-checkpoints`): the estimate of each checkpoint's critic (held-out digits vs its samples, the batch the run
logged) beside the digits Fréchet distance of its samples, their Spearman rank correlation, and a figure with the
two curves side by side.

    python -m pygan.dcgan.tracking runs/wgan-gp [runs/wgan ...] --figure docs/wgan-tracking.png
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import torch

from pygan.dcgan.evaluate import checkpoint_wasserstein_estimate, load_generator, sample_in_chunks
from pygan.metrics import evaluate_digits


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def track_run(run: str, n: int = 1000, seed: int = 12345) -> dict:
    """{'steps', 'wasserstein_estimate', 'frechet_distance', 'spearman'} over run/checkpoints/step_*.pt."""
    paths = sorted(glob.glob(os.path.join(run, "checkpoints", "step_*.pt")))
    if len(paths) < 3:
        raise ValueError(f"{run}: need at least 3 kept checkpoints (train with --keep-checkpoints), got {len(paths)}")
    steps, west, fd = [], [], []
    for path in paths:
        G, ckpt = load_generator(path)
        z = torch.randn(n, G.latent_dim, generator=torch.Generator().manual_seed(seed))
        y = torch.arange(n) % ckpt["num_classes"] if ckpt["num_classes"] else None
        steps.append(ckpt["step"])
        west.append(checkpoint_wasserstein_estimate(G, ckpt))
        fd.append(evaluate_digits(sample_in_chunks(G, z, y), y, n_boot=0)["frechet_distance"])
    return {"run": run, "steps": steps, "wasserstein_estimate": west, "frechet_distance": fd,
            "spearman": spearman(west, fd)}


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in results:
        label = f"{os.path.basename(os.path.normpath(r['run']))} (Spearman {r['spearman']:.2f})"
        a.plot(r["steps"], r["wasserstein_estimate"], marker="o", ms=3, label=label)
        b.plot(r["steps"], r["frechet_distance"], marker="o", ms=3, label=label)
    a.set(title="critic's Wasserstein estimate (held-out digits)", xlabel="generator step")
    b.set(title="digits Fréchet distance (classifier features)", xlabel="generator step", yscale="log")
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pygan.dcgan.tracking", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders trained on the digits with --keep-checkpoints")
    p.add_argument("--figure", help="write the side-by-side curves to this PNG")
    p.add_argument("--json", help="write the numbers to this JSON file")
    a = p.parse_args(argv)
    results = [track_run(r) for r in a.runs]
    for r in results:
        print(f"{r['run']}: Spearman(Wasserstein estimate, Fréchet distance) = {r['spearman']:.3f} over steps "
              f"{r['steps'][0]}..{r['steps'][-1]} ({len(r['steps'])} checkpoints)")
        for s, w, f in zip(r["steps"], r["wasserstein_estimate"], r["frechet_distance"]):
            print(f"  step {s:6d}  W {w:9.4f}  FD {f:9.3f}")
    if a.figure:
        plot(results, a.figure)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
