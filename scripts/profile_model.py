"""Where GainNet's time goes: STFT/iSTFT vs features vs the diagonal network.

Prints two tables: a training step (forward + backward of the SI-SDR loss on a batch) and
inference (no grad, one clip), each split into the transforms (analysis STFT + overlap-add
synthesis), the features (no parameters, no gradient) and the network (the rest), plus the
analytic multiply-adds per second of audio from ``GainNet.macs_per_second``.

Usage::

    python scripts/profile_model.py                       # default GainNet, 2 threads
    python scripts/profile_model.py --layer mask --threads 1 --batch 16 --seconds 2
    python scripts/profile_model.py --model '{"depth": 2, "context": 3}'

Timings on a shared machine are noisy: the script takes the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from audiodiag.losses import neg_si_sdr_loss
from audiodiag.model import GainNet


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, lazy init)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def profile(net: GainNet, batch: int, seconds: float, repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per part for a training step and for inference."""
    length = int(seconds * net.sample_rate)
    noisy = torch.randn(batch, length) * 0.1
    clean = torch.randn(batch, length) * 0.1

    def train_total() -> None:
        net.zero_grad(set_to_none=True)
        neg_si_sdr_loss(net(noisy), clean).backward()

    def train_transforms() -> None:
        # Same transforms and loss, the gains replaced by a leaf that needs a gradient.
        spec = net.stft.analysis(noisy)
        gains = torch.full(spec.shape, 0.5, requires_grad=True)
        neg_si_sdr_loss(net.stft.synthesis(spec * gains, length), clean).backward()

    def row(total: float, transforms: float, x: torch.Tensor) -> dict[str, float]:
        """Split ``total`` ms; features are timed as (STFT + features) minus the STFT alone."""

        def with_features() -> None:
            with torch.no_grad():
                net.features(net.stft.analysis(x))

        def analysis_only() -> None:
            with torch.no_grad():
                net.stft.analysis(x)

        feats = _median_ms(with_features, repeats) - _median_ms(analysis_only, repeats)
        return {
            "total": total,
            "transforms": transforms,
            "features": feats,
            "network": total - transforms - feats,
        }

    result: dict[str, dict[str, float]] = {}
    net.train()
    result["train step"] = row(
        _median_ms(train_total, repeats), _median_ms(train_transforms, repeats), noisy
    )
    net.eval()
    clip = noisy[:1]

    def infer_total() -> None:
        with torch.no_grad():
            net(clip)

    def infer_transforms() -> None:
        with torch.no_grad():
            spec = net.stft.analysis(clip)
            net.stft.synthesis(spec * 0.5, clip.shape[-1])

    result["inference (1 clip)"] = row(
        _median_ms(infer_total, repeats), _median_ms(infer_transforms, repeats), clip
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="elementwise")
    parser.add_argument("--model", default="{}", help="extra GainNet keyword arguments as JSON")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
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
    timings = profile(net, args.batch, args.seconds, args.repeats)
    print(
        f"\nmeasured, median of {args.repeats} (batch {args.batch} x {args.seconds:g} s, "
        f"{args.threads} threads; inference on one clip)"
    )
    print(f"  {'':<20}{'total ms':>10}{'transforms':>12}{'features':>10}{'network':>10}")
    for name, parts in timings.items():
        share = {k: 100 * parts[k] / parts["total"] for k in ("transforms", "features", "network")}
        print(
            f"  {name:<20}{parts['total']:>10.1f}"
            f"{share['transforms']:>11.0f}%{share['features']:>9.0f}%{share['network']:>9.0f}%"
        )
    audio_seconds = args.batch * args.seconds
    step = timings["train step"]["total"] / 1e3
    print(f"\ntraining throughput: {audio_seconds / step:.0f} s of audio per second (fwd+bwd)")
    rtf = timings["inference (1 clip)"]["total"] / 1e3 / args.seconds
    print(f"inference real-time factor (eager): {rtf:.4f}")


if __name__ == "__main__":
    main()
