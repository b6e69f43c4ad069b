"""Train (or, for ``model=wiener``, just score) a speech enhancer: ``python -m audiodiag.train``.

Hydra composes the run from ``conf/train.yaml`` and the groups ``layer/ model/ data/
noise/ trainer/ logger/ callbacks/ paths/ experiment/``; every ``trainer.*`` key is a Lightning
``Trainer`` argument. Examples::

    python -m audiodiag.train                                # demo corpus, CPU, < 10 min
    python -m audiodiag.train layer=sparse trainer.max_epochs=3
    python -m audiodiag.train model=wiener                   # the classical reference, no training
    python -m audiodiag.train trainer=gpu data=librispeech
    python -m audiodiag.train hydra.run.dir=outputs/train/runs/X ckpt_path=last   # resume
    python -m audiodiag.train -m layer=mask,sparse,diag,elementwise model.depth=2,4

Each run directory holds ``.hydra/`` (composed config and overrides), ``resolved_config.yaml``,
``tensorboard/``, ``checkpoints/`` (best and ``last.ckpt``), ``metrics.json`` (final metrics and
status, also written when the run fails) and ``test_results.{json,md}`` (test scores by noise
type and SNR, with the noisy input and Wiener rows). :func:`train` returns the monitored metric
(best ``val/si_sdri`` in dB) so that sweepers can optimise it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from audiodiag.atomic import atomic_write
from audiodiag.cli import DEBUG_ENV, error_line
from audiodiag.layers import IMPLEMENTATIONS, count_parameters
from audiodiag.metrics import markdown_test_report, summarize_test_records
from audiodiag.module import GainLearner
from audiodiag.nets import NET_KINDS
from audiodiag.paths import CONF_DIR

__all__ = ["main", "train", "resolve_ckpt_path", "resolve_precision"]

log = logging.getLogger(__name__)

#: ``trainer.precision`` value that picks bf16-mixed where supported, else 16-mixed (CUDA).
AUTO_MIXED = "auto-mixed"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the valid values."""


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def resolve_precision(precision: Any, accelerator: str) -> Any:
    """Turn ``auto-mixed`` into bf16-mixed / 16-mixed on CUDA and 32-true elsewhere."""
    if precision != AUTO_MIXED:
        return precision
    on_cuda = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    if not on_cuda:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def check_config(cfg: DictConfig) -> None:
    """Fail early, with one clear line, on values that would fail late or obscurely."""
    model_kind = cfg.model.get("kind", "gainnet")
    if model_kind not in NET_KINDS:
        raise ConfigError(f"model.kind={model_kind!r} is unknown; valid: {', '.join(NET_KINDS)}")
    if model_kind == "gainnet":
        name = cfg.layer.get("name")
        if name not in IMPLEMENTATIONS:
            raise ConfigError(
                f"layer.name={name!r} is not a diagonal layer implementation; valid: "
                f"{', '.join(IMPLEMENTATIONS)} (choose with layer=NAME)"
            )
    trainer = cfg.trainer
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu/ddp) needs CUDA, but "
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}); run on a GPU machine or use trainer=cpu"
        )
    strategy = str(trainer.get("strategy", "auto"))
    if strategy.startswith("ddp") and "spawn" not in strategy and _is_multirun():
        raise ConfigError(
            f"trainer.strategy={strategy} inside a Hydra multirun would re-launch the whole sweep "
            "in every worker process; use trainer.strategy=ddp_spawn for sweeps"
        )


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """Where to resume from: a file, a run directory, or ``last`` (this run dir's last.ckpt).

    ``last`` with no checkpoint yet starts from scratch, so one command both starts and resumes
    a run placed with ``hydra.run.dir=...``.
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path == "last":
        candidate = output_dir / "checkpoints" / "last.ckpt"
        if candidate.is_file():
            check_checkpoint_file(candidate, "ckpt_path=last")
            return str(candidate)
        log.info("ckpt_path=last: no %s yet, starting from scratch", candidate)
        return None
    path = Path(str(ckpt_path)).expanduser()
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
            if candidate.is_file():
                check_checkpoint_file(candidate, f"ckpt_path={ckpt_path}")
                return str(candidate)
        raise ConfigError(
            f"ckpt_path={ckpt_path}: directory has no checkpoints/last.ckpt; give a .ckpt file, "
            "a run directory, or 'last'"
        )
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path}: no such file; give a .ckpt file, a run directory, or 'last'"
        )
    check_checkpoint_file(path, f"ckpt_path={ckpt_path}")
    return str(path)


def check_checkpoint_file(path: Path, label: str) -> None:
    """Refuse a file that cannot be a complete checkpoint (``torch.save`` writes a zip archive:
    a truncated copy lacks the zip's closing directory), naming ``label``, before Lightning's
    loader fails on it with a bare "OSError: [Errno 22] Invalid argument"."""
    try:
        with zipfile.ZipFile(path) as archive:
            complete = bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        complete = False
    if not complete:
        raise ConfigError(
            f"{label}: {path} is not a complete checkpoint (truncated, or not written by "
            "torch.save); give a .ckpt written by audiodiag.train, its run directory, or 'last'"
        )


def _instantiate_group(group: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (None entries skipped)."""
    objects: list[Any] = []
    if not group:
        return objects
    for key, entry in group.items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{what}.{key!s} must be a mapping with a _target_ entry")
        objects.append(hydra.utils.instantiate(entry))
    return objects


def _flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's knobs as a flat dict of scalars, for TensorBoard's HParams tab."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "_target_":
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple):
            flat[prefix] = str(value)
        elif value is None:
            flat[prefix] = "None"
        else:
            flat[prefix] = value

    for section in ("layer", "model", "optimizer", "scheduler", "loss"):
        walk(section, plain.get(section, {}))
    data = plain.get("data", {})
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, int | float | str | bool):
                flat[f"data.{key}"] = value
    for key in ("seed", "sample_rate"):
        flat[key] = plain.get(key)
    trainer = plain.get("trainer", {})
    for key in ("max_epochs", "precision", "accelerator", "devices", "strategy"):
        if key in trainer:
            flat[f"trainer.{key}"] = str(trainer[key])
    return flat


def _container(node: Any) -> Any:
    """A resolved plain-python copy of a config node (what the module stores as hparams)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@rank_zero_only
def _write_json(path: Path, payload: dict[str, Any]) -> None:
    _write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


@rank_zero_only
def _write_text(path: Path, text: str) -> None:
    # Renamed into place when complete: a crash mid-write never leaves half a report.
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def _overrides() -> list[str]:
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _error_line(error: BaseException) -> str:
    """One line for reports: the error and, for wrapped errors (Hydra), its cause; for an error
    re-raised from a DataLoader worker, the worker's own exception line (the real reason)."""
    return error_line(error)


def _test_trainer(trainer: pl.Trainer, trainer_cfg: DictConfig, loggers: list) -> pl.Trainer:
    """The trainer that runs the test set.

    Spawn strategies fit in child processes, so the launching process holds no process group:
    it tests there itself, on one device. Every clip is then scored exactly once (no
    DistributedSampler padding), the per-clip records stay in this process for the report, and
    no second round of spawned gloo processes is needed.
    """
    if "spawn" not in str(trainer_cfg.get("strategy", "auto")) or trainer.world_size == 1:
        return trainer
    return pl.Trainer(
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=1,
        num_nodes=1,
        precision=trainer_cfg.precision,
        logger=loggers or False,
        enable_checkpointing=False,
        enable_progress_bar=trainer_cfg.get("enable_progress_bar", True),
        enable_model_summary=False,
    )


@contextlib.contextmanager
def lightning_lines_in_run_log() -> Iterator[None]:
    """Send Lightning's log lines to the run's log file(s) too, for the duration of a run.

    Lightning's loggers stop propagating when they are imported before logging is configured
    (as under Hydra), so their lines, and this package's ``rank_zero_info`` ones ("compile=true:
    training eager (...)"), reached the console only, not ``train.log``. The root logger's file
    handlers are added to them and taken off again afterwards (a multirun's next job has its own).
    """
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    added = [
        (logger, handler)
        for logger in map(logging.getLogger, ("lightning.pytorch", "lightning.fabric"))
        if not logger.propagate
        for handler in files
        if handler not in logger.handlers
    ]
    for logger, handler in added:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, handler in added:
            logger.removeHandler(handler)


def train(cfg: DictConfig) -> float:
    """Run one training (or evaluation-only) job described by ``cfg``; return the monitor value.

    Writes ``metrics.json`` into ``cfg.paths.output_dir`` whether the job succeeds (status
    ``ok``) or fails (status ``failed`` with the error line, then the error is re-raised).
    """
    output_dir = Path(cfg.paths.output_dir)
    metrics: dict[str, Any] = {
        "status": "running",
        "monitor": cfg.monitor,
        "overrides": _overrides(),
    }
    started = time.perf_counter()
    try:
        with lightning_lines_in_run_log():
            value = _train(cfg, output_dir, metrics)
    except BaseException as error:
        # Lightning turns Ctrl-C into a graceful shutdown followed by SystemExit.
        interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
        metrics["status"] = "interrupted" if interrupted else "failed"
        metrics["error"] = _error_line(error)
        metrics["wall_time_s"] = round(time.perf_counter() - started, 2)
        _write_json(output_dir / "metrics.json", metrics)
        raise
    metrics["wall_time_s"] = round(time.perf_counter() - started, 2)
    _write_json(output_dir / "metrics.json", metrics)
    return value


def _train(cfg: DictConfig, output_dir: Path, metrics: dict[str, Any]) -> float:
    """Build, fit (or only validate), test and report one run; returns the monitor value."""
    check_config(cfg)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    _write_text(output_dir / "resolved_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(int(cfg.seed), workers=True)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = _build_module(cfg, metrics)
    trainer, loggers = _build_trainer(cfg)
    metrics["precision"] = str(cfg.trainer.precision)
    best, test_ckpt = _fit(cfg, module, trainer, datamodule, output_dir, metrics)
    if cfg.get("test", True):
        _test_and_report(cfg, module, trainer, loggers, datamodule, test_ckpt, metrics)
    metrics["status"] = "ok"
    _log_hparams(cfg, trainer, metrics)
    return best if best is not None else math.nan


def _is_wiener(cfg: DictConfig) -> bool:
    return cfg.model.get("kind", "gainnet") == "wiener"


def _build_module(cfg: DictConfig, metrics: dict[str, Any]) -> GainLearner:
    """The LightningModule from the config; records model, layer, parameters and MACs."""
    is_wiener = _is_wiener(cfg)
    reference = cfg.get("test_reference")
    module = GainLearner(
        net=_container(cfg.model),
        loss=_container(cfg.loss),
        optimizer=_container(cfg.optimizer),
        scheduler=_container(cfg.scheduler),
        sample_rate=int(cfg.sample_rate),
        test_pesq_stoi=bool(cfg.get("test_pesq_stoi", True)),
        test_reference=None if is_wiener or not reference else _container(reference),
        monitor=str(cfg.monitor),
        compile_network=bool(cfg.get("compile", False)),
    )
    n_params = count_parameters(module.net)
    metrics.update(
        model=cfg.model.get("kind"),
        layer=None if is_wiener else cfg.layer.name,
        param_count=n_params,
    )
    macs = getattr(module.net, "macs_per_second", None)
    if callable(macs):
        # A statistic, not a reason to fail.
        with contextlib.suppress(Exception):
            metrics["macs_per_second"] = macs()
    log.info("net: %s, %d trainable parameters", type(module.net).__name__, n_params)
    return module


def _build_trainer(cfg: DictConfig) -> tuple[pl.Trainer, list[Any]]:
    """The Trainer with the config's callbacks and loggers (resolving ``auto-mixed``)."""
    callbacks = _instantiate_group(cfg.get("callbacks"), "callbacks")
    if not cfg.trainer.get("enable_progress_bar", True):
        # Lightning refuses a progress bar callback when the bar is switched off.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = _instantiate_group(cfg.get("logger"), "logger")
    if not loggers:
        # Lightning refuses an LR monitor without a logger to write to.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_cfg = cfg.trainer
    with open_dict(trainer_cfg):
        trainer_cfg.precision = resolve_precision(
            trainer_cfg.get("precision", "32-true"), str(trainer_cfg.get("accelerator", "auto"))
        )
    trainer: pl.Trainer = hydra.utils.instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False
    )
    return trainer, loggers


def _fit(
    cfg: DictConfig,
    module: GainLearner,
    trainer: pl.Trainer,
    datamodule: pl.LightningDataModule,
    output_dir: Path,
    metrics: dict[str, Any],
) -> tuple[float | None, str | None]:
    """Fit (or, with nothing to train, validate); returns (best monitor value, test checkpoint)."""
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    monitor = str(cfg.monitor)
    started = time.perf_counter()
    best: float | None = None
    test_ckpt: str | None = None
    if _is_wiener(cfg) or metrics["param_count"] == 0:
        # Nothing to train: score the fixed validation and test mixtures only.
        if ckpt_path:
            log.info("ckpt_path ignored: model.kind=%s has nothing to train", cfg.model.kind)
        validated = trainer.validate(module, datamodule=datamodule)
        best = _finite(validated[0].get(monitor)) if validated else None
    else:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path:
            best = _finite(checkpoint.best_model_score)
            test_ckpt = checkpoint.best_model_path
            metrics["best_checkpoint"] = test_ckpt
        if best is None:
            best = _finite(trainer.callback_metrics.get(monitor))
    metrics["train_time_s"] = round(time.perf_counter() - started, 2)
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    metrics[monitor] = best
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted; resume with ckpt_path=last")
    return best, test_ckpt


def _test_and_report(
    cfg: DictConfig,
    module: GainLearner,
    trainer: pl.Trainer,
    loggers: list[Any],
    datamodule: pl.LightningDataModule,
    test_ckpt: str | None,
    metrics: dict[str, Any],
) -> None:
    """Run the test set and write test_results.{json,md} with per-clip records and tables."""
    output_dir = Path(cfg.paths.output_dir)
    tester = _test_trainer(trainer, cfg.trainer, loggers)
    tested = tester.test(module, datamodule=datamodule, ckpt_path=test_ckpt)
    for key, value in (tested[0] if tested else {}).items():
        metrics[key] = _finite(value)
    if not (tester.is_global_zero and module.test_records):
        return
    summary = summarize_test_records(module.test_records)
    name = "Wiener" if _is_wiener(cfg) else f"GainNet ({cfg.layer.name})"
    report = markdown_test_report(summary, {"model": name})
    _write_json(
        output_dir / "test_results.json",
        {"summary": summary, "clips": module.test_records},
    )
    _write_text(output_dir / "test_results.md", report + "\n")
    overall = summary["groups"]["all"]
    if "reference" in overall.get("si_sdri", {}):
        metrics["test/reference_si_sdri"] = overall["si_sdri"]["reference"]
    for metric in ("pesq", "stoi"):
        for system, value in overall.get(metric, {}).items():
            metrics[f"test/{system}_{metric}"] = value
    log.info("test results (%s):\n%s", output_dir / "test_results.md", report)


def _log_hparams(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, Any]) -> None:
    """The run's knobs and final metrics to TensorBoard's HParams tab."""
    hp_metrics = {
        f"hp/{key.replace('/', '_')}": value
        for key, value in metrics.items()
        if "/" in key and isinstance(value, float)
    }
    hp_metrics["hp/train_time_s"] = metrics["train_time_s"]
    hp_metrics["hp/param_count"] = float(metrics["param_count"])
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(_flat_hparams(cfg), metrics=hp_metrics)
            logger.finalize("success")


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Console entry point (``audiodiag-train`` / ``python -m audiodiag.train``)."""
    # Sharing 2 cores with DataLoader workers: let users cap threads without code changes.
    if os.environ.get("AUDIODIAG_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["AUDIODIAG_NUM_THREADS"]))
    try:
        return train(cfg)
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, exit 1
        # A bad value, path or file: one line that names it (metrics.json has it too). In a
        # multirun the error stays an exception, so the sweeper records the job as failed.
        if _is_multirun() or any(os.environ.get(name) == "1" for name in DEBUG_ENV):
            raise
        log.error("%s (HYDRA_FULL_ERROR=1 shows the traceback)", _error_line(error))
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
