import json
import os

import pytest
import torch

import pygan._io
from pygan.dcgan import DCGANConfig as TrainConfig, DCGANTrainer as Trainer, load_generator, read_checkpoint
from pygan.training import CheckpointError, TrainingDiverged
from runs import train_moving_both


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), size=16, latent_dim=8, g_width=4, d_width=4, batch_size=8, steps=4,
                log_every=1, sample_every=2, checkpoint_every=2, grid_size=8, eval_samples=0, progress=False, collapse_ratio=0.0,
                device="cpu")
    return TrainConfig(**{**base, **kw})


def test_short_run_changes_params_and_writes_outputs(tmp_path):
    tr = Trainer(tiny(tmp_path, d_steps=2, label_smoothing=0.1, instance_noise=0.1))
    train_moving_both(tr)
    out = tmp_path / "run"
    recs = [json.loads(l) for l in open(out / "log.jsonl")]
    assert [r["step"] for r in recs if "loss_d" in r] == [1, 2, 3, 4]
    for r in recs:
        if "loss_d" in r:
            assert all(torch.isfinite(torch.tensor(r[k])) for k in ("loss_d", "loss_g", "d_real", "d_fake"))
            assert 0 <= r["d_real"] <= 1 and r["grad_norm_d"] > 0 and r["sec_per_step"] > 0
    assert (out / "samples" / "step_000002.png").is_file() and (out / "samples" / "step_000004.png").is_file()
    assert (out / "curves.png").is_file()
    assert read_checkpoint(str(out / "checkpoint.pt"))["step"] == 4
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


@pytest.mark.parametrize("kw", [dict(loss="wasserstein", gp_weight=10.0, d_steps=2),
                                dict(loss="hinge", r1_weight=1.0, conditional=True),
                                dict(amp="bf16", channels_last=True, ema_decay=0.0)])
def test_options(tmp_path, kw):
    tr = Trainer(tiny(tmp_path, steps=2, **kw))
    tr.train()
    assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in tr.history if "loss_d" in r)


@pytest.mark.parametrize("d_steps,r1_every,expect", [(1, 4, [0, 4]), (2, 3, [0, 3]), (1, 1, [0, 1, 2, 3, 4, 5])])
def test_lazy_r1_on_every_kth_discriminator_step(tmp_path, monkeypatch, d_steps, r1_every, expect):
    import pygan.losses as losses

    d_steps_done, calls, real_r1 = [], [], losses.r1_penalty

    def spy(D, real, weight, labels=None):
        calls.append((len(d_steps_done), weight))  # index of the D step being computed, and the weight used
        return real_r1(D, real, weight, labels=labels)

    monkeypatch.setattr(losses, "r1_penalty", spy)
    tr = Trainer(tiny(tmp_path, steps=6 // d_steps, d_steps=d_steps, r1_weight=0.5, r1_every=r1_every))
    tr.opt_d.register_step_post_hook(lambda *a: d_steps_done.append(1))
    tr.train()
    assert len(d_steps_done) == 6
    assert calls == [(i, 0.5 * r1_every) for i in expect]


def _losses(tr):
    return [(r["loss_d"], r["loss_g"]) for r in tr.history if "loss_d" in r]


@pytest.mark.parametrize("conditional", [False, True])
def test_resume_is_exact(tmp_path, conditional):
    kw = dict(conditional=conditional, instance_noise=0.2, instance_noise_steps=6, gp_weight=1.0,
              augment="translation,cutout,color" if conditional else "")
    full = Trainer(tiny(tmp_path / "a", steps=6, **kw))
    full.train()
    # the "interrupted" run: stopped after step 3, resumed from its checkpoint to step 6
    part3 = Trainer(tiny(tmp_path / "c", steps=3, **kw))
    part3.train()
    resumed = Trainer.resume(str(tmp_path / "c" / "run" / "checkpoint.pt"), steps=6)
    assert resumed.step == 3
    resumed.train()
    assert _losses(resumed) == _losses(full)
    for a, b in zip(resumed.G.state_dict().values(), full.G.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_drops_log_lines_past_the_checkpoint(tmp_path):
    tr = Trainer(tiny(tmp_path, steps=4, checkpoint_every=2))
    for _ in range(3):
        tr.log(tr.iteration())
    tr.step = 2
    tr.save_checkpoint()  # pretend the run died at step 3 after checkpointing step 2
    resumed = Trainer.resume(tr.checkpoint_path)
    assert [r["step"] for r in resumed.history] == [1, 2]


def test_atomic_checkpoint_under_failure(tmp_path, monkeypatch):
    tr = Trainer(tiny(tmp_path, steps=2))
    tr.train()
    path = tr.checkpoint_path
    before = open(path, "rb").read()
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        real_save({"partial": 1}, f)  # bytes hit the disk, then the "kill"
        raise KeyboardInterrupt

    monkeypatch.setattr(pygan._io.torch, "save", failing_save)
    tr.iteration()
    with pytest.raises(KeyboardInterrupt):
        tr.save_checkpoint()
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert read_checkpoint(path)["step"] == 2
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]


def test_non_finite_loss_stops_with_checkpoint_intact(tmp_path):
    tr = Trainer(tiny(tmp_path, steps=6, checkpoint_every=2))
    tr.config.steps = 2
    tr.train()
    before = open(tr.checkpoint_path, "rb").read()
    with torch.no_grad():
        tr.D.out.weight.fill_(float("nan"))
    tr.config.steps = 6
    with pytest.raises(TrainingDiverged, match=r"non-finite discriminator loss .* step 3.*checkpoint.*step 2"):
        tr.train()
    assert open(tr.checkpoint_path, "rb").read() == before


def test_mode_collapse_warning(tmp_path):
    tr = Trainer(tiny(tmp_path, steps=2, collapse_ratio=2.0))  # any sample set is "collapsed" at ratio 2
    with pytest.warns(RuntimeWarning, match="mode collapse"):
        tr.train()


def test_bad_config_and_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        Trainer(tiny(tmp_path, loss="bogus"))
    with pytest.raises(ValueError, match="size must be one of 16, 32, 64, 128"):
        Trainer(tiny(tmp_path, size=20))
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_generator(str(bad))
    torch.save({"a": 1}, bad)
    with pytest.raises(CheckpointError, match="not a pygan DCGAN checkpoint"):
        load_generator(str(bad))


def conv_weight(model) -> torch.Tensor:
    return next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_resolves_for_the_machine_and_says_so(tmp_path, monkeypatch, native):
    import pygan.training.precision as precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    tr = Trainer(tiny(tmp_path, steps=2))  # the DCGAN default is --amp auto
    assert tr.config.amp == "auto" and (tr.amp, tr.channels_last) == (("bf16", True) if native else ("none", False))
    assert conv_weight(tr.G).is_contiguous(memory_format=torch.channels_last) == tr.channels_last
    tr.train()
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    assert recs[0]["step"] == 0 and recs[0]["precision"] == tr.amp and recs[0]["channels_last"] == tr.channels_last
    assert "--amp none forces fp32" in recs[0]["precision_note"] if native else "fp32" in recs[0]["precision_note"]
    # a resume on the same machine does not repeat it; one resolving 'auto' differently says so at its step
    Trainer.resume(str(tmp_path / "run" / "checkpoint.pt"), steps=3).train()
    Trainer.resume(str(tmp_path / "run" / "checkpoint.pt"), steps=4, amp="none").train()
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    marks = [(r["step"], r["precision"]) for r in recs if "precision" in r]
    assert marks == ([(0, "bf16"), (3, "none")] if native else [(0, "none")])


def test_explicit_precision_is_kept(tmp_path):
    tr = Trainer(tiny(tmp_path, amp="none", channels_last=True))
    assert (tr.amp, tr.channels_last) == ("none", True)
    w = conv_weight(tr.D)
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("flags,given", [([], None), (["--channels-last"], True), (["--no-channels-last"], False)])
def test_an_explicit_channels_last_wins_over_amp_auto(monkeypatch, native, flags, given):
    import pygan.training.precision as precision
    from pygan.cli import build_parser
    from pygan.training.config import given as given_options

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    args = build_parser().parse_args(["train", "dcgan", *flags])
    config = TrainConfig(**given_options(args, TrainConfig))
    assert config.amp == "auto" and config.channels_last is given  # the DCGAN default; not given: None
    amp, channels_last, note = precision.resolve_precision(config.amp, config.channels_last, torch.device("cpu"))
    auto_choice = native  # bf16 + channels_last on a native-bf16 CPU, fp32 + NCHW elsewhere
    assert (amp, channels_last) == ("bf16" if native else "none", auto_choice if given is None else given)
    assert ("as given" in note) == (given is not None)
    # any other --amp: as given, off when not given
    args = build_parser().parse_args(["train", "dcgan", "--amp", "none", *flags])
    config = TrainConfig(**given_options(args, TrainConfig))
    assert precision.resolve_precision(config.amp, config.channels_last, torch.device("cpu"))[:2] == (
        "none", bool(given))


def test_explicit_no_channels_last_under_amp_auto_is_kept_on_resume(tmp_path, monkeypatch):
    import pygan.training.precision as precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    tr = Trainer(tiny(tmp_path, steps=2, channels_last=False))  # the config object, as a caller gives it
    assert (tr.amp, tr.channels_last) == ("bf16", False) and conv_weight(tr.G).is_contiguous()
    tr.train()
    assert read_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))["config"]["channels_last"] is False
    again = Trainer.resume(str(tmp_path / "run" / "checkpoint.pt"), steps=3)
    assert (again.amp, again.channels_last) == ("bf16", False)
    again.train()
    recs = [json.loads(l) for l in open(tmp_path / "run" / "log.jsonl")]
    assert [(r["step"], r["channels_last"]) for r in recs if "precision" in r] == [(0, False)]
    assert "--no-channels-last as given" in recs[0]["precision_note"]
    # left unset, the checkpoint keeps it unset: a resume resolves 'auto' again
    tr = Trainer(tiny(tmp_path / "b", steps=2))
    tr.train()
    assert read_checkpoint(str(tmp_path / "b" / "run" / "checkpoint.pt"))["config"]["channels_last"] is None
    assert Trainer.resume(str(tmp_path / "b" / "run" / "checkpoint.pt"), steps=3).channels_last is True


def test_learning_rate_decay(tmp_path):
    from pygan.training.schedule import linear_decay

    assert [linear_decay(s, 10, 0.5) for s in (0, 4, 5, 9)] == [1.0, 1.0, 5 / 6, 1 / 6]
    assert linear_decay(9, 10, 1.0) == 1.0  # 1: constant
    tr = Trainer(tiny(tmp_path, steps=4, lr_g=1e-3, lr_d=2e-3, lr_decay_start=0.5))
    seen = []
    tr.opt_d.register_step_post_hook(lambda opt, *a: seen.extend([opt.param_groups[0]["lr"],
                                                                  tr.opt_g.param_groups[0]["lr"]]))
    tr.train()
    assert seen == pytest.approx([2e-3, 1e-3, 2e-3, 1e-3, 2e-3 * 2 / 3, 1e-3 * 2 / 3, 2e-3 / 3, 1e-3 / 3])
    with pytest.raises(ValueError, match="lr_decay_start"):
        tiny(tmp_path, lr_decay_start=1.5).validate()
