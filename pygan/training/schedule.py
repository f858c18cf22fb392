"""Learning-rate schedules: the factor on a base rate as a function of the step alone, so that a resumed run
continues them exactly. Every schedule a system offers is here, by name."""

from __future__ import annotations

import math


def constant(step: int, steps: int) -> float:
    return 1.0


def linear_decay(step: int, steps: int, start: float = 0.0) -> float:
    """1 before `start` x steps, then falling linearly towards 0 at `steps`."""
    begin = int(start * steps)
    if step < begin:
        return 1.0
    return (steps - step) / (steps - begin + 1)


def poly(step: int, steps: int, power: float = 0.9) -> float:
    """(1 - step / steps) ** power (DeepLab's)."""
    return (1 - step / steps) ** power


def cosine(step: int, steps: int) -> float:
    """Half a cosine from 1 to 0 over the steps."""
    return 0.5 * (1 + math.cos(math.pi * step / steps))


def drop(step: int, steps: int, at: float = 0.8, factor: float = 0.1) -> float:
    """1, then `factor` from `at` x steps on (a step decay)."""
    return factor if step >= at * steps else 1.0


SCHEDULES = {"constant": constant, "linear": linear_decay, "poly": poly, "cosine": cosine, "drop": drop}
