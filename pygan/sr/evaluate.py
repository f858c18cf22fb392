"""Using a trained SRResNet / SRGAN: the generators a checkpoint holds, their PSNR / SSIM table on held-out photos
next to bicubic, and a side-by-side comparison picture."""

from __future__ import annotations

import torch

from pygan.sr.data import bicubic_upscale, held_out_images, make_lr
from pygan.sr.metrics import CONVENTIONS, psnr, ssim
from pygan.sr.models import SRResNet
from pygan.training import CheckpointFormat
from pygan.sr.data import save_image

CHECKPOINT = CheckpointFormat("pygan-srgan-checkpoint-v1", "SRGAN")
read_checkpoint = CHECKPOINT.read



def generators_from_checkpoint(ckpt: dict, device="cpu") -> dict[str, SRResNet]:
    """The generators a checkpoint holds, in eval mode: 'SRResNet' (end of pretraining) and, once the SRGAN stage
    has begun, 'SRGAN' (the latest)."""
    out = {}
    cfg = ckpt["config"]
    states = {}
    if ckpt["G_srresnet"] is not None:
        states["SRResNet"] = ckpt["G_srresnet"]
    if ckpt["step"] > cfg["pretrain_steps"] or ckpt["G_srresnet"] is None:
        states["SRGAN" if ckpt["step"] > cfg["pretrain_steps"] else "SRResNet"] = CHECKPOINT.generator_state(ckpt)
    for name, state in states.items():
        G = SRResNet(**ckpt["G_config"])
        G.load_state_dict(state)
        out[name] = G.to(device).eval()
    return out


@torch.no_grad()
def evaluate_sr(generators: dict[str, torch.nn.Module], scale: int, images=None) -> dict:
    """PSNR / SSIM (both conventions: 'y' = BT.601 luma, and 'rgb'; border crop = scale) of bicubic and each
    generator on each held-out image (default: the held-out bundled photos) and their means."""
    images = images if images is not None else held_out_images(scale)
    methods = {"bicubic": None, **generators}
    rows = []
    for name, hr in images:
        lr = make_lr(hr, scale)
        row = {"image": name, "size": list(hr.shape[-2:])}
        for method, G in methods.items():
            if G is None:
                sr = bicubic_upscale(lr, scale)
            else:
                p = next(G.parameters())
                sr = G(lr[None].to(p.device, p.dtype))[0].float().cpu().clamp(0, 1)
            for conv in CONVENTIONS:
                row[f"{method}/psnr_{conv}"] = psnr(sr, hr, scale, conv)
                row[f"{method}/ssim_{conv}"] = ssim(sr, hr, scale, conv)
        rows.append(row)
    keys = [k for k in rows[0] if "/" in k]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    return {"scale": scale, "methods": list(methods), "images": rows, "mean": mean}


@torch.no_grad()
def save_comparison(generators: dict[str, torch.nn.Module], scale: int, path: str, crop: int = 128) -> None:
    """A PNG of the same held-out crop side by side: bicubic | each generator | original (`crop` HR pixels square,
    from the centre of the first held-out photo), each panel enlarged 2x (nearest) so the detail is visible."""
    name, hr = held_out_images(scale)[0]
    lr = make_lr(hr, scale)
    c = crop // scale
    y0, x0 = (lr.shape[-2] - c) // 2, (lr.shape[-1] - c) // 2
    # upscale the whole image, then cut: the crop's border sees its real context, as in the table
    panels = [bicubic_upscale(lr, scale)]
    for G in generators.values():
        p = next(G.parameters())
        panels.append(G(lr[None].to(p.device, p.dtype))[0].float().cpu().clamp(0, 1))
    panels.append(hr)
    cut = [x[:, y0 * scale:(y0 + c) * scale, x0 * scale:(x0 + c) * scale] for x in panels]
    gap = torch.ones(3, crop, 4)
    row = torch.cat([t for x in cut for t in (x, gap)][:-1], -1)
    save_image(row.repeat_interleave(2, -1).repeat_interleave(2, -2), path)


def format_table(metrics: dict, convention: str = "y") -> str:
    """A markdown table: one row per image and the mean, PSNR (dB) / SSIM per method."""
    methods = metrics["methods"]
    head = "| image | " + " | ".join(f"{m} PSNR / SSIM" for m in methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 1)]
    for r in metrics["images"] + [{"image": "**mean**", **metrics["mean"]}]:
        cells = [f"{r[f'{m}/psnr_{convention}']:.2f} / {r[f'{m}/ssim_{convention}']:.4f}" for m in methods]
        lines.append(f"| {r['image']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
