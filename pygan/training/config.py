"""The config base of every trainer: each option is declared once, as a dataclass field whose metadata carries its
help text and its constraints; validation and the command line's options are generated from those fields.

    @dataclass
    class MyConfig(TrainConfig):
        width: int = option(32, "generator channels", ge=1)
        out: str = default("runs/mine")          # a shared option with another default (its help is kept)

        def check(self) -> None:                  # constraints between options, if any
            ...
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from pygan.data.batches import BAD_DATA, CROPS, DATA_MODES
from pygan.losses import LOSS_KINDS


def option(default, help: str, *, choices=None, ge=None, gt=None, lt=None, le=None, unset: str | None = None):
    """A config field: its default, its help (one line, no default: that is added), and what a valid value is
    (one of `choices`; >= ge; > gt; < lt; <= le). A default of None means "not given"; `unset` says what that
    does (the help shows it as the default)."""
    return dataclasses.field(default=default, metadata=dict(help=help, choices=choices, ge=ge, gt=gt, lt=lt, le=le,
                                                            unset=unset))


class default:
    """In a subclass of a config: a field of a base config with another default (its help and constraints kept)."""

    def __init__(self, value, help: str | None = None):
        self.value, self.help = value, help


@dataclass
class TrainConfig:
    """The options every trainer shares."""

    out: str = option("runs/run", "output folder: checkpoint.pt, log.jsonl, samples/*.png, curves.png, metrics.json")
    steps: int = option(1000, "training steps (iterations)", ge=1)
    batch_size: int = option(64, "minibatch size (under torchrun the global batch, split over the processes)", ge=1)
    loss: str = option("non_saturating", "adversarial loss", choices=LOSS_KINDS)
    lr_g: float = option(2e-4, "the generator's learning rate", gt=0)
    lr_d: float = option(2e-4, "the discriminator's learning rate", gt=0)
    beta1: float = option(0.5, "Adam beta1", ge=0, lt=1)
    beta2: float = option(0.999, "Adam beta2", ge=0, lt=1)
    ema_decay: float = option(0.995, "decay of the exponential moving average of G's weights used for samples and "
                                     "evaluation (0: off)", ge=0, lt=1)
    amp: str = option("none", "autocast precision (auto: the fastest measured at equal quality on this machine, see "
                              "pygan/training/precision.py; none: fp32)", choices=("none", "bf16", "fp16", "auto"))
    channels_last: bool | None = option(None, "channels_last memory format for models and inputs (faster "
                                               "convolutions on CPUs with oneDNN and on GPUs); given, it wins over "
                                               "--amp auto's choice", unset="--amp auto's choice, else off")
    compile: bool = option(False, "torch.compile the generator and discriminator")
    fused: bool = option(True, "pygan's fused kernels (--no-fused: the same models from stock torch.nn layers)")
    seed: int = option(0, "random seed (models, minibatches, noise)")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    log_every: int = option(10, "write a log.jsonl line every this many steps", ge=1)
    sample_every: int = option(500, "save samples and the loss plot every this many steps", ge=1)
    checkpoint_every: int = option(500, "write checkpoint.pt every this many steps (always at the end)", ge=1)
    grid_size: int = option(8, "images per row of the sample grids", ge=1)
    eval: bool = option(True, "score the model on held-out data at the end (metrics.json), where the data has "
                              "held-out truth")
    progress: bool = option(True, "show progress (a bar on a terminal, a periodic status line otherwise; "
                                  "--no-progress: nothing)")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherited = {f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                     for f in dataclasses.fields(base)}
        for name, value in list(vars(cls).items()):
            if isinstance(value, default):
                if name not in inherited:
                    raise TypeError(f"{cls.__name__}.{name}: default() names no inherited option")
                meta = dict(inherited[name].metadata)
                if value.help is not None:
                    meta["help"] = value.help
                setattr(cls, name, dataclasses.field(default=value.value, metadata=meta))

    def check(self) -> None:
        """Constraints between options (subclasses); raise ValueError."""

    def validate(self):
        """Checks every option against its declared constraints, then `check()`; returns self."""
        for f in dataclasses.fields(self):
            v, m = getattr(self, f.name), f.metadata
            if v is None and f.default is None:  # not given: its `unset` behaviour, nothing to check
                continue
            if m.get("choices") is not None and v not in m["choices"]:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, m['choices']))}, got {v!r}")
            ge, gt, lt = m.get("ge"), m.get("gt"), m.get("lt")
            if ge is not None and lt is not None and not ge <= v < lt:
                raise ValueError(f"{f.name} must be in [{ge}, {lt}), got {v}")
            if ge is not None and lt is None and not v >= ge:
                raise ValueError(f"{f.name} must be >= {ge}, got {v}")
            if gt is not None and not v > gt:
                raise ValueError(f"{f.name} must be > {gt}, got {v}")
            if m.get("le") is not None and not v <= m["le"]:
                raise ValueError(f"{f.name} must be <= {m['le']}, got {v}")
        self.check()
        return self


@dataclass
class DataConfig(TrainConfig):
    """TrainConfig plus how the real images reach the trainer (pygan.data.batches): in memory or streamed."""

    data_mode: str = option("auto", "how image data is read: 'memory' (decoded once into one uint8 tensor), "
                                    "'stream' (decoded per batch in DataLoader worker processes) or 'auto' (stream "
                                    "folders and datasets larger than --memory-limit-mb)", choices=DATA_MODES)
    memory_limit_mb: float = option(64.0, "auto data mode: keep the images in memory up to this many MB of uint8 "
                                          "pixels, stream them beyond", gt=0)
    workers: int = option(-1, "streamed data: DataLoader worker processes decoding images (-1: half of this "
                              "process's CPUs, at least 1; 0: decode in the training process)", ge=-1)
    crop: str = option("center", "streamed data: crop after resizing the shorter side ('random': from a 12.5% "
                                 "larger resize)", choices=CROPS)
    flip: bool = option(False, "streamed data: random horizontal flips")
    bad_data: str = option("skip", "streamed data: an unreadable image is skipped (replaced; counted and reported "
                                   "at the end) or stops the run with its path", choices=BAD_DATA)


_TYPES = {"int": int, "float": float, "str": str}


def add_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One --flag per field of `config_class` (booleans as --x / --no-x), help from its metadata; every default
    None, so that only what the user gave is passed on (see `given`)."""
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata["help"]
        if f.metadata.get("choices") is not None:
            help_ += f": {', '.join(map(str, f.metadata['choices']))}"
        help_ += f" (default: {f.metadata.get('unset') if f.default is None else f.default})"
        help_ = help_.replace("%", "%%")  # argparse formats help strings with %
        typ = f.type if isinstance(f.type, str) else f.type.__name__
        typ = typ.removesuffix(" | None")  # None: the option's default when not given
        if typ == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            parser.add_argument(flag, type=_TYPES[typ], default=None, metavar=f.name.upper(), help=help_)


def given(args: argparse.Namespace, config_class: type) -> dict:
    """The options of `config_class` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if getattr(args, f.name) is not None}
