"""pygan's benchmark suite: pygan against stock PyTorch (eager and torch.compile), op by op and whole steps.

Each suite module listed in SUITES defines `cases(device: str, quick: bool) -> list[Case]`. `python -m benchmarks`
runs them (interleaved variants, medians) and prints a markdown table / writes JSON; the same cases run as
pytest-benchmark tests (benchmarks/test_benchmarks.py). Benchmarks are never timed tests: nothing asserts speed.
"""

SUITES = [
    "benchmarks.bn_act",
    "benchmarks.bias_act",
    "benchmarks.instance_norm_act",
    "benchmarks.gan_loss",
    "benchmarks.blocks",
    "benchmarks.dcgan",
    "benchmarks.srgan",
    "benchmarks.cyclegan",
    "benchmarks.segmentation",
    "benchmarks.text2image",
    "benchmarks.data_stream",
]
