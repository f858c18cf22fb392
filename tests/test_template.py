"""The template system trains, writes every output, resumes exactly and runs from the command line: the how-to
docs/add-a-system.md walks through this code, so it must work."""

import json
import re
from pathlib import Path

import torch

from pygan.cli import main
from pygan.template import CHECKPOINT, TemplateConfig, TemplateTrainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "add-a-system.md"


def tiny(out, **kw) -> TemplateConfig:
    return TemplateConfig(**{**dict(out=str(out), steps=4, batch_size=8, width=4, latent_dim=8, log_every=1,
                                    sample_every=2, checkpoint_every=2, grid_size=2, progress=False,
                                    device="cpu"), **kw})


def test_trains_and_writes_every_output(tmp_path):
    tr = TemplateTrainer(tiny(tmp_path / "run"))
    g0 = [p.detach().clone() for p in tr.G.parameters()]
    metrics = tr.train()
    assert all(not torch.equal(a, b) for a, b in zip(g0, tr.G.parameters()))
    assert metrics["pixel_frechet_distance"] > 0 and metrics["step"] == 4
    run = tmp_path / "run"
    for name in ("checkpoint.pt", "log.jsonl", "curves.png", "metrics.json", "samples/step_000004.png"):
        assert (run / name).is_file(), name
    assert CHECKPOINT.read(str(run / "checkpoint.pt"))["step"] == 4
    assert [r["step"] for r in map(json.loads, open(run / "log.jsonl")) if "loss_d" in r] == [1, 2, 3, 4]


def test_resume_is_exact(tmp_path):
    full = TemplateTrainer(tiny(tmp_path / "full", eval=False))
    full.train()
    part = TemplateTrainer(tiny(tmp_path / "part", steps=2, eval=False))
    part.train()
    resumed = TemplateTrainer.resume(str(tmp_path / "part" / "checkpoint.pt"), steps=4)
    resumed.train()
    assert [r["loss_g"] for r in full.history] == [r["loss_g"] for r in resumed.history]
    for a, b in zip(full.G.state_dict().values(), resumed.G.state_dict().values()):
        assert torch.equal(a, b)


def test_stock_twin_has_the_same_state_dict(tmp_path):
    tr = TemplateTrainer(tiny(tmp_path, eval=False))
    for net in (tr.G, tr.D):
        twin = net.to_stock()
        assert list(twin.state_dict()) == list(net.state_dict())


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "template", "--out", str(out), "--steps", "2", "--batch-size", "8", "--width", "4",
                 "--no-progress", "--device", "cpu"]) == 0
    assert "pixel Fréchet distance" in capsys.readouterr().out
    assert main(["eval", str(out / "checkpoint.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2


def test_the_how_to_names_every_template_file_and_class_attribute():
    doc = DOC.read_text()
    root = Path(__file__).resolve().parents[1] / "pygan" / "template"
    for f in root.glob("*.py"):
        assert f"pygan/template/{f.name}" in doc, f"docs/add-a-system.md does not walk through {f.name}"
    source = (root / "trainer.py").read_text()
    for attr in re.findall(r"^    (\w+) = ", source, re.M):  # the trainer's class attributes
        assert f"`{attr}`" in doc, f"docs/add-a-system.md does not name the class attribute {attr}"
