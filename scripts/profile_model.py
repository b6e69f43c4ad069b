"""Where GainNet's time goes: STFT/iSTFT vs features vs the diagonal network.

Prints two tables: a training step (forward + backward of the SI-SDR loss on a batch) and
inference (no grad, one clip), each split, with clocks inside the same step, into the
transforms (analysis STFT, applying the gains and overlap-add synthesis, forward and backward),
the SI-SDR loss (forward and backward), the features (no parameters, no gradient) and the network (the diagonal layers,
activations and the gain nonlinearity, forward and backward), plus the analytic multiply-adds
per second of audio from ``GainNet.macs_per_second``. The per-part medians need not add up
to the median total.

Usage::

    python scripts/profile_model.py                       # default GainNet, 2 threads
    python scripts/profile_model.py --layer mask --threads 1 --batch 16 --seconds 2
    python scripts/profile_model.py --model '{"depth": 2, "context": 3}'
    python scripts/profile_model.py --eager   # the network without torch.compile

The network is timed as training runs it: through ``torch.compile`` (``compile=true``, the
default; :mod:`audiodiag.compiled`) unless ``--eager`` or it cannot compile here (then it says
why). The other parts and inference are eager, as in training and in enhance.

Timings on a shared machine are noisy: the script takes the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from audiodiag.compiled import compile_blocker, compile_network
from audiodiag.losses import neg_si_sdr_loss
from audiodiag.model import GainNet

Network = Callable[[torch.Tensor], torch.Tensor]


def split_step(
    net: GainNet, noisy: torch.Tensor, clean: torch.Tensor | None, network: Network | None = None
) -> dict[str, float]:
    """Seconds per part of one real step, timed in place.

    The step is GainNet's own forward written out (analysis, features, gains, masked synthesis,
    loss) with a clock between the parts; ``network`` replaces ``net.gains_from_features`` in
    a training step (the compiled one). In a training step, hooks on the enhanced waveform
    and on the gains mark where the backward pass leaves the loss, then the transforms, and
    enters the network. ``clean=None`` times inference (no gradient, no loss).
    """
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = time.perf_counter()

    mark("start")
    with torch.set_grad_enabled(clean is not None):
        spec = net.stft.analysis(noisy)
        mark("analysis")
        features = net.features(spec)
        mark("features")
        gains = (network if clean is not None and network else net.gains_from_features)(features)
        mark("network")
        enhanced = net.stft.synthesis(spec * gains, noisy.shape[-1])
        mark("synthesis")
        if clean is not None:
            loss = neg_si_sdr_loss(enhanced, clean)
            mark("loss")
            enhanced.register_hook(lambda grad: mark("loss_grad"))
            gains.register_hook(lambda grad: mark("gains_grad"))
            net.zero_grad(set_to_none=True)
            mark("backward")
            loss.backward()
    mark("end")
    if clean is None:
        # No loss and no backward: those intervals are empty.
        for name in ("loss", "backward", "loss_grad", "gains_grad"):
            marks[name] = marks["synthesis"] if name == "loss" else marks["end"]

    def span(first: str, last: str) -> float:
        return marks[last] - marks[first]

    return {
        "total": span("start", "end"),
        "transforms": span("start", "analysis")
        + span("network", "synthesis")
        + span("loss_grad", "gains_grad"),
        "loss": span("synthesis", "loss") + span("backward", "loss_grad"),
        "features": span("analysis", "features"),
        "network": span("features", "network") + span("gains_grad", "end"),
    }


def profile(
    net: GainNet, batch: int, seconds: float, repeats: int, network: Network | None = None
) -> dict[str, dict[str, float]]:
    """Median milliseconds per part for a training step and for inference on one clip."""
    length = int(seconds * net.sample_rate)
    noisy = torch.randn(batch, length) * 0.1
    clean = torch.randn(batch, length) * 0.1

    def medians(x: torch.Tensor, target: torch.Tensor | None) -> dict[str, float]:
        for _ in range(2):  # warm-up (allocator, lazy init, the compiler's first two calls)
            split_step(net, x, target, network)
        runs = [split_step(net, x, target, network) for _ in range(repeats)]
        return {key: 1e3 * statistics.median(run[key] for run in runs) for key in runs[0]}

    net.train()
    result = {"train step": medians(noisy, clean)}
    net.eval()
    result["inference (1 clip)"] = medians(noisy[:1], None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="elementwise")
    parser.add_argument("--model", default="{}", help="extra GainNet keyword arguments as JSON")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--eager", action="store_true", help="train the network uncompiled")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = GainNet(layer=args.layer, **json.loads(args.model))
    print(f"GainNet({net.extra_repr()})")
    print(f"parameters: {net.num_parameters}   diagonal layers: {net.num_diagonal_layers}")
    print("\nanalytic multiply-adds per second of audio")
    macs = net.macs_per_second()
    for key, value in macs.items():
        print(f"  {key:<11} {value / 1e6:8.3f} M   ({100 * value / macs['total']:5.1f} %)")
    blocker = "--eager" if args.eager else compile_blocker(net, torch.device("cpu"))
    network = None if blocker else compile_network(net)
    timings = profile(net, args.batch, args.seconds, args.repeats, network)
    how = f"eager: {blocker}" if blocker else "torch.compile"
    print(
        f"\nmeasured, median of {args.repeats} (batch {args.batch} x {args.seconds:g} s, "
        f"{args.threads} threads; inference on one clip; training network {how})"
    )
    parts = ("transforms", "loss", "features", "network")
    print(f"  {'':<20}{'total ms':>10}" + "".join(f"{part:>13}" for part in parts))
    for name, times in timings.items():
        cells = "".join(
            f"{times[p]:>7.1f} ({100 * times[p] / times['total']:2.0f}%)" for p in parts
        )
        print(f"  {name:<20}{times['total']:>10.1f}{cells}")
    train = timings["train step"]
    print(
        f"\nnetwork / transforms in a training step: {train['network'] / train['transforms']:.2f}"
    )
    audio_seconds = args.batch * args.seconds
    step = timings["train step"]["total"] / 1e3
    print(f"\ntraining throughput: {audio_seconds / step:.0f} s of audio per second (fwd+bwd)")
    rtf = timings["inference (1 clip)"]["total"] / 1e3 / args.seconds
    print(f"inference real-time factor (eager): {rtf:.4f}")


if __name__ == "__main__":
    main()
