"""Atomic writes: the file that lands has the mode a plainly created file would (0666 less the umask)."""

import os
import stat

import pytest
import torch

from pygan import _io


@pytest.fixture
def umask():
    """Sets the process's umask for the test (returns the setter) and restores the previous one afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_all(folder):
    """One file per writer that the checkpoints, curves, metrics and sample grids go through."""
    with _io.atomic_path(str(folder / "metrics.json"), ".json") as tmp, open(tmp, "w") as f:
        f.write("{}\n")
    _io.atomic_torch_save({"x": torch.zeros(2)}, str(folder / "checkpoint.pt"))
    _io.save_grid(torch.zeros(4, 3, 8, 8), str(folder / "grid.png"))
    return [folder / "metrics.json", folder / "checkpoint.pt", folder / "grid.png"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    for path in _write_all(tmp_path):
        assert _mode(path) == expected, path.name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_umask_read_at_import_where_proc_cannot_tell(tmp_path, umask, monkeypatch):
    monkeypatch.setattr(_io, "_umask_from_proc", lambda: None)
    monkeypatch.setattr(_io, "_UMASK_AT_IMPORT", 0o027)
    with _io.atomic_path(str(tmp_path / "f.txt")) as tmp, open(tmp, "w") as f:
        f.write("x")
    assert _mode(tmp_path / "f.txt") == 0o640


def test_the_live_umask_is_read_without_changing_it(umask):
    umask(0o037)
    if _io._umask_from_proc() is None:
        pytest.skip("no Umask line in /proc/self/status here")
    assert _io.file_mode() == 0o640 and os.umask(0o037) == 0o037
