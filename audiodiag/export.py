"""Export a trained enhancer to a self-contained file: ``python -m audiodiag.export``.

::

    python -m audiodiag.export ckpt=outputs/train/runs/X/checkpoints/best.ckpt out=model.pt2
    python -m audiodiag.export ckpt=best.ckpt out=model.pt onnx=model_gains.onnx

``out=*.pt2`` (recommended) is a ``torch.export`` program of the whole offline waveform model
(:func:`export_program`): ``torch.export.load(out).module()`` needs only PyTorch and maps
``(batch, time)`` to the enhanced waveform, batch and length dynamic; the metadata JSON is the
archive's extra file ``audiodiag.json``. It has no block API: ``torch.export`` cannot trace
:class:`audiodiag.streaming.StreamCore.consume`, whose slicing reads the sample counters held in
the state tensors (data-dependent sizes) and which branches on the pending length.

Any other ``out`` is a TorchScript file (kept for the streaming block API): ``torch.jit.load(out)`` needs only PyTorch (no audiodiag,
Lightning or Hydra) and maps a waveform ``(time,)`` or ``(batch, time)`` at ``m.sample_rate`` to
the enhanced waveform of the same shape, for any length (also shorter than one STFT frame). Its
``audiodiag.json`` extra file (and the ``metadata_json`` attribute) holds the sample rate, the
network's arguments, the training config and the metrics of the run. A causal model also carries
a stateful block API (``stream_init`` / ``stream_process`` / ``stream_flush``) whose output equals
whole-file processing (it is :class:`audiodiag.streaming.StreamCore`, the eager streamer's
recursion); :mod:`audiodiag.inference` uses it for long files and streaming.

How: ``convert(net, "elementwise")`` (the layer family's cost floor; ``diag`` for a banded net)
is wrapped in :class:`ExportedEnhancer` and compiled with ``torch.jit.script``, which keeps the
length dynamic (also below one frame) and the block API. Every export is checked against the eager
model on three input lengths and block by block (max abs difference <= 1e-4), then written,
reloaded and checked again; a file that fails is never left behind.

ONNX (``onnx=PATH``): the whole waveform model does not convert (the causal noise-floor track
uses ``torch.cummin``, which has no ONNX translation, and the overlap-add's ``F.fold`` becomes a
``Col2Im`` whose output length is wrong at lengths other than the traced one), so the ONNX file
holds the gain network, exported
with the dynamo exporter (opset 18) with dynamic batch and frame axes: input ``features``
``(batch, frames, 2, bins)``, output ``gains`` ``(batch, bins, frames)``. The transform around it
(:mod:`audiodiag.features`): causal-framed STFT (``n_fft - hop`` zeros before the signal,
periodic Hann window, ``center=False``), per-bin features ``0.2 * (log(|X|^2 + eps) - running
mean of log power)`` and ``0.2 * (log(|X|^2 + eps) - noise floor)``, then ``gains * X`` and a
weighted overlap-add inverse (:func:`onnx_chain_enhance` runs exactly that). The ONNX file's
``metadata_props`` hold the same JSON as the TorchScript file.
"""

# GainNet's attributes are read through nn.Module.__getattr__, typed "Tensor | Module" for mypy.
# mypy: disable-error-code="union-attr,operator,arg-type"
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from audiodiag.atomic import OutputError, atomic_write, check_output, same_path
from audiodiag.cli import parse_bool, parse_cli, run_entry
from audiodiag.layers import convert
from audiodiag.loading import METADATA_FILE, ModelLoadError, load_checkpoint
from audiodiag.model import GainNet
from audiodiag.streaming import StreamCore

__all__ = [
    "ExportError",
    "ExportedEnhancer",
    "GainNetworkOnFeatures",
    "check_export",
    "export_checkpoint",
    "export_onnx",
    "export_program",
    "export_torchscript",
    "main",
]

#: Largest accepted difference between the exported and the eager model.
TOLERANCE = 1e-4
FORMAT_VERSION = 1
#: ``out`` names ending so are written as a ``torch.export`` program, others as TorchScript.
PROGRAM_SUFFIX = ".pt2"


class ExportError(RuntimeError):
    """An export that could not be built or that does not match the eager model."""


# ---------------------------------------------------------------------------------------------
# The exported module: the converted GainNet plus a functional block-processing API
# ---------------------------------------------------------------------------------------------
class ExportedEnhancer(StreamCore):
    """What the TorchScript file holds: ``forward`` is the (converted) GainNet itself; the
    ``stream_*`` methods run a causal net block by block with explicit state.

    The block API *is* :class:`audiodiag.streaming.StreamCore` (the same recursion the eager
    :class:`audiodiag.streaming.StreamingEnhancer` runs), exposed under the method names the
    file promises: ``stream_init(batch)``, ``stream_process(block, state)``, ``stream_flush``.
    """

    def __init__(self, net: nn.Module, metadata_json: str = "{}") -> None:
        super().__init__(net)
        self.sample_rate = int(net.sample_rate)
        self.latency_samples = int(net.latency_samples())
        self.metadata_json = metadata_json
        # Carries the device and dtype for new state tensors (moves with .to()).
        self.register_buffer("probe", torch.zeros(1))

    def forward(self, waveform: Tensor) -> Tensor:
        """Enhance a waveform (time,) or (batch, time) at ``sample_rate``; same shape out."""
        return self.net(waveform)

    @torch.jit.export
    def stream_init(self, batch: int) -> list[Tensor]:
        """A fresh state for ``batch`` channels (causal models only)."""
        return self.initial_state(self.probe.new_zeros(batch, 1))

    @torch.jit.export
    def stream_process(self, block: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Feed a block (B, n) of any length; returns (every output sample that became final,
        new state). Concatenated outputs plus :meth:`stream_flush` equal ``forward``."""
        return self.consume(block, state)

    @torch.jit.export
    def stream_flush(self, state: list[Tensor]) -> Tensor:
        """End of input: run the last frames (zero padded like ``forward``), return the rest."""
        return self.finish(state)


class GainNetworkOnFeatures(nn.Module):
    """``features (B, N, 2, F) -> gains (B, F, N)``: the part of GainNet that ONNX takes.

    Whole-clip processing: zero history before the first frame (causal) or the centred context
    of a non-causal net, as in :meth:`GainNet.gains_from_spec`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: Tensor) -> Tensor:
        """Gains for whole-clip features."""
        return self.net.gains_from_features(features)


def onnx_chain_enhance(net: nn.Module, session: Any, waveform: Tensor) -> Tensor:
    """Enhance (B, T) with the documented torch transform around an onnxruntime gain network."""
    length = waveform.shape[-1]
    if length == 0:
        return waveform.clone()
    spec = net.stft.analysis(waveform)
    (gains,) = session.run(["gains"], {"features": net.features(spec).numpy()})
    return net.stft.synthesis(spec * torch.from_numpy(gains), length)


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


def check_lengths(sample_rate: int, n_fft: int) -> tuple[int, int, int]:
    """Input lengths every export is checked on: ~1.3 s, ~0.47 s (odd), and < one frame."""
    return (int(1.3 * sample_rate) + 17, int(0.47 * sample_rate) + 3, max(1, n_fft // 3))


@torch.no_grad()
def check_export(
    exported: Any,
    eager: nn.Module,
    sample_rate: int,
    n_fft: int,
    *,
    causal: bool,
    tolerance: float = TOLERANCE,
    label: str = "export",
) -> dict[str, float]:
    """Compare ``exported`` with ``eager`` on fixed random inputs; raise :class:`ExportError`.

    Checks whole-input outputs on several lengths (also shorter than one frame) and, for a causal
    model, block-by-block processing with uneven blocks against the eager whole-input output.
    """
    generator = torch.Generator().manual_seed(1234)
    diffs: dict[str, float] = {}
    for length in check_lengths(sample_rate, n_fft):
        x = 0.1 * torch.randn(2, length, generator=generator)
        x[1] *= 0.01  # a quiet second channel: features must stay level invariant and finite
        expected = eager(x)
        got = exported(x)
        diffs[f"len{length}"] = _max_diff(got, expected)
    if causal and hasattr(exported, "stream_process"):
        length = check_lengths(sample_rate, n_fft)[1]
        x = 0.1 * torch.randn(2, length, generator=generator)
        expected = eager(x)
        state = exported.stream_init(2)
        pieces = []
        start = 0
        sizes = [n_fft // 2 + 5, 1, 3 * n_fft + 7, sample_rate // 50]
        index = 0
        while start < length:
            size = sizes[index % len(sizes)]
            out, state = exported.stream_process(x[:, start : start + size], state)
            pieces.append(out)
            start += size
            index += 1
        pieces.append(exported.stream_flush(state))
        diffs["stream"] = _max_diff(torch.cat(pieces, dim=1), expected)
    worst = max(diffs.values())
    if not worst <= tolerance:
        detail = ", ".join(f"{k}: {v:.3g}" for k, v in diffs.items())
        raise ExportError(
            f"{label} differs from the eager model by {worst:.3g} > {tolerance:g} ({detail}); "
            "refusing to write it"
        )
    return diffs


def _check_gainnet(net: nn.Module) -> None:
    if not isinstance(net, GainNet):
        raise ExportError(
            f"only GainNet models export (got {type(net).__name__}); model=wiener needs no export, "
            "use it directly: python -m audiodiag.enhance model=wiener ..."
        )


#: Exportable form for a banded net (``elementwise`` has no off-diagonals): dense with its mask.
BANDED_EXPORT_LAYER = "diag"


def exportable_net(net: nn.Module) -> nn.Module:
    """A float32 eval-mode copy of ``net`` in its fastest exportable layer form.

    ``convert(net, "elementwise")`` (the cost floor of the layer family) when the layers have no
    off-diagonals, else ``convert(net, "diag")``; the shared state_dict layout keeps the outputs.
    """
    _check_gainnet(net)
    net = net.float().eval()
    return convert(net, export_layer(net)).eval()


def export_layer(net: nn.Module) -> str:
    """The layer implementation :func:`exportable_net` uses for ``net``."""
    return "elementwise" if int(net.bandwidth) == 0 else BANDED_EXPORT_LAYER


def export_torchscript(
    net: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Script ``net`` (a GainNet) to ``path`` with ``metadata`` as JSON; checked before writing.

    Returns ``{"path", "bytes", "max_abs_diff": {...}}``; raises :class:`ExportError` when the
    scripted model differs from ``net`` by more than :data:`TOLERANCE`.
    """
    path = Path(path)
    eager = net.float().eval()
    converted = exportable_net(net)
    meta = dict(metadata or {})
    meta.setdefault("sample_rate", int(converted.sample_rate))
    meta.update(
        format="audiodiag-torchscript",
        format_version=FORMAT_VERSION,
        causal=bool(converted.causal),
        latency_samples=int(converted.latency_samples()),
        streaming=bool(converted.causal),
        n_fft=int(converted.n_fft),
        hop_length=int(converted.hop_length),
        exported_layer=export_layer(net),
        torch_version=torch.__version__,
    )
    text = json.dumps(meta, sort_keys=True, default=str)
    wrapper = ExportedEnhancer(converted, text).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        try:
            scripted = torch.jit.script(wrapper)
        except Exception as error:  # noqa: BLE001 - the compiler raises many kinds
            raise ExportError(f"TorchScript compilation failed: {error}") from error
    rate, n_fft, causal = wrapper.sample_rate, wrapper.n_fft, wrapper.causal
    diffs = check_export(scripted, eager, rate, n_fft, causal=causal, label="TorchScript export")
    # Written beside ``path`` and renamed only once the reloaded file passed its check.
    with atomic_write(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # Through a file object: given a path, the archive's root folder is named after the
            # (random) temporary file, and the same model would never give the same bytes twice.
            with open(tmp, "wb") as handle:
                torch.jit.save(scripted, handle, _extra_files={METADATA_FILE: text})
            # Reload what was written, so a file that cannot be read back is never left behind.
            reloaded = torch.jit.load(str(tmp))
        check_export(reloaded, eager, rate, n_fft, causal=False, label="reloaded TorchScript file")
    return {"path": str(path), "bytes": path.stat().st_size, "max_abs_diff": diffs}


def _own_storage(module: nn.Module) -> None:
    """Give every tensor of ``module`` its own storage, in place.

    ``torch.export.save`` stores a tensor that views a larger storage (the STFT window is a slice
    of a longer one) as a group, and loading it then warns "No complete tensor found".
    """
    for sub in module.modules():
        for name, tensor in list(sub.named_buffers(recurse=False)):
            setattr(sub, name, tensor.clone())
        for name, param in list(sub.named_parameters(recurse=False)):
            setattr(sub, name, nn.Parameter(param.detach().clone(), param.requires_grad))


def export_program(
    net: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``net`` (a GainNet) as a ``torch.export`` program (``.pt2``); checked before writing.

    The program maps a waveform ``(batch, time)`` to the enhanced waveform with batch and length
    dynamic (also below one STFT frame); ``torch.export.load(path).module()`` runs it with
    PyTorch alone. ``metadata`` goes into the archive's extra file ``audiodiag.json``. Returns
    ``{"path", "bytes", "max_abs_diff"}``; raises :class:`ExportError` when the program, or the
    file read back, differs from ``net`` by more than :data:`TOLERANCE` (no file is left).
    """
    path = Path(path)
    if path.suffix != PROGRAM_SUFFIX:
        raise ExportError(f"out={path}: a torch.export program needs a {PROGRAM_SUFFIX} name")
    eager = net.float().eval()
    converted = exportable_net(net)
    _own_storage(converted)
    meta = dict(metadata or {})
    meta.setdefault("sample_rate", int(converted.sample_rate))
    meta.update(
        format="audiodiag-pt2",
        format_version=FORMAT_VERSION,
        input="waveform (batch, time) float32 at sample_rate; batch and time dynamic",
        causal=bool(converted.causal),
        streaming=False,
        n_fft=int(converted.n_fft),
        hop_length=int(converted.hop_length),
        exported_layer=export_layer(net),
        torch_version=torch.__version__,
    )
    text = json.dumps(meta, sort_keys=True, default=str)
    rate, n_fft = int(converted.sample_rate), int(converted.n_fft)
    example = 0.1 * torch.randn(2, rate, generator=torch.Generator().manual_seed(11))
    dynamic = {"waveform": {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}}
    try:
        with torch.no_grad():
            program = torch.export.export(
                converted, (example,), dynamic_shapes=dynamic, strict=False
            )
    except Exception as error:  # noqa: BLE001 - the tracer raises many kinds
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.export failed: {first}") from error
    label = "torch.export program"
    diffs = check_export(program.module(), eager, rate, n_fft, causal=False, label=label)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object, as for TorchScript: reproducible bytes
            torch.export.save(program, handle, extra_files={METADATA_FILE: text})
        # Reload what was written, so a file that cannot be read back is never left behind.
        reloaded = torch.export.load(tmp).module()
        check_export(reloaded, eager, rate, n_fft, causal=False, label="reloaded .pt2 file")
    return {"path": str(path), "bytes": path.stat().st_size, "max_abs_diff": diffs}


def export_onnx(
    net: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None, opset: int = 18
) -> dict[str, Any]:
    """Export the gain network (features -> gains) to ONNX and check it with onnxruntime.

    The whole waveform model does not convert: the causal noise-floor track uses
    ``torch.cummin`` (no ONNX translation), and ``F.fold`` (overlap-add) exports as a ``Col2Im``
    with a wrong output length at lengths other than the traced one.
    """
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs onnx, onnxscript and onnxruntime ({error}); "
            "pip install 'audiodiag[export]'"
        ) from error
    path = Path(path)
    eager = net.float().eval()
    converted = exportable_net(net)
    core = GainNetworkOnFeatures(converted).eval()
    generator = torch.Generator().manual_seed(7)
    lengths = check_lengths(int(converted.sample_rate), int(converted.n_fft))
    with torch.no_grad():
        # Two clips: with one, the tracer sees contiguous time slices and pins the batch to 1.
        example_spec = converted.stft.analysis(
            0.1 * torch.randn(2, lengths[0], generator=generator)
        )
        example = converted.features(example_spec)
    model = _trace_onnx(core, example, opset)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_FILE, _onnx_metadata(converted, metadata)
    # Written beside ``path`` and renamed only once onnxruntime's outputs passed the check.
    with atomic_write(path) as tmp:
        onnx.save(model, str(tmp))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        diffs: dict[str, float] = {}
        with torch.no_grad():
            for length in lengths:
                x = 0.1 * torch.randn(2, length, generator=generator)
                feats = converted.features(converted.stft.analysis(x))
                (got,) = session.run(["gains"], {"features": feats.numpy()})
                diffs[f"gains_len{length}"] = _max_diff(torch.from_numpy(got), core(feats))
                # The whole chain (torch transform around the ONNX gains) against the eager model.
                chain = onnx_chain_enhance(converted, session, x)
                diffs[f"chain_len{length}"] = _max_diff(chain, eager(x))
        worst = max(diffs.values())
        if not worst <= TOLERANCE:
            raise ExportError(
                f"ONNX gain network differs from the eager one by {worst:.3g} > {TOLERANCE:g}; "
                f"{path} not written"
            )
    return {"path": str(path), "bytes": path.stat().st_size, "max_abs_diff": diffs}


def _trace_onnx(core: nn.Module, example: Tensor, opset: int) -> Any:
    """The ONNX model proto of ``core`` (features -> gains), batch and frames dynamic."""
    frames = torch.export.Dim("frames", min=1, max=10_000_000)
    batch = torch.export.Dim("batch", min=1, max=1024)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                core,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=["features"],
                output_names=["gains"],
                dynamic_shapes={"features": {0: batch, 1: frames}},
                verbose=False,
            )
        except Exception as error:  # noqa: BLE001
            raise ExportError(f"ONNX export failed: {error}") from error
        finally:
            onnx_log.setLevel(level)
    if program is None:
        raise ExportError("ONNX export returned no program")
    return program.model_proto


def _onnx_metadata(converted: nn.Module, metadata: Mapping[str, Any] | None) -> str:
    """The JSON stored in the ONNX file's ``metadata_props``: run metadata plus the I/O contract."""
    return json.dumps(
        {
            **dict(metadata or {}),
            "format": "audiodiag-onnx-gains",
            "input": "features (batch, frames, 2, bins)",
            "output": "gains (batch, bins, frames)",
            "n_fft": int(converted.n_fft),
            "hop_length": int(converted.hop_length),
            "sample_rate": int(converted.sample_rate),
            "causal": bool(converted.causal),
        },
        sort_keys=True,
        default=str,
    )


def _run_metadata(ckpt_path: Path, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Training config and metrics of the run that wrote ``ckpt_path`` (what can be found)."""
    meta: dict[str, Any] = {
        "source_checkpoint": str(ckpt_path),
        "hyper_parameters": checkpoint.get("hyper_parameters", {}),
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
    }
    metrics: dict[str, Any] = {}
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(state, Mapping):
            score = state.get("best_model_score")
            if score is not None:
                metrics["best_model_score"] = float(score)
                metrics["monitor"] = str(state.get("monitor"))
    run_dir = ckpt_path.resolve().parent.parent
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        with contextlib.suppress(OSError, ValueError):  # metrics are a courtesy, not required
            metrics["run"] = json.loads(metrics_file.read_text())
    config_file = run_dir / "resolved_config.yaml"
    if config_file.is_file():
        meta["training_config_yaml"] = config_file.read_text()
    meta["metrics"] = metrics
    return meta


def check_outputs(
    ckpt: str | Path, out: str | Path, onnx_path: str | Path | None, overwrite: bool
) -> None:
    """Refuse, before any work, outputs equal to the checkpoint or to each other, folders,
    unwritable places and (unless ``overwrite``) existing files; raises ``OutputError``."""
    check_output(out, "out", inputs=[ckpt], overwrite=overwrite)
    if onnx_path is not None:
        if same_path(onnx_path, out):
            raise OutputError(f"onnx={onnx_path} and out={out} are the same file; give two paths")
        check_output(onnx_path, "onnx", inputs=[ckpt], overwrite=overwrite)


def export_checkpoint(
    ckpt: str | Path,
    out: str | Path,
    onnx_path: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Load a Lightning checkpoint (weights only), write ``out`` (a ``torch.export`` program
    when it ends in ``.pt2``, else TorchScript) and the ONNX gain network when asked.

    Outputs are checked first (:func:`check_outputs`): never the checkpoint itself, an existing
    file only with ``overwrite``; each is written beside its target and renamed when complete.
    """
    ckpt = Path(ckpt)
    check_outputs(ckpt, out, onnx_path, overwrite)
    net, checkpoint = load_checkpoint(ckpt)
    meta = _run_metadata(ckpt, checkpoint)
    result: dict[str, Any] = {}
    if Path(out).suffix == PROGRAM_SUFFIX:
        result["torch.export"] = export_program(net, out, meta)
    else:
        result["torchscript"] = export_torchscript(net, out, meta)
    if onnx_path is not None:
        result["onnx"] = export_onnx(net, onnx_path, meta)
    return result


USAGE = """usage: python -m audiodiag.export ckpt=PATH out=PATH [onnx=PATH]

Write a self-contained model file (no audiodiag needed to run it) from a training checkpoint,
after checking it against the eager model (max abs diff <= 1e-4).

  ckpt=PATH   Lightning checkpoint written by python -m audiodiag.train (loaded weights-only)
  out=PATH    model.pt2: a torch.export program of the whole offline model (recommended;
              torch.export.load(PATH).module()); any other name (model.pt): TorchScript,
              which also carries the causal model's streaming block API (torch.jit.load)
  onnx=PATH   also write the gain network (features -> gains) as ONNX, checked with onnxruntime
  overwrite=false  replace existing out/onnx files (default: refuse; never the checkpoint)
  --debug     show the traceback of an unexpected error (also AUDIODIAG_DEBUG=1)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m audiodiag.export`` (exit 0 done, 2 bad input, 1 unexpected)."""
    return run_entry(_main, argv)


def _main(argv: list[str]) -> int:
    try:
        args = parse_cli(
            argv, {"ckpt", "out", "onnx", "overwrite"}, USAGE, required=("ckpt", "out")
        )
        if args is None:
            return 0
        overwrite = parse_bool("overwrite", args.get("overwrite", "false"))
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        started = time.perf_counter()
        existed = {p for p in (args["out"], args.get("onnx")) if p and Path(p).exists()}
        result = export_checkpoint(args["ckpt"], args["out"], args.get("onnx"), overwrite)
    # OutputError and CliError are ValueErrors; OSError: a file system refusing a write.
    except (ModelLoadError, ExportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for kind, info in result.items():
        worst = max(info["max_abs_diff"].values())
        replaced = (
            " (replaced the existing file: overwrite=true)" if info["path"] in existed else ""
        )
        print(
            f"{kind}: wrote {info['path']} ({info['bytes'] / 1024:.1f} KiB), "
            f"max abs diff vs eager {worst:.2e}{replaced}"
        )
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
