import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pygan.cli import main
from pygan.data import DataError
from pygan.segmentation import (Adversary, SegmentationConfig, SegmentationTrainer, Segmenter, digit_scenes, encode,
                                ground_truth_map, label_folder, read_label_map, soften)
from pygan.data.scenes import INK
from pygan.segmentation.data import hold_out
from pygan.segmentation.evaluate import confusions, segmentation_scores, shape_consistency
from runs import log_records, train_moving_both


@pytest.fixture(scope="module")
def scenes():
    return digit_scenes(32, n_train=24, n_test=6)


def tiny(tmp_path, **kw) -> SegmentationConfig:
    base = dict(out=str(tmp_path / "run"), size=32, width=4, depth=2, d_width=4, d_layers=2, batch_size=4, steps=4,
                log_every=1, sample_every=2, checkpoint_every=2, grid_size=3, eval=False, progress=False,
                device="cpu")
    return SegmentationConfig(**{**base, **kw})


def test_shapes_and_stock_export():
    S = Segmenter(3, 5, 4, 2)
    x = torch.randn(2, 3, 24, 16)
    assert S(x).shape == (2, 5, 24, 16)
    probs = S(x).softmax(1)
    for enc in ("basic", "product", "scaling"):
        D = Adversary(3, 5, 4, 3, enc)
        assert D(x, probs).shape == (2,)
    for model, args in ((S, (x,)), (Adversary(3, 5, 4, 2), (x, probs.detach()))):
        stock = model.to_stock()
        assert list(stock.state_dict()) == list(model.state_dict())
        torch.testing.assert_close(model(*args), stock(*args))
    with pytest.raises(ValueError, match="multiples of 4"):
        S(torch.randn(1, 3, 10, 16))
    with pytest.raises(ValueError, match="label map must have shape"):
        Adversary(3, 5, 4, 2)(x, probs[:, :4])
    with pytest.raises(ValueError, match="encoding must be one of"):
        Adversary(3, 5, encoding="sum")


def test_encodings():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    p = torch.rand(2, 5, 4, 4, generator=g).softmax(1)
    prod = encode(x, p, "product")
    assert prod.shape == (2, 15, 4, 4)
    torch.testing.assert_close(prod[:, 2 * 3 + 1], p[:, 2] * (x[:, 1] + 1) / 2)  # class 2 x channel 1
    assert torch.equal(encode(x, p, "basic"), torch.cat([p, x], 1))
    labels = torch.randint(0, 5, (2, 4, 4), generator=g)
    labels[0, 0, 0] = 255
    onehot = ground_truth_map(labels, p, 255, "basic")
    assert torch.equal(onehot[0, :, 0, 0], p[0, :, 0, 0])               # ignored pixel: the prediction itself
    assert torch.equal(onehot[1].argmax(0), labels[1]) and set(onehot[1].unique().tolist()) == {0.0, 1.0}
    soft = ground_truth_map(labels, p, 255, "scaling", tau=0.9)
    torch.testing.assert_close(soft.sum(1), torch.ones(2, 4, 4))        # still a distribution
    true = soft[1].gather(0, labels[1][None])[0]
    p_true = p[1].gather(0, labels[1][None])[0]
    torch.testing.assert_close(true, torch.maximum(torch.full_like(p_true, 0.9), p_true))
    # the other classes keep the prediction's proportions
    other = (torch.arange(5)[:, None, None] != labels[1]).float()
    ratio = (soft[1] * other) / (p[1] * other).clamp_min(1e-12)
    assert torch.allclose(ratio.amax(0), ratio.masked_fill(other == 0, 1e9).amin(0), atol=1e-5)
    confident = torch.tensor([[[0.0, 1.0]]]).permute(0, 2, 1)[..., None]  # p_true = 1: nothing to soften
    assert torch.equal(soften(confident, confident, 0.9), confident)


def test_loss_against_hand_computation(tmp_path, scenes):
    tr = SegmentationTrainer(tiny(tmp_path, adv_weight=0.3), scenes)
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.5]]]])  # (1, 3 classes, 1, 2)
    logits = torch.cat([logits, torch.zeros(1, 8, 1, 2)], 1)               # 11 classes
    labels = torch.tensor([[[0, 255]]])                                    # second pixel ignored
    adv = torch.tensor([0.4, -1.2])
    total, ce, a = tr.segmenter_loss(logits, labels, adv)
    z = torch.tensor([2.0, 0.0, -1.0] + [0.0] * 8)
    hand_ce = -(2.0 - torch.log(torch.exp(z).sum()))
    hand_adv = (F.softplus(-adv)).mean()                                   # non-saturating: -log sigmoid(D)
    torch.testing.assert_close(ce, hand_ce)
    torch.testing.assert_close(a, hand_adv)
    torch.testing.assert_close(total, hand_ce + 0.3 * hand_adv)
    base = SegmentationTrainer(tiny(tmp_path / "b", adv_weight=0.0), scenes)
    t0, c0, a0 = base.segmenter_loss(logits, labels, None)
    assert float(a0) == 0 and torch.equal(t0, c0)


def test_embedded_scenes(scenes):
    tr, te = scenes.train, scenes.test
    assert tr.images.shape == (24, 1, 32, 32) and te.labels.shape == (6, 32, 32) and tr.num_classes == 11
    assert tr.images.min() >= -1 and tr.images.max() <= 1
    fg = tr.labels > 0
    assert 0.03 < fg.float().mean() < 0.5
    # every labelled pixel belongs to one numbered object, whose pixels all have one class; ink where labelled
    assert torch.equal(fg, tr.instances > 0)
    for i in range(3):
        for j in tr.instances[i].unique().tolist()[1:]:
            assert tr.labels[i][tr.instances[i] == j].unique().numel() == 1
    assert ((tr.images[:, 0][fg] + 1) / 2).mean() > INK
    # clutter on the background: bright pixels outside any digit
    assert ((tr.images[:, 0] > 0.2) & ~fg).any()


def test_metrics_on_known_cases():
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, :2, :2] = 1
    labels[1, 3, 3] = 255
    perfect = confusions(labels.clamp(max=1), labels, 2, 255)
    assert perfect.sum() == 31  # one ignored pixel
    s = segmentation_scores(perfect, ["bg", "a"], n_boot=50)
    assert s["pixel_accuracy"]["mean"] == 1 and s["mean_iou"]["mean"] == 1
    pred = labels.clamp(max=1).clone()
    pred[0, 0, 0] = 0       # 1 of 4 object pixels wrong: 75% one class, not consistent
    sh = shape_consistency(pred, labels, None, 255, n_boot=50)
    assert sh["objects"] == 2 and sh["consistent"]["mean"] == 0.5
    c = confusions(pred, labels, 2, 255)
    iou = segmentation_scores(c, ["bg", "a"], n_boot=50)["class_iou"]
    assert iou["a"]["mean"] == pytest.approx(7 / 8) and iou["bg"]["mean"] == pytest.approx(23 / 24)


def test_short_run_changes_params_and_writes_outputs(tmp_path, scenes):
    tr = SegmentationTrainer(tiny(tmp_path, eval=True, encoding="scaling"), scenes)
    m = train_moving_both(tr)
    out = tmp_path / "run"
    recs = log_records(out)
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and all(r["loss_adv"] > 0 for r in recs)
    assert (out / "samples" / "step_000004.png").is_file() and (out / "curves.png").is_file()
    saved = json.load(open(out / "metrics.json"))
    assert saved["images"] == 6 and 0 <= saved["mean_iou"]["mean"] <= 1
    assert saved["mean_iou"]["ci95"][0] <= saved["mean_iou"]["mean"] <= saved["mean_iou"]["ci95"][1]
    assert saved == json.loads(json.dumps(m)) and 0 <= m["adversary_accuracy"]["mean"] <= 1


def test_resume_is_exact(tmp_path, scenes):
    straight = SegmentationTrainer(tiny(tmp_path / "a", optimizer="sgd", schedule="cosine"), scenes)
    straight.train()
    first = SegmentationTrainer(tiny(tmp_path / "b", optimizer="sgd", schedule="cosine"), scenes)
    for _ in range(2):
        first.log(first.iteration())
    path = first.save_checkpoint()
    resumed = SegmentationTrainer.resume(path, scenes)
    resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("sec_per_step", "data_wait_s")} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    for a, b in zip([*resumed.G.state_dict().values(), *resumed.D.state_dict().values()],
                    [*straight.G.state_dict().values(), *straight.D.state_dict().values()]):
        assert torch.equal(a, b)


def _dataset(root, n=4, size=(20, 24), palette=True):
    """n RGB images with a bright square labelled 1, a 2-pixel ignored border, class 2 at the bottom."""
    os.makedirs(root / "img"), os.makedirs(root / "lab")
    for i in range(n):
        h, w = size
        x = np.full((h, w, 3), 20, np.uint8)
        lab = np.zeros((h, w), np.uint8)
        x[4:12, 5 + i:13 + i] = 220
        lab[4:12, 5 + i:13 + i] = 1
        lab[3, 5 + i:13 + i] = 255
        lab[-4:, 10:14] = 2
        Image.fromarray(x).save(root / "img" / f"s{i}.jpg" if i % 2 else root / "img" / f"s{i}.png")
        im = Image.fromarray(lab, "P" if palette else "L")
        if palette:
            im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [255, 255, 255])
        im.save(root / "lab" / f"s{i}.png")
    (root / "classes.txt").write_text("background\nsquare\ncorner\n")
    return str(root / "img"), str(root / "lab"), str(root / "classes.txt")


@pytest.mark.parametrize("palette", [True, False])
def test_label_folders_palette_and_index(tmp_path, palette):
    img, lab, cls = _dataset(tmp_path, palette=palette)
    assert Image.open(os.path.join(lab, "s0.png")).mode == ("P" if palette else "L")
    assert read_label_map(os.path.join(lab, "s0.png"))[3, 5] == 255
    d = label_folder(img, lab, cls, 16, ignore_index=255)
    assert d.images.shape == (4, 3, 16, 16) and d.labels.shape == (4, 16, 16)
    assert d.classes == ["background", "square", "corner"]
    assert set(d.labels.unique().tolist()) == {0, 1, 2, 255}  # nearest resizing: no invented values
    sp = hold_out(d, 0.25)
    assert len(sp.train) == 3 and len(sp.test) == 1


def test_bad_label_data(tmp_path):
    img, lab, cls = _dataset(tmp_path, n=2, palette=False)
    with pytest.raises(DataError, match="ignore_index 1 is one of the 3 classes"):
        label_folder(img, lab, cls, 16, ignore_index=1)
    Image.fromarray(np.full((20, 24), 7, np.uint8), "L").save(os.path.join(lab, "s0.png"))
    with pytest.raises(DataError, match=r"value 7 outside the classes 0\.\.2 \(ignore index 255\)"):
        label_folder(img, lab, cls, 16)
    Image.fromarray(np.zeros((10, 24), np.uint8), "L").save(os.path.join(lab, "s0.png"))
    with pytest.raises(DataError, match="is 24x20 but its label map .* is 24x10"):
        label_folder(img, lab, cls, 16)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(os.path.join(lab, "s0.png"))
    with pytest.raises(DataError, match="index PNG .* or a palette PNG .*got mode RGB"):
        label_folder(img, lab, cls, 16)
    os.remove(os.path.join(lab, "s0.png"))
    with pytest.raises(DataError, match="label map not found: .*s0.png"):
        label_folder(img, lab, cls, 16)
    with pytest.raises(DataError, match="class-names file not found"):
        label_folder(img, lab, str(tmp_path / "none.txt"), 16)
    with pytest.raises(DataError, match="labels folder not found"):
        label_folder(img, str(tmp_path / "nolabels"), cls, 16)
    with pytest.raises(ValueError, match="size must be a multiple of 2\\*\\*depth = 4"):
        SegmentationConfig(size=30).validate()
    with pytest.raises(ValueError, match="needs --labels"):
        SegmentationConfig(data=img).validate()


def test_cli_train_eval_segment_and_errors(tmp_path, capsys):
    img, lab, cls = _dataset(tmp_path, n=4)
    out = str(tmp_path / "run")
    argv = ["train", "segmentation", "--data", img, "--labels", lab, "--classes", cls, "--size", "16", "--width", "4",
            "--d-width", "4", "--d-layers", "2", "--batch-size", "2", "--steps", "2", "--val-fraction", "0.25",
            "--no-progress", "--device", "cpu", "--out", out]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "mean IoU" in report and "shape consistency" in report and "adversary accuracy" in report
    ckpt = os.path.join(out, "checkpoint.pt")
    assert main(["eval-segmentation", ckpt, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["step"] == 2 and m["images"] == 1 and m["shape"]["objects"] >= 1
    assert main(["segment", ckpt, os.path.join(img, "s0.png"), os.path.join(img, "s1.jpg"), "--out",
                 str(tmp_path / "seg")]) == 0
    labels = Image.open(tmp_path / "seg" / "s1_labels.png")
    assert labels.mode == "P" and labels.size == (24, 20) and np.asarray(labels).max() < 3
    assert Image.open(tmp_path / "seg" / "s1_overlay.png").size == (24, 20)
    capsys.readouterr()
    assert main(["segment", ckpt, str(tmp_path / "nope.png")]) == 2
    assert not os.path.exists("segmented")  # the default output folder: not created for a failed call
    err = capsys.readouterr().err
    assert "image not found" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other.pt"
    torch.save({"format": "pygan-dcgan-checkpoint-v1"}, other)
    assert main(["eval-segmentation", str(other)]) == 2
    assert "not a pygan segmentation checkpoint" in capsys.readouterr().err
    os.remove(os.path.join(lab, "s2.png"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pygan: error: label map not found" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "segmentation", "--encoding", "sum", "--no-progress"]) == 2
    assert "encoding must be one of basic, product, scaling" in capsys.readouterr().err
