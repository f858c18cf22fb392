"""`--amp auto`: the fastest configuration measured at equal quality for the machine a run is on.

On a CPU with native bf16 arithmetic (AVX512-BF16 or AMX, which oneDNN's bf16 convolutions use) bf16 autocast +
channels_last made the main job's step 1.6x faster at comparable scores on three seeds (docs/dcgan.md,
benchmarks/README.md); elsewhere, including GPUs (not yet measured there), auto means fp32. Parameters, optimizer
state and losses stay fp32 either way: autocast only lowers the convolutions' and matmuls' inputs. An explicit
channels_last (--channels-last / --no-channels-last, or a config's channels_last=True / False) wins over auto's
choice of memory format, as an explicit option does everywhere; left unset (None) it is auto's choice, or off.
"""

from __future__ import annotations

import torch

from pygan._compat import cpu_has_native_bf16


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX) that oneDNN uses."""
    return cpu_has_native_bf16()


def resolve_precision(amp: str, channels_last: bool | None, device: torch.device) -> tuple[str, bool, str]:
    """(amp, channels_last, why) for a run on `device`: 'auto' resolved, everything else as given; channels_last
    None (not given) is auto's choice under 'auto' and off otherwise, a given True / False is kept."""
    if amp != "auto":
        channels_last = bool(channels_last)
        return amp, channels_last, f"--amp {amp}" + (" --channels-last" if channels_last else "")
    flag = "--channels-last" if channels_last else "--no-channels-last"
    given = "" if channels_last is None else f"; {flag} as given"
    if device.type == "cpu" and native_bf16_cpu():
        if channels_last is None:
            return "bf16", True, ("--amp auto: bf16 autocast + channels_last, the fastest measured configuration on "
                                  "a CPU with native bf16 (--amp none forces fp32)")
        return "bf16", channels_last, ("--amp auto: bf16 autocast, the fastest measured on a CPU with native bf16 "
                                       "(--amp none forces fp32)" + given)
    why = f"--amp auto: fp32 (no native bf16 measured faster on this {device.type})"
    return "none", bool(channels_last), why + given
