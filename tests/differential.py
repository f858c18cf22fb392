"""Shared pieces of the differential suite (tests/test_differential_*.py): the memory forms a caller can hand an op,
hypothesis settings, and the comparisons.

A form changes a tensor's strides, never its values: contiguous, channels_last, other dense orders, a sliced
(non-dense) view, and the strides a size-1 dimension may carry (any value is legal there: `.view()` of a
channels_last (1, C, H, W) tensor gives its batch dimension stride C, which is what stock instance_norm's
backward feeds batch_norm). Gradients may also be stride-0 (what `.sum().backward()` and `expand` produce).
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Seeded and bounded: the same examples on every run (derandomize), no example database written into the
# checkout, no deadline (a first call may build kernels). PYGAN_DIFFERENTIAL_EXAMPLES scales the search up for a
# local hunt; CI uses the default.
SCALE = float(os.environ.get("PYGAN_DIFFERENTIAL_EXAMPLES", "1"))


def bounded(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), derandomize=True, database=None, deadline=None,
                    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                           HealthCheck.large_base_example])


DENSE_FORMS = ("contiguous", "channels_last", "size1_strides", "reversed", "sliced")
GRAD_FORMS = DENSE_FORMS + ("expanded", "scalar_expanded")


def _dense_in_order(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """t's values stored with dims in `order` (outermost first)."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return t.permute(order).contiguous().permute(inverse)


def arrange(t: torch.Tensor, form: str) -> torch.Tensor:
    """A tensor equal to t, laid out as `form` says (the form is a no-op where it cannot apply, e.g. channels_last
    on a 2-d tensor). Not for the stride-0 forms (see gradient())."""
    nd = t.dim()
    if form == "contiguous" or nd == 0:
        return t.contiguous()
    if form == "channels_last":
        return _dense_in_order(t, [0] + list(range(2, nd)) + [1]) if nd >= 3 else t.contiguous()
    if form == "reversed":  # a transposed view: the last dim outermost
        return _dense_in_order(t, list(range(nd - 1, -1, -1)))
    if form == "sliced":  # every other element of a larger buffer along the last dim: not dense
        wide = t.new_full(t.shape[:-1] + (2 * t.shape[-1],), float("nan"))
        wide[..., ::2] = t
        return wide[..., ::2]
    if form == "size1_strides":
        # channels_last (or contiguous below 3 dims), then every size-1 dim given a stride no allocation would
        # choose: the batch dim C (what `.view` of a channels_last (1, C, H, W) tensor gives it), others 1
        base = arrange(t, "channels_last")
        strides = list(base.stride())
        for d in range(nd):
            if t.shape[d] == 1:
                strides[d] = t.shape[1] * base.stride(1) if d == 0 and nd > 1 else 1
        return base.as_strided(t.shape, strides)
    raise ValueError(f"unknown form {form!r}")


def gradient(shape, dtype, form: str, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """An incoming gradient of `shape` in `form` on `device`: random values (drawn on the CPU), or stride-0 ones."""
    draw = lambda s: torch.randn(s, dtype=torch.float64, generator=generator).to(device=device, dtype=dtype)  # noqa: E731
    if form == "scalar_expanded":  # (loss.sum()).backward(): one value broadcast everywhere
        return draw(()).expand(shape)
    if form == "expanded":  # constant along the last dim (stride 0 there)
        return draw(tuple(shape[:-1]) + (1,)).expand(shape)
    return arrange(draw(tuple(shape)), form)


def describe(t: torch.Tensor | None) -> str:
    return "None" if t is None else f"{tuple(t.shape)} strides {t.stride()} {str(t.dtype).replace('torch.', '')}"


# Shapes: N in {1, 2, 3}, C in {1, 3, 33} (33: more than a SIMD vector or a channels-last tile), planes of 1 x k,
# k x 1 and odd sizes, 1 to 3 spatial dims.
@st.composite
def shapes(draw, min_plane: int = 1, spatial_dims=(1, 2, 3)):
    n = draw(st.sampled_from([1, 2, 3]))
    c = draw(st.sampled_from([1, 3, 33]))
    nd = draw(st.sampled_from(spatial_dims))
    sizes = [draw(st.sampled_from([1, 2, 5, 7])) for _ in range(nd)]
    if nd and torch.Size(sizes).numel() < min_plane:  # a plane of one value: make its last dim 2 (a 1 x 2 plane)
        sizes[-1] = 2
    return (n, c) + tuple(sizes)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    """|actual - expected| <= tol * max(1, max |expected|), elementwise, with the worst error in the message."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} x {scale:.3g}"


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.double() - expected.double()).abs().max().item() if expected.numel() else 0.0


# Low precision: the fused result's error against float64 may be at most twice the same-precision stock
# computation's, plus a few rounding steps of the dtype (stock may round luckily on a small case).
ULP = {torch.float32: 2.0**-23, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def within_stock(fused_err: float, stock_err: float, dtype: torch.dtype, scale: float, what: str) -> None:
    slack = 8 * ULP[dtype] * max(1.0, scale)
    assert fused_err <= 2 * stock_err + slack, (
        f"{what}: fused error {fused_err:.3g} > 2 x stock's {stock_err:.3g} + {slack:.2g}")
