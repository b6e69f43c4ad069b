"""Real-time factor of the eager, exported (TorchScript) and onnxruntime enhancers on one thread.

::

    python scripts/bench_rtf.py                       # default GainNet (untrained: same cost)
    python scripts/bench_rtf.py --ckpt outputs/train/runs/X/checkpoints/best.ckpt
    python scripts/bench_rtf.py --seconds 10 --repeats 7 --threads 1 --json rtf.json

RTF = processing seconds / audio seconds on a ``--seconds`` clip (median of ``--repeats`` runs
after one warm-up run). Target for the exported default model: RTF <= 0.01 on one thread.
Prints a Markdown table; timings are never asserted anywhere.
"""

# GainNet's attributes are read through nn.Module.__getattr__, typed "Tensor | Module" for mypy.
# mypy: disable-error-code="union-attr,operator,arg-type"
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, TorchScript profiling passes, ORT session
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _caller(module: Callable[[torch.Tensor], object], x: torch.Tensor) -> Callable[[], object]:
    return lambda: module(x)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--ckpt", help="training checkpoint (default: an untrained default GainNet)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch/ORT threads (default 1)")
    parser.add_argument("--block-ms", type=float, default=16.0, help="streaming block (default 16)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    parser.add_argument("--json", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", FutureWarning)
    from audiodiag.export import export_onnx, export_torchscript
    from audiodiag.layers import IMPLEMENTATIONS, convert
    from audiodiag.loading import load_checkpoint
    from audiodiag.nets import build_net
    from audiodiag.wiener import WienerEnhancer

    if args.ckpt:
        net, _ = load_checkpoint(args.ckpt)
        label = Path(args.ckpt).name
    else:
        net = build_net({"kind": "gainnet"}).eval()
        label = "default GainNet (untrained)"
    rate = int(net.sample_rate)
    clip = 0.1 * torch.randn(
        1, int(args.seconds * rate), generator=torch.Generator().manual_seed(0)
    )
    seconds = clip.shape[-1] / rate
    rows: list[dict[str, object]] = []

    def add(name: str, fn: Callable[[], object]) -> None:
        with torch.inference_mode():
            elapsed = _median_seconds(fn, args.repeats)
        rows.append({"system": name, "ms_per_clip": 1000 * elapsed, "rtf": elapsed / seconds})
        print(f"  {name}: {1000 * elapsed:.1f} ms", file=sys.stderr)

    trained_layer = str(net.layer)
    for layer in IMPLEMENTATIONS:
        if int(net.bandwidth) > 0 and layer == "elementwise":
            continue
        eager = net if layer == trained_layer else convert(net, layer).eval()
        tag = " (as trained)" if layer == trained_layer else ""
        add(f"eager, layer={layer}{tag}", _caller(eager, clip))

    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = Path(tmp) / "model.pt"
        sizes["torchscript"] = export_torchscript(net, ts_path)["bytes"]
        scripted = torch.jit.load(str(ts_path))
        add("TorchScript file (exported)", lambda: scripted(clip))

        block = max(1, int(args.block_ms * rate / 1000))

        def stream() -> None:
            state = scripted.stream_init(1)
            for start in range(0, clip.shape[-1], block):
                _, state = scripted.stream_process(clip[:, start : start + block], state)
            scripted.stream_flush(state)

        if bool(net.causal):
            add(f"TorchScript streaming, {args.block_ms:g} ms blocks", stream)

        if not args.no_onnx:
            import onnxruntime as ort

            onnx_path = Path(tmp) / "gains.onnx"
            sizes["onnx_gain_network"] = export_onnx(net, onnx_path)["bytes"]
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
            converted = convert(net, "elementwise") if int(net.bandwidth) == 0 else net
            spec = converted.stft.analysis(clip)
            feats = converted.features(spec).numpy()
            add(
                "onnxruntime gain network only", lambda: session.run(["gains"], {"features": feats})
            )

            def chain() -> None:
                s = converted.stft.analysis(clip)
                f = converted.features(s).numpy()
                (g,) = session.run(["gains"], {"features": f})
                converted.stft.synthesis(s * torch.from_numpy(g), clip.shape[-1])

            add("torch STFT+features -> onnxruntime gains -> torch iSTFT", chain)

    wiener = WienerEnhancer(sample_rate=rate).eval()
    add("Wiener reference (eager)", lambda: wiener(clip))

    macs = net.macs_per_second() if hasattr(net, "macs_per_second") else {}
    print(
        f"\nModel: {label}; {sum(p.numel() for p in net.parameters())} parameters; "
        f"clip {seconds:g} s at {rate} Hz; {args.threads} thread(s); median of {args.repeats}; "
        f"torch {torch.__version__}\n"
    )
    print("| system | ms per clip | RTF | x real time |")
    print("|---|---:|---:|---:|")
    for row in rows:
        rtf = float(row["rtf"])  # type: ignore[arg-type]
        print(f"| {row['system']} | {row['ms_per_clip']:.1f} | {rtf:.4f} | {1 / rtf:.0f} |")
    latency = int(net.latency_samples()) if bool(net.causal) else None
    print("\nExport sizes: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()))
    if latency is not None:
        print(
            f"Algorithmic latency (causal, hop-aligned blocks): {latency} samples = "
            f"{1000 * latency / rate:.1f} ms, plus the block itself"
        )
    if macs:
        print(
            f"Analytic cost: {macs.get('total', 0) / 1e6:.1f} M multiply-adds per second of audio"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "sizes": sizes,
                    "latency_samples": latency,
                    "threads": args.threads,
                    "seconds": seconds,
                    "model": label,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
