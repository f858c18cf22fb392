"""The parts systems share: pygan.parts (PatchGAN, init, image pool), pygan.nn's conv_act and instance norm block,
and pygan.data's paired images."""

import pytest
import torch
from PIL import Image
from torch import nn

from pygan.data import DataError, PairedInMemory, load_paired, pair_files
from pygan.nn import Conv2dAct, conv_act, instance_norm_act_block
from pygan.parts import ImagePool, PatchDiscriminator, at_any_size, gan_init_, patch_receptive_field


def _receptive_field_by_gradient(D: nn.Module, size: int = 320) -> int:
    """The extent of the input pixels one central logit depends on, measured through autograd."""
    x = torch.zeros(1, D.channels, size, size, requires_grad=True)
    y = D(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = x.grad[0].abs().sum((0, 2)).nonzero()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_patch_receptive_field_is_what_the_network_sees(layers):
    torch.manual_seed(0)
    D = PatchDiscriminator(1, 2, layers, fused=False, norm="batch").eval()  # running stats: local
    with torch.no_grad():
        for p in D.parameters():
            p.abs_().add_(0.1)  # no cancellation: every pixel in the field reaches the logit
    assert _receptive_field_by_gradient(D) == patch_receptive_field(layers)
    assert patch_receptive_field(3) == 70 and patch_receptive_field(5) == 286


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_patch_discriminator_matches_its_stock_twin(norm):
    torch.manual_seed(1)
    D = PatchDiscriminator(3, 4, 3, norm=norm)
    stock = D.to_stock()
    assert list(D.state_dict()) == list(stock.state_dict())
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    D, stock = D.double(), stock.double()
    torch.testing.assert_close(D(x), stock(x))
    with pytest.raises(ValueError, match="norm must be one of"):
        PatchDiscriminator(norm="group")


def test_gan_init_draws_weights_from_n_0_002():
    torch.manual_seed(0)
    m = gan_init_(nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.Linear(256, 256)))
    assert abs(float(m[0].weight.detach().std()) - 0.02) < 1e-3 and float(m[0].bias.detach().abs().max()) == 0
    assert abs(float(m[1].weight.detach().mean()) - 1) < 0.01 and float(m[1].bias.detach().abs().max()) == 0
    assert abs(float(m[2].weight.detach().std()) - 0.02) < 1e-3


def test_image_pool_returns_new_images_while_filling_then_mixes():
    pool, g = ImagePool(2), torch.Generator().manual_seed(0)
    x = torch.arange(2.0).view(2, 1, 1, 1)
    assert torch.equal(pool.query(x, g), x)
    out = pool.query(x + 10, g)
    assert all(float(v) in (0.0, 1.0, 10.0, 11.0) for v in out.flatten())


@pytest.mark.parametrize("activation,slope", [("leaky_relu", 0.2), ("relu", 0.0), ("tanh", 0.0)])
def test_conv_act_equals_the_stock_conv_then_activation(activation, slope):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, 3, 2, 1).double()
    ref = nn.Conv2d(3, 5, 3, 2, 1).double()
    ref.load_state_dict(conv.state_dict())
    fused = conv_act(conv, activation, slope)
    assert isinstance(fused, Conv2dAct) and list(fused.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    act = {"leaky_relu": lambda t: nn.functional.leaky_relu(t, slope), "relu": torch.relu, "tanh": torch.tanh}
    expected = act[activation](ref(x))
    torch.testing.assert_close(fused(x), expected)
    g = torch.randn_like(expected)
    got = torch.autograd.grad(fused(x), (x, fused.weight, fused.bias), g)
    want = torch.autograd.grad(expected, (x, ref.weight, ref.bias), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_conv_act_refuses_what_it_cannot_fuse():
    with pytest.raises(ValueError, match="learned slope"):
        conv_act(nn.Conv2d(1, 1, 3), "prelu")
    with pytest.raises(ValueError, match="bias"):
        conv_act(nn.Conv2d(1, 1, 3, bias=False), "relu")
    with pytest.raises(TypeError, match="nn.Conv2d"):
        conv_act(nn.Linear(1, 1), "relu")


def test_instance_norm_act_block_fused_equals_stock():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    fused, stock = (instance_norm_act_block(3, "leaky_relu", 0.2, fused=f).double() for f in (True, False))
    torch.testing.assert_close(fused(x), stock(x))


def _write(root, names, colour, size=(12, 9)):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", size, colour).save(root / n)


def test_paired_folders_match_by_name_and_serve_pairs(tmp_path):
    _write(tmp_path / "a", ["x.png", "y.jpg", "sub_z.png"], (255, 0, 0))
    _write(tmp_path / "b", ["x.png", "y.png"], (0, 0, 255))
    pairs = pair_files(str(tmp_path / "a"), str(tmp_path / "b"))
    assert [(p.rsplit("/", 1)[1], q.rsplit("/", 1)[1]) for p, q in pairs] == [("x.png", "x.png"), ("y.jpg", "y.png")]
    data = load_paired(str(tmp_path / "a"), str(tmp_path / "b"), 8)
    src = PairedInMemory(data, None, torch.Generator().manual_seed(0), 4, slice(0, 4), "cpu")
    a, b = src.next()
    assert a.shape == b.shape == (4, 3, 8, 8)
    assert float(a[:, 0].min()) > 0.9 and float(b[:, 2].min()) > 0.9  # red inputs, blue targets, same draw
    _write(tmp_path / "b", ["w.png"], (0, 0, 0))
    with pytest.raises(DataError, match="no image matching w.png"):
        pair_files(str(tmp_path / "a"), str(tmp_path / "b"))


def test_at_any_size_pads_by_reflection_and_crops_back():
    x = torch.randn(2, 3, 10, 7)
    seen = []

    def net(t):
        seen.append(tuple(t.shape[-2:]))
        return t * 2

    torch.testing.assert_close(at_any_size(net, x, 4), x * 2)
    assert seen == [(12, 8)]  # padded to the multiple: 1 + 1 rows, 0 + 1 columns
    torch.testing.assert_close(at_any_size(lambda t: t[..., :1, :1].expand_as(t), x, 4)[..., :1, :1], x[..., 1:2, :1])
    tiny = torch.randn(1, 1, 2, 3)
    assert at_any_size(lambda t: t, tiny, 16).shape == tiny.shape  # shorter than its pad: the border repeated
