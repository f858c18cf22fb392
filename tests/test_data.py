import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from pygan import data
from pygan.data import DataError


def test_digits_split_is_fixed_and_stratified():
    tr, ho = data.digits_split(16)
    assert tr.images.shape[1:] == (1, 16, 16) and len(tr) + len(ho) == 1797
    assert -1 <= tr.images.min() and tr.images.max() <= 1
    counts = torch.bincount(ho.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 per class)
    tr2, ho2 = data.digits_split(16)
    assert torch.equal(ho.images, ho2.images) and torch.equal(ho.labels, ho2.labels)
    assert torch.equal(data.load("digits", 16).images, tr.images)


def _png(path, value, size=(10, 14), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)


def test_image_folder_with_classes(tmp_path):
    _png(tmp_path / "cats" / "a.png", 255)
    _png(tmp_path / "cats" / "b.jpg", 0)
    _png(tmp_path / "dogs" / "young" / "c.png", 128, mode="L")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    d = data.load(str(tmp_path), 16, 3)
    assert d.images.shape == (3, 3, 16, 16) and d.classes == ["cats", "dogs/young"]
    assert d.labels.tolist() == [0, 0, 1]
    assert torch.allclose(d.images[0], torch.ones(3, 16, 16))
    assert d.images[1].max() < -0.9


def test_image_folder_flat_is_unlabelled_and_gray(tmp_path):
    _png(tmp_path / "a.png", 255)
    _png(tmp_path / "b.png", 0)
    d = data.load(str(tmp_path), 16, 1)
    assert d.labels is None and d.images.shape == (2, 1, 16, 16)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load(str(tmp_path / "missing"), 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        data.load(str(tmp_path / "empty"), 16)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image .*x.png"):
        data.load(str(tmp_path / "bad"), 16)


def _idx(path, arr):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def test_mnist_idx(tmp_path):
    x = np.random.randint(0, 256, (5, 28, 28), dtype=np.uint8)
    y = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    d = data.load(str(tmp_path / "train-images-idx3-ubyte.gz"), 32)
    assert d.images.shape == (5, 1, 32, 32) and d.labels.tolist() == [3, 1, 4, 1, 5] and d.num_classes == 6
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x09\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="magic"):
        data.load(str(bad), 16)


def test_npz(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.random.rand(4, 8, 8, 3).astype(np.float32), labels=[0, 1, 0, 1])
    d = data.load(str(tmp_path / "d.npz"), 16)
    assert d.images.shape == (4, 3, 16, 16) and d.labels.tolist() == [0, 1, 0, 1]
    assert -1 <= d.images.min() and d.images.max() <= 1
    np.savez(tmp_path / "e.npz", foo=np.zeros(3))
    with pytest.raises(DataError, match="no image array"):
        data.load(str(tmp_path / "e.npz"), 16)
    np.savez(tmp_path / "f.npz", x=np.zeros((3, 8, 8)), y=[1, 2])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        data.load(str(tmp_path / "f.npz"), 16)


def test_torch_dataset():
    ds = torch.utils.data.TensorDataset(torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6) % 2)
    d = data.load(ds, 16)
    assert d.images.shape == (6, 1, 16, 16) and d.labels.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(DataError, match="empty"):
        data.load(torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8)), 16)
