"""Time every synthetic noise type: milliseconds per draw (median over seeds), one thread.

    python scripts/bench_noise.py --seconds 2 --draws 200

Prints a Markdown table with wall-clock and CPU time per draw, dry and through a room. CPU time
is the steadier number on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from audiodiag.data import NOISE_TYPES, NoiseSource  # noqa: E402


def _time(source: NoiseSource, kind: str, n: int, rate: int, draws: int) -> tuple[float, float]:
    wall, cpu = [], []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        w0, c0 = time.perf_counter(), time.process_time()
        source.generate(kind, n, rate, rng)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    n = int(args.seconds * args.rate)
    kinds = [k for k in NOISE_TYPES if k not in ("babble", "folder")]
    print(f"{args.seconds:g}-s draws at {args.rate} Hz, median of {args.draws}")
    print("| type | wall ms | CPU ms | wall ms, room | CPU ms, room |")
    print("|---|---:|---:|---:|---:|")
    for kind in kinds:
        dry = _time(NoiseSource({kind: 1.0}), kind, n, args.rate, args.draws)
        wet = _time(NoiseSource({kind: 1.0}, room_probability=1.0), kind, n, args.rate, args.draws)
        print(f"| {kind} | {dry[0]:.2f} | {dry[1]:.2f} | {wet[0]:.2f} | {wet[1]:.2f} |")


if __name__ == "__main__":
    main()
