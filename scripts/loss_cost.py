"""What each training loss costs: one GainLearner training step (forward, loss, backward) per
loss setting, timed side by side in rounds so that a busy machine slows them alike.

Prints a table of median milliseconds per step and the ratio to SI-SDR alone::

    python scripts/loss_cost.py                    # the trained default net, batch 16 x 2 s
    python scripts/loss_cost.py --threads 1 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from audiodiag.module import GainLearner

#: Row label -> loss weights (si_sdr=1 in every row). The first row is the reference.
LOSSES = {
    "si_sdr only": {"masked_magnitude": 0.0},
    "loss.masked_magnitude=20 (default)": {"masked_magnitude": 20.0},
    "loss.spectral=50": {"spectral": 50.0, "masked_magnitude": 0.0},
}
DEFAULT_NET = {"kind": "gainnet", "causal": False, "depth": 1, "context": 3, "rank": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", default=json.dumps(DEFAULT_NET), help="net kwargs as JSON")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = json.loads(args.net)
    learners = {label: GainLearner(net=net, loss=loss) for label, loss in LOSSES.items()}
    generator = torch.Generator().manual_seed(0)
    length = int(args.seconds * 16000)
    noisy = torch.randn(args.batch, length, generator=generator) * 0.1
    clean = torch.randn(args.batch, length, generator=generator) * 0.1

    def step(learner: GainLearner) -> float:
        start = time.perf_counter()
        learner.zero_grad(set_to_none=True)
        enhanced, masked = learner.enhance(noisy)
        loss, _ = learner.compute_loss(enhanced, clean, None, masked)
        loss.backward()
        return time.perf_counter() - start

    for learner in learners.values():
        step(learner)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in learners}
    for _ in range(args.rounds):
        for label, learner in learners.items():
            times[label].append(step(learner))
    base = statistics.median(next(iter(times.values())))
    print(
        f"training step, batch {args.batch} x {args.seconds:g} s, {args.threads} threads, "
        f"median of {args.rounds} rounds"
    )
    print("| loss | ms per step | vs SI-SDR alone |\n|---|---:|---:|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {1e3 * median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
