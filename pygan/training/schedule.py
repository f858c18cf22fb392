"""Learning-rate schedules as functions of the step alone, so that a resumed run continues them exactly."""


def linear_decay(step: int, steps: int, start: float) -> float:
    """The factor on the base rate: 1 before `start` x steps, then falling linearly towards 0 at `steps`."""
    begin = int(start * steps)
    if step < begin:
        return 1.0
    return (steps - step) / (steps - begin + 1)
