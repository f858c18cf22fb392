import importlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pygan.pix2pix.cli as pix2pix_cli
from pygan.cli import main
from pygan.data import DataError
from pygan.data.scenes import colorize, digit_scenes
from pygan.metrics.segmentation import fit_segmenter
from pygan.parts import PatchDiscriminator
from pygan.pix2pix import Pix2PixConfig, Pix2PixTrainer, ScenePairs, UnetGenerator, evaluate, scene_pairs
from pygan.pix2pix.trainer import PATCHES, objective
from runs import log_records, train_moving_both

pix2pix_evaluate = importlib.import_module("pygan.pix2pix.evaluate")  # the package's `evaluate` is the function


@pytest.fixture(scope="module")
def pairs():
    s = digit_scenes(16, n_train=24, n_test=8)
    return ScenePairs(s.train, s.test, colorize(s.train.labels), colorize(s.test.labels))


@pytest.fixture
def quick_segmenter(monkeypatch):
    """The FCN-score's segmenter trained for a few steps (the real one, 800 steps on 3000 scenes, is measured in
    the default run, not in the tests)."""
    def fit(pairs):
        t = pairs.train
        return fit_segmenter(t.images, t.labels, t.num_classes, t.ignore_index, steps=3, batch=4, width=4)

    monkeypatch.setattr(pix2pix_evaluate, "fcn_segmenter", fit)


def tiny(tmp_path, **kw) -> Pix2PixConfig:
    base = dict(out=str(tmp_path / "run"), size=16, width=4, depth=2, d_width=4, patch=16,
                batch_size=2, steps=4, log_every=1, sample_every=2, checkpoint_every=2, grid_size=3, eval=False,
                progress=False, device="cpu")
    return Pix2PixConfig(**{**base, **kw})


def _same(a, b, **tol):
    torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_fused_equals_stock_twin_at_batch_one(channels_last):
    """Forward and every gradient (parameters and the input) of the fused generator and conditional discriminator
    against their stock twins, batch 1, float64, with an incoming gradient of the other memory format."""
    torch.manual_seed(0)
    G = UnetGenerator(3, 1, 8, 3, dropout_blocks=1).double()
    D = PatchDiscriminator(4, 8, 2, norm="batch").double()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for fused in (G, D):
        stock = fused.to_stock()
        assert list(stock.state_dict()) == list(fused.state_dict())
        c = fused.config.get("in_channels", 4) if fused is G else 4
        x = torch.randn(1, c, 24, 20, dtype=torch.float64).contiguous(memory_format=fmt)
        outs = []
        for model in (fused, stock):
            model.to(memory_format=fmt).train()
            xi = x.clone().requires_grad_()
            torch.manual_seed(1)  # the same dropout masks
            y = model(xi)
            g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(2))
            g = g.contiguous(memory_format=torch.contiguous_format if channels_last else torch.channels_last)
            y.backward(g)
            outs.append((y.detach(), xi.grad, [p.grad for p in model.parameters()]))
        (y1, gx1, gp1), (y2, gx2, gp2) = outs
        _same(y1, y2)
        _same(gx1, gx2)
        for a, b in zip(gp1, gp2):
            _same(a, b)


def test_any_size_translates_to_its_own_size():
    G = UnetGenerator(3, 3, 4, 4)
    for h, w in ((75, 100), (256, 256), (5, 7), (48, 48)):
        assert G(torch.randn(1, 3, h, w)).shape == (1, 3, h, w)
    # the padding is a reflection, split between the sides: the crop keeps the image's own pixels in place
    G = UnetGenerator(1, 1, 4, 2, dropout=0.0, dropout_blocks=1).eval()
    x = torch.randn(1, 1, 10, 9)
    full = G._unet(torch.nn.functional.pad(x, (1, 2, 1, 1), mode="reflect"))[..., 1:11, 1:10]
    _same(G(x), full)


def test_test_dropout_and_bad_arguments():
    G = UnetGenerator(3, 3, 4, 3, dropout_blocks=2).eval()
    x = torch.randn(2, 3, 16, 16)
    assert not torch.equal(G(x), G(x))  # the paper's test-time noise
    G = UnetGenerator(3, 3, 4, 3, dropout_blocks=2, test_dropout=False).eval()
    assert torch.equal(G(x), G(x))
    assert UnetGenerator(3, 3, 4, 2).dropout_blocks == 1 and UnetGenerator(3, 3, 4, 8).dropout_blocks == 3
    with pytest.raises(ValueError, match="depth must be >= 2"):
        UnetGenerator(3, 3, 4, 1)
    with pytest.raises(ValueError, match="dropout_blocks must be in"):
        UnetGenerator(3, 3, 4, 3, dropout_blocks=3)
    with pytest.raises(ValueError, match="input must have shape"):
        G(torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize("patch", [1, 16, 34, 70])
def test_patch_sizes_are_the_receptive_fields(patch):
    D = PatchDiscriminator(2, 4, PATCHES[patch], norm="batch").double().eval()
    size = 96
    x = torch.randn(1, 2, size, size, dtype=torch.float64, requires_grad=True)
    y = D(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = x.grad.abs().sum((0, 1, 3)).nonzero()
    assert int(rows.max() - rows.min()) + 1 <= patch  # a logit sees at most its patch
    assert int(rows.max() - rows.min()) + 1 >= patch - 3  # ... and nearly all of it (borders of zero weight)


def test_short_run_changes_params_and_writes_outputs(tmp_path, pairs):
    tr = Pix2PixTrainer(tiny(tmp_path), dataset=pairs)
    train_moving_both(tr)
    out = tmp_path / "run"
    recs = log_records(out)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(np.isfinite([r[k] for k in ("loss_g", "loss_l1", "loss_adv", "loss_d")]).all() for r in recs)
    w, h = Image.open(out / "samples" / "step_000004.png").size
    assert 0.9 < h / w < 1.1  # three rows (input, output, truth) of three images
    assert (out / "curves.png").is_file() and (out / "checkpoint.pt").is_file()
    assert tr.G.in_channels == 3 and tr.G.out_channels == 1 and tr.D.channels == 4  # label colours -> scene


def test_batch_one_channels_last_and_autocast(tmp_path, pairs):
    """The paper's batch 1 (BatchNorm on one image), channels_last and bf16 autocast through a whole run."""
    tr = Pix2PixTrainer(tiny(tmp_path, batch_size=1, channels_last=True, amp="bf16", steps=2), dataset=pairs)
    tr.train()
    assert tr.G.down[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(np.isfinite(r["loss_g"]) and np.isfinite(r["loss_d"]) for r in tr.history)


def test_resume_is_exact(tmp_path, pairs):
    """With dropout, jitter and both networks: a run stopped after step 2 and resumed equals an uninterrupted one."""
    cfg = dict(load_size=20)
    straight = Pix2PixTrainer(tiny(tmp_path / "a", **cfg), dataset=pairs)
    straight.train()
    first = Pix2PixTrainer(tiny(tmp_path / "b", **cfg), dataset=pairs)
    for _ in range(2):
        first.log(first.iteration())
    resumed = Pix2PixTrainer.resume(first.save_checkpoint(), dataset=pairs)
    resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    for a, b in zip(resumed.G.state_dict().values(), straight.G.state_dict().values()):
        assert torch.equal(a, b)


def test_ablation_objectives(tmp_path, pairs):
    l1 = Pix2PixTrainer(tiny(tmp_path / "l1", gan_weight=0.0, steps=2), dataset=pairs)
    d0 = [p.detach().clone() for p in l1.D.parameters()]
    l1.train()
    assert all(torch.equal(a, b) for a, b in zip(d0, l1.D.parameters()))  # L1 alone: no discriminator trained
    assert "loss_d" not in l1.history[-1] and objective(l1.config) == "L1"
    cgan = Pix2PixTrainer(tiny(tmp_path / "cgan", l1_weight=0.0, steps=2), dataset=pairs)
    cgan.train()
    assert objective(cgan.config) == "cGAN" and cgan.history[-1]["loss_g"] == cgan.history[-1]["loss_adv"]
    gan = Pix2PixTrainer(tiny(tmp_path / "gan", conditional=False, steps=1), dataset=pairs)
    assert gan.D.channels == 1 and objective(gan.config) == "L1+GAN"
    assert objective(tiny(tmp_path)) == "L1+cGAN"
    with pytest.raises(ValueError, match="both 0"):
        tiny(tmp_path, l1_weight=0.0, gan_weight=0.0).validate()
    with pytest.raises(ValueError, match="too small for 70x70 patches"):
        tiny(tmp_path, patch=70).validate()
    with pytest.raises(ValueError, match="load_size must be >= size"):
        tiny(tmp_path, load_size=12).validate()


def test_jitter_crops_the_same_window_of_input_and_truth(tmp_path, pairs):
    tr = Pix2PixTrainer(tiny(tmp_path, load_size=24, batch_size=8), dataset=pairs)
    a, b = tr.source.next()
    assert a.shape == (8, 3, 16, 16) and b.shape == (8, 1, 16, 16)
    # the same window: the truth's ink lies where the label map has a digit (background is black in VOC colours)
    bright = (b[:, 0] > 0.3).float()
    labelled = (a.amax(1) > -1).float()  # background is black (-1) in the VOC colours
    assert (bright * labelled).sum() > 0.5 * bright.sum()


class _Oracle(nn.Module):
    """Returns the held-out scenes in order, whatever it is given: a generator that draws the truth."""

    def __init__(self, truth):
        super().__init__()
        self.truth, self.i = truth, 0
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = self.truth[self.i:self.i + len(x)]
        self.i += len(x)
        return out


def test_evaluation_scores_the_truth_as_the_ceiling(pairs, quick_segmenter):
    m = evaluate(_Oracle(pairs.test.images), pairs, n_boot=50)
    assert m["fcn"]["mean_iou"]["mean"] == m["fcn_real"]["mean_iou"]["mean"]
    assert m["fcn"]["class_accuracy"] == m["fcn_real"]["class_accuracy"]
    assert m["l1"]["mean"] == 0 and m["psnr"]["mean"] == 100
    assert abs(m["realism"]["frechet"]["mean"]) < 1e-4  # identical sets (up to round-off)
    blank = evaluate(_Oracle(torch.full_like(pairs.test.images, -1)), pairs, n_boot=50)
    assert blank["realism"]["kid"] > m["realism"]["kid"] and blank["l1"]["mean"] > 0.1


def _pair_files(root, n, size=(20, 14), side_by_side=True):
    """pix2pix-format pairs: A (left) a colour square, B (right) its inverse."""
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], 1)).save(os.path.join(root, f"{i}.png"))
    return str(root)


def test_cli_train_eval_translate_and_errors(tmp_path, capsys, monkeypatch, pairs, quick_segmenter):
    folder = _pair_files(tmp_path / "ab", 4)
    out = str(tmp_path / "run")
    argv = ["train", "pix2pix", "--data", folder, "--size", "16", "--width", "4", "--depth", "2", "--d-width", "4",
            "--patch", "16", "--batch-size", "2", "--steps", "2", "--no-progress", "--device", "cpu", "--out", out]
    assert main(argv) == 0
    capsys.readouterr()
    ckpt = os.path.join(out, "checkpoint.pt")
    images = tmp_path / "imgs"
    os.makedirs(images)
    for name, (w, h) in (("odd.png", (100, 75)), ("big.jpg", (256, 256))):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / name)
    assert main(["translate", ckpt, str(images / "odd.png"), str(images / "big.jpg"), "--out",
                 str(tmp_path / "t")]) == 0
    assert Image.open(tmp_path / "t" / "odd_translated.png").size == (100, 75)
    assert Image.open(tmp_path / "t" / "big_translated.png").size == (256, 256)
    capsys.readouterr()
    assert main(["eval", ckpt]) == 2
    assert "embedded scenes" in capsys.readouterr().err
    assert main(["translate", ckpt, str(tmp_path / "nope.png")]) == 2
    assert not os.path.exists("translated")
    err = capsys.readouterr().err
    assert "image not found" in err and len(err.strip().splitlines()) == 1

    # the embedded scenes (small ones here): trained, scored at the end and by `pygan eval`
    monkeypatch.setattr(pix2pix_cli, "scene_pairs", lambda size: pairs)
    monkeypatch.setattr("pygan.pix2pix.trainer.scene_pairs", lambda size: pairs)
    out = str(tmp_path / "scenes")
    assert main(["train", "pix2pix", "--size", "16", "--width", "4", "--depth", "2", "--dropout-blocks", "1",
                 "--d-width", "4", "--patch", "16", "--batch-size", "2", "--steps", "2", "--no-progress",
                 "--device", "cpu", "--out", out]) == 0
    report = capsys.readouterr().out
    assert "FCN class IoU" in report and "KID" in report
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["objective"] == "L1+cGAN" and 0 <= m["fcn"]["mean_iou"]["mean"] <= 1
    assert main(["eval-pix2pix", os.path.join(out, "checkpoint.pt"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["fcn"] == m["fcn"] and again["step"] == 2  # test-time dropout from a fixed seed: reproducible

    other = tmp_path / "other.pt"
    torch.save({"format": "pygan-dcgan-checkpoint-v1"}, other)
    assert main(["eval-pix2pix", str(other)]) == 2
    assert "not a pygan pix2pix checkpoint" in capsys.readouterr().err
    assert main(["train", "pix2pix", "--data", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "pygan: error:" in capsys.readouterr().err
    assert main(["train", "pix2pix", "--patch", "50", "--no-progress"]) == 2
    assert "patch must be one of 1, 16, 34, 70, 142, 286" in capsys.readouterr().err


def test_folder_layouts_train(tmp_path):
    ab = _pair_files(tmp_path / "ab", 3)
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    for f in os.listdir(ab):
        im = np.asarray(Image.open(os.path.join(ab, f)))
        Image.fromarray(im[:, :20]).save(tmp_path / "a" / f)
        Image.fromarray(im[:, 20:]).save(tmp_path / "b" / f)
    layouts = ((ab, "", "memory"), (str(tmp_path / "a"), str(tmp_path / "b"), "memory"), (ab, "", "stream"))
    for data, data_b, mode in layouts:
        tr = Pix2PixTrainer(tiny(tmp_path / "r", data=data, data_b=data_b, load_size=16, flip=False, steps=1,
                                 data_mode=mode, workers=0))
        assert tr.source.kind == mode
        a, b = tr.source.next()
        _same(a, -b, atol=2 / 255 + 1e-6, rtol=0)  # B is A inverted, pixel by pixel
        assert tr.train() == {}  # no known truth to score
    with pytest.raises(DataError):
        Pix2PixTrainer(tiny(tmp_path / "r", data=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="--data-b"):
        tiny(tmp_path, data_b=str(tmp_path / "b")).validate()


def test_embedded_pairs_are_held_out_label_maps_and_scenes():
    p = scene_pairs(48)
    assert p.train_a.shape == (3000, 3, 48, 48) and p.train.images.shape == (3000, 1, 48, 48)
    assert p.test_a.shape == (500, 3, 48, 48)
    torch.testing.assert_close(p.test_a, colorize(p.test.labels))
