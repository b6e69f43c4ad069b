"""Data-stall fraction of a real training run: the share of step time spent waiting for a batch.

Composes the same Hydra config as ``python -m audiodiag.train`` (with the overrides given),
builds its DataModule and LightningModule, and trains ``--steps`` optimiser steps with a
callback that clocks, for every step after ``--warmup``, the wait between the end of one
training step and the start of the next (fetching the batch, moving it to the device and, with
``data.mix_on_device=true``, mixing it there) and the step itself (forward, backward,
optimiser). No validation, checkpoints or logs.

``--ceiling`` then trains the same number of steps on one batch kept on the device (no
loader at all) and reports both rates: training steps per second with the real loader against
that ceiling (``scripts/gpu_check.sh`` runs it on a lent GPU).

Usage::

    python scripts/make_bench_corpus.py /tmp/bench
    python scripts/data_stall.py data=librispeech data.speech.root=/tmp/bench --steps 60
    python scripts/data_stall.py data=librispeech data.speech.root=/tmp/bench \\
        data.mix_on_device=false --json stall.json
    python scripts/data_stall.py trainer=gpu data=librispeech data.speech.root=/tmp/bench \\
        data.decoded_cache=true data.num_workers=8 --ceiling
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf

from audiodiag.module import GainLearner
from audiodiag.paths import CONF_DIR
from audiodiag.train import resolve_precision


class StallTimer(L.Callback):
    """Clocks the wait for each batch and the step that uses it (after ``warmup`` steps)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.waits: list[float] = []
        self.epoch_start_waits: list[float] = []
        self.steps: list[float] = []
        self._end: float | None = None
        self._start = 0.0
        self._seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._start = time.perf_counter()
        if self._end is not None and self._seen >= self.warmup:
            self.waits.append(self._start - self._end)
            if batch_idx == 0:  # this wait spans the epoch's end and the next one's first batch
                self.epoch_start_waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._end = time.perf_counter()
        if self._seen >= self.warmup:
            self.steps.append(self._end - self._start)
        self._seen += 1

    def summary(self) -> dict[str, Any]:
        """Totals, medians and the stall fraction (wait / (wait + step)) over the timed steps."""
        timed = min(len(self.waits), len(self.steps))
        wait, step = sum(self.waits[:timed]), sum(self.steps[:timed])
        # Epoch starts apart: a short epoch over a small corpus repeats their one-off costs (new
        # loader iterator, the noise bank rebuilt per epoch) far more often than a real one does.
        at_starts = sum(self.epoch_start_waits)
        steady = wait - at_starts
        return {
            "timed_steps": timed,
            "stall_fraction": wait / (wait + step) if timed else float("nan"),
            "steady_stall_fraction": steady / (steady + step) if timed else float("nan"),
            "epoch_starts": len(self.epoch_start_waits),
            "epoch_start_wait_s_total": at_starts,
            "wait_s_total": wait,
            "step_s_total": step,
            "wait_ms_median": 1e3 * statistics.median(self.waits) if self.waits else None,
            "step_ms_median": 1e3 * statistics.median(self.steps) if self.steps else None,
        }


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def _module(cfg: Any) -> GainLearner:
    return GainLearner(
        net=_plain(cfg.model),
        loss=_plain(cfg.loss),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler),
        sample_rate=int(cfg.sample_rate),
        test_pesq_stoi=False,
        test_reference=None,
        monitor=str(cfg.monitor),
    )


def _trainer(cfg: Any, steps: int, callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator=str(cfg.trainer.get("accelerator", "cpu")),
        devices=1,
        precision=resolve_precision(
            cfg.trainer.get("precision", "32-true"), str(cfg.trainer.get("accelerator", "cpu"))
        ),
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def _steps_per_s(timer: StallTimer) -> float:
    timed = min(len(timer.waits), len(timer.steps))
    total = sum(timer.waits[:timed]) + sum(timer.steps[:timed])
    return timed / total if total > 0 else float("nan")


class _Repeat:
    """One batch, ``count`` times (a list would be taken for several loaders)."""

    def __init__(self, batch: dict[str, Any], count: int) -> None:
        self.batch, self.count = batch, count

    def __iter__(self) -> Any:
        return (self.batch for _ in range(self.count))

    def __len__(self) -> int:
        return self.count


def ceiling(cfg: Any, batch: dict[str, Any], args: argparse.Namespace) -> float:
    """Training steps per second on one batch kept on the device: what the model and the
    device allow with a loader that costs nothing."""
    module = _module(cfg)
    timer = StallTimer(args.warmup)
    trainer = _trainer(cfg, args.warmup + args.steps, [timer])
    device = trainer.strategy.root_device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    trainer.fit(module, train_dataloaders=_Repeat(batch, args.warmup + args.steps))
    return _steps_per_s(timer)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, train, print and return the stall summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for audiodiag.train")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed (start-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--ceiling", action="store_true", help="also time steps on one batch kept on the device"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = hydra.compose("train", overrides=[*args.overrides, "hydra.run.dir=."])
    L.seed_everything(int(cfg.get("seed", 0)), workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = _module(cfg)
    timer = StallTimer(args.warmup)
    # Clock the device mixing apart: it is part of the wait (it runs before the step starts).
    mix_times: list[float] = []
    finish = datamodule.on_after_batch_transfer

    first: list[dict[str, Any]] = []

    def timed_finish(batch: Any, dataloader_idx: int) -> Any:
        start = time.perf_counter()
        out = finish(batch, dataloader_idx)
        mix_times.append(time.perf_counter() - start)
        if not first:
            first.append(out)
        return out

    datamodule.on_after_batch_transfer = timed_finish
    trainer = _trainer(cfg, args.warmup + args.steps, [timer])
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    summary = {
        **timer.summary(),
        "mix_ms_median": 1e3 * statistics.median(mix_times[args.warmup :] or [0.0]),
        "steps_per_s": _steps_per_s(timer),
        "device": str(trainer.strategy.root_device),
        "wall_s": time.perf_counter() - start,
        "overrides": args.overrides,
        "batch_size": int(cfg.data.batch_size),
        "num_workers": int(cfg.data.num_workers),
        "mix_on_device": str(cfg.data.get("mix_on_device", False)).lower(),
        "device_mixing": bool(datamodule.device_mixing()),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(
        f"data stall: {100 * summary['stall_fraction']:.1f} % of step time over "
        f"{summary['timed_steps']} steps (median wait {summary['wait_ms_median']:.1f} ms, "
        f"median step {summary['step_ms_median']:.1f} ms, of the wait mixing "
        f"{summary['mix_ms_median']:.1f} ms; batch {summary['batch_size']}, "
        f"{summary['num_workers']} workers, mix_on_device={summary['mix_on_device']} "
        f"(device mixing {'on' if summary['device_mixing'] else 'off'}), "
        f"load average {summary['load_average_1min']:.1f})"
    )
    print(
        f"of which {summary['epoch_start_wait_s_total']:.2f} s at {summary['epoch_starts']} epoch "
        f"starts; without them the stall is {100 * summary['steady_stall_fraction']:.1f} %"
    )
    if args.ceiling:
        summary["ceiling_steps_per_s"] = ceiling(cfg, first[0], args)
        print(
            f"training steps/s on {summary['device']}: {summary['steps_per_s']:.2f} with the "
            f"real loader, {summary['ceiling_steps_per_s']:.2f} on one batch kept on the device "
            f"(the ceiling): {100 * summary['steps_per_s'] / summary['ceiling_steps_per_s']:.0f} %"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
