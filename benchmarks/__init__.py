"""pygan's benchmark suite: pygan against stock PyTorch (eager and torch.compile), op by op and whole steps.

Each suite module listed in SUITES defines `cases(device: str, quick: bool) -> list[Case]`. `python -m benchmarks`
runs them (interleaved variants, medians) and prints a markdown table / writes JSON; the same cases run as
pytest-benchmark tests (benchmarks/test_benchmarks.py). Benchmarks are never timed tests: nothing asserts speed.
"""

import os

from pygan.systems import SYSTEMS

# the ops and blocks, then a suite per GAN system that has one (benchmarks/<system>.py), then the input pipeline
SUITES = ([f"benchmarks.{name}" for name in ("bn_act", "bias_act", "instance_norm_act", "gan_loss", "blocks")]
          + [f"benchmarks.{name}" for name in SYSTEMS
             if os.path.isfile(os.path.join(os.path.dirname(__file__), f"{name}.py"))]
          + ["benchmarks.data_stream"])
