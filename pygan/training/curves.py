"""The loss-curve plot of a run."""

from __future__ import annotations

from pygan._io import atomic_path


def plot_curves(path: str, history: list[dict], panels: list[tuple[str, dict[str, str]]]) -> None:
    """A PNG with one panel per (y label, {record key: legend label}) over the logged steps; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels)), sharex=True, squeeze=False)
    for ax, (ylabel, keys) in zip(axes[:, 0], panels):
        for key, label in keys.items():
            pts = [(r["step"], r[key]) for r in history if key in r]
            if pts:
                ax.plot(*zip(*pts), label=label)
        ax.set_ylabel(ylabel)
        if ax.lines:
            ax.legend()
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
