"""Super-resolution data: high-resolution (HR) images, with the low-resolution (LR) inputs made from them.

LR = bicubic downsampling with antialiasing (torch's, which matches PIL's bicubic reduction), clamped to [0, 1]
and rounded to 8 bits like a saved image. Training pairs are random HR crops (96x96 by default) with random flips
and 90-degree rotations, the LR made on the fly; or, from a folder of ready pairs (`lr/` and `hr/` with the same
file names), aligned crops of both. Everything is local: the embedded default is the natural photos bundled with
scikit-image and scikit-learn, split once and for all into the training images and the held-out images below
(never trained on; gray photos are used as RGB with three equal channels).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pygan._io import atomic_path
from pygan.data import DataError, image_files, pair_files

TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle_left", "hubble_deep_field", "immunohistochemistry",
                "china", "brick", "grass", "gravel", "moon")
HELD_OUT_PHOTOS = ("chelsea", "flower", "camera", "coins")


def bundled_photo(name: str) -> Tensor:
    """One of the bundled photos as a float (3, H, W) tensor in [0, 1]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    elif name in TRAIN_PHOTOS + HELD_OUT_PHOTOS:
        import skimage
        import skimage.data
        import skimage.io

        if name == "motorcycle_left":  # in skimage's data folder, without a loader function
            arr = skimage.io.imread(os.path.join(os.path.dirname(skimage.data.__file__), "motorcycle_left.png"))
        else:
            arr = getattr(skimage.data, name)()
    else:
        raise DataError(f"unknown bundled photo {name!r}; the bundled photos are "
                        f"{', '.join(TRAIN_PHOTOS + HELD_OUT_PHOTOS)}")
    return _to_tensor(arr, name)


def _to_tensor(arr: np.ndarray, what: str) -> Tensor:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise DataError(f"{what}: expected an 8-bit gray, RGB or RGBA image, got {arr.dtype} array of shape {arr.shape}")
    return torch.from_numpy(np.array(arr[:, :, :3], copy=True)).permute(2, 0, 1).float() / 255.0


def read_image(path: str) -> Tensor:
    """An image file as a float (3, H, W) RGB tensor in [0, 1]; DataError naming the file when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return _to_tensor(arr, path)


def save_image(x: Tensor, path: str) -> None:
    """(3, H, W) or (1, H, W) in [0, 1] -> an 8-bit PNG, written atomically."""
    from PIL import Image

    arr = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path, ".png") as tmp:
        im.save(tmp, format="PNG")


def make_lr(hr: Tensor, scale: int) -> Tensor:
    """Bicubic, antialiased downsampling by `scale` of (N, C, H, W) or (C, H, W) in [0, 1] (H, W multiples of
    scale), clamped and rounded to 8 bits."""
    x = hr[None] if hr.dim() == 3 else hr
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {scale}")
    lr = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    lr = (lr.clamp(0, 1) * 255).round() / 255
    return lr[0] if hr.dim() == 3 else lr


def bicubic_upscale(lr: Tensor, scale: int) -> Tensor:
    """The baseline: bicubic interpolation up by `scale`, clamped to [0, 1]."""
    x = lr[None] if lr.dim() == 3 else lr
    up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return up[0] if lr.dim() == 3 else up


def mod_crop(hr: Tensor, scale: int) -> Tensor:
    """Crops the bottom/right so that H and W are multiples of `scale`."""
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def held_out_images(scale: int) -> list[tuple[str, Tensor]]:
    """The held-out bundled photos as (name, HR) with sizes made multiples of `scale`."""
    return [(name, mod_crop(bundled_photo(name), scale)) for name in HELD_OUT_PHOTOS]


class PairSampler:
    """Random (LR, HR) training crops: from HR images (LR made on the fly) or from ready LR/HR pairs.

    A crop's image is drawn with probability proportional to its number of crop positions (big photos give more
    crops), then its position uniformly; flips and 90-degree rotations are applied to HR before LR is made (or to
    both, for ready pairs). All randomness comes from the torch.Generator passed to `sample`.
    """

    def __init__(self, hr: list[Tensor], scale: int, hr_crop: int = 96, lr: list[Tensor] | None = None,
                 names: list[str] | None = None, augment: bool = True):
        if not isinstance(hr_crop, int) or hr_crop < 16 or hr_crop % scale:
            raise ValueError(f"hr_crop must be a multiple of the scale ({scale}) and >= 16, got {hr_crop!r}")
        if not hr:
            raise DataError("no training images")
        names = names or [f"image {i}" for i in range(len(hr))]
        for name, img in zip(names, hr):
            if min(img.shape[-2:]) < hr_crop:
                raise DataError(f"{name} is {img.shape[-1]}x{img.shape[-2]}, smaller than the {hr_crop}x{hr_crop} HR "
                                f"crop: remove it or choose a smaller --hr-crop")
        if lr is not None:
            for name, a, b in zip(names, lr, hr):
                if tuple(a.shape[-2:]) != (b.shape[-2] // scale, b.shape[-1] // scale):
                    raise DataError(f"{name}: LR is {a.shape[-1]}x{a.shape[-2]} but HR {b.shape[-1]}x{b.shape[-2]} "
                                    f"needs {b.shape[-1] // scale}x{b.shape[-2] // scale} at scale {scale}")
        self.hr, self.lr, self.scale, self.hr_crop, self.augment = hr, lr, scale, hr_crop, augment
        # crop positions on the LR grid (multiples of scale in HR), so ready pairs stay aligned
        self.positions = [((img.shape[-2] - hr_crop) // scale + 1, (img.shape[-1] - hr_crop) // scale + 1) for img in hr]
        self.weights = torch.tensor([float(a * b) for a, b in self.positions], dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.hr)

    def sample(self, n: int, gen: torch.Generator, keep: slice | None = None) -> tuple[Tensor, Tensor]:
        """(LR (n, 3, c/s, c/s), HR (n, 3, c, c)): float32 CPU tensors in [0, 1]; `gen` is a CPU generator.
        `keep`: cut only these of the n drawn crops (one rank's share: the draws, and so `gen`, are the same)."""
        s, c = self.scale, self.hr_crop
        which = torch.multinomial(self.weights, n, replacement=True, generator=gen).tolist()
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        aug = torch.randint(0, 8, (n,), generator=gen).tolist() if self.augment else [0] * n
        hrs, lrs = [], []
        for k in range(n)[keep or slice(None)]:
            i = which[k]
            ph, pw = self.positions[i]
            y, x = int(u[k, 0] * ph), int(u[k, 1] * pw)
            hrs.append(_augment(self.hr[i][:, y * s: y * s + c, x * s: x * s + c], aug[k]))
            if self.lr is not None:
                lrs.append(_augment(self.lr[i][:, y: y + c // s, x: x + c // s], aug[k]))
        hr = torch.stack(hrs)
        return (torch.stack(lrs) if self.lr is not None else make_lr(hr, s)), hr


def _augment(x: Tensor, k: int) -> Tensor:
    """One of the 8 symmetries of the square: k & 3 quarter turns, then a horizontal flip if k & 4."""
    x = torch.rot90(x, k & 3, dims=(-2, -1))
    return x.flip(-1) if k & 4 else x


def load_pairs(source: str, scale: int, hr_crop: int, augment: bool = True) -> PairSampler:
    """'bundled' (the training photos), a folder of HR images, or a folder with `lr/` and `hr/` sub-folders of
    ready pairs (same file names)."""
    if source == "bundled":
        return PairSampler([bundled_photo(n) for n in TRAIN_PHOTOS], scale, hr_crop, names=list(TRAIN_PHOTOS),
                           augment=augment)
    if not os.path.isdir(source):
        raise DataError(f"data folder not found: {source} (expected 'bundled' or a folder of images)")
    lr_dir, hr_dir = os.path.join(source, "lr"), os.path.join(source, "hr")
    if os.path.isdir(lr_dir) and os.path.isdir(hr_dir):
        pairs = pair_files(lr_dir, hr_dir)
        hr = [mod_crop(read_image(f), scale) for _, f in pairs]
        lr = [read_image(f) for f, _ in pairs]
        return PairSampler(hr, scale, hr_crop, lr=lr, names=[f for _, f in pairs], augment=augment)
    files = image_files(source)
    return PairSampler([read_image(f) for f in files], scale, hr_crop, names=files, augment=augment)
