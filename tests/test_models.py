import pytest
import torch

from pygan.dcgan.models import SIZES, DCGANDiscriminator, DCGANGenerator
from pygan.nn import BatchNormAct2d, Conv2dBNAct, ConvTranspose2dBNAct


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels,num_classes", [(1, 0), (3, 0), (1, 10)])
def test_shapes(size, channels, num_classes):
    G = DCGANGenerator(size, channels, latent_dim=8, width=4, num_classes=num_classes)
    D = DCGANDiscriminator(size, channels, width=4, num_classes=num_classes)
    y = torch.tensor([0, 9 % max(num_classes, 1)]) if num_classes else None
    x = G(torch.randn(2, 8), y)
    assert x.shape == (2, channels, size, size)
    assert x.abs().max() <= 1
    assert D(x, y).shape == (2,)
    n_down = sum(isinstance(m, Conv2dBNAct) for m in D.modules())
    n_up = sum(isinstance(m, ConvTranspose2dBNAct) for m in G.modules())
    assert 2 ** (n_down + 3) == size and 2 ** (n_up + 2) == size


def test_init_is_dcgan():
    G = DCGANGenerator(64, 3, latent_dim=100, width=64)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


@pytest.mark.parametrize("num_classes", [0, 10])
def test_stock_export_is_equivalent(num_classes):
    torch.manual_seed(0)
    G = DCGANGenerator(32, 1, latent_dim=8, width=8, num_classes=num_classes)
    D = DCGANDiscriminator(32, 1, width=8, num_classes=num_classes)
    y = torch.arange(6) % num_classes if num_classes else None
    z = torch.randn(6, 8)
    for model, inp in ((G, z), (D, torch.rand(6, 1, 32, 32) * 2 - 1)):
        # train a little so BN statistics and weights are not at their initial values
        opt = torch.optim.SGD(model.parameters(), 0.1)
        for _ in range(2):
            opt.zero_grad()
            model(inp, y).square().mean().backward()
            opt.step()
        stock = model.to_stock()
        fused = (BatchNormAct2d, Conv2dBNAct, ConvTranspose2dBNAct)
        assert not any(isinstance(m, fused) for m in stock.modules())
        assert all(type(m).__module__.startswith("torch.") for m in stock.modules() if not list(m.children()))
        sd, ssd = model.state_dict(), stock.state_dict()
        assert list(sd) == list(ssd)
        assert all(torch.equal(sd[k], ssd[k]) for k in sd)
        for train in (True, False):
            model.train(train)
            stock.train(train)
            torch.testing.assert_close(model(inp, y), stock(inp, y), rtol=1e-4, atol=1e-5)
        loaded = type(model)(**{**model.config, "fused": False})
        loaded.load_state_dict(sd)  # a fused state_dict loads into the stock model unchanged


def test_bad_arguments():
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(48)
    with pytest.raises(ValueError, match="power of two"):
        DCGANDiscriminator(256)
    with pytest.raises(ValueError, match="num_classes"):
        DCGANGenerator(32, num_classes=1)
    G = DCGANGenerator(16, 1, latent_dim=4, width=4, num_classes=3)
    with pytest.raises(ValueError, match="needs labels"):
        G(torch.randn(2, 4))
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        DCGANDiscriminator(16, 1, width=4)(torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long))
