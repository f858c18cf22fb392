"""SRResNet / SRGAN: models vs stock, PSNR/SSIM vs scikit-image, tiling, VGG loss, data, trainer, CLI."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pygan.cli import main
from pygan.data import DataError
from pygan.fuse import fold_bn
from pygan.sr import SRConfig, SRTrainer, psnr, receptive_radius, read_checkpoint, rgb_to_y, ssim, upscale
from pygan.sr.models import SRResidualBlock, SRDiscriminator, SRResNet, icnr_
from pygan.sr.data import PairSampler, load_pairs, make_lr, read_image
from pygan.sr.vgg import VGGFeatureLoss, VGGWeightsMissing
from runs import log_records, train_moving_both


def _randomize_bn(model):
    """Non-trivial BN statistics and affine parameters, so that eval-mode tests are not identities."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


# ---------------------------------------------------------------- models
@pytest.mark.parametrize("scale,bicubic_skip", [(2, False), (4, False), (4, True)])
def test_srresnet_shapes_and_stock_twin(scale, bicubic_skip):
    G = _randomize_bn(SRResNet(scale, 3, width=8, blocks=2, bicubic_skip=bicubic_skip))
    x = torch.rand(2, 3, 11, 7)
    stock = G.to_stock()
    assert list(stock.state_dict()) == list(G.state_dict())
    assert not any("BatchNormAct" in type(m).__name__ for m in stock.modules())
    assert any("BatchNormAct" in type(m).__name__ for m in G.modules())
    for train in (True, False):
        G.train(train), stock.train(train)
        y = G(x)
        assert y.shape == (2, 3, 11 * scale, 7 * scale)
        torch.testing.assert_close(y, stock(x), atol=1e-5, rtol=1e-5)


def test_bicubic_skip_adds_the_bicubic_upscaling():
    G = _randomize_bn(SRResNet(4, 3, width=8, blocks=2, bicubic_skip=True)).eval()
    paper = SRResNet(4, 3, width=8, blocks=2).eval()
    paper.load_state_dict(G.state_dict())  # same parameters: the skip adds none
    x = torch.rand(2, 3, 9, 6)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    torch.testing.assert_close(G(x), paper(x) + bicubic)
    with pytest.raises(ValueError, match="bicubic_skip must be True or False"):
        SRResNet(4, bicubic_skip="yes")


def test_residual_block_matches_stock_modules():
    blk = _randomize_bn(SRResNet(2, 3, width=6, blocks=1)).body[0]
    assert list(blk.state_dict()) == list(SRResidualBlock(6, fused=False).state_dict())  # the stock block's keys
    # the stock computation, written out with torch.nn modules carrying the block's weights
    b = blk.body
    conv1, conv2 = torch.nn.Conv2d(6, 6, 3, 1, 1, bias=False), torch.nn.Conv2d(6, 6, 3, 1, 1, bias=False)
    bn1, bn2, act = torch.nn.BatchNorm2d(6), torch.nn.BatchNorm2d(6), torch.nn.PReLU()
    conv1.load_state_dict(b[0].conv.state_dict())
    conv2.load_state_dict(b[1].state_dict())
    bn1.load_state_dict(b[0].bn.state_dict())
    bn2.load_state_dict(b[2].state_dict())
    act.weight.data.copy_(b[0].act.weight)
    x = torch.randn(3, 6, 9, 5, dtype=torch.float64)
    for mod in (blk, conv1, conv2, bn1, bn2, act):
        mod.double()
    for train in (True, False):
        for mod in (blk, bn1, bn2):
            mod.train(train)
        expect = x + bn2(conv2(act(bn1(conv1(x)))))
        torch.testing.assert_close(blk(x), expect)


def test_upsampling_stage_is_conv_pixelshuffle_prelu():
    G = SRResNet(4, 3, width=4, blocks=1)
    kinds = [type(m).__name__ for m in G.upsample]
    assert kinds == ["Conv2d", "PixelShuffle", "PReLU"] * 2


def test_subpixel_convolutions_start_as_nearest_neighbour_upsampling():
    # ICNR: at initialisation conv + PixelShuffle(2) == a conv with a quarter of the outputs, then nearest x2
    torch.manual_seed(0)
    G = SRResNet(4, 3, width=5, blocks=1)
    conv, shuffle = G.upsample[0], G.upsample[1]
    x = torch.randn(2, 5, 7, 9)
    base = torch.nn.functional.conv2d(x, conv.weight[::4], conv.bias[::4], padding=1)
    torch.testing.assert_close(shuffle(conv(x)), base.repeat_interleave(2, -1).repeat_interleave(2, -2))
    assert conv.weight[::4].std() > 0  # a real initialisation, not zeros
    with pytest.raises(ValueError, match="out_channels .* multiple of factor"):
        icnr_(torch.nn.Conv2d(4, 6, 3), 2)


def test_discriminator_any_size_and_errors():
    D = SRDiscriminator(3, width=4)
    for hw in ((96, 96), (16, 16), (40, 72)):
        assert D(torch.rand(2, 3, *hw)).shape == (2,)
    with pytest.raises(ValueError, match="H, W >= 16"):
        D(torch.rand(1, 3, 15, 40))
    with pytest.raises(ValueError, match="shape"):
        D(torch.rand(1, 1, 32, 32))
    twin = _randomize_bn(D).eval().to_stock()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(D(x), twin(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [3, 8, 1, 2.0])
def test_scale_must_be_2_or_4(bad):
    with pytest.raises(ValueError, match="scale must be 2 or 4"):
        SRResNet(bad)


# ---------------------------------------------------------------- metrics
def test_metrics_match_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    from skimage.color import rgb2ycbcr

    hr = torch.rand(3, 41, 37)
    sr = (hr + 0.08 * torch.randn_like(hr)).clamp(0, 1)
    a, b = sr.permute(1, 2, 0).double().numpy(), hr.permute(1, 2, 0).double().numpy()
    kw = dict(data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert psnr(sr, hr, 0, "rgb") == pytest.approx(skm.peak_signal_noise_ratio(b, a, data_range=1.0), rel=1e-10)
    assert ssim(sr, hr, 0, "rgb") == pytest.approx(skm.structural_similarity(b, a, channel_axis=2, **kw), rel=1e-9)
    ya, yb = rgb2ycbcr(a)[..., 0] / 255, rgb2ycbcr(b)[..., 0] / 255
    torch.testing.assert_close(rgb_to_y(sr)[0].double(), torch.from_numpy(ya), atol=1e-6, rtol=0)
    c = 4
    assert psnr(sr, hr, c, "y") == pytest.approx(
        skm.peak_signal_noise_ratio(yb[c:-c, c:-c], ya[c:-c, c:-c], data_range=1.0), rel=1e-6)
    assert ssim(sr, hr, c, "y") == pytest.approx(skm.structural_similarity(yb[c:-c, c:-c], ya[c:-c, c:-c], **kw),
                                                 rel=1e-6)


def test_metric_properties_and_errors():
    x = torch.rand(2, 3, 20, 20)
    assert psnr(x, x) == float("inf") and ssim(x, x) == pytest.approx(1.0)
    assert psnr(x[:, :1], (x[:, :1] + 0.1).clamp(0, 1), convention="y") < 30
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[..., :19])
    with pytest.raises(ValueError, match="convention"):
        ssim(x, x, convention="ycbcr")
    with pytest.raises(ValueError, match="crop"):
        psnr(x, x, crop=10)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x, x, crop=5)


# ---------------------------------------------------------------- tiling
@pytest.mark.parametrize("scale,bicubic_skip", [(2, False), (4, False), (2, True), (4, True)])
def test_tiled_upscale_equals_untiled(scale, bicubic_skip):
    G = _randomize_bn(SRResNet(scale, 3, width=6, blocks=2, bicubic_skip=bicubic_skip)).eval()
    lr = torch.rand(3, 37, 29)
    whole = upscale(G, lr, tile=0)
    for tile in (8, 16):
        torch.testing.assert_close(upscale(G, lr, tile=tile), whole, atol=1e-5, rtol=0)
    # the folded inference copy agrees too
    torch.testing.assert_close(upscale(fold_bn(G), lr, tile=10), whole, atol=1e-5, rtol=0)
    # too little overlap is visibly different: the radius is not over-generous
    assert (upscale(G, lr, tile=8, overlap=receptive_radius(G) - 4) - whole).abs().max() > 1e-4


# ---------------------------------------------------------------- VGG loss
def test_vgg_loss_needs_local_weights(monkeypatch, tmp_path):
    pytest.importorskip("torchvision")
    monkeypatch.delenv("PYGAN_VGG19_WEIGHTS", raising=False)
    with pytest.raises(VGGWeightsMissing, match="--vgg-weights"):
        VGGFeatureLoss()
    with pytest.raises(VGGWeightsMissing, match="not found"):
        VGGFeatureLoss(weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision VGG19"):
        VGGFeatureLoss(weights=str(bad))


def test_vgg_loss_from_a_weights_file(monkeypatch, tmp_path):
    tv = pytest.importorskip("torchvision")
    path = tmp_path / "vgg19.pth"
    torch.save(tv.models.vgg19(weights=None).state_dict(), path)  # random weights, same format as the real file
    monkeypatch.setenv("PYGAN_VGG19_WEIGHTS", str(path))
    loss = VGGFeatureLoss("2_2")
    assert type(loss.features[-1]).__name__ == "ReLU" and len(loss.features) == 9  # relu after conv2_2
    with pytest.raises(ValueError, match="no layer"):
        VGGFeatureLoss("2_3")
    sr = torch.rand(2, 3, 32, 32, requires_grad=True)
    hr = torch.rand(2, 3, 32, 32)
    val = loss(sr, hr)
    val.backward()
    assert val > 0 and sr.grad.abs().sum() > 0
    assert loss(hr, hr) == 0
    assert not any(p.requires_grad for p in loss.parameters())


# ---------------------------------------------------------------- data
def _write_images(folder, n=3, size=(40, 48), seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(os.path.join(folder, f"im{i}.png"))


def test_pairs_from_hr_images_are_bicubic_downsamplings():
    hr = [torch.rand(3, 50, 60), torch.rand(3, 33, 40)]
    ps = PairSampler(hr, scale=2, hr_crop=32)
    lr, h = ps.sample(5, torch.Generator().manual_seed(0))
    assert lr.shape == (5, 3, 16, 16) and h.shape == (5, 3, 32, 32)
    torch.testing.assert_close(lr, make_lr(h, 2))
    assert (lr * 255 - (lr * 255).round()).abs().max() < 1e-4  # 8-bit values


def test_ready_pairs_stay_aligned_under_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        hr = rng.integers(0, 256, (44, 52, 3), dtype=np.uint8)
        os.makedirs(tmp_path / "hr", exist_ok=True), os.makedirs(tmp_path / "lr", exist_ok=True)
        Image.fromarray(hr).save(tmp_path / "hr" / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(hr[::4, ::4])).save(tmp_path / "lr" / f"{i}.png")  # top-left pixels
    ps = load_pairs(str(tmp_path), 4, 16)
    lr, hr = ps.sample(16, torch.Generator().manual_seed(1))
    # every symmetry of the square maps the top-left pixel of a 4x4 cell to one of its corners
    corners = [hr[..., a::4, b::4] for a in (0, 3) for b in (0, 3)]
    assert all(any(torch.equal(lr[k], c[k]) for c in corners) for k in range(16))


def test_data_errors(tmp_path):
    with pytest.raises(DataError, match="smaller than the 96x96"):
        PairSampler([torch.rand(3, 80, 120)], 4, 96, names=["small.png"])
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        read_image(str(tmp_path / "x.png"))
    with pytest.raises(DataError, match="not found"):
        load_pairs(str(tmp_path / "missing"), 4, 96)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_pairs(str(tmp_path / "empty"), 4, 96)


# ---------------------------------------------------------------- trainer
def tiny(tmp_path, data, **kw) -> SRConfig:
    base = dict(data=str(data), out=str(tmp_path / "run"), scale=2, hr_crop=16, width=4, blocks=1, d_width=2,
                steps=6, pretrain_steps=3, batch_size=2, log_every=1, sample_every=3, checkpoint_every=2,
                eval=False, progress=False, device="cpu")
    return SRConfig(**{**base, **kw})


def test_short_run_both_stages(tmp_path):
    _write_images(tmp_path / "imgs")
    tr = SRTrainer(tiny(tmp_path, tmp_path / "imgs"))
    train_moving_both(tr)
    recs = log_records(tmp_path / "run")
    assert [r["stage"] for r in recs] == ["srresnet"] * 3 + ["srgan"] * 3
    assert all(np.isfinite(r["loss_g"]) for r in recs) and all(np.isfinite(r["loss_d"]) for r in recs[3:])
    ckpt = read_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))
    assert ckpt["step"] == 6 and ckpt["G_srresnet"] is not None
    assert (tmp_path / "run" / "samples" / "step_000006.png").is_file()


def test_learning_rate_drops_tenfold_late_in_each_stage(tmp_path):
    _write_images(tmp_path / "imgs")
    tr = SRTrainer(tiny(tmp_path, tmp_path / "imgs", steps=14, pretrain_steps=10, lr_g=1e-3))
    rates = []
    for step in range(14):
        tr.step = step
        rates.append(1e-3 * tr.rate())
    assert rates == pytest.approx([1e-3] * 8 + [1e-4] * 2 + [1e-3] * 2 + [1e-4] * 2)


def test_resume_is_exact(tmp_path):
    _write_images(tmp_path / "imgs")
    full = SRTrainer(tiny(tmp_path / "a", tmp_path / "imgs", steps=5, pretrain_steps=2))
    full.train()
    part = SRTrainer(tiny(tmp_path / "b", tmp_path / "imgs", steps=2, pretrain_steps=2))
    part.train()
    resumed = SRTrainer.resume(str(tmp_path / "b" / "run" / "checkpoint.pt"), steps=5)
    resumed.train()
    key = [(r["step"], r["loss_g"], r.get("loss_d")) for r in full.history]
    assert key == [(r["step"], r["loss_g"], r.get("loss_d")) for r in resumed.history]


def test_evaluation_table_on_held_out_photos(tmp_path):
    pytest.importorskip("skimage")
    _write_images(tmp_path / "imgs")
    m = SRTrainer(tiny(tmp_path, tmp_path / "imgs", steps=2, pretrain_steps=1, eval=True)).train()
    assert m["methods"] == ["bicubic", "SRResNet", "SRGAN"]
    assert [r["image"] for r in m["images"]] == ["chelsea", "flower", "camera", "coins"]
    assert 20 < m["mean"]["bicubic/psnr_y"] < 40  # x2 bicubic on natural photos
    assert json.load(open(tmp_path / "run" / "metrics.json"))["step"] == 2
    assert Image.open(tmp_path / "run" / "comparison.png").size == (2 * (4 * 128 + 3 * 4), 2 * 128)


# ---------------------------------------------------------------- command line
def test_cli_train_upscale_eval(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "run"
    assert main(["train", "srgan", "--data", str(tmp_path / "imgs"), "--out", str(out), "--scale", "2",
                 "--hr-crop", "16", "--width", "4", "--blocks", "1", "--d-width", "2", "--pretrain-steps", "2",
                 "--steps", "3", "--batch-size", "2", "--no-eval", "--no-progress", "--device", "cpu"]) == 0
    ckpt = str(out / "checkpoint.pt")
    assert main(["upscale", ckpt, str(tmp_path / "imgs" / "im0.png"), str(tmp_path / "up.png"), "--tile", "16"]) == 0
    assert Image.open(tmp_path / "up.png").size == (96, 80)
    capsys.readouterr()
    assert main(["eval-sr", ckpt, "--data", str(tmp_path / "imgs")]) == 0
    table = capsys.readouterr().out
    assert "bicubic PSNR / SSIM" in table and "SRGAN" in table and "**mean**" in table


@pytest.mark.parametrize("args, message", [
    (["train", "srgan", "--scale", "3"], "scale must be one of 2, 4"),
    (["train", "srgan", "--data", "/nonexistent/dir"], "not found"),
    (["train", "srgan", "--hr-crop", "30"], "multiple of the scale"),
    (["upscale", "/nonexistent.pt", "a.png", "b.png"], "checkpoint not found"),
])
def test_cli_errors_are_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_upscale_non_image_and_wrong_checkpoint(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "run"
    SRTrainer(tiny(tmp_path, tmp_path / "imgs", steps=1, pretrain_steps=1)).train()
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["upscale", str(out / "checkpoint.pt"), str(tmp_path / "notes.txt"), str(tmp_path / "o.png")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["sample", str(out / "checkpoint.pt")]) == 2  # SRGAN checkpoints have no `sample`
    assert "`pygan sample` takes those of `pygan train dcgan`" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
