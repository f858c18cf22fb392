"""The discriminator's differentiable augmentation (pygan.training.augment)."""

import pytest
import torch

from pygan.training.augment import augment, parse_policy


def draw(x, policy, seed=0, n=None, mine=slice(None)):
    return augment(x, policy, n or x.shape[0], torch.Generator().manual_seed(seed), mine)


@pytest.mark.parametrize("shape", [(5, 3, 16, 16), (1, 1, 9, 13)])
def test_translation_shifts_whole_images_with_the_border_replicated(shape):
    x = torch.randn(shape, dtype=torch.float64)
    y = draw(x, ("translation",), seed=3)
    h, w = shape[-2:]
    rh, rw = max(1, round(h / 8)), max(1, round(w / 8))
    for i in range(shape[0]):
        pad = torch.nn.functional.pad(x[i:i + 1], (rw, rw, rh, rh), mode="replicate")[0]
        shifts = [(dy, dx) for dy in range(-rh, rh + 1) for dx in range(-rw, rw + 1)
                  if torch.equal(y[i], pad[:, rh - dy:rh - dy + h, rw - dx:rw - dx + w])]
        assert len(shifts) >= 1


def test_cutout_erases_one_square_and_nothing_else():
    x = torch.rand(64, 2, 12, 12) + 1  # no zeros of its own
    y = draw(x, ("cutout",), seed=1)
    erased = y == 0
    assert torch.equal(y[~erased], x[~erased]) and torch.equal(erased[:, 0], erased[:, 1])
    area = erased[:, 0].sum((1, 2))
    assert area.max() == 36 and area.min() >= 9  # a 6x6 square, clipped where it leaves the image
    rows, cols = erased[:, 0].any(2), erased[:, 0].any(1)
    assert torch.equal(area, rows.sum(1) * cols.sum(1))  # a rectangle


def test_color_keeps_a_flat_image_flat_and_changes_brightness():
    x = torch.full((8, 3, 4, 4), 0.25)
    y = draw(x, ("color",))
    assert torch.allclose(y, y[:, :1, :1, :1].expand_as(y)) and not torch.allclose(y, x)


def test_each_rank_gets_its_slice_of_the_global_draw():
    x = torch.randn(8, 3, 16, 16)
    whole = draw(x, ("color", "translation", "cutout"), seed=5)
    for mine in (slice(0, 4), slice(4, 8)):
        assert torch.equal(draw(x[mine], ("color", "translation", "cutout"), seed=5, n=8, mine=mine), whole[mine])


def test_gradients_pass_through():
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: draw(t, ("color", "translation", "cutout"), seed=2), (x,))


def test_policy_parsing():
    assert parse_policy(" translation, cutout ") == ("translation", "cutout") and parse_policy("") == ()
    with pytest.raises(ValueError, match="augment: unknown transformation.*rotation"):
        parse_policy("translation,rotation")
