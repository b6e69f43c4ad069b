"""Benchmark the input pipeline: two-second (noisy, clean) training mixtures per second.

Usage::

    python scripts/bench_data.py                                  # demo corpus, all paths
    python scripts/make_bench_corpus.py /tmp/bench && \\
    python scripts/bench_data.py --data librispeech --root /tmp/bench --workers 0 1 2 \\
        --json bench.json

Three paths (``--paths``):

- ``item``: per item in the loader workers, noise synthesised per item (``mix_on_device=false``,
  ``noise_bank=false``: the path before the noise bank).
- ``item-bank``: per item, noise sliced from the seeded noise bank (``noise_bank=true``).
- ``batch``: the workers return clean crops and noise recipes; the batch is mixed in the main
  process by ``NoisySpeechDataModule.mix_batch`` on ``--device`` (``mix_on_device=true``), and
  that time is counted.

Speech is read uncached (``cache_audio=false``: every crop reads its frames from the files)
unless ``--cache``. ``--reads file decoded`` runs every setting twice: crops decoded from the
audio files, and crops cut from the corpus' decoded int16 copy (``data.decoded_cache=true``,
built before timing; its build time is reported as ``setup_s``). For each setting the script takes one long epoch, skips the first batch
(worker start-up, the noise bank, the manifest are reported apart) and times ``--repeats``
windows of ``--batches`` batches; it prints the median and writes one JSON record per setting
(``workers``, ``path``, ``mixtures_per_s``, the windows and the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from audiodiag.data import (
    DemoSpeech,
    FolderSpeech,
    LibriSpeech,
    NoiseSource,
    NoisySpeechDataModule,
    SpeechSource,
)
from audiodiag.paths import CONF_DIR

PATHS = ("item", "item-bank", "batch")


def _noise(name: str) -> NoiseSource:
    config = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "noise" / f"{name}.yaml"))
    assert isinstance(config, dict)
    config.pop("_target_")
    return NoiseSource(**{str(k): v for k, v in config.items()})


def _speech(data: str, root: str | None) -> SpeechSource:
    if data == "demo":
        return DemoSpeech(root)
    if data == "librispeech":
        return LibriSpeech(root)
    if data == "folder":
        return FolderSpeech(root or "")
    raise SystemExit(f"--data {data} is not one of demo, librispeech, folder")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (the loader workers),
    from /proc; 0 where there is no /proc. Wall-clock rates on a shared machine depend on the
    load; CPU time per mixture much less."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [os.getpid()]
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == os.getpid():
                    pids.append(int(entry))
        total = 0.0
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
    except OSError:
        return 0.0


def bench(path: str, workers: int, reads: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time the training loader of one DataModule (``path``, ``workers``, ``reads``)."""
    start = time.perf_counter()
    datamodule = NoisySpeechDataModule(
        _speech(args.data, args.root),
        _noise(args.noise),
        segment_seconds=args.segment_seconds,
        batch_size=args.batch_size,
        num_workers=workers,
        train_mixtures_per_epoch=args.batch_size * (args.batches * args.repeats + 1),
        seed=0,
        cache_audio=args.cache,
        decoded_cache=reads == "decoded",
        mix_on_device=path == "batch",
        noise_bank=path != "item",
    )
    datamodule.setup("fit")
    setup_s = time.perf_counter() - start
    device = torch.device(args.device)

    def finish(batch: dict[str, Any]) -> torch.Tensor:
        if path != "batch":
            return batch["noisy"]
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        noisy = datamodule.mix_batch(moved, device)["noisy"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return noisy

    loader = datamodule.train_dataloader()
    start = time.perf_counter()
    iterator = iter(loader)
    finish(next(iterator))
    first_batch_s = time.perf_counter() - start
    windows, cpu_ms = [], []
    for _ in range(args.repeats):
        cpu = _cpu_seconds()
        start = time.perf_counter()
        mixtures = 0
        for _ in range(args.batches):
            mixtures += finish(next(iterator)).shape[0]
        windows.append(mixtures / (time.perf_counter() - start))
        cpu_ms.append(1e3 * (_cpu_seconds() - cpu) / mixtures)
    del iterator, loader
    return {
        "data": args.data,
        "path": path,
        "workers": workers,
        "reads": reads,
        "mixtures_per_s": statistics.median(windows),
        "windows_per_s": windows,
        # All processes' CPU time per mixture (workers' prefetching blurs window edges).
        "cpu_ms_per_mixture": statistics.median(cpu_ms),
        "batch_size": args.batch_size,
        "segment_seconds": args.segment_seconds,
        "cached": bool(args.cache),
        "device": str(device),
        "noise": args.noise,
        "first_batch_s": first_batch_s,
        "setup_s": setup_s,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, run every (path, workers) setting, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="demo", choices=["demo", "librispeech", "folder"])
    parser.add_argument("--root", default=None, help="dataset root (default: the source's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument(
        "--reads",
        nargs="+",
        default=["file"],
        choices=["file", "decoded"],
        help="crops decoded from the files, or cut from the decoded cache",
    )
    parser.add_argument("--batches", type=int, default=40, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (median)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--noise", default="default", help="a conf/noise/*.yaml name")
    parser.add_argument("--cache", action="store_true", help="decode the corpus into memory")
    parser.add_argument("--device", default="cpu", help="where the batch path mixes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, main process")
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be >= 1")
    torch.set_num_threads(args.threads)

    rows = [bench(p, w, r, args) for r in args.reads for p in args.paths for w in args.workers]
    print(
        f"\n{args.data} ({'cached' if args.cache else 'uncached'}), {args.segment_seconds:g}-s "
        f"mixtures, batch {args.batch_size}, noise={args.noise}, median of {args.repeats} x "
        f"{args.batches} batches; torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "\n| reads | path | workers | mixtures/s | windows | CPU ms/mixture | first batch (s) "
        "| setup (s) |"
    )
    print("|---|---|--:|--:|---|--:|--:|--:|")
    for row in rows:
        windows = " ".join(f"{w:.0f}" for w in row["windows_per_s"])
        print(
            f"| {row['reads']} | {row['path']} | {row['workers']} | {row['mixtures_per_s']:.0f} | {windows} "
            f"| {row['cpu_ms_per_mixture']:.2f} "
            f"| {row['first_batch_s']:.2f} | {row['setup_s']:.2f} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
