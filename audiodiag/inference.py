"""Load any enhancer (checkpoint, exported file, ``wiener``) and run it on long audio.

Shared by :mod:`audiodiag.export`, :mod:`audiodiag.enhance`, :mod:`audiodiag.evaluate` and
``scripts/bench_rtf.py``::

    enhancer = load_enhancer("model.pt")            # or a .ckpt, or "wiener"
    clean = enhancer(noisy)                         # (time,) or (batch, time) at enhancer.sample_rate
    stream = enhancer.stream(batch=1)               # causal models: block by block, exact
    out = [stream.process(block) for block in blocks] + [stream.flush()]
    enhance_file(enhancer, "long.wav", "long_enhanced.wav")   # bounded memory, any rate/channels

Checkpoints load with ``torch.load(weights_only=True)`` (a checkpoint cannot run code) and the
network is rebuilt from ``hyper_parameters["net"]`` with :func:`audiodiag.module.build_net`.

Long files: a causal model runs through its stateful block API (output equal to whole-file
processing: its features keep running statistics of unbounded memory, so overlapping chunks
could not be exact); other models (non-causal GainNet, Wiener) run on windows of
``window_seconds`` with ``context_seconds`` of real audio on each side, whose centre is kept.
Resampling to and from the model's rate is streamed too, and is exact (see
:class:`StreamingResampler`). Memory is bounded by the block and window sizes, not the file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "CliError",
    "Enhancer",
    "ModelLoadError",
    "StreamingResampler",
    "enhance_file",
    "enhance_waveform",
    "load_checkpoint",
    "load_enhancer",
    "parse_cli",
]

PathLike = str | os.PathLike


class ModelLoadError(ValueError):
    """A model file that cannot be used (missing, truncated, not a checkpoint or export)."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load model '{self.path}': {reason}")


class CliError(ValueError):
    """A bad command-line argument; the message names it and what is accepted."""


# ---------------------------------------------------------------------------------------------
# Command lines: key=value in Hydra override style
# ---------------------------------------------------------------------------------------------
def parse_cli(
    argv: Sequence[str] | None,
    allowed: Iterable[str],
    usage: str,
    required: Sequence[str] = (),
    prefixes: Sequence[str] = (),
) -> dict[str, str] | None:
    """Parse ``key=value`` arguments (also ``--key=value`` and ``--key value``).

    Returns None after printing ``usage`` for ``-h``/``--help``. Keys must be in ``allowed`` or
    start with one of ``prefixes`` (e.g. ``data.`` overrides passed on to Hydra).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    allowed = set(allowed)
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage)
        return None
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        key_value = arg[2:] if arg.startswith("--") else arg
        if "=" in key_value:
            key, value = key_value.split("=", 1)
        elif arg.startswith("--") and index < len(args):
            key, value = key_value, args[index]
            index += 1
        else:
            raise CliError(f"argument {arg!r} is not key=value; see --help\n\n{usage}")
        key = key.strip().lstrip("+")
        if key not in allowed and not any(key.startswith(p) for p in prefixes):
            accepted = ", ".join(sorted(allowed) + [p + "*" for p in prefixes])
            raise CliError(f"unknown argument {key!r}; accepted: {accepted}")
        values[key] = value
    missing = [k for k in required if not values.get(k)]
    if missing:
        raise CliError(f"missing {', '.join(k + '=...' for k in missing)}\n\n{usage}")
    return values


def parse_bool(key: str, value: str) -> bool:
    """``true/false/1/0/yes/no`` -> bool, else :class:`CliError` naming ``key``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise CliError(f"{key}={value!r} is not a boolean; use true or false")


def parse_float(key: str, value: str, minimum: float | None = None) -> float:
    """A float argument, optionally > ``minimum``."""
    try:
        number = float(value)
    except ValueError:
        raise CliError(f"{key}={value!r} is not a number") from None
    if not math.isfinite(number) or (minimum is not None and number <= minimum):
        raise CliError(f"{key}={value!r} must be a finite number > {minimum}")
    return number


def resolve_device(value: str | None) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``/``auto`` -> device, refusing CUDA when there is none."""
    name = (value or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CliError(f"device={value} asked for, but CUDA is not available; use device=cpu")
        return torch.device(name)
    if name != "cpu":
        raise CliError(f"device={value!r} is unknown; accepted: cpu, cuda, cuda:N, auto")
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except zipfile.BadZipFile as error:
        raise ModelLoadError(
            path,
            f"not a PyTorch archive ({error}); the file is truncated or is not a checkpoint "
            "(.ckpt from audiodiag.train) nor an exported model (.pt from audiodiag.export)",
        ) from error
    except OSError as error:
        raise ModelLoadError(path, str(error)) from error
    if bad is not None:
        raise ModelLoadError(path, f"archive member {bad!r} is corrupt (truncated download?)")
    return names


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(path, "no such file")
    if path.is_dir():
        raise ModelLoadError(path, "is a directory; give a .ckpt or an exported .pt file")
    if path.stat().st_size == 0:
        raise ModelLoadError(path, "file is empty")


def load_checkpoint(
    path: PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the network of a GainLearner checkpoint; returns ``(net in eval mode, checkpoint)``.

    Loads with ``weights_only=True``; raises :class:`ModelLoadError` naming the file when it is
    missing, truncated, or not a checkpoint of :class:`audiodiag.module.GainLearner`.
    """
    from audiodiag.module import build_net

    path = Path(path)
    _check_file(path)
    _zip_names(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError/UnpicklingError/...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(path, f"torch.load(weights_only=True) failed: {first}") from error
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ModelLoadError(path, "not a Lightning checkpoint (no 'state_dict' entry)")
    hparams = checkpoint.get("hyper_parameters") or {}
    if "net" not in hparams:
        raise ModelLoadError(
            path, "checkpoint has no hyper_parameters['net'] (not written by audiodiag.train)"
        )
    try:
        net = build_net(hparams["net"])
    except (TypeError, ValueError) as error:
        raise ModelLoadError(path, f"cannot rebuild the network: {error}") from error
    prefix = "net."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(path, f"weights do not fit the network: {error}") from error
    return net.eval(), dict(checkpoint)


class StreamSession(Protocol):
    """Block-by-block processing: ``process`` returns finished samples, ``flush`` the rest."""

    def process(self, block: Tensor) -> Tensor: ...

    def flush(self) -> Tensor: ...


@dataclass
class Enhancer:
    """A loaded enhancer: waveform (time,) or (batch, time) at ``sample_rate`` -> same shape.

    Attributes:
        name: what was loaded (path or ``wiener``).
        kind: ``checkpoint``, ``torchscript`` or ``wiener``.
        module: the callable network (eager nn.Module or TorchScript module).
        sample_rate: rate the model works at.
        causal: whether block processing is exact (stateful causal model).
        latency_samples: algorithmic latency of block processing (None: not a streaming model).
        metadata: exported metadata or checkpoint hyperparameters.
    """

    name: str
    kind: str
    module: Any
    sample_rate: int
    causal: bool
    latency_samples: int | None
    metadata: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    window_seconds: float = 30.0
    context_seconds: float = 5.0

    def to(self, device: torch.device | str) -> Enhancer:
        """Move the model (in place) and return self."""
        self.device = torch.device(device)
        self.module = self.module.to(self.device)
        return self

    @torch.inference_mode()
    def __call__(self, waveform: Tensor) -> Tensor:
        """Whole-signal enhancement on ``self.device``; returns a CPU float32 tensor."""
        out = self.module(waveform.to(self.device, torch.float32))
        return out.float().cpu()

    @property
    def streamable(self) -> bool:
        """True when :meth:`stream` is exact (a causal model with a stateful block API)."""
        return self.causal

    def stream(self, batch: int = 1) -> StreamSession:
        """A block-processing session for ``batch`` channels.

        Causal models: exact (equals whole-signal output). Others: windows with context.
        """
        if self.causal:
            if self.kind == "torchscript":
                return _ScriptedStream(self.module, batch, self.device)
            return _eager_stream(self.module, batch, self.device)
        return _WindowStream(
            self,
            window=max(1, int(self.window_seconds * self.sample_rate)),
            context=max(0, int(self.context_seconds * self.sample_rate)),
        )


class _ScriptedStream:
    """Stream through the ``stream_*`` methods an exported causal model carries."""

    def __init__(self, module: Any, batch: int, device: torch.device) -> None:
        self.module = module
        self.device = device
        self.state = module.stream_init(batch)

    @torch.inference_mode()
    def process(self, block: Tensor) -> Tensor:
        out, self.state = self.module.stream_process(
            block.to(self.device, torch.float32), self.state
        )
        return out.float().cpu()

    @torch.inference_mode()
    def flush(self) -> Tensor:
        return self.module.stream_flush(self.state).float().cpu()


def _eager_stream(net: Any, batch: int, device: torch.device) -> StreamSession:
    """Exact block processing of an eager causal GainNet with
    :class:`audiodiag.streaming.StreamingEnhancer` (``process_ready`` + ``flush``)."""
    from audiodiag.streaming import StreamingEnhancer

    return _HelperStream(StreamingEnhancer(net), batch, device)


class _HelperStream:
    """Adapter: (channels, n) blocks in, every final sample out (no fixed delay to remove)."""

    def __init__(self, streamer: Any, batch: int, device: torch.device) -> None:
        self.streamer = streamer
        self.batch = batch
        self.device = device

    @torch.inference_mode()
    def process(self, block: Tensor) -> Tensor:
        out = self.streamer.process_ready(block.to(self.device, torch.float32))
        return out.float().cpu().reshape(self.batch, -1)

    @torch.inference_mode()
    def flush(self) -> Tensor:
        return self.streamer.flush().float().cpu().reshape(self.batch, -1)


class _OverlappedSegments:
    """Cuts a stream into segments of ``segment`` samples, each processed with ``context`` real
    samples on either side, keeping only the input that later segments still need.

    Subclasses say how one segment is processed (:meth:`_run`); this class owns the buffer, so
    memory is bounded by ``segment + 2 * context``, not by the stream.
    """

    def __init__(self, segment: int, context: int) -> None:
        self.segment = segment
        self.context = context
        self.buffer: Tensor | None = None
        self.buffer_start = 0  # global index of buffer[..., 0]
        self.next_in = 0  # global index where the next output segment starts
        self.total = 0

    def _run(self, piece: Tensor, lo: int, start: int, end: int | None) -> Tensor:
        """Output for input ``[start, end)`` (``None``: to the end) from ``piece`` starting at ``lo``."""
        raise NotImplementedError

    def _segment(self, start: int, end: int | None) -> Tensor:
        assert self.buffer is not None
        lo = max(0, start - self.context)
        hi = self.total if end is None else min(self.total, end + self.context)
        piece = self.buffer[..., lo - self.buffer_start : hi - self.buffer_start]
        return self._run(piece, lo, start, end)

    def _push(self, block: Tensor) -> Tensor:
        """Append (channels, n); returns the output of every segment that is now complete."""
        self.buffer = block if self.buffer is None else torch.cat([self.buffer, block], dim=-1)
        self.total += block.shape[-1]
        outs = []
        while self.next_in + self.segment + self.context <= self.total:
            end = self.next_in + self.segment
            outs.append(self._segment(self.next_in, end))
            self.next_in = end
            keep_from = max(0, self.next_in - self.context)
            self.buffer = self.buffer[..., keep_from - self.buffer_start :]
            self.buffer_start = keep_from
        if not outs:
            return block.new_zeros(block.shape[0], 0)
        return torch.cat(outs, dim=-1)

    def _finish(self) -> Tensor:
        """The output of the last, partial segment once the input has ended."""
        if self.buffer is None or self.next_in >= self.total:
            channels = 1 if self.buffer is None else self.buffer.shape[0]
            return torch.zeros(channels, 0)
        out = self._segment(self.next_in, None)
        self.next_in = self.total
        return out


class _WindowStream(_OverlappedSegments):
    """Non-causal models: windows of ``window`` samples with ``context`` real samples each side.

    Output sample ``s`` comes from the window whose centre part holds ``s``; this approximates
    whole-signal processing (statistics become window statistics) with bounded memory.
    """

    def __init__(self, enhancer: Enhancer, window: int, context: int) -> None:
        super().__init__(window, context)
        self.enhancer = enhancer

    def _run(self, piece: Tensor, lo: int, start: int, end: int | None) -> Tensor:
        stop = self.total if end is None else end
        return self.enhancer(piece)[..., start - lo : stop - lo]

    def process(self, block: Tensor) -> Tensor:
        return self._push(block.float().cpu())

    def flush(self) -> Tensor:
        return self._finish()


def _load_torchscript(path: Path) -> tuple[Any, dict[str, Any]]:
    from audiodiag.export import METADATA_FILE

    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:  # noqa: BLE001
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(path, f"torch.jit.load failed: {first}") from error
    try:
        metadata = json.loads(extra[METADATA_FILE] or "{}")
    except ValueError as error:
        raise ModelLoadError(path, f"metadata {METADATA_FILE} is not JSON: {error}") from error
    if "sample_rate" not in metadata and not hasattr(module, "sample_rate"):
        raise ModelLoadError(
            path, "TorchScript file has no sample rate (not from audiodiag.export)"
        )
    return module.eval(), metadata


def load_enhancer(spec: PathLike, device: torch.device | str = "cpu") -> Enhancer:
    """Load ``spec``: ``wiener``, a training checkpoint (.ckpt) or an exported TorchScript file.

    Raises :class:`ModelLoadError` naming the file for anything else.
    """
    if str(spec).strip().lower() == "wiener":
        from audiodiag.wiener import WienerEnhancer

        wiener = WienerEnhancer().eval()
        return Enhancer("wiener", "wiener", wiener, wiener.sample_rate, False, None).to(device)
    path = Path(spec)
    _check_file(path)
    names = _zip_names(path)
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        module, metadata = _load_torchscript(path)
        rate = int(metadata.get("sample_rate", getattr(module, "sample_rate", 0)))
        causal = bool(metadata.get("causal", False)) and hasattr(module, "stream_process")
        latency = metadata.get("latency_samples")
        return Enhancer(
            str(path),
            "torchscript",
            module,
            rate,
            causal,
            int(latency) if latency is not None else None,
            metadata,
        ).to(device)
    net: Any
    net, checkpoint = load_checkpoint(path)
    causal = bool(getattr(net, "causal", False)) and hasattr(net, "gains_chunk")
    latency = int(net.latency_samples()) if causal and hasattr(net, "latency_samples") else None
    metadata = {"hyper_parameters": checkpoint.get("hyper_parameters", {})}
    rate = int(getattr(net, "sample_rate", 16000))
    return Enhancer(str(path), "checkpoint", net, rate, causal, latency, metadata).to(device)


# ---------------------------------------------------------------------------------------------
# Resampling in blocks
# ---------------------------------------------------------------------------------------------
class StreamingResampler(_OverlappedSegments):
    """Block-wise resampling equal to :func:`audiodiag.audio.resample` on the whole signal.

    torchaudio's polyphase sinc resampler maps input block ``i`` of ``orig/g`` samples to output
    block ``i`` of ``new/g`` samples using input ``[i*orig/g - width, (i+1)*orig/g + width)``.
    Cutting the input at multiples of ``orig/g`` and giving each segment ``context`` real
    samples (>= width + orig/g) on each side therefore reproduces the whole-signal output.
    """

    def __init__(self, orig_freq: int, new_freq: int, segment_samples: int = 16384) -> None:
        if orig_freq <= 0 or new_freq <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
        self.orig_freq, self.new_freq = int(orig_freq), int(new_freq)
        g = math.gcd(self.orig_freq, self.new_freq)
        self.orig_g, self.new_g = self.orig_freq // g, self.new_freq // g
        # torchaudio defaults: lowpass_filter_width=6, rolloff=0.99.
        width = math.ceil(6 * self.orig_g / (min(self.orig_g, self.new_g) * 0.99))
        context = self.orig_g * (math.ceil((width + self.orig_g) / self.orig_g) + 1)
        super().__init__(self.orig_g * max(1, math.ceil(segment_samples / self.orig_g)), context)

    @property
    def passthrough(self) -> bool:
        """Same rate in and out: blocks pass unchanged."""
        return self.orig_freq == self.new_freq

    def _run(self, piece: Tensor, lo: int, start: int, end: int | None) -> Tensor:
        from audiodiag.audio import resample

        out = resample(piece, self.orig_freq, self.new_freq)
        lo_out = lo // self.orig_g * self.new_g
        first = start // self.orig_g * self.new_g - lo_out
        if end is None:
            last = -(-self.new_g * self.total // self.orig_g) - lo_out
        else:
            last = end // self.orig_g * self.new_g - lo_out
        return out[..., first:last]

    def process(self, block: Tensor) -> Tensor:
        """Feed (channels, n); returns the output samples that are final."""
        block = block.float()
        return block if self.passthrough else self._push(block)

    def flush(self) -> Tensor:
        """The remaining output once the input has ended."""
        if self.passthrough:
            channels = 1 if self.buffer is None else self.buffer.shape[0]
            return torch.zeros(channels, 0)
        return self._finish()


# ---------------------------------------------------------------------------------------------
# Whole signals and files
# ---------------------------------------------------------------------------------------------
def _fit_length(x: Tensor, length: int) -> Tensor:
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def enhance_waveform(enhancer: Enhancer, waveform: Tensor, sample_rate: int) -> Tensor:
    """Whole-signal enhancement of (channels, time) at ``sample_rate``: each channel resampled to
    the model's rate, enhanced, resampled back; returns (channels, time) at ``sample_rate``."""
    from audiodiag.audio import resample

    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    length = waveform.shape[-1]
    if length == 0:
        return waveform.float().clone()
    x = resample(waveform.float(), sample_rate, enhancer.sample_rate)
    y = enhancer(x)
    return _fit_length(resample(y, enhancer.sample_rate, sample_rate), length)


class BlockPipeline:
    """Input blocks at ``sample_rate`` -> resample -> enhancer stream -> resample back."""

    def __init__(self, enhancer: Enhancer, sample_rate: int, channels: int) -> None:
        self.down = StreamingResampler(sample_rate, enhancer.sample_rate)
        self.session = enhancer.stream(batch=channels)
        self.up = StreamingResampler(enhancer.sample_rate, sample_rate)
        self.channels = channels

    def _after_model(self, y: Tensor) -> Tensor:
        return self.up.process(y) if y.shape[-1] else y.new_zeros(self.channels, 0)

    def process(self, block: Tensor) -> Tensor:
        """(channels, n) -> finished output samples (channels, m)."""
        x = self.down.process(block)
        y = self.session.process(x) if x.shape[-1] else x.new_zeros(self.channels, 0)
        return self._after_model(y)

    def flush(self) -> Tensor:
        """Everything left once the input has ended."""
        x = self.down.flush()
        parts = []
        if x.shape[-1]:
            parts.append(self.session.process(x))
        parts.append(self.session.flush())
        y = torch.cat([self._shaped(p) for p in parts], dim=-1)
        out = [self._after_model(y), self._shaped(self.up.flush())]
        return torch.cat(out, dim=-1)

    def _shaped(self, x: Tensor) -> Tensor:
        # Empty pieces may come back as (1, 0) from a stage that never saw a block.
        return x.new_zeros(self.channels, 0) if x.numel() == 0 else x.reshape(self.channels, -1)


def _output_subtype(path: Path, in_subtype: str | None) -> str:
    import soundfile as sf

    ext = path.suffix.lower().lstrip(".")
    fmt = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")
    if fmt == "OGG":
        return "VORBIS"
    if in_subtype and sf.check_format(fmt, in_subtype):
        return in_subtype
    return "PCM_16"


def enhance_file(
    enhancer: Enhancer,
    input_path: PathLike,
    output_path: PathLike,
    block_seconds: float = 10.0,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Enhance one audio file to ``output_path`` in blocks (bounded memory, any rate/channels).

    The output has the input's sample rate, channel count, length and (where the format allows)
    sample format. ``on_progress(seconds)`` is called after each block. Raises
    :class:`audiodiag.audio.AudioDecodeError` naming the file when it cannot be decoded; a
    partly written output is removed.
    """
    import soundfile as sf

    from audiodiag.audio import AudioDecodeError

    input_path, output_path = Path(input_path), Path(output_path)
    try:
        reader = sf.SoundFile(str(input_path))
    except Exception as error:  # noqa: BLE001 - libsndfile errors vary
        raise AudioDecodeError(
            input_path, str(error).splitlines()[0] if str(error) else ""
        ) from error
    written = 0
    try:
        with reader:
            rate, channels, frames = reader.samplerate, reader.channels, reader.frames
            if frames <= 0:
                raise AudioDecodeError(input_path, "file holds no samples")
            subtype = _output_subtype(output_path, reader.subtype)
            pipeline = BlockPipeline(enhancer, rate, channels)
            block = max(1, int(block_seconds * rate))
            output_path.parent.mkdir(parents=True, exist_ok=True)
            with sf.SoundFile(
                str(output_path), "w", samplerate=rate, channels=channels, subtype=subtype
            ) as writer:

                def write(y: Tensor) -> None:
                    nonlocal written
                    y = y[..., : max(0, frames - written)]
                    if y.shape[-1] == 0:
                        return
                    data = y.numpy().T
                    if not np.isfinite(data).all():
                        raise AudioDecodeError(input_path, "model produced NaN/inf output")
                    writer.write(np.clip(data, -1.0, 1.0))
                    written += data.shape[0]

                while True:
                    try:
                        data = reader.read(block, dtype="float32", always_2d=True)
                    except Exception as error:  # noqa: BLE001
                        raise AudioDecodeError(input_path, f"decoding failed: {error}") from error
                    if data.shape[0] == 0:
                        break
                    if not np.isfinite(data).all():
                        raise AudioDecodeError(input_path, "file holds NaN or infinite samples")
                    x = torch.from_numpy(np.clip(data, -1.0, 1.0).T.copy())
                    write(pipeline.process(x))
                    if on_progress is not None:
                        on_progress(data.shape[0] / rate)
                write(pipeline.flush())
                if written < frames:  # never expected; keeps the length promise regardless
                    writer.write(np.zeros((frames - written, channels), dtype=np.float32))
                    written = frames
    except BaseException:
        output_path.unlink(missing_ok=True)
        raise
    return {"seconds": frames / rate, "sample_rate": rate, "channels": channels, "frames": frames}
