"""The SR system's commands: `pygan train srgan`, `pygan upscale`, and `pygan eval` on its checkpoints (its own
name: `pygan eval-sr`)."""

from __future__ import annotations

import json
import os

from pygan.fuse import fold_bn
from pygan.data import image_files
from pygan.sr.data import mod_crop, read_image, save_image
from pygan.sr.evaluate import CHECKPOINT, evaluate_sr, format_table, generators_from_checkpoint, read_checkpoint
from pygan.sr.trainer import SRTrainer
from pygan.sr.upscale import upscale
from pygan.training import pick_device
from pygan.training.cli import CheckpointCommand, CLIError, add_checkpoint_command, add_train_command


def register(train_commands, commands) -> dict:
    add_train_command(train_commands, "srgan", SRTrainer, "SRResNet, then SRGAN (super-resolution)",
                      "Train SRResNet on the pixel MSE, then fine-tune it as SRGAN (content + adversarial loss). With "
                      "no options: a light network on the bundled photos at x4, finishing in minutes on a CPU, then a "
                      "PSNR / SSIM table on the held-out photos.", report=_report)

    what = "`pygan train srgan`"
    u = add_checkpoint_command(commands, "upscale", "upscale an image with a trained SRResNet / SRGAN",
                               "Upscale an image with the generator of an SRGAN checkpoint, tile by tile (identical "
                               "to untiled up to rounding).", _upscale, what)
    u.add_argument("input", help="input image (png, jpg, ...)")
    u.add_argument("output", help="output PNG")
    u.add_argument("--stage", choices=("latest", "srresnet"), default="latest",
                   help="latest: the checkpoint's current generator (SRGAN once fine-tuned); srresnet: the one at the "
                        "end of pretraining (default: latest)")
    u.add_argument("--tile", type=int, default=128, help="LR tile size (0: whole image at once) (default: 128)")
    u.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    es = CheckpointCommand("eval-sr", "PSNR / SSIM table of an SRGAN checkpoint",
                           "PSNR / SSIM of bicubic, SRResNet and SRGAN on the held-out bundled photos (or a folder of "
                           "HR images), per image and mean.", _eval_sr, what)
    es.add_argument("--data", default="bundled", help="'bundled' (held-out photos) or a folder of HR images")
    es.add_argument("--convention", choices=("y", "rgb"), default="y",
                    help="y: BT.601 luma with a border crop of the scale (the paper's); rgb: all channels, same "
                         "crop (default: y)")
    es.add_argument("--json", action="store_true", help="print all metrics (both conventions) as JSON")
    return {CHECKPOINT.name: {"eval": es}}


def _report(metrics: dict) -> str:
    return (f"x{metrics['scale']}, PSNR (dB) / SSIM on the Y channel, border crop {metrics['scale']}:\n"
            + format_table(metrics))


def _upscale(a) -> int:
    if a.tile < 0:
        raise CLIError(f"--tile must be >= 0, got {a.tile}")
    gens = generators_from_checkpoint(read_checkpoint(a.checkpoint), pick_device(a.device))
    if a.stage == "srresnet":
        if "SRResNet" not in gens:
            raise CLIError(f"{a.checkpoint} has no SRResNet-stage generator")
        G = gens["SRResNet"]
    else:
        G = gens.get("SRGAN", gens.get("SRResNet"))
    save_image(upscale(fold_bn(G), read_image(a.input), tile=a.tile), a.output)
    print(a.output)
    return 0


def _eval_sr(a) -> int:
    ckpt = read_checkpoint(a.checkpoint)
    scale = ckpt["G_config"]["scale"]
    images = None
    if a.data != "bundled":
        images = [(os.path.relpath(f, a.data), mod_crop(read_image(f), scale)) for f in image_files(a.data)]
    m = evaluate_sr(generators_from_checkpoint(ckpt), scale, images)
    m["step"] = ckpt["step"]
    if a.json:
        print(json.dumps(m, indent=1))
    else:
        what = "Y channel (BT.601)" if a.convention == "y" else "RGB"
        print(f"checkpoint {a.checkpoint} (step {m['step']}), x{scale}, PSNR (dB) / SSIM on {what}, border crop {scale}:")
        print(format_table(m, a.convention))
    return 0
