"""`--amp auto`: the fastest configuration measured at equal quality for the machine a run is on.

On a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, which oneDNN's bf16 convolutions use) bf16 autocast +
channels_last made the main job's step 1.6x faster at comparable scores on three seeds (docs/dcgan.md,
benchmarks/README.md); elsewhere, including GPUs (not yet measured there), auto means fp32. Parameters, optimizer state and losses stay
fp32 either way: autocast only lowers the convolutions' and matmuls' inputs.
"""

from __future__ import annotations

import torch

from pygan._compat import cpu_has_native_bf16


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX) that oneDNN uses."""
    return cpu_has_native_bf16()


def resolve_precision(amp: str, channels_last: bool, device: torch.device) -> tuple[str, bool, str]:
    """(amp, channels_last, why) for a run on `device`: 'auto' resolved, everything else as given."""
    if amp != "auto":
        return amp, channels_last, f"--amp {amp}" + (" --channels-last" if channels_last else "")
    if device.type == "cpu" and native_bf16_cpu():
        return "bf16", True, ("--amp auto: bf16 autocast + channels_last, the fastest measured configuration on a "
                              "CPU with native bf16 (--amp none forces fp32)")
    return "none", channels_last, f"--amp auto: fp32 (no native bf16 measured faster on this {device.type})"
