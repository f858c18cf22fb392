"""Streamed training data: the cached folder scan, the auto choice between memory and stream, exact resume (any
worker count, 2 gloo processes), rank shards that add up to the global batch, and bad files reported by path."""

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from pygan.data import DataError, InMemory, SourceOptions, Streaming, batch_source, image_folder, scan_folder
from pygan.data.folder import cache_path
from pygan.data.stream import GlobalBatches


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYGAN_FOLDER_CACHE", str(tmp_path / "cache"))


def _folder(root, n=24, bad=False, gray=False, classes=False):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = os.path.join(root, f"c{i % 2}") if classes else str(root)
        os.makedirs(sub, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (18, 22, 3), dtype=np.uint8)).save(os.path.join(sub, f"i{i:03d}.jpg"))
    if gray:
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(os.path.join(root, "gray.png"))
    if bad:
        open(os.path.join(root, "notes.jpg"), "wb").write(b"this is not an image")
        whole = open(os.path.join(root, "i000.jpg"), "rb").read()
        open(os.path.join(root, "cut.jpg"), "wb").write(whole[: len(whole) // 3])
    return str(root)


def _config(out, data, **kw):
    from pygan.dcgan import DCGANConfig

    base = dict(out=str(out), data=data, size=16, latent_dim=8, g_width=4, d_width=4, batch_size=8, steps=4,
                r1_weight=0.0, log_every=1, sample_every=100, checkpoint_every=2, grid_size=8, eval_samples=0,
                progress=False, collapse_ratio=0.0, device="cpu", data_mode="stream", workers=0, crop="random",
                flip=True)
    return DCGANConfig(**{**base, **kw})


def _losses(history):
    return [(r["loss_d"], r["loss_g"]) for r in history if "loss_d" in r]


def test_folder_scan_is_cached_outside_the_folder_and_invalidated(tmp_path):
    root = _folder(tmp_path / "imgs", n=6, classes=True)
    a = scan_folder(root)
    assert not a.from_cache and len(a) == 6 and a.classes == ["c0", "c1"] and a.labels == [0, 0, 0, 1, 1, 1]
    assert os.path.isfile(cache_path(root)) and not cache_path(root).startswith(root)
    assert sorted(os.listdir(root)) == ["c0", "c1"]  # nothing written into the data folder
    b = scan_folder(root)
    assert b.from_cache and b.files == a.files and b.sizes == a.sizes and b.mtimes == a.mtimes
    Image.new("RGB", (8, 8)).save(os.path.join(root, "c1", "new.png"))  # changes c1's mtime
    c = scan_folder(root)
    assert not c.from_cache and len(c) == 7


def test_auto_keeps_small_folders_in_memory_as_uint8(tmp_path):
    root = _folder(tmp_path / "imgs", n=10)
    gen = torch.Generator().manual_seed(0)
    small = batch_source(root, 16, None, SourceOptions(), gen=gen, batch_size=4)
    assert isinstance(small, InMemory) and small.images.dtype == torch.uint8
    x, y = small.next()
    assert x.dtype == torch.float32 and x.shape == (4, 3, 16, 16) and -1 <= x.min() and x.max() <= 1 and y is None
    # the uint8 tensor normalised per batch is the float tensor the folder always gave
    assert torch.equal(small.images.float() / 127.5 - 1, image_folder(root, 16).images)
    big = batch_source(root, 16, None, SourceOptions(memory_limit_mb=1e-3), gen=gen, batch_size=4)
    assert isinstance(big, Streaming) and big.next()[0].shape == (4, 3, 16, 16)
    with pytest.raises(DataError, match="stream needs a folder"):
        batch_source("digits", 16, None, SourceOptions(mode="stream"), gen=gen, batch_size=4)


def test_rank_shards_make_up_the_global_batch(tmp_path):
    index = scan_folder(_folder(tmp_path / "imgs", n=10))
    one = GlobalBatches(index, 16, 3, 8, seed=3, crop="random", flip=True)
    two = [GlobalBatches(index, 16, 3, 8, seed=3, rank=r, world_size=2, crop="random", flip=True) for r in (0, 1)]
    for k in (0, 1, 2):  # batch 1 crosses the first epoch's end (10 images)
        assert torch.equal(one[k]["images"], torch.cat([two[0][k]["images"], two[1][k]["images"]]))
    # an epoch visits every image once
    assert sorted(one.index(p) for p in range(10)) == list(range(10))


def test_streamed_resume_is_exact_with_any_worker_count_and_bad_files_are_reported(tmp_path, capsys):
    from pygan.dcgan import DCGANTrainer

    root = _folder(tmp_path / "imgs", bad=True, gray=True)
    full = DCGANTrainer(_config(tmp_path / "full", root, workers=1))
    assert isinstance(full.source, Streaming)
    full.train()
    part = DCGANTrainer(_config(tmp_path / "part", root, steps=2, workers=1))
    part.train()
    for workers in (1, 0):  # the loader's own state, then the batch number alone
        resumed = DCGANTrainer.resume(str(tmp_path / "part" / "checkpoint.pt"), out=str(tmp_path / f"r{workers}"),
                                      steps=4, workers=workers)
        assert resumed.step == 2
        resumed.train()
        assert _losses(resumed.history)[-2:] == _losses(full.history)[-2:]
    notes = [r["data"] for r in full.history if "data" in r]
    assert len(notes) == 1 and notes[0].startswith("skipped 2 unreadable files (first: ")
    assert "cut.jpg" in notes[0] or "notes.jpg" in notes[0]
    assert "converted 1 greyscale images to RGB" in notes[0] and "gray.png" in notes[0]
    assert "skipped" in capsys.readouterr().err


def test_bad_data_stop_is_one_line_naming_the_file(tmp_path):
    from pygan.dcgan import DCGANTrainer

    root = _folder(tmp_path / "imgs", n=2, bad=True)
    tr = DCGANTrainer(_config(tmp_path / "run", root, bad_data="stop", steps=3))
    with pytest.raises(DataError) as e:
        tr.train()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("unreadable image ") and (".jpg" in msg)
    assert os.path.join(root, "cut.jpg") in msg or os.path.join(root, "notes.jpg") in msg


def test_a_folder_of_non_images_stops_with_a_data_error(tmp_path):
    from pygan.dcgan import DCGANTrainer

    root = tmp_path / "junk"
    root.mkdir()
    for i in range(3):
        (root / f"x{i}.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="unreadable images in a row|no readable image"):
        DCGANTrainer(_config(tmp_path / "run", str(root), steps=1)).train()


# ---------------------------------------------------------------- 2 gloo processes
def _ddp_worker(rank, world, init_file, root, out):
    from pygan.dcgan import DCGANTrainer

    os.environ["PYGAN_FOLDER_CACHE"] = os.path.join(out, "cache")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        full = DCGANTrainer(_config(os.path.join(out, "full"), root, workers=1))
        full.train()
        DCGANTrainer(_config(os.path.join(out, "part"), root, steps=2, workers=1)).train()
        resumed = DCGANTrainer.resume(os.path.join(out, "part", "checkpoint.pt"), out=os.path.join(out, "resumed"),
                                      steps=4)
        resumed.train()
        if rank == 0:
            with open(os.path.join(out, "losses.json"), "w") as f:
                json.dump({"full": _losses(full.history), "resumed": _losses(resumed.history)}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_streamed_resume_is_exact_on_two_processes(tmp_path):
    root = _folder(tmp_path / "imgs", bad=True)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), root, str(tmp_path)), nprocs=2, join=True)
    got = json.load(open(tmp_path / "losses.json"))
    assert len(got["full"]) == 4 and got["resumed"] == got["full"][2:]


def test_cyclegan_streams_both_domains_and_resumes_exactly(tmp_path):
    from pygan.cyclegan import CycleGANConfig, CycleGANTrainer

    a, b = _folder(tmp_path / "a", n=6), _folder(tmp_path / "b", n=5, gray=True)

    def config(out, **kw):
        base = dict(out=str(tmp_path / out), data_a=a, data_b=b, size=16, width=4, blocks=1, d_width=4, d_layers=2,
                    batch_size=2, steps=4, log_every=1, sample_every=100, checkpoint_every=2, grid_size=3,
                    pool_size=3, eval=False, progress=False, device="cpu", data_mode="stream", workers=0)
        return CycleGANConfig(**{**base, **kw})

    full = CycleGANTrainer(config("full"))
    assert isinstance(full.a, Streaming) and isinstance(full.b, Streaming)
    full.train()
    first = CycleGANTrainer(config("part"))  # interrupted after its second step (the lr schedule needs steps=4)
    for _ in range(2):
        first.log(first.iteration())
    path = first.save_checkpoint()
    first.a.close()
    first.b.close()
    resumed = CycleGANTrainer.resume(path, out=str(tmp_path / "r"))
    resumed.train()
    key = lambda h: [(r["loss_g"], r["loss_d_a"], r["loss_d_b"]) for r in h if "loss_g" in r]  # noqa: E731
    assert len(key(full.history)) == 4 and key(resumed.history) == key(full.history)[2:]
    assert any("b: converted 1 greyscale" in r.get("data", "") for r in full.history)


def test_sr_streams_hr_crops_and_resumes_exactly(tmp_path):
    from pygan.sr import SRConfig, SRTrainer

    root = _folder(tmp_path / "hr", n=5)  # 22x18 images
    Image.new("RGB", (8, 8)).save(os.path.join(root, "tiny.png"))  # smaller than the crop: skipped, reported

    def config(out, **kw):
        base = dict(data=root, out=str(tmp_path / out), scale=2, hr_crop=16, width=4, blocks=1, d_width=2,
                    steps=4, pretrain_steps=2, batch_size=2, log_every=1, sample_every=100, checkpoint_every=2,
                    eval=False, progress=False, device="cpu", data_mode="stream", workers=1)
        return SRConfig(**{**base, **kw})

    full = SRTrainer(config("full"))
    assert isinstance(full.stream, Streaming) and full.pairs is None
    lr, hr = full._batch()
    assert hr.shape == (2, 3, 16, 16) and lr.shape == (2, 3, 8, 8) and 0 <= hr.min() and hr.max() <= 1
    full = SRTrainer(config("full"))
    full.train()
    first = SRTrainer(config("part"))  # interrupted after its second step
    for _ in range(2):
        first.log(first.iteration())
    path = first.save_checkpoint()
    first.stream.close()
    resumed = SRTrainer.resume(path, out=str(tmp_path / "r"), workers=0)
    resumed.train()
    key = lambda h: [r["loss_g"] for r in h if "loss_g" in r]  # noqa: E731
    assert len(key(full.history)) == 4 and key(resumed.history) == key(full.history)[2:]
    notes = [r["data"] for r in full.history if "data" in r]
    assert notes and "tiny.png: ValueError: 8x8, smaller than the 16x16 crop" in notes[0]


class _Items(torch.utils.data.Dataset):
    """Image i is filled with i / 10 - 1, labelled i % 3; item 4 raises (a bad record in a user's dataset)."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 4:
            raise KeyError("record 4 is missing")
        return torch.full((1, 8, 8), i / 10 - 1), i % 3


def test_a_user_dataset_streams_by_index_with_bad_items_replaced():
    gen = torch.Generator().manual_seed(0)
    src = batch_source(_Items(), 8, None, SourceOptions(mode="stream", workers=0), gen=gen, batch_size=5, seed=1)
    assert isinstance(src, Streaming)
    seen = []
    for k in range(4):  # two epochs
        x, y = src.next()
        assert x.shape == (5, 1, 8, 8)
        values = [round(float(v) * 10) + 10 for v in x[:, 0, 0, 0]]
        assert all(torch.all(x[j] == x[j, 0, 0, 0]) for j in range(5))
        assert y.tolist() == [v % 3 for v in values]  # labels travel with their images
        expected = [src.dataset.index(k * 5 + j) for j in range(5)]
        assert [v for v, e in zip(values, expected) if e != 4] == [e for e in expected if e != 4]
        seen += values
    assert 4 not in seen and src.bad and "item 4 of the dataset: KeyError" in src.summary()
