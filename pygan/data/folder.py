"""A folder of images scanned once: the sorted file list (relative paths, sizes, modification times) and the class
of each file (its sub-folder), cached so that a restart does not walk a large tree again.

The cache lives outside the user's data folder, in <hash of the folder's absolute path>.json under
$PYGAN_FOLDER_CACHE, else the folders/ sub-folder of pygan's cache ($PYGAN_CACHE, else $XDG_CACHE_HOME/pygan or
~/.cache/pygan, as the metrics' cached classifiers). It is valid while every directory of the tree keeps the
modification time it had at the scan (adding, removing or renaming a file changes its directory's mtime); checking
that stats the directories only, not the files. It is written atomically; an unwritable cache dir is not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from pygan._io import atomic_path, cache_root
from pygan.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CACHE_VERSION = 1


@dataclass
class FolderIndex:
    root: str                 # absolute path of the folder
    files: list[str]          # paths relative to root, sorted (directories walked in sorted order)
    sizes: list[int]          # bytes, at the scan
    mtimes: list[int]         # st_mtime_ns, at the scan
    labels: list[int] | None  # class index of each file, or None when unlabelled
    classes: list[str]        # class names (sub-folder paths), empty when unlabelled
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i])


def cache_dir() -> str:
    if os.environ.get("PYGAN_FOLDER_CACHE"):
        return os.environ["PYGAN_FOLDER_CACHE"]
    return os.path.join(cache_root(), "folders")


def cache_path(root: str) -> str:
    key = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:20]
    return os.path.join(cache_dir(), key + ".json")


def _walk(root: str):
    """(files, sizes, mtimes, dir_mtimes): every image file under root, directories in sorted order."""
    files, sizes, mtimes, dirs = [], [], [], {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirs[os.path.relpath(dirpath, root)] = os.stat(dirpath).st_mtime_ns
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                full = os.path.join(dirpath, f)
                try:
                    st = os.stat(full)
                except OSError:  # a dangling link: reported like any unreadable file when it is read
                    st = None
                files.append(os.path.relpath(full, root))
                sizes.append(st.st_size if st else -1)
                mtimes.append(st.st_mtime_ns if st else -1)
    return files, sizes, mtimes, dirs


def _dirs_unchanged(root: str, dirs: dict) -> bool:
    try:
        return all(os.stat(os.path.join(root, d)).st_mtime_ns == m for d, m in dirs.items())
    except OSError:
        return False


def _classes(files: list[str]) -> tuple[list[int] | None, list[str]]:
    """Files in sub-folders get their sub-folder as class; with files directly in root (or one class): unlabelled."""
    rel_dirs = [os.path.dirname(f) for f in files]
    if any(d == "" for d in rel_dirs):
        return None, []
    classes = sorted(set(rel_dirs))
    if len(classes) < 2:
        return None, []
    lookup = {c: i for i, c in enumerate(classes)}
    return [lookup[d] for d in rel_dirs], classes


def scan_folder(root: str, use_cache: bool = True) -> FolderIndex:
    """The FolderIndex of `root` (see the module docstring); DataError (pygan.data) when there is nothing to read."""
    if not os.path.isdir(root):
        raise DataError(f"data folder not found: {root}")
    root = os.path.abspath(root)
    cached = cache_path(root)
    if use_cache and os.path.isfile(cached):
        try:
            with open(cached) as f:
                c = json.load(f)
            if c.get("version") == CACHE_VERSION and c.get("root") == root and _dirs_unchanged(root, c["dirs"]):
                labels, classes = _classes(c["files"])
                return FolderIndex(root, c["files"], c["sizes"], c["mtimes"], labels, classes, from_cache=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable cache is rebuilt
    files, sizes, mtimes, dirs = _walk(root)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    if use_cache:
        try:
            with atomic_path(cached, ".json") as tmp, open(tmp, "w") as f:
                json.dump({"version": CACHE_VERSION, "root": root, "dirs": dirs, "files": files, "sizes": sizes,
                           "mtimes": mtimes}, f)
        except OSError:
            pass  # a read-only home: the scan is simply not cached
    labels, classes = _classes(files)
    return FolderIndex(root, files, sizes, mtimes, labels, classes)
