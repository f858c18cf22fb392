import os

import numpy as np
import pytest
import torch
from PIL import Image

from pygan.cli import build_parser, main
from pygan.dcgan import DCGANConfig as TrainConfig

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
