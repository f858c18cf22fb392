import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pygan.cli import main
from pygan.data import DataError
from pygan.text2image import (CaptionedData, CaptionedImages, MatchingDiscriminator, Text2ImageConfig,
                              Text2ImageTrainer, TextGenerator, Tokenizer, cached_text_encoder, caption_folder,
                              captioned_digits, gan_cls_d_loss, gan_int_g_loss, pretrain)
from pygan.text2image import attributes as attrs
from pygan.text2image.data import HELD_OUT, in_held_out
from runs import log_records, train_moving_both


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    # an empty cache folder of its own, to see what is written there
    monkeypatch.setenv("PYGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def digits():
    return captioned_digits(16)


def small(d: CaptionedData, n: int = 120) -> CaptionedData:
    """The first n training images of the captioned digits with their captions (tests stay fast)."""
    t = d.train
    keep = t.owner < n
    train = CaptionedImages(t.images[:n], [c for c, k in zip(t.captions, keep) if k], t.owner[keep],
                            t.meanings[keep], t.labels[:n], t.levels[:n])
    return CaptionedData(train, d.test, d.zero_shot, d.thresholds, d.held_out)


def tiny(tmp_path, **kw) -> Text2ImageConfig:
    base = dict(out=str(tmp_path / "run"), latent_dim=4, text_dim=8, encoder_steps=5, proj_dim=4, g_width=4,
                d_width=4, batch_size=4, steps=4, log_every=1, sample_every=2, checkpoint_every=2, grid_size=2,
                eval=False, progress=False, device="cpu")
    return Text2ImageConfig(**{**base, **kw})


def test_tokenizer_unknown_words_and_empty_captions():
    tok = Tokenizer.fit(["a thick seven", "the digit 7, leaning right"])
    ids = tok(["a thick seven", "A THICK purple seven!"])
    assert ids.shape == (2, 4) and ids[0, 3] == 0  # 0-padded
    assert ids[1, 2] == 1 and tok.unknown("a thick purple seven") == ["purple"]  # <unk>, never an error
    assert tok(["7"])[0, 0] == tok.index["7"]
    for bad in ("", "   ", "?!"):
        with pytest.raises(ValueError, match="is empty"):
            tok([bad])
    with pytest.raises(ValueError, match="must be a string"):
        tok([None])
    with pytest.raises(ValueError, match="starts with"):
        Tokenizer(["a", "b"])


def test_text_encoder_pretraining_and_cache(digits, tmp_path, own_cache):
    d = small(digits).train
    text = pretrain(d, dim=8, steps=3)
    e = text.embed(["a thick seven", "a thick seven", "zzz unknown words"])
    assert e.shape == (3, 8) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(e[0], e[1]) and 0 <= text.info["retrieval_top1"] <= 1
    assert torch.equal(pretrain(d, dim=8, steps=3).embed(["a thin one"]), text.embed(["a thin one"]))  # seeded
    first = cached_text_encoder(d, dim=8, steps=3)
    files = os.listdir(tmp_path / "cache")
    assert len(files) == 1 and files[0].startswith("text_encoder_")
    import pygan.text2image.text as text_mod
    real = text_mod.pretrain
    text_mod.pretrain = None  # a second call must load the cache, not pretrain
    try:
        again = cached_text_encoder(d, dim=8, steps=3)
    finally:
        text_mod.pretrain = real
    assert torch.equal(again.embed(["a bold 3"]), first.embed(["a bold 3"]))


def test_gan_cls_and_int_terms_against_hand_computation():
    r, w, f, i = (torch.randn(5) for _ in range(4))
    sp = F.softplus
    hand = sp(-r).mean() + 0.5 * sp(w).mean() + 0.5 * sp(f).mean()  # Reed et al.: log D(x,h) + (...)/2
    torch.testing.assert_close(gan_cls_d_loss(r, w, f, "non_saturating", 0.5), hand)
    torch.testing.assert_close(gan_cls_d_loss(r, w, f, "non_saturating", 0.0), sp(-r).mean() + sp(f).mean())
    hand_ls = 0.5 * (r - 1).square().mean() + 0.3 * 0.5 * w.square().mean() + 0.7 * 0.5 * f.square().mean()
    torch.testing.assert_close(gan_cls_d_loss(r, w, f, "least_squares", 0.3), hand_ls)
    torch.testing.assert_close(gan_int_g_loss(f, i, "non_saturating", 2.0), sp(-f).mean() + 2 * sp(-i).mean())
    torch.testing.assert_close(gan_int_g_loss(f, None, "non_saturating"), sp(-f).mean())
    with pytest.raises(ValueError, match="mismatch_weight must be in"):
        gan_cls_d_loss(r, w, f, "non_saturating", 1.0)


def test_shapes_stock_twin_and_bad_inputs():
    for size in (16, 32):
        G, D = TextGenerator(size, 1, 8, 12, 4, 4), MatchingDiscriminator(size, 1, 12, 4, 4)
        z, t = torch.randn(3, 8), torch.randn(3, 12)
        x = G(z, t)
        assert x.shape == (3, 1, size, size) and x.abs().max() <= 1 and D(x, t).shape == (3,)
        for model, args in ((G, (z, t)), (D, (x.detach(), t))):
            stock = model.to_stock()
            assert list(stock.state_dict()) == list(model.state_dict())
            torch.testing.assert_close(model(*args), stock(*args))
    with pytest.raises(ValueError, match=r"text embeddings must have shape \(3, 12\)"):
        G(z, torch.randn(3, 5))
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.randn(3, 7), t)
    with pytest.raises(ValueError, match="images must have shape"):
        D(torch.randn(3, 1, 16, 16), t)
    with pytest.raises(ValueError, match="size must be one of"):
        TextGenerator(24)


def test_attributes_measure_what_they_say():
    img = -torch.ones(2, 1, 16, 16)
    for r in range(2, 14):  # a stroke leaning right: its top to the right of its bottom
        img[0, 0, r, 8 + (8 - r) // 3] = 1
    img[1] = img[0].flip(-1)  # leaning left
    v = attrs.measure(img)
    assert v[0, 1] > 0.2 and v[1, 1] < -0.2
    thick = F.max_pool2d(img, 3, 1, 1)
    assert (attrs.measure(thick)[:, 0] > v[:, 0]).all()
    with pytest.raises(ValueError, match="1-channel"):
        attrs.measure(torch.zeros(1, 3, 8, 8))


def test_captioned_digits_hold_out_combinations(digits):
    d = digits
    y, lv = d.train.labels.numpy(), d.train.levels.numpy()
    assert not in_held_out(y, lv).any() and not in_held_out(d.test.labels.numpy(), d.test.levels.numpy()).any()
    assert in_held_out(d.zero_shot.labels.numpy(), d.zero_shot.levels.numpy()).all() and len(d.zero_shot) > 100
    for c, a, level in HELD_OUT:  # no training caption names a held-out combination
        m = d.train.meanings
        assert not ((m[:, 0] == c) & (m[:, 1 + a] == level)).any()
    # levels are per-class tertiles: each about a third of a class (before the hold-out removed some)
    full = np.concatenate([y, d.zero_shot.labels.numpy()[:0]])
    assert set(np.unique(lv)) == {0, 1, 2} and len(full) == len(y)
    assert len(d.train.captions) == 5 * len(d.train) and d.train.count.eq(5).all()
    i = int((d.train.meanings[:, 1] == 2).nonzero()[0])  # a caption naming 'thick' uses one of its words
    assert any(w in d.train.captions[i] for w in ("thick", "bold", "heavy", "fat", "chunky"))


def test_short_run_changes_params_and_writes_outputs(digits, tmp_path):
    tr = Text2ImageTrainer(tiny(tmp_path), small(digits))
    train_moving_both(tr)
    out = tmp_path / "run"
    recs = log_records(out)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(np.isfinite([r[k] for k in ("loss_g", "loss_d", "d_real", "d_mismatch", "d_fake")]).all() for r in recs)
    assert (out / "samples" / "step_000004.png").is_file() and (out / "curves.png").is_file()
    w, h = Image.open(out / "samples" / "step_000004.png").size
    assert h > 3 * w  # ten caption rows of two images
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["text"]["vocab"][:2] == ["<pad>", "<unk>"] and ckpt["calibration"].shape[1] == 8


def test_hard_mismatches_share_the_class_and_do_not_fit(digits, tmp_path):
    tr = Text2ImageTrainer(tiny(tmp_path, hard_mismatch=1.0), small(digits))
    img = torch.arange(100)
    rand = torch.full((100,), -1)
    wrong = tr._hard_mismatch(img, rand)
    hard = wrong >= 0
    assert hard.float().mean() > 0.3  # the rest drew a caption that fits: the random one stays
    m, lv = tr.meanings[wrong[hard]], tr.levels[img[hard]]
    assert torch.equal(m[:, 0], tr.labels[img[hard]])
    assert (((m[:, 1] >= 0) & (m[:, 1] != lv[:, 0])) | ((m[:, 2] >= 0) & (m[:, 2] != lv[:, 1]))).all()
    assert (tr._hard_mismatch(img, rand) != wrong).any()  # drawn afresh each time


def test_resume_is_exact(digits, tmp_path):
    data = small(digits)
    straight = Text2ImageTrainer(tiny(tmp_path / "a", hard_mismatch=0.5), data)
    straight.train()
    first = Text2ImageTrainer(tiny(tmp_path / "b", hard_mismatch=0.5), data)
    for _ in range(2):
        first.log(first.iteration())
    resumed = Text2ImageTrainer.resume(first.save_checkpoint(), data)
    resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    for a, b in zip(resumed.G.state_dict().values(), straight.G.state_dict().values()):
        assert torch.equal(a, b)


def _caption_folder(root, n=3):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((12, 10 + i, 3), 40 * i, np.uint8)).save(os.path.join(root, f"im{i}.png"))
        with open(os.path.join(root, f"im{i}.txt"), "w") as f:
            f.write(f"a picture number {i}\n\n  a grey square {i}  \n")


def test_caption_folder_loading_and_training(tmp_path):
    _caption_folder(tmp_path / "f")
    d = caption_folder(str(tmp_path / "f"), 16)
    assert d.train.images.shape == (3, 3, 16, 16) and not d.digits
    assert d.train.captions[:2] == ["a picture number 0", "a grey square 0"]
    assert d.train.owner.tolist() == [0, 0, 1, 1, 2, 2]
    tr = Text2ImageTrainer(tiny(tmp_path, data=str(tmp_path / "f"), eval=True, steps=2, batch_size=2))
    assert tr.train() == {} and tr.grid_captions == ["a picture number 0", "a picture number 1", "a picture number 2"]
    os.remove(tmp_path / "f" / "im1.txt")
    with pytest.raises(DataError, match="im1.png has no caption file"):
        caption_folder(str(tmp_path / "f"), 16)
    open(tmp_path / "f" / "im1.txt", "w").write("\n  \n")
    with pytest.raises(DataError, match="im1.txt is empty"):
        caption_folder(str(tmp_path / "f"), 16)
    with pytest.raises(DataError, match="not found"):
        Text2ImageTrainer(tiny(tmp_path, data=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="channels is 1 but the data has 3"):
        Text2ImageTrainer(tiny(tmp_path, channels=1), d)


def test_cli_train_eval_generate_and_errors(tmp_path, capsys):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit):
        main(["train", "text2image", "--help"])
    helptext = capsys.readouterr().out
    assert all("--" + f.replace("_", "-") in helptext for f in Text2ImageConfig.__dataclass_fields__)
    argv = ["train", "text2image", "--latent-dim", "4", "--text-dim", "8", "--encoder-steps", "3", "--proj-dim",
            "4", "--g-width", "4", "--d-width", "4", "--batch-size", "4", "--steps", "2", "--grid-size", "2",
            "--no-progress", "--device", "cpu", "--out", out]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "seen combinations" in report and "held-out combinations" in report and "thick three" in report
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert 0 <= m["seen"]["class_match"]["mean"] <= 1 and m["variety"]["ratio_to_class"]["mean"] > 0
    ckpt = os.path.join(out, "checkpoint.pt")
    assert main(["eval-text2image", ckpt, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["step"] == 2 and again["seen"] == m["seen"]  # deterministic scoring
    grid = str(tmp_path / "g" / "grid.png")
    assert main(["generate", ckpt, "a thin purple three", "--n", "4", "--out", grid, "--scale", "1"]) == 0
    assert "purple" in capsys.readouterr().err and Image.open(grid).size == (2 * 18 + 2, 2 * 18 + 2)
    for argv, msg in ((["generate", ckpt, "  "], "caption is empty"),
                      (["generate", ckpt, "!?"], "is empty"),
                      (["generate", ckpt, "a three", "--n", "0"], "--n must be >= 1"),
                      (["generate", str(tmp_path / "no.pt"), "a three"], "checkpoint not found"),
                      (["train", "text2image", "--mismatch-weight", "1"], "mismatch_weight must be in [0, 1)"),
                      (["train", "text2image", "--size", "24"], "size must be one of")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    other = tmp_path / "other.pt"
    torch.save({"format": "pygan-cyclegan-checkpoint-v1"}, other)
    assert main(["eval-text2image", str(other)]) == 2
    assert "not a pygan text-to-image checkpoint" in capsys.readouterr().err
