"""Benchmark the data pipeline: two-second (noisy, clean) mixtures per second.

Usage::

    python scripts/bench_data.py                      # demo corpus, default noise, 0 and 2 workers
    python scripts/bench_data.py --workers 0 1 2 --batches 60 --noise white

It times training batches from ``NoisySpeechDataModule.train_dataloader()`` after the first
batch (so worker start-up and the one-off decode of the corpus are reported separately) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from omegaconf import OmegaConf

from audiodiag.data import DemoSpeech, NoiseSource, NoisySpeechDataModule
from audiodiag.paths import CONF_DIR


def _noise(name: str) -> NoiseSource:
    config = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "noise" / f"{name}.yaml"))
    assert isinstance(config, dict)
    config.pop("_target_")
    return NoiseSource(**{str(k): v for k, v in config.items()})


def bench(workers: int, args: argparse.Namespace) -> dict[str, float]:
    """Time one DataModule with ``workers`` DataLoader workers."""
    start = time.perf_counter()
    datamodule = NoisySpeechDataModule(
        DemoSpeech(args.root),
        _noise(args.noise),
        segment_seconds=args.segment_seconds,
        batch_size=args.batch_size,
        num_workers=workers,
        train_mixtures_per_epoch=args.batch_size * (args.batches + 1),
        seed=0,
    )
    datamodule.setup("fit")
    setup_s = time.perf_counter() - start
    loader = datamodule.train_dataloader()
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first_batch_s = time.perf_counter() - start
    start = time.perf_counter()
    mixtures = 0
    for batch in iterator:
        mixtures += batch["noisy"].shape[0]
    elapsed = time.perf_counter() - start
    del iterator, loader
    return {
        "workers": workers,
        "setup_s": setup_s,
        "first_batch_s": first_batch_s,
        "mixtures": mixtures,
        "per_s": mixtures / elapsed,
    }


def main() -> None:
    """Parse arguments, run the benchmark for each worker count and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--noise", default="default", help="a conf/noise/*.yaml name")
    parser.add_argument("--root", default=None, help="demo corpus folder (default: bundled)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = [bench(w, args) for w in args.workers]
    print(
        f"\n{args.segment_seconds:g}-second mixtures, batch {args.batch_size}, noise={args.noise}, "
        f"{args.batches} timed batches; torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print("\n| workers | mixtures/s | first batch (s) | setup incl. decode (s) |")
    print("|--------:|-----------:|----------------:|-----------------------:|")
    for row in rows:
        print(
            f"| {row['workers']:7d} | {row['per_s']:10.0f} | {row['first_batch_s']:15.2f} "
            f"| {row['setup_s']:22.2f} |"
        )


if __name__ == "__main__":
    main()
