import os
import zlib

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Every op test runs on each of these; CUDA ones are marked and skipped without a GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda])]


@pytest.fixture(autouse=True, scope="session")
def _folder_cache(tmp_path_factory):
    # folder scans (pygan.data.folder) cache their file lists under $PYGAN_FOLDER_CACHE: a temp dir, not ~/.cache
    old = os.environ.get("PYGAN_FOLDER_CACHE")
    os.environ["PYGAN_FOLDER_CACHE"] = str(tmp_path_factory.mktemp("pygan-cache"))
    yield
    if old is None:
        os.environ.pop("PYGAN_FOLDER_CACHE", None)
    else:
        os.environ["PYGAN_FOLDER_CACHE"] = old


@pytest.fixture(autouse=True)
def _seed(request):
    # Fresh random data per test, reproducible from the test's name.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def emu():
    """pygan's CUDA kernels run on the CPU under emulation (tests/emulation.py): torch.ops.pygan_emu, built on first
    use; the emulated GPU in its default configuration."""
    import emulation

    with emulation.single_threaded():
        emulation.load()
        emulation.configure()
        yield torch.ops.pygan_emu
        emulation.configure()
