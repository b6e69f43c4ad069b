"""End-to-end training through the Hydra config: every layer, TensorBoard, resume, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

from audiodiag.layers import IMPLEMENTATIONS
from audiodiag.nets import build_net
from audiodiag.paths import CONF_DIR, REPO_ROOT
from audiodiag.train import ConfigError, resolve_ckpt_path, train

# Small and quick: 0.5 s segments, batches of 4, a few mixtures, no PESQ, no worker processes.
TINY = [
    "data.segment_seconds=0.5",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.cache_audio=false",
    "data.train_mixtures_per_epoch=16",
    "data.val_mixtures=4",
    "data.test_mixtures=4",
    "noise=white",
    "trainer.max_time=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test_pesq_stoi=false",
]


TINY_NET = ["model.depth=1", "model.context=2"]


def _cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    net = [] if "model=wiener" in overrides else TINY_NET
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*TINY, *net, f"paths.output_dir={tmp_path}", *overrides])


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("layer", IMPLEMENTATIONS)
def test_fast_dev_run_every_layer(tmp_path, layer):
    value = train(
        _cfg(
            tmp_path,
            f"layer={layer}",
            "trainer.fast_dev_run=true",
            "logger=none",
            "test_reference=null",
        )
    )
    assert math.isfinite(value)
    metrics = _metrics(tmp_path)
    assert metrics["status"] == "ok" and metrics["layer"] == layer
    assert metrics["global_step"] == 1 and metrics["param_count"] > 0


def test_two_epochs_learn_and_log_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    value = train(
        _cfg(
            tmp_path,
            "trainer.max_epochs=2",
            "optimizer.lr=0.02",
            "scheduler.name=none",
            "callbacks.media.n_clips=2",
            "trainer.log_every_n_steps=1",
        )
    )
    metrics = _metrics(tmp_path)
    assert metrics["status"] == "ok" and metrics["val/si_sdri"] == pytest.approx(value)
    assert metrics["global_step"] == 8 and metrics["epochs"] == 2

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()
    loss = [e.value for e in events.Scalars("train/loss_epoch")]
    assert len(loss) == 2 and loss[1] < loss[0], loss
    for scalar in (
        "val/si_sdri",
        "val/si_sdr",
        "val/loss",
        "lr-AdamW",
        "test/si_sdri",
        "hp/val_si_sdri",
        "hp/test_si_sdri",
    ):
        assert scalar in tags["scalars"], scalar
    assert {"clips/0/noisy", "clips/0/clean", "clips/1/enhanced"} <= set(tags["audio"])
    assert {"spectrograms/0", "spectrograms/1", "weights/per_bin"} <= set(tags["images"])
    assert len(events.Audio("clips/0/enhanced")) == 2  # once per epoch, fixed clips
    # The HParams tab: a session start summary with the hyperparameters.
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["layer.name"].string_value == "elementwise"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    shown = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"hp/val_si_sdri", "hp/test_si_sdri", "hp/param_count"} <= shown

    # Checkpoints: best + last, loadable weights-only, the net rebuilt from plain kwargs.
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(name.startswith("best-") for name in ckpts)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    net = build_net(checkpoint["hyper_parameters"]["net"])
    net.load_state_dict({k[4:]: v for k, v in checkpoint["state_dict"].items()})
    # Test report with the Wiener reference row, by noise type and SNR.
    report = (tmp_path / "test_results.md").read_text()
    assert "| Wiener |" in report and "| GainNet (elementwise) |" in report and "white" in report
    assert (tmp_path / "resolved_config.yaml").is_file()


class StopAfterFirstEpoch(pl.Callback):
    """Stands in for an interruption at an epoch boundary (after last.ckpt is written)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_resume_from_last_checkpoint_matches_uninterrupted_run(tmp_path):
    common = [
        # A worker process: Lightning builds (and the workers prefetch from) the training loader
        # before it sets the sampler's epoch, so the resumed epoch must come from the checkpoint
        # (the DataModule's state_dict); without it epoch 1 re-drew epoch 0's mixtures (issue 12).
        "data.num_workers=1",
        "trainer.max_epochs=2",
        "logger=none",
        "callbacks=minimal",
        "test=false",
        "scheduler.warmup_steps=2",
    ]
    train(_cfg(tmp_path / "full", *common))
    full = _metrics(tmp_path / "full")

    stop = f"+callbacks.stop._target_={__name__}.StopAfterFirstEpoch"
    train(_cfg(tmp_path / "cut", *common, stop))
    assert _metrics(tmp_path / "cut")["global_step"] == full["global_step"] // 2

    # Same run directory, ckpt_path=last: continues where the cut run stopped.
    train(_cfg(tmp_path / "cut", *common, "ckpt_path=last"))
    resumed = _metrics(tmp_path / "cut")
    assert resumed["global_step"] == full["global_step"] and resumed["epochs"] == 2
    assert resumed["val/si_sdri"] == full["val/si_sdri"]
    expected, got = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "cut")
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_last_checkpoint_is_the_last_epoch_not_the_best(tmp_path):
    # monitor=step, mode=min: the best checkpoint stays at epoch 0. Lightning's save_last copied
    # last.ckpt only when the best changed, so ckpt_path=last re-trained epochs 1 and 2.
    overrides = ["trainer.max_epochs=3", "logger=none", "callbacks=minimal", "test=false"]
    train(_cfg(tmp_path, *overrides, "monitor=step", "monitor_mode=min"))
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == _metrics(tmp_path)["global_step"]
    assert Path(_metrics(tmp_path)["best_checkpoint"]).name.startswith("best-epoch000")


def test_unknown_layer_lists_the_valid_options(tmp_path):
    with pytest.raises(MissingConfigException) as info:
        _cfg(tmp_path, "layer=foo")
    message = str(info.value)
    assert "layer/foo" in message
    for name in IMPLEMENTATIONS:
        assert name in message
    with pytest.raises(ConfigError, match=r"layer\.name='foo'.*elementwise, mask, sparse, diag"):
        train(_cfg(tmp_path, "layer.name=foo"))
    assert _metrics(tmp_path)["status"] == "failed"
    assert "layer.name='foo'" in _metrics(tmp_path)["error"]


def test_wiener_is_scored_without_training(tmp_path):
    value = train(_cfg(tmp_path, "model=wiener", "logger=none"))
    metrics = _metrics(tmp_path)
    assert metrics["status"] == "ok" and metrics["param_count"] == 0 and metrics["global_step"] == 0
    assert math.isfinite(value) and math.isfinite(metrics["test/si_sdri"])
    assert "| Wiener |" in (tmp_path / "test_results.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpu_trainer_without_cuda_says_so(tmp_path):
    with pytest.raises(ConfigError, match="needs CUDA.*trainer=cpu"):
        train(_cfg(tmp_path, "trainer=gpu"))


def test_ckpt_path_forms(tmp_path):
    assert resolve_ckpt_path(None, tmp_path) is None
    assert resolve_ckpt_path("last", tmp_path) is None  # nothing yet: start from scratch
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("last", tmp_path).endswith("checkpoints/last.ckpt")
    assert resolve_ckpt_path(str(tmp_path), tmp_path).endswith("checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path)


def _run_cli(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AUDIODIAG_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "audiodiag.train", *TINY, *TINY_NET, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_ddp_on_cpu_with_two_gloo_processes(tmp_path, strategy):
    run_dir = tmp_path / "run"
    result = _run_cli(
        [
            "trainer=ddp_cpu",
            f"trainer.strategy={strategy}",
            "trainer.max_epochs=1",
            "logger=none",
            "test_reference=null",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(run_dir)["status"] == "ok"
    # 16 mixtures, batch 4, 2 processes: 2 optimiser steps per epoch. (With ddp_spawn the
    # launching process's trainer never sees the loop state, so read it from the checkpoint.)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    # The test set is scored once, every clip, and reported, whichever launcher ran the fit.
    clips = json.loads((run_dir / "test_results.json").read_text())["clips"]
    assert len(clips) == 4
    assert "ddp" in (run_dir / "resolved_config.yaml").read_text()


@pytest.mark.slow
def test_command_line_run_writes_the_run_directory(tmp_path):
    result = _run_cli(["trainer.max_epochs=1", "hydra.run.dir=run"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    for name in (
        ".hydra/config.yaml",
        "resolved_config.yaml",
        "metrics.json",
        "test_results.md",
        "checkpoints/last.ckpt",
    ):
        assert (run_dir / name).exists(), name
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # Lightning's own lines reach the run's log, not only the console.
    assert "`max_epochs=1` reached" in (run_dir / "train.log").read_text()


def test_lightning_lines_go_to_the_run_log_for_the_run_only(tmp_path, monkeypatch):
    import logging

    from lightning.pytorch.utilities import rank_zero_info

    from audiodiag.train import lightning_lines_in_run_log

    # As under Hydra: Lightning, imported before logging was set up, does not propagate.
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", False)
    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        with lightning_lines_in_run_log():
            rank_zero_info("during the run")
        rank_zero_info("after the run")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert "during the run" in text and "after the run" not in text
    assert handler not in logging.getLogger("lightning.pytorch").handlers


@pytest.mark.parametrize("kind", ["gainnet", "wiener"])
def test_model_configs_expose_every_argument_with_its_default(kind):
    import inspect

    from audiodiag.model import GainNet
    from audiodiag.wiener import WienerEnhancer

    cls = GainNet if kind == "gainnet" else WienerEnhancer
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        model = compose("train", overrides=[f"model={kind}"]).model
    interpolated = {"layer", "bandwidth", "sample_rate", "seed"}
    # Deliberate training defaults, documented in conf/model/gainnet.yaml (rank: conf/layer/*.yaml).
    trained = {"causal": False, "depth": 1, "context": 3, "rank": 16} if kind == "gainnet" else {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        assert name in model, f"conf/model/{kind}.yaml lacks {name} (overrides cannot set it)"
        if name in trained:
            assert model[name] == trained[name], (name, model[name])
        elif name not in interpolated:
            assert model[name] == parameter.default, (name, model[name], parameter.default)


def test_missing_dataset_ends_in_one_line_naming_path_and_flag(tmp_path):
    missing = tmp_path / "nowhere"
    result = _run_cli(
        ["data=librispeech", f"data.speech.root={missing}", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output
    assert str(missing) in output and "data.speech.download=true" in output
    assert _metrics(tmp_path / "run")["status"] == "failed"
