import argparse
import importlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pygan.cli import BY_KIND, build_parser, main
from pygan.cyclegan import cli as cyclegan_cli
from pygan.dcgan import DCGANConfig as TrainConfig
from pygan.dcgan import cli as dcgan_cli
from pygan.segmentation import cli as segmentation_cli
from pygan.sr import cli as sr_cli
from pygan.systems import SYSTEMS
from pygan.text2image import cli as text2image_cli

TINY = ["--size", "16", "--latent-dim", "8", "--g-width", "4", "--d-width", "4", "--batch-size", "8",
        "--grid-size", "8", "--eval-samples", "0", "--collapse-ratio", "0", "--no-progress", "--device", "cpu"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "dcgan", "--help"])
    out = capsys.readouterr().out
    for f in TrainConfig.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in out
    assert "--resume" in out and "--threads" in out


@pytest.mark.parametrize("argv,msg", [
    (["train", "dcgan", "--size", "48"], "size must be one of 16, 32, 64, 128"),
    (["train", "dcgan", "--data", "/no/such/folder"], "data not found"),
    (["train", "dcgan", "--loss", "bogus"], "loss must be one of"),
    (["sample", "/no/such.pt"], "checkpoint not found"),
    (["eval", "/no/such.pt"], "checkpoint not found"),
    (["interpolate", "/no/such.pt"], "checkpoint not found"),
])
def test_one_line_errors(capsys, argv, msg):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_folder_errors(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "train", "dcgan", "--data", str(tmp_path / "empty"), *TINY)
    assert rc == 2 and "no images" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"nope")
    rc, _, err = run(capsys, "train", "dcgan", "--data", str(tmp_path / "bad"), *TINY)
    assert rc == 2 and "cannot read image" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    rc, _, err = run(capsys, "sample", str(bad))
    assert rc == 2 and "cannot read checkpoint" in err


def test_train_sample_interpolate_resume(capsys, tmp_path):
    for i, c in enumerate(["a", "b"]):
        (tmp_path / "img" / c).mkdir(parents=True)
        for j in range(3):
            arr = np.full((20, 20, 3), 40 * (i + j), np.uint8)
            Image.fromarray(arr).save(tmp_path / "img" / c / f"{j}.png")
    out = str(tmp_path / "run")
    rc, stdout, err = run(capsys, "train", "dcgan", "--data", str(tmp_path / "img"), "--conditional",
                          "--steps", "2", "--out", out, *TINY)
    assert rc == 0, err
    ckpt = os.path.join(out, "checkpoint.pt")
    rc, _, err = run(capsys, "sample", ckpt, "--n", "6", "--out", str(tmp_path / "s.png"), "--label", "1")
    assert rc == 0, err
    assert Image.open(tmp_path / "s.png").mode == "RGB"
    rc, _, err = run(capsys, "sample", ckpt, "--label", "5")
    assert rc == 2 and "--label must be in 0..1" in err
    rc, _, err = run(capsys, "interpolate", ckpt, "--rows", "2", "--steps", "3", "--out", str(tmp_path / "i.png"))
    assert rc == 0, err
    rc, _, err = run(capsys, "eval", ckpt)
    assert rc == 2 and "digits" in err
    rc, _, err = run(capsys, "train", "dcgan", "--resume", ckpt, "--steps", "3", "--no-progress")
    assert rc == 0, err
    assert torch.load(ckpt, weights_only=False)["step"] == 3


def test_parser_defaults_match_config():
    a = build_parser().parse_args(["train", "dcgan"])
    assert all(getattr(a, f) is None for f in TrainConfig.__dataclass_fields__)  # unset: TrainConfig's defaults


def test_warnings_print_as_one_line_and_progress_is_plain_when_not_a_terminal(capsys, tmp_path):
    # collapse ratio 2: any sample set counts as collapsed; progress on, stderr is not a terminal under capsys
    argv = [a for a in TINY if a not in ("--no-progress",)]
    argv[argv.index("--collapse-ratio") + 1] = "2"
    rc, _, err = run(capsys, "train", "dcgan", "--steps", "2", "--out", str(tmp_path / "run"), *argv)
    assert rc == 0, err
    warning = [line for line in err.splitlines() if "mode collapse" in line]
    assert warning and all(line.startswith("pygan: warning: possible mode collapse") for line in warning)
    assert "RuntimeWarning" not in err and "warnings.warn" not in err
    assert "\r" not in err
    assert "step 2/2 (100%)" in err  # the closing status line


def test_helps_come_from_the_config_fields(capsys):
    import dataclasses

    from pygan.sr import SRConfig

    with pytest.raises(SystemExit):
        main(["train", "srgan", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(SRConfig):
        assert " ".join(f.metadata["help"].split())[:40] in out, f.name
    assert "(default: runs/srgan)" in out and "(default: 8)" in out  # defaults overridden by the SR config


# `pygan eval` / `sample` / `translate`: the checkpoint's kind picks the system's command

def _declared():
    """(format, command, the system's CheckpointCommand) as every system's register() declares them."""
    out = []
    for name in SYSTEMS:
        train, commands = (argparse.ArgumentParser().add_subparsers() for _ in range(2))
        declared = importlib.import_module(f"pygan.{name}.cli").register(train, commands) or {}
        out += [(fmt, command, cmd) for fmt, cmds in declared.items() for command, cmd in cmds.items()]
    return out


def _checkpoint(tmp_path, fmt) -> str:
    path = str(tmp_path / "checkpoint.pt")
    torch.save({"format": fmt, "step": 0}, path)
    return path


@pytest.mark.parametrize("fmt,command,cmd", _declared(), ids=lambda v: getattr(v, "prog", v))
def test_every_declared_kind_reaches_its_command(capsys, tmp_path, fmt, command, cmd):
    assert command in BY_KIND
    with pytest.raises(SystemExit) as e:  # the help of the system's own command: the one that would run
        main([command, _checkpoint(tmp_path, fmt), "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pygan {cmd.name} ")


# (system's cli module, command, its handler there, arguments after the checkpoint)
DISPATCH = [
    (dcgan_cli, "eval", "_eval", ["--n", "5", "--json", "--no-ema"]),
    (dcgan_cli, "sample", "_sample", ["--n", "6", "--label", "1", "--out", "x.png"]),
    (sr_cli, "eval", "_eval_sr", ["--convention", "rgb", "--data", "photos"]),
    (cyclegan_cli, "eval", "_eval", ["--json"]),
    (cyclegan_cli, "translate", "_translate", ["a.png", "b.png", "--direction", "b2a"]),
    (segmentation_cli, "eval", "_eval", ["--json"]),
    (text2image_cli, "eval", "_eval", []),
    (text2image_cli, "sample", "_generate", ["a thin three", "--n", "4"]),
]


@pytest.mark.parametrize("module,command,handler,argv", DISPATCH,
                         ids=[f"{m.__name__.split('.')[1]}-{c}" for m, c, _, _ in DISPATCH])
def test_dispatch_runs_the_systems_handler_as_its_own_command_would(monkeypatch, tmp_path, module, command, handler,
                                                                    argv):
    ckpt = _checkpoint(tmp_path, module.CHECKPOINT.name)
    seen = []
    monkeypatch.setattr(module, handler, lambda a: seen.append(a) or 0)
    assert main([command, ckpt, *argv]) == 0
    (a,) = seen
    assert a.checkpoint == ckpt
    # the system's own name for it (kept as an alias) parses the same arguments to the same options
    (name,) = [cmd.name for fmt, c, cmd in _declared() if fmt == module.CHECKPOINT.name and c == command]
    assert main([name, ckpt, *argv]) == 0
    own = {k: v for k, v in vars(seen[1]).items() if k not in ("command", "run")}
    assert {k: v for k, v in vars(a).items() if k not in ("command", "run")} == own


def test_options_may_come_before_the_checkpoint(monkeypatch, tmp_path):
    ckpt = _checkpoint(tmp_path, dcgan_cli.CHECKPOINT.name)
    seen = []
    monkeypatch.setattr(dcgan_cli, "_sample", lambda a: seen.append(a) or 0)
    assert main(["sample", "--n", "6", "--no-ema", "--out=x.png", ckpt, "--seed", "3"]) == 0
    (a,) = seen
    assert (a.checkpoint, a.n, a.no_ema, a.out, a.seed) == (ckpt, 6, True, "x.png", 3)


def test_help_lists_each_command_once_and_the_kinds(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")]
    for command in BY_KIND:
        assert listed.count(command) == 1
    assert not [c for c in listed if c.startswith("eval-") or c == "generate"]  # aliases: not listed, but there
    assert build_parser().parse_args(["eval-sr", "x.pt", "--convention", "rgb"]).run is sr_cli._eval_sr
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    for fmt, command, cmd in _declared():
        if command == "eval":
            assert fmt in out and cmd.help in out


def _one_line_error(capsys, argv, *fragments):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


@pytest.mark.parametrize("command", list(BY_KIND))
def test_foreign_files_give_one_line_naming_the_known_kinds(capsys, tmp_path, command):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    _one_line_error(capsys, [command, str(garbage)], "cannot read checkpoint", dcgan_cli.CHECKPOINT.name)
    other = tmp_path / "other.pt"
    torch.save({"format": "someone-else-v1"}, other)
    _one_line_error(capsys, [command, str(other)], "not a pygan checkpoint", "'someone-else-v1'",
                    sr_cli.CHECKPOINT.name)
    torch.save(torch.zeros(3), other)
    _one_line_error(capsys, [command, str(other)], "no 'format'", cyclegan_cli.CHECKPOINT.name)
    _one_line_error(capsys, [command, str(tmp_path / "missing.pt")], "checkpoint not found")


def test_another_kinds_options_or_command_give_one_line(capsys, tmp_path):
    dcgan = _checkpoint(tmp_path, dcgan_cli.CHECKPOINT.name)
    _one_line_error(capsys, ["eval", dcgan, "--convention", "rgb"], "unrecognized arguments", "--convention rgb",
                    "`pygan train dcgan`")
    sr = str(tmp_path / "sr.pt")
    torch.save({"format": sr_cli.CHECKPOINT.name}, sr)
    _one_line_error(capsys, ["sample", sr], "`pygan train srgan`", "`pygan sample` takes those of `pygan train dcgan`")
    _one_line_error(capsys, ["translate", sr, "a.png"], "`pygan translate` takes those of `pygan train cyclegan`")
