"""Benchmark the diagonal layer family: forward+backward time and peak memory.

Besides the four forms: the diagonal-plus-low-rank layer (``rank4``, ``rank16``) and one channel
of the diagonal recurrence (:mod:`audiodiag.recurrence`, its parallel scan; ``recurrence_loop`` is
the same recursion as a Python loop over frames, for comparison). ``--interleave`` runs the forms
in one process, taking turns, for ratios that survive a busy machine.

On CPU each (form, features) pair runs in a fresh subprocess so that its peak memory is its
own: the growth of the process's peak RSS over the point where the input and layer exist. On
CUDA they run in one process, with the allocator's peak reset for each pair: on an H200 a
subprocess per pair took 173 s for 22 pairs, about 8 s each, almost all of it process and CUDA
start-up (the timed passes take well under a second). Times are medians over
``--repeats`` forward+backward passes on a (batch x frames x features) input.

    python scripts/bench_layers.py                 # CPU, Markdown table
    python scripts/bench_layers.py --device cuda --csv bench_cuda.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

FORMS = (
    "elementwise",
    "mask",
    "sparse",
    "diag",
    "inline",
    "seed_diag",
    "seed_sparse_dense",
    "rank4",
    "rank16",
    "recurrence",
    "recurrence_loop",
)
DESCRIPTIONS = {
    "inline": "x * d + b written inline (no module)",
    "seed_diag": "seed: F.linear(x, torch.diag(d), b)",
    "seed_sparse_dense": "seed: sparse COO weight .to_dense() every call",
    "rank4": "elementwise + low rank U V^T, r = 4",
    "rank16": "elementwise + low rank U V^T, r = 16",
    "recurrence": "one channel of the diagonal recurrence, parallel scan",
    "recurrence_loop": "the same recurrence as a Python loop over frames",
}


def _forward_fn(form: str, features: int, device: str):
    """A closure computing the form's forward, and the parameters it trains."""
    from audiodiag.layers import make_diagonal

    if form in ("elementwise", "mask", "sparse", "diag"):
        layer = make_diagonal(form, features, init="normal", device=device)
        return layer, list(layer.parameters())
    if form in ("rank4", "rank16"):
        rank = int(form.removeprefix("rank"))
        layer = make_diagonal("elementwise", features, init="normal", rank=rank, device=device)
        with torch.no_grad():
            layer.lowrank_u.normal_()  # type: ignore[union-attr]
        return layer, list(layer.parameters())
    if form in ("recurrence", "recurrence_loop"):
        from audiodiag.recurrence import DiagonalDecay

        decay = DiagonalDecay(1, features, frame_rate=125.0, min_s=0.3, max_s=0.3).to(device)
        if form == "recurrence":
            return (lambda x: decay(x.unsqueeze(1))[0].squeeze(1)), [decay.nu]

        def loop(x):
            a = torch.exp(decay.log_decay()[0])
            s = torch.zeros_like(x[:, 0])
            out = []
            for t in range(x.shape[1]):
                s = a * s + (1 - a) * x[:, t]
                out.append(s)
            return torch.stack(out, dim=1)

        return loop, [decay.nu]
    d = torch.randn(features, device=device, requires_grad=True)
    b = torch.zeros(features, device=device, requires_grad=True)
    if form == "inline":
        return (lambda x: x * d + b), [d, b]
    if form == "seed_diag":
        return (lambda x: F.linear(x, torch.diag(d), b)), [d, b]
    if form == "seed_sparse_dense":
        index = torch.arange(features, device=device).repeat(2, 1)

        def seed_sparse(x):
            weight = torch.sparse_coo_tensor(index, d, (features, features)).to_dense()
            return F.linear(x, weight, b)

        return seed_sparse, [d, b]
    raise ValueError(f"unknown form {form!r}; valid: {', '.join(FORMS)}")


def measure_one(form: str, features: int, device: str, batch: int, frames: int, repeats: int):
    """Median forward+backward milliseconds and peak extra memory (MiB) of one form."""
    torch.manual_seed(0)
    fn, params = _forward_fn(form, features, device)
    x = torch.randn(batch, frames, features, device=device, requires_grad=True)
    upstream = torch.randn(batch, frames, features, device=device)

    def step():
        y = fn(x)
        y.backward(upstream)
        x.grad = None
        for p in params:
            p.grad = None

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # warm-up (also the first touch of every buffer)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"ms": 1e3 * statistics.median(times), "peak_mib": max(peak, 0) / 2**20}


def measure_interleaved(
    forms: list[str], features: int, device: str, batch: int, frames: int, repeats: int
) -> dict[str, float]:
    """Median forward+backward milliseconds of every form, run in one process in turns.

    On a shared machine the load changes between separate runs; taking turns exposes every form
    to the same load, so the ratios hold even when the absolute times do not. No memory figure.
    """
    torch.manual_seed(0)
    x = torch.randn(batch, frames, features, device=device, requires_grad=True)
    upstream = torch.randn(batch, frames, features, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    steps = {}
    for form in forms:
        fn, params = _forward_fn(form, features, device)

        def step(fn=fn, params=params):
            fn(x).backward(upstream)
            x.grad = None
            for p in params:
                p.grad = None

        step()  # warm-up
        steps[form] = step
    times: dict[str, list[float]] = {form: [] for form in forms}
    for _ in range(repeats):
        for form, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            times[form].append(time.perf_counter() - start)
    return {form: 1e3 * statistics.median(values) for form, values in times.items()}


def _measure_in_subprocess(
    form: str, features: int, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, float]:
    command = [sys.executable, __file__, "--form", form, "--one", str(features)]
    for flag in ("device", "batch", "frames", "repeats", "threads"):
        command += [f"--{flag}", str(getattr(args, flag))]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{form} at {features} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    result = measure_one(args.form, args.one, args.device, args.batch, args.frames, args.repeats)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--features", type=int, nargs="+", default=[257, 513, 1025, 2049])
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--csv", help="also write the results to this CSV file")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="run all forms in one process, taking turns (robust ratios on a busy machine; "
        "no peak memory)",
    )
    parser.add_argument("--form", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        _child(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available on this machine")

    # glibc otherwise keeps freed large blocks on its heap, and peak RSS would count leftovers
    # of earlier allocations: with a fixed mmap threshold every large tensor is its own mapping.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 16)}
    rows = []
    if args.interleave:
        torch.set_num_threads(args.threads)
        for features in args.features:
            ms = measure_interleaved(
                args.forms, features, args.device, args.batch, args.frames, args.repeats
            )
            for form in args.forms:
                row = {"ms": ms[form], "peak_mib": float("nan")}
                rows.append({"device": args.device, "features": features, "form": form, **row})
    if args.device == "cuda":
        torch.set_num_threads(args.threads)
    for features in [] if args.interleave else args.features:
        for form in args.forms:
            if args.device == "cuda":
                torch.cuda.empty_cache()
                result = measure_one(
                    form, features, args.device, args.batch, args.frames, args.repeats
                )
            else:
                result = _measure_in_subprocess(form, features, args, env)
            rows.append({"device": args.device, "features": features, "form": form, **result})
            print(f"  {form:>18} {features:>5}: {result['ms']:8.2f} ms", file=sys.stderr)

    base = {r["features"]: r["ms"] for r in rows if r["form"] == "elementwise"}
    for row in rows:
        row["x_elementwise"] = row["ms"] / base[row["features"]] if row["features"] in base else 0

    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    print(
        f"\nForward+backward on ({args.batch} x {args.frames} x features), {name}, "
        f"torch {torch.__version__}; median of {args.repeats}"
        + (", forms taking turns in one process\n" if args.interleave else "\n")
    )
    header = "| form | " + " | ".join(f"{f} ms (x elem) | {f} peak MiB" for f in args.features)
    print(header + " |")
    print("|---|" + "---|---|" * len(args.features))
    for form in args.forms:
        cells = []
        for features in args.features:
            row = next(r for r in rows if r["form"] == form and r["features"] == features)
            cells.append(f"{row['ms']:.2f} ({row['x_elementwise']:.2f}x) | {row['peak_mib']:.1f}")
        label = f"{form} ({DESCRIPTIONS[form]})" if form in DESCRIPTIONS else form
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nwrote {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
