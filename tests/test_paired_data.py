"""Paired batch sources (pygan.data.paired): the two layouts give the same pairs, A and B share their crop and flip,
memory and stream serve the same kind of batches, both resume exactly, rank slices make up the global batch, and
bad files and bad arguments give clear reports."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pygan.data import DataError, SourceOptions
from pygan.data.paired import PairedInMemory, PairedStreaming, load_paired, paired_source

N, H, W = 6, 10, 14          # pairs, and each image's height and width (not square: the centred square matters)
SIZE, LOAD = 8, 12           # the crop, and the side the shorter one is resized to


def _data(root, n=N):
    """Folders a/ and b/ (A: RGB noise; B = 255 - A's red channel, greyscale) and ab/, each A|B side by side."""
    rng = np.random.default_rng(0)
    for sub in ("a", "b", "ab"):
        os.makedirs(root / sub, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        b = 255 - a[..., 0]
        Image.fromarray(a).save(root / "a" / f"p{i}.png")
        Image.fromarray(b).save(root / "b" / f"p{i}.png")
        Image.fromarray(np.concatenate([a, np.repeat(b[..., None], 3, 2)], 1)).save(root / "ab" / f"p{i}.png")
    return str(root / "a"), str(root / "b"), str(root / "ab")


def _source(data_a, data_b, mode, batch_size=4, seed=0, flip=True, workers=0, bad_data="skip", **kw):
    options = SourceOptions(mode=mode, flip=flip, workers=workers, bad_data=bad_data)
    return paired_source(data_a, data_b, SIZE, 3, 1, options, gen=torch.Generator().manual_seed(seed),
                         batch_size=batch_size, seed=seed, load_size=LOAD, **kw)


def _pixels(x):
    return ((x + 1) * 127.5).round().to(torch.uint8)


def _locate(x, stored):
    """(pair, top, left, flipped) of the crop x (C, S, S) uint8 within the stored (N, C, L, L) squares."""
    room = stored.shape[-1] - x.shape[-1]
    found = [(i, t, l, f) for i in range(len(stored)) for t in range(room + 1) for l in range(room + 1)
             for f in (False, True)
             if torch.equal((x.flip(-1) if f else x), stored[i, :, t:t + x.shape[-1], l:l + x.shape[-1]])]
    assert len(found) == 1, found
    return found[0]


def test_both_layouts_give_the_same_pairs(tmp_path):
    a, b, ab = _data(tmp_path)
    two, one = load_paired(a, b, SIZE, 3, 1, load_size=LOAD), load_paired(ab, None, SIZE, 3, 1, load_size=LOAD)
    assert two.images.shape == (N, 3, LOAD, LOAD) and two.labels.shape == (N, 1, LOAD, LOAD)
    assert two.images.dtype == torch.uint8 and not two.skipped
    assert torch.equal(two.images, one.images) and torch.equal(two.labels, one.labels)
    # B really is its own A's pair: 255 - red, pixel by pixel (the resize may round either way)
    assert (two.labels[:, 0].int() + two.images[:, 0].int() - 255).abs().max() <= 1
    # streamed, both layouts decode the same jittered pairs at the same stream positions
    s2, s1 = _source(a, b, "stream"), _source(ab, None, "stream")
    for _ in range(3):
        for x, y in zip(s2.next(), s1.next()):
            assert torch.equal(x, y)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_a_and_b_get_the_same_crop_and_flip(tmp_path, mode):
    a, b, _ = _data(tmp_path)
    stored = load_paired(a, b, SIZE, 3, 1, load_size=LOAD)
    src = _source(a, b, mode)
    assert isinstance(src, PairedInMemory if mode == "memory" else PairedStreaming)
    seen = set()
    for _ in range(6):
        xa, xb = src.next()
        for pa, pb in zip(_pixels(xa), _pixels(xb)):
            where = _locate(pa, stored.images)
            assert _locate(pb, stored.labels) == where  # the same pair, offset and flip
            seen.add(where[1:])
    assert len({s[:2] for s in seen}) > 3 and {s[2] for s in seen} == {False, True}  # jitter happens
    # take: resized to the crop size, centred, not flipped - the same every time
    ta, tb = src.take([0, 1])
    assert ta.shape == (2, 3, SIZE, SIZE) and tb.shape == (2, 1, SIZE, SIZE)
    assert all(torch.equal(x, y) for x, y in zip((ta, tb), src.take([0, 1])))
    assert (_pixels(tb)[:, 0].int() + _pixels(ta)[:, 0].int() - 255).abs().max() <= 2


def test_memory_and_stream_serve_the_same_kind_of_batches(tmp_path):
    a, b, ab = _data(tmp_path)
    for data in ((a, b), (ab, None)):
        mem, stream = _source(*data, "memory"), _source(*data, "stream")
        assert isinstance(mem, PairedInMemory) and isinstance(stream, PairedStreaming)
        for src in (mem, stream):
            assert (len(src), src.channels, src.channels_b) == (N, 3, 1)
            for x, y in (src.next(), src.take([3, 4, 5])):
                assert x.shape[1:] == (3, SIZE, SIZE) and y.shape[1:] == (1, SIZE, SIZE) and len(x) == len(y)
                assert x.dtype == y.dtype == torch.float32 and x.device == y.device == torch.device("cpu")
                assert -1 <= float(min(x.min(), y.min())) and float(max(x.max(), y.max())) <= 1
            assert src.summary() == ""
    # auto: in memory while the uint8 pixels of both sides fit the limit, streamed above it
    opts = dict(gen=torch.Generator(), batch_size=2, load_size=LOAD)
    assert isinstance(paired_source(a, b, SIZE, 3, 1, SourceOptions(), **opts), PairedInMemory)
    big = SourceOptions(memory_limit_mb=N * 4 * LOAD * LOAD / 2**20 * 0.99, workers=0)
    assert isinstance(paired_source(a, b, SIZE, 3, 1, big, **opts), PairedStreaming)


def test_without_load_size_or_flip_memory_is_the_plain_draw(tmp_path):
    a, b, _ = _data(tmp_path)
    src = paired_source(a, b, SIZE, 3, 1, SourceOptions(mode="memory"), gen=torch.Generator().manual_seed(5),
                        batch_size=4)
    x, y = src.next()
    idx = torch.randint(0, N, (4,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, src.images[idx].float() / 127.5 - 1) and torch.equal(y, src.labels[idx].float() / 127.5 - 1)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_resume_is_exact(tmp_path, mode):
    a, b, _ = _data(tmp_path)
    full = _source(a, b, mode, seed=3)
    want = [full.next() for _ in range(5)][2:]
    part = _source(a, b, mode, seed=3, workers=1)
    for _ in range(2):
        part.next()
    state, gen_state = part.state_dict(), part.gen.get_state() if mode == "memory" else None
    part.close()
    for workers in (1, 0):  # streamed: the loader's own state, then the batch number alone
        resumed = _source(a, b, mode, seed=3, workers=workers)
        if mode == "memory":  # in memory the position is the trainer's generator, which its checkpoint restores
            resumed.next()
            resumed.gen.set_state(gen_state)
        resumed.load_state_dict(state)
        for x, y in zip(want, (resumed.next() for _ in range(3))):
            assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
        resumed.close()


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_rank_slices_make_up_the_global_batch(tmp_path, mode):
    _, _, ab = _data(tmp_path)
    one = _source(ab, None, mode, batch_size=4, seed=1)
    two = [_source(ab, None, mode, batch_size=4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(3):  # the third global batch crosses the first epoch's end (6 pairs)
        whole, halves = one.next(), [s.next() for s in two]
        assert halves[0][0].shape[0] == 2
        for side in (0, 1):
            assert torch.equal(whole[side], torch.cat([h[side] for h in halves]))


def _corrupt(tmp_path):
    """Two folders whose B p2.png is truncated, and a side-by-side folder with a junk file and an odd width."""
    a, b, ab = _data(tmp_path)
    whole = open(os.path.join(b, "p2.png"), "rb").read()
    open(os.path.join(b, "p2.png"), "wb").write(whole[: len(whole) // 2])
    open(os.path.join(ab, "p3.png"), "wb").write(b"not an image")
    Image.new("RGB", (2 * W + 1, H)).save(os.path.join(ab, "p4.png"))
    return a, b, ab


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_corrupt_files_are_skipped_and_reported_or_stop_by_name(tmp_path, mode):
    a, b, ab = _corrupt(tmp_path)
    bad_b, junk, odd = os.path.join(b, "p2.png"), os.path.join(ab, "p3.png"), os.path.join(ab, "p4.png")
    two, one = _source(a, b, mode, batch_size=N), _source(ab, None, mode, batch_size=N)
    for _ in range(2):  # a global batch is an epoch: every file is met
        two.next()
        one.next()
    assert two.summary().startswith(f"skipped 1 unreadable files (first: {bad_b}: ")
    assert one.summary().startswith("skipped 2 unreadable files (first: ")
    reasons = dict(one.skipped if mode == "memory" else one.bad)
    assert set(reasons) == {junk, odd} and reasons[odd].startswith(f"{2 * W + 1}x{H}: not two images side by side")
    if mode == "memory":
        assert len(two) == N - 1 and len(one) == N - 2
    for data, names in (((a, b), [bad_b]), ((ab, None), [junk, odd])):
        with pytest.raises(DataError) as e:
            _source(*data, mode, batch_size=N, bad_data="stop").next()
        msg = str(e.value)
        assert "\n" not in msg and any(msg.startswith(f"unreadable image {name}: ") for name in names)


def test_bad_arguments_are_one_line_data_errors(tmp_path):
    a, b, ab = _data(tmp_path)
    os.makedirs(tmp_path / "empty")
    os.makedirs(tmp_path / "single")
    for i in range(3):
        Image.new("RGB", (H, H)).save(tmp_path / "single" / f"s{i}.png")
    Image.new("RGB", (W, H)).save(tmp_path / "b" / "extra.png")
    os.makedirs(tmp_path / "one" / "a")
    os.makedirs(tmp_path / "one" / "b")
    Image.new("RGB", (W, H)).save(tmp_path / "one" / "a" / "x.png")
    Image.new("RGB", (W, H)).save(tmp_path / "one" / "b" / "x.png")
    cases = [((str(tmp_path / "nope"), b), "data_a: data folder not found: "),
             ((a, str(tmp_path / "nope")), "data_b: data folder not found: "),
             ((a, str(tmp_path / "empty")), "data_b: no images "),
             ((a, b), "data_a: .* no image matching extra.png of "),
             ((str(tmp_path / "single"), None), "data_a: .*single is not a folder of side-by-side A\\|B pairs"),
             ((str(tmp_path / "one" / "a"), str(tmp_path / "one" / "b")), "data_a: at least 2 pairs are needed")]
    for (data_a, data_b), match in cases:
        for mode in ("memory", "stream"):
            with pytest.raises(DataError, match=match) as e:
                _source(data_a, data_b, mode)
            assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="load_size"):
        paired_source(ab, None, SIZE, 3, 1, SourceOptions(), gen=torch.Generator(), batch_size=2, load_size=4)
