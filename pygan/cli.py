"""The `pygan` command: train (dcgan, srgan), sample, interpolate, eval, upscale, eval-sr. Errors in user input end
with one line, not a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from pygan.sr.train import SRTrainConfig
from pygan.train import TrainConfig

TRAIN_HELP = {
    "data": "training data: 'digits' (scikit-learn's bundled digits, train split), a folder of images "
            "(png/jpg; sub-folders are classes), an .npz file (arrays x/images [, y/labels]) or an MNIST idx images file",
    "out": "output folder: checkpoint.pt, log.jsonl, samples/*.png, curves.png, metrics.json",
    "size": "image size: 16, 32, 64 or 128",
    "channels": "image channels, 1 or 3 (0: from the data; digits are 1, image folders 3)",
    "conditional": "class-conditional DCGAN (labels from the data)",
    "latent_dim": "latent vector size",
    "g_width": "generator width: channels of its last hidden layer, doubled towards the 4x4 input",
    "d_width": "discriminator width: channels of its first layer, doubled at each downsampling",
    "steps": "generator steps (iterations) to train",
    "batch_size": "minibatch size",
    "d_steps": "discriminator steps per generator step (k)",
    "loss": "GAN loss: minimax, non_saturating, max_likelihood, wasserstein, hinge or least_squares",
    "lr_g": "generator learning rate (Adam)",
    "lr_d": "discriminator learning rate (Adam)",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "label_smoothing": "one-sided label smoothing: D's target for real images is 1 - this",
    "instance_noise": "std of Gaussian noise added to D's inputs at the start, decaying linearly to 0",
    "instance_noise_steps": "steps over which the instance noise decays (0: the whole run)",
    "gp_weight": "WGAN-GP gradient penalty weight (0: off)",
    "r1_weight": "R1 gradient penalty weight (0: off)",
    "r1_every": "apply R1 on every this many discriminator steps only, its weight multiplied by as much (lazy "
                "regularisation, StyleGAN2; 1: every step)",
    "ema_decay": "decay of the exponential moving average of G's weights used for samples (0: off)",
    "amp": "autocast precision: none, bf16 or fp16",
    "channels_last": "channels_last memory format for models and inputs",
    "compile": "torch.compile the generator and discriminator",
    "fused": "use pygan's fused BN+activation kernels (--no-fused: stock torch.nn layers)",
    "seed": "random seed (models, minibatches, noise)",
    "device": "auto, cpu, cuda or cuda:N",
    "log_every": "write a log.jsonl line every this many steps",
    "sample_every": "save a fixed-noise sample grid (and the loss plot) every this many steps",
    "checkpoint_every": "write checkpoint.pt every this many steps (always at the end)",
    "grid_size": "images in each sample grid",
    "collapse_ratio": "warn about mode collapse when the samples' mean pairwise distance is below this "
                      "fraction of real images'",
    "eval_samples": "digits only: generated images scored by the digits classifier at the end (0: skip)",
    "progress": "show the progress bar (--no-progress: hide it)",
}


SR_TRAIN_HELP = {
    "data": "training data: 'bundled' (the training split of the photos bundled with scikit-image and "
            "scikit-learn), a folder of images (HR; LR made by bicubic downsampling), or a folder with lr/ and hr/ "
            "sub-folders of ready pairs with the same file names",
    "out": "output folder: checkpoint.pt, log.jsonl, samples/*.png (bicubic | model | original), curves.png, "
           "metrics.json",
    "scale": "upscaling factor: 2 or 4",
    "hr_crop": "size of the random HR training crops (a multiple of the scale)",
    "width": "generator channels (the paper: 64)",
    "blocks": "generator residual blocks (the paper: 16)",
    "bicubic_skip": "add the bicubic upscaling of the input to the generator's output: it learns only the missing "
                    "detail (--no-bicubic-skip: the paper's form)",
    "d_width": "discriminator width: channels of its first layer (the paper: 64)",
    "pretrain_steps": "SRResNet steps on the pixel MSE (stage 1)",
    "gan_steps": "SRGAN fine-tuning steps after stage 1 (0: SRResNet only)",
    "batch_size": "minibatch size",
    "lr": "Adam learning rate of the generator and the discriminator",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "content": "content loss of the SRGAN stage: mse, or vgg (VGG19 features; needs --vgg-weights)",
    "vgg_layer": "VGG19 layer i_j of the VGG loss (after the activation of conv j before pooling i)",
    "vgg_weights": "local torchvision VGG19 state_dict for --content vgg (or set PYGAN_VGG19_WEIGHTS); "
                   "nothing is downloaded",
    "adv_weight": "weight of the adversarial loss in the SRGAN stage",
    "loss": "adversarial loss: minimax, non_saturating, max_likelihood, wasserstein, hinge or least_squares",
    "ema_decay": "decay of an exponential moving average of the generator's weights used for evaluation (0: off)",
    "amp": "autocast precision: none, bf16 or fp16",
    "channels_last": "channels_last memory format for models and inputs (faster convolutions on CPU and GPU)",
    "compile": "torch.compile the generator and discriminator",
    "fused": "use pygan's fused BN+activation kernels (--no-fused: stock torch.nn layers)",
    "seed": "random seed (models, crops)",
    "device": "auto, cpu, cuda or cuda:N",
    "log_every": "write a log.jsonl line every this many steps",
    "sample_every": "save a held-out sample (bicubic | model | original) and the loss plot every this many steps",
    "checkpoint_every": "write checkpoint.pt every this many steps (always at the end)",
    "eval": "evaluate on the held-out bundled photos at the end (PSNR / SSIM table)",
    "progress": "show the progress bar (--no-progress: hide it)",
}


class CLIError(Exception):
    pass


def _add_train_options(p: argparse.ArgumentParser, config_class=TrainConfig, helps=TRAIN_HELP) -> None:
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        h = helps[f.name]
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{h} (default: {f.default})")
        else:
            typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, type=typ, default=None, metavar=f.name.upper(), help=f"{h} (default: {f.default})")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's default; on a busy machine 1 can be much faster)")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its checkpoint.pt exactly; options given here override the saved ones "
                        "(e.g. --steps to train longer)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pygan", description="Train and use GANs (pygan).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser("train", help="train a model", description="Train a model.")
    trs = tr.add_subparsers(dest="model", required=True, metavar="MODEL")
    dc = trs.add_parser("dcgan", help="DCGAN (optionally class-conditional)",
                        description="Train a DCGAN. With no options: the embedded digits at 32x32, finishing in "
                                    "minutes on a CPU, then scored by the digits classifier.")
    _add_train_options(dc)
    sr = trs.add_parser("srgan", help="SRResNet, then SRGAN (super-resolution)",
                        description="Train SRResNet on the pixel MSE, then fine-tune it as SRGAN (content + adversarial "
                                    "loss). With no options: a light network on the bundled photos at x4, finishing "
                                    "in minutes on a CPU, then a PSNR / SSIM table on the held-out photos.")
    _add_train_options(sr, SRTrainConfig, SR_TRAIN_HELP)

    def ckpt_parser(name, help_, desc):
        sp = sub.add_parser(name, help=help_, description=desc)
        sp.add_argument("checkpoint", help="a checkpoint.pt written by `pygan train`")
        sp.add_argument("--no-ema", action="store_true", help="use the trained generator instead of its EMA")
        sp.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
        return sp

    s = ckpt_parser("sample", "write a grid of generated images", "Write a PNG grid of generated images.")
    s.add_argument("--n", type=int, default=64, help="number of images (default: 64)")
    s.add_argument("--out", default="samples.png", help="output PNG (default: samples.png)")
    s.add_argument("--label", type=int, default=None,
                   help="conditional models: generate this class only (default: classes in turn)")
    s.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG (default: 2)")

    i = ckpt_parser("interpolate", "latent-space interpolation rows",
                    "Write a PNG whose rows walk in a straight line between two random latent vectors.")
    i.add_argument("--rows", type=int, default=8, help="number of interpolations (default: 8)")
    i.add_argument("--steps", type=int, default=10, help="images per row (default: 10)")
    i.add_argument("--out", default="interpolate.png", help="output PNG (default: interpolate.png)")
    i.add_argument("--label", type=int, default=None, help="conditional models: class of every row (default: row index)")
    i.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the PNG (default: 2)")

    e = ckpt_parser("eval", "score a digits generator", "Score a generator trained on the digits with the digits "
                    "classifier: confidence, class histogram, Fréchet distances with bootstrap intervals.")
    e.add_argument("--n", type=int, default=1000, help="generated images to score (default: 1000)")
    e.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the intervals (default: 100)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")

    u = sub.add_parser("upscale", help="upscale an image with a trained SRResNet / SRGAN",
                       description="Upscale an image with the generator of an SRGAN checkpoint, tile by tile "
                                   "(identical to untiled up to rounding).")
    u.add_argument("checkpoint", help="a checkpoint.pt written by `pygan train srgan`")
    u.add_argument("input", help="input image (png, jpg, ...)")
    u.add_argument("output", help="output PNG")
    u.add_argument("--stage", choices=("latest", "srresnet"), default="latest",
                   help="latest: the checkpoint's current generator (SRGAN once fine-tuned); srresnet: the one at the "
                        "end of pretraining (default: latest)")
    u.add_argument("--tile", type=int, default=128, help="LR tile size (0: whole image at once) (default: 128)")
    u.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    es = sub.add_parser("eval-sr", help="PSNR / SSIM table of an SRGAN checkpoint",
                        description="PSNR / SSIM of bicubic, SRResNet and SRGAN on the held-out bundled photos (or "
                                    "a folder of HR images), per image and mean.")
    es.add_argument("checkpoint", help="a checkpoint.pt written by `pygan train srgan`")
    es.add_argument("--data", default="bundled", help="'bundled' (held-out photos) or a folder of HR images")
    es.add_argument("--convention", choices=("y", "rgb"), default="y",
                    help="y: BT.601 luma with a border crop of the scale (the paper's); rgb: all channels, same "
                         "crop (default: y)")
    es.add_argument("--json", action="store_true", help="print all metrics (both conventions) as JSON")
    return p


def _labels(ckpt: dict, n: int, label: int | None):
    import torch

    k = ckpt["num_classes"]
    if not k:
        if label is not None:
            raise CLIError("--label given but the model is not conditional")
        return None
    if label is not None and not 0 <= label < k:
        raise CLIError(f"--label must be in 0..{k - 1}, got {label}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % k


def _positive(name: str, v: int) -> None:
    if v < 1:
        raise CLIError(f"{name} must be >= 1, got {v}")


def cmd_train(a) -> int:
    import torch

    if a.model == "srgan":
        from pygan.sr.train import SRTrainer as trainer_class, format_table
    else:
        from pygan.train import Trainer as trainer_class

    if a.threads:
        _positive("--threads", a.threads)
        torch.set_num_threads(a.threads)
    config_class = trainer_class.config_class
    given = {f.name: getattr(a, f.name) for f in dataclasses.fields(config_class) if getattr(a, f.name) is not None}
    if a.resume:
        trainer = trainer_class.resume(a.resume, **given)
        if trainer.is_main:
            print(f"resuming {a.resume} at step {trainer.step}", file=sys.stderr)
    else:
        trainer = trainer_class(config_class(**given))
    metrics = trainer.train()
    if not trainer.is_main:  # under torchrun: rank 0 reports
        return 0
    print(f"checkpoint: {trainer.checkpoint_path}")
    if metrics and a.model == "srgan":
        print(f"x{metrics['scale']}, PSNR (dB) / SSIM on the Y channel, border crop {metrics['scale']}:")
        print(format_table(metrics))
    elif metrics:
        _print_metrics(metrics)
    return 0


def cmd_sample(a) -> int:
    import torch

    from pygan._io import save_grid
    from pygan.train import load_generator

    _positive("--n", a.n)
    _positive("--scale", a.scale)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    y = _labels(ckpt, a.n, a.label)
    z = torch.randn(a.n, G.latent_dim, generator=torch.Generator().manual_seed(a.seed))
    with torch.no_grad():
        x = G(z, y) if y is not None else G(z)
    nrow = ckpt["num_classes"] if y is not None and a.label is None and a.n % ckpt["num_classes"] == 0 else None
    save_grid(x, a.out, nrow, a.scale)
    print(a.out)
    return 0


def cmd_interpolate(a) -> int:
    import torch

    from pygan._io import save_grid
    from pygan.train import load_generator

    _positive("--rows", a.rows)
    _positive("--steps", a.steps)
    _positive("--scale", a.scale)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    g = torch.Generator().manual_seed(a.seed)
    z0, z1 = torch.randn(2, a.rows, G.latent_dim, generator=g)
    t = torch.linspace(0, 1, a.steps)[None, :, None]
    z = (z0[:, None] * (1 - t) + z1[:, None] * t).reshape(-1, G.latent_dim)
    y = None
    if ckpt["num_classes"]:
        rows = _labels(ckpt, a.rows, a.label)
        y = rows.repeat_interleave(a.steps)
    with torch.no_grad():
        x = G(z, y) if y is not None else G(z)
    save_grid(x, a.out, a.steps, a.scale)
    print(a.out)
    return 0


def _print_metrics(m: dict) -> None:
    print(f"digits classifier held-out accuracy: {m['classifier_held_out_accuracy']:.3f}")
    print(f"samples: {m['n_samples']}, mean classifier confidence: {m['mean_confidence']:.3f}")
    print("class histogram: " + " ".join(f"{c}:{h:.3f}" for c, h in enumerate(m["class_histogram"]))
          + f"  (min {m['min_class_fraction']:.3f}, KL from uniform {m['kl_from_uniform']:.4f})")
    lo, hi = m["frechet_distance_ci95"]
    rlo, rhi = m["real_train_frechet_distance_ci95"]
    print(f"classifier Fréchet distance to held-out digits: {m['frechet_distance']:.3f} [95% CI {lo:.3f}, {hi:.3f}]; "
          f"real train vs held-out: {m['real_train_frechet_distance']:.3f} [{rlo:.3f}, {rhi:.3f}]; "
          f"ratio {m['frechet_ratio']:.2f}")
    if "label_accuracy" in m:
        print(f"conditional label accuracy: {m['label_accuracy']:.3f}")


def cmd_eval(a) -> int:
    import torch

    from pygan.metrics import evaluate_digits
    from pygan.train import load_generator

    _positive("--n", a.n)
    _positive("--bootstrap", a.bootstrap)
    G, ckpt = load_generator(a.checkpoint, ema=not a.no_ema)
    if ckpt["config"]["data"] != "digits" or G.channels != 1:
        raise CLIError("pygan eval scores generators trained on the embedded digits (--data digits); "
                       "for other data use pygan.metrics.fid with a feature extractor")
    y = _labels(ckpt, a.n, None)
    z = torch.randn(a.n, G.latent_dim, generator=torch.Generator().manual_seed(a.seed))
    with torch.no_grad():
        x = torch.cat([G(z[i:i + 500], None if y is None else y[i:i + 500]) for i in range(0, a.n, 500)])
    m = {"step": ckpt["step"], **evaluate_digits(x, y, n_boot=a.bootstrap, seed=a.seed)}
    if a.json:
        print(json.dumps(m, indent=1))
    else:
        print(f"checkpoint {a.checkpoint} (step {m['step']})")
        _print_metrics(m)
    return 0


def cmd_upscale(a) -> int:
    from pygan.sr.data import read_image, save_image
    from pygan.sr.train import generators_from_checkpoint, read_checkpoint
    from pygan.sr.upscale import upscale
    from pygan.training import pick_device

    if a.tile < 0:
        raise CLIError(f"--tile must be >= 0, got {a.tile}")
    gens = generators_from_checkpoint(read_checkpoint(a.checkpoint), pick_device(a.device))
    if a.stage == "srresnet":
        if "SRResNet" not in gens:
            raise CLIError(f"{a.checkpoint} has no SRResNet-stage generator")
        G = gens["SRResNet"]
    else:
        G = gens.get("SRGAN", gens.get("SRResNet"))
    from pygan.fuse import fold_bn

    save_image(upscale(fold_bn(G), read_image(a.input), tile=a.tile), a.output)
    print(a.output)
    return 0


def cmd_eval_sr(a) -> int:
    from pygan.sr.data import image_files, mod_crop, read_image
    from pygan.sr.train import evaluate_sr, format_table, generators_from_checkpoint, read_checkpoint

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pygan.data import DataError
    from pygan.train import CheckpointError, TrainingDiverged

    run = {"train": cmd_train, "sample": cmd_sample, "interpolate": cmd_interpolate, "eval": cmd_eval,
           "upscale": cmd_upscale, "eval-sr": cmd_eval_sr}[args.command]
    try:
        return run(args)
    except (CLIError, DataError, CheckpointError, TrainingDiverged, ValueError, FileNotFoundError,
            PermissionError, IsADirectoryError) as e:
        print(f"pygan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pygan: interrupted (the last checkpoint is intact)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
