import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pygan.cli import main
from pygan.cyclegan import (CycleGANConfig, CycleGANTrainer, Discriminators, Generators, embedded_digits,
                            load_domains, restyle)
from pygan.data import DataError
from pygan.parts import ImagePool
from runs import log_records, train_moving_both


def tiny(tmp_path, **kw) -> CycleGANConfig:
    base = dict(out=str(tmp_path / "run"), size=16, width=4, blocks=1, d_width=4, d_layers=2, batch_size=2, steps=4,
                log_every=1, sample_every=2, checkpoint_every=2, grid_size=3, pool_size=3, eval=False,
                progress=False, device="cpu")
    return CycleGANConfig(**{**base, **kw})


def test_shapes_and_stock_export():
    G, D = Generators(3, 4, 2), Discriminators(3, 4, 2)
    for upsample in ("transpose", "resize"):
        g = Generators(3, 4, 1, upsample)
        out = g(torch.randn(2, 3, 20, 12), torch.randn(2, 3, 20, 12))
        assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, 3, 20, 12) for k in
                                                             ("fake_b", "fake_a", "rec_a", "rec_b", "idt_b", "idt_a")}
    la, lb = D(torch.randn(2, 3, 32, 32), torch.randn(1, 3, 32, 32))
    assert la.shape == (2, 1, 6, 6) and lb.shape == (1, 1, 6, 6)
    x = torch.randn(2, 3, 16, 16)
    for model, args in ((G, (x, x)), (D, (x, x))):
        stock = model.to_stock()
        assert list(stock.state_dict()) == list(model.state_dict())
        for a, b in zip(torch.utils._pytree.tree_leaves(model(*args)), torch.utils._pytree.tree_leaves(stock(*args))):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="multiples of 4"):
        G.a2b(torch.randn(1, 3, 10, 16))
    with pytest.raises(ValueError, match="upsample must be one of"):
        Generators(3, 4, 1, "bilinear")


def test_embedded_domains_are_unpaired_and_held_out_truth_is_the_transform():
    d = embedded_digits(16)
    assert d.a.images.shape[1:] == d.b.images.shape[1:] == (3, 16, 16)
    assert len(d.a) + len(d.b) == 1438  # the digits' training split, halved
    assert d.a.images.min() >= -1 and d.b.images.max() <= 1
    torch.testing.assert_close(d.test_a_true, restyle(d.test_a))
    torch.testing.assert_close(d.test_b, restyle(d.test_b_true))
    assert len(d.test_labels) == len(d.test_a) + len(d.test_b) == 359  # the held-out split
    # the B training images are no restyled A training image: disjoint halves
    rb = restyle(d.a.images)
    assert not any(torch.equal(rb[i], d.b.images[j]) for i in range(20) for j in range(len(d.b)))


def test_short_run_changes_params_and_writes_outputs(tmp_path):
    tr = CycleGANTrainer(tiny(tmp_path, identity_weight=0.5))  # every loss term on
    train_moving_both(tr)
    out = tmp_path / "run"
    recs = log_records(out)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(np.isfinite([r[k] for k in ("loss_g", "loss_cycle", "loss_identity", "loss_d_a", "loss_d_b")]).all()
               for r in recs)
    assert (out / "samples" / "step_000004.png").is_file() and (out / "curves.png").is_file()
    w, h = Image.open(out / "samples" / "step_000004.png").size
    assert h > 1.8 * w  # six rows (x, G(x), F(G(x)), y, F(y), G(F(y))) of three images


def test_resume_is_exact(tmp_path):
    straight = CycleGANTrainer(tiny(tmp_path / "a", steps=4))
    straight.train()
    first = CycleGANTrainer(tiny(tmp_path / "b", steps=4))  # interrupted after its second step
    for _ in range(2):
        first.log(first.iteration())
    path = first.save_checkpoint()
    resumed = CycleGANTrainer.resume(path)
    resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    for a, b in zip(resumed.G.state_dict().values(), straight.G.state_dict().values()):
        assert torch.equal(a, b)


def test_image_pool():
    g = torch.Generator().manual_seed(0)
    pool = ImagePool(2)
    x = torch.arange(2.0).view(2, 1, 1, 1)
    assert torch.equal(pool.query(x, g), x)                 # filling: returned as is
    seen = torch.cat([pool.query(torch.full((1, 1, 1, 1), 10.0 + i), g) for i in range(50)]).flatten()
    assert (seen < 10).any() and (seen >= 10).any()         # some swapped for stored images, some passed through
    assert pool.images.shape[0] == 2
    assert torch.equal(ImagePool(0).query(x, g), x)
    state = pool.state_dict()
    other = ImagePool(5)
    other.load_state_dict(state, "cpu")
    assert other.size == 2 and torch.equal(other.images, pool.images)


def test_learning_rate_schedule(tmp_path):
    tr = CycleGANTrainer(tiny(tmp_path, steps=10, decay_start=0.5, lr_g=1e-3, lr_d=1e-3))
    rates = []
    for _ in range(10):
        rec = tr.iteration()
        assert tr.opt_g.param_groups[0]["lr"] == tr.opt_d.param_groups[0]["lr"] == rec["lr"]
        rates.append(rec["lr"])
    assert rates[:5] == [1e-3] * 5
    assert all(a > b for a, b in zip(rates[4:], rates[5:])) and rates[-1] > 0
    assert abs(rates[5] - 1e-3 * 5 / 6) < 1e-12


def _folder(root, n, colour):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((10 + i, 14, 3), colour, np.uint8)).save(os.path.join(root, f"{i}.png"))


def test_folders_and_bad_input(tmp_path):
    _folder(tmp_path / "a", 3, 30)
    _folder(tmp_path / "b", 2, 200)
    d = load_domains(str(tmp_path / "a"), str(tmp_path / "b"), 16)
    assert d.a.images.shape == (3, 3, 16, 16) and d.b.images.shape == (2, 3, 16, 16) and d.test_a is None
    tr = CycleGANTrainer(tiny(tmp_path, data_a=str(tmp_path / "a"), data_b=str(tmp_path / "b"), eval=True, steps=1))
    assert tr.train() == {}  # no known translation: nothing to score
    assert not CycleGANTrainer(tiny(tmp_path)).flip  # mirrored digits are other shapes
    os.makedirs(tmp_path / "ramp")
    for i in range(2):
        Image.fromarray(np.tile(np.arange(i, 160, 10, dtype=np.uint8)[None, :, None], (16, 1, 3))).save(
            tmp_path / "ramp" / f"{i}.png")
    tr = CycleGANTrainer(tiny(tmp_path, data_a=str(tmp_path / "ramp"), data_b=str(tmp_path / "ramp"), steps=1))
    rising = [bool(x[0, 0, 0] < x[0, 0, -1]) for _ in range(10) for x in tr._batch(tr.a)]
    assert tr.flip and any(rising) and not all(rising)  # folders: random horizontal flips
    with pytest.raises(DataError, match="data_a: data not found"):
        load_domains(str(tmp_path / "missing"), str(tmp_path / "b"), 16)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="data_b: no images"):
        load_domains(str(tmp_path / "a"), str(tmp_path / "empty"), 16)
    with pytest.raises(DataError, match="both be 'digits'"):
        load_domains("digits", str(tmp_path / "b"), 16)
    with pytest.raises(ValueError, match="size must be a multiple of 4"):
        CycleGANTrainer(tiny(tmp_path, size=18))
    with pytest.raises(ValueError, match="too small for a discriminator of 3 layers"):
        CycleGANTrainer(tiny(tmp_path, d_layers=3))


def test_cli_train_eval_translate_and_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "cyclegan", "--size", "16", "--width", "4", "--blocks", "1", "--d-width", "4", "--batch-size",
            "2", "--steps", "2", "--pool-size", "2", "--d-layers", "2", "--no-progress", "--device", "cpu", "--out", out]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "A -> B (179 held-out images): content kept" in report and "B -> A" in report
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert 0 <= m["a2b"]["content_kept"]["mean"] <= 1 and m["b2a"]["identity_baseline_l1"]["mean"] > 0.5
    ckpt = os.path.join(out, "checkpoint.pt")
    assert main(["eval-cyclegan", ckpt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    _folder(tmp_path / "imgs", 1, 90)
    Image.fromarray(np.full((53, 77, 3), 200, np.uint8)).save(tmp_path / "imgs" / "photo.jpg")
    photo = str(tmp_path / "imgs" / "photo.jpg")
    assert main(["translate", ckpt, str(tmp_path / "imgs" / "0.png"), photo, "--out", str(tmp_path / "t")]) == 0
    assert Image.open(tmp_path / "t" / "0_a2b.png").size == (14, 10)  # each image at its own size
    assert Image.open(tmp_path / "t" / "photo_a2b.png").size == (77, 53)
    assert main(["translate", ckpt, photo, "--size", "16", "--direction", "b2a", "--out", str(tmp_path / "t")]) == 0
    assert Image.open(tmp_path / "t" / "photo_b2a.png").size == (16, 16)  # the old resize and centre crop
    open(tmp_path / "imgs" / "bad.png", "wb").write(b"not an image")
    capsys.readouterr()
    assert main(["translate", ckpt, str(tmp_path / "imgs" / "bad.png"), "--out", str(tmp_path / "t")]) == 2
    assert "cannot read image" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["translate", ckpt, str(tmp_path / "nope.png")]) == 2
    assert not os.path.exists("translated")  # the default output folder: not created for a failed call
    assert "image not found" in capsys.readouterr().err
    other = tmp_path / "other.pt"
    torch.save({"format": "pygan-dcgan-checkpoint-v1"}, other)
    assert main(["eval-cyclegan", str(other)]) == 2
    assert "not a pygan CycleGAN checkpoint" in capsys.readouterr().err
    assert main(["train", "cyclegan", "--data-a", str(tmp_path / "missing"), "--data-b", "x", "--no-progress"]) == 2
    assert "pygan: error:" in capsys.readouterr().err
