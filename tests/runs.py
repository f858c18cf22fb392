"""What the systems' short-run tests share: a run that must move both networks, and its log's records."""

import json
import os

import torch


def train_moving_both(trainer) -> dict:
    """trainer.train(), asserting that every parameter of G and of D changed; returns train()'s metrics."""
    before = [[p.detach().clone() for p in net.parameters()] for net in (trainer.G, trainer.D)]
    metrics = trainer.train()
    for name, old, net in zip("GD", before, (trainer.G, trainer.D)):
        still = [i for i, (a, b) in enumerate(zip(old, net.parameters())) if torch.equal(a, b)]
        assert not still, f"{name}'s parameters {still} did not change"
    return metrics


def log_records(out) -> list[dict]:
    """The training records of a run folder's log.jsonl (its precision lines left out)."""
    with open(os.path.join(out, "log.jsonl")) as f:
        return [r for r in map(json.loads, f) if "precision" not in r]
