"""The history of generated images a discriminator trains on (Shrivastava et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor


class ImagePool:
    """The last `size` generated images: each new image is returned as is while the pool fills; then, with
    probability 1/2, a stored image is returned instead and the new one takes its place. Draws come from the
    caller's generator (checkpointed with the run), the pool's images from `state_dict`: resume is exact."""

    def __init__(self, size: int):
        self.size = size
        self.images: Tensor | None = None  # (k, C, H, W), k <= size

    def query(self, x: Tensor, gen: torch.Generator) -> Tensor:
        if self.size == 0:
            return x
        out = []
        for img in x.detach():
            img = img[None]
            n = 0 if self.images is None else self.images.shape[0]
            if n < self.size:
                self.images = img.clone() if self.images is None else torch.cat([self.images, img])
                out.append(img)
                continue
            swap = torch.rand((), generator=gen, device=gen.device) < 0.5
            j = int(torch.randint(0, n, (), generator=gen, device=gen.device))
            if swap:
                out.append(self.images[j:j + 1].clone())
                self.images[j] = img[0]
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": None if self.images is None else self.images.cpu()}

    def load_state_dict(self, state: dict, device) -> None:
        self.size = state["size"]
        self.images = None if state["images"] is None else state["images"].to(device)
