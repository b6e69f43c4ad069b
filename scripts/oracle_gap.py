"""How far a trained GainNet is from the best gains its form allows, by noise type.

On the fixed test mixtures of a data config, beside the model's SI-SDR improvement, scores the
ideal ratio mask ``sqrt(|S|^2 / (|S|^2 + |N|^2))`` (``S`` the clean STFT, ``N`` the STFT of
``noisy - clean``), floored at the model's own gain floor and applied with the model's own STFT:
gains the network could in principle output, computed from the answer. The gap per noise type
is the headroom of per-bin gains there; ``--figure TYPE`` draws one clip of that type (noisy,
clean, the model's gains, the oracle's) to show where the model goes wrong::

    python scripts/oracle_gap.py outputs/train/runs/X/checkpoints/best.ckpt
    python scripts/oracle_gap.py CKPT --figure glide glide.png --overrides data=demo
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiodiag.evaluate import datamodule_clips  # noqa: E402
from audiodiag.inference import load_enhancer  # noqa: E402
from audiodiag.losses import si_sdr  # noqa: E402


def oracle_gains(clean_spec: torch.Tensor, noise_spec: torch.Tensor, floor: float) -> torch.Tensor:
    """The ideal ratio mask (magnitude domain), clamped to [floor, 1]."""
    speech = clean_spec.abs().square()
    noise = noise_spec.abs().square()
    return (speech / (speech + noise + 1e-12)).sqrt().clamp(min=floor, max=1.0)


def score_clip(net: torch.nn.Module, noisy: torch.Tensor, clean: torch.Tensor) -> dict:
    """SI-SDR improvement of the model and of the oracle on one clip (time,)."""
    x, s = noisy[None], clean[None]
    with torch.no_grad():
        spec = net.stft.analysis(x)
        clean_spec = net.stft.analysis(s)
        gains = net.gains_from_spec(spec)
        # The STFT is linear: the noise's spectrum is the noisy one minus the clean one.
        ideal = oracle_gains(clean_spec, spec - clean_spec, net.gain_floor)
        model_out = net.stft.synthesis(spec * gains, x.shape[-1])
        oracle_out = net.stft.synthesis(spec * ideal, x.shape[-1])
        base = si_sdr(x, s)
    return {
        "model": float(si_sdr(model_out, s) - base),
        "oracle": float(si_sdr(oracle_out, s) - base),
        "spec": spec[0],
        "clean_spec": clean_spec[0],
        "gains": gains[0],
        "ideal": ideal[0],
    }


def draw(clip: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("noisy (dB)", 20 * torch.log10(clip["spec"].abs() + 1e-6), None),
        ("clean (dB)", 20 * torch.log10(clip["clean_spec"].abs() + 1e-6), None),
        (f"model gains ({clip['model']:.1f} dB)", clip["gains"], (0, 1)),
        (f"oracle gains ({clip['oracle']:.1f} dB)", clip["ideal"], (0, 1)),
    ]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for axis, (name, image, limits) in zip(axes, panels, strict=True):
        low, high = limits or (float(image.max()) - 80, float(image.max()))
        axis.imshow(image.numpy(), origin="lower", aspect="auto", vmin=low, vmax=high)
        axis.set_title(name)
        axis.set_xlabel("frame")
    axes[0].set_ylabel("bin")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a training checkpoint (.ckpt) of a GainNet")
    parser.add_argument("--overrides", nargs="*", default=["data=demo"], help="data config")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N clips")
    parser.add_argument("--figure", nargs=2, metavar=("TYPE", "PNG"), help="draw one clip")
    args = parser.parse_args()
    torch.set_num_threads(2)
    enhancer = load_enhancer(args.model)
    net = enhancer.module
    if enhancer.kind != "checkpoint" or not hasattr(net, "gains_from_spec"):
        raise SystemExit(f"{args.model}: needs a training checkpoint (.ckpt) of a GainNet")
    net.eval()
    by_type: dict[str, list[dict]] = defaultdict(list)
    drawn = False
    for clip in datamodule_clips(args.overrides, args.limit):
        scores = score_clip(net, clip["noisy"], clip["clean"])
        kind = clip["noise_type"]
        if args.figure and not drawn and kind == args.figure[0]:
            draw(scores, Path(args.figure[1]), f"{kind}, {clip['snr_db']:.1f} dB SNR")
            drawn = True
        by_type[kind].append({"model": scores["model"], "oracle": scores["oracle"]})
    every = [row for rows in by_type.values() for row in rows]
    print("| noise | clips | model SI-SDRi | oracle SI-SDRi | gap |\n|---|---:|---:|---:|---:|")
    for kind, rows in [("all", every), *sorted(by_type.items())]:
        model = sum(r["model"] for r in rows) / len(rows)
        oracle = sum(r["oracle"] for r in rows) / len(rows)
        print(f"| {kind} | {len(rows)} | {model:.2f} | {oracle:.2f} | {oracle - model:.2f} |")


if __name__ == "__main__":
    main()
