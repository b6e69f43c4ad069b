"""Load any enhancer (checkpoint, exported file, ``wiener``) and run it on long audio.

Shared by :mod:`audiodiag.enhance`, :mod:`audiodiag.evaluate` and ``scripts/bench_rtf.py``;
files are read by :mod:`audiodiag.loading`, and nothing here imports Lightning or torchmetrics::

    enhancer = load_enhancer("model.pt")            # or a .ckpt, or "wiener"
    clean = enhancer(noisy)                         # (time,) or (batch, time) at enhancer.sample_rate
    stream = enhancer.stream(batch=1)               # causal models: block by block, exact
    out = [stream.process(block) for block in blocks] + [stream.flush()]
    enhance_file(enhancer, "long.wav", "long_enhanced.wav")   # bounded memory, any rate/channels

Long files: a causal model runs through the streaming recursion of :mod:`audiodiag.streaming`
(the exported file's ``stream_*`` methods or an eager :class:`StreamCore`); its output equals
whole-file processing (its features keep running statistics of unbounded memory, so
overlapping chunks could not be exact). Other models (non-causal GainNet, Wiener) run on
windows of ``window_seconds`` with ``context_seconds`` of real audio on each side, whose centre
is kept. Resampling to and from the model's rate is streamed too, and is exact (see
:class:`audiodiag.audio.StreamingResampler`). Memory is bounded by the block and window sizes,
not by the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from audiodiag import pretrained
from audiodiag.audio import (
    AudioBlockReader,
    AudioBlockWriter,
    AudioDecodeError,
    OverlappedSegments,
    StreamingResampler,
    output_subtype,
    resample,
)
from audiodiag.loading import (
    STREAM_METHODS,
    archive_names,
    check_model_file,
    is_program_archive,
    is_torchscript_archive,
    load_checkpoint,
    load_program,
    load_torchscript,
)
from audiodiag.streaming import StreamCore
from audiodiag.wiener import WienerEnhancer

__all__ = [
    "BlockPipeline",
    "Enhancer",
    "StreamSession",
    "enhance_file",
    "enhance_waveform",
    "load_enhancer",
]

PathLike = str | os.PathLike


class StreamSession(Protocol):
    """Block-by-block processing: ``process`` returns finished samples, ``flush`` the rest."""

    def process(self, block: Tensor) -> Tensor: ...

    def flush(self) -> Tensor: ...


@dataclass
class Enhancer:
    """A loaded enhancer: waveform (time,) or (batch, time) at ``sample_rate`` -> same shape.

    Attributes:
        name: what was loaded (path or ``wiener``).
        kind: ``checkpoint``, ``program`` (``.pt2``), ``torchscript`` or ``wiener``.
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
                module = self.module
                return _StateStream(
                    module.stream_init(batch),
                    module.stream_process,
                    module.stream_flush,
                    self.device,
                )
            core = StreamCore(self.module)
            like = torch.zeros(batch, 1, device=self.device)
            return _StateStream(core.initial_state(like), core.consume, core.finish, self.device)
        return _WindowStream(
            self,
            window=max(1, int(self.window_seconds * self.sample_rate)),
            context=max(0, int(self.context_seconds * self.sample_rate)),
        )


class _StateStream:
    """A causal model's streaming recursion (``init``, ``process``, ``flush`` as functions of an
    explicit state: an exported file's ``stream_*`` methods or an eager :class:`StreamCore`),
    held as a :class:`StreamSession` for (channels, n) blocks on ``device``."""

    def __init__(
        self,
        state: list[Tensor],
        process: Callable[[Tensor, list[Tensor]], tuple[Tensor, list[Tensor]]],
        flush: Callable[[list[Tensor]], Tensor],
        device: torch.device,
    ) -> None:
        self.state, self._process, self._flush, self.device = state, process, flush, device

    @torch.inference_mode()
    def process(self, block: Tensor) -> Tensor:
        out, self.state = self._process(block.to(self.device, torch.float32), self.state)
        return out.float().cpu()

    @torch.inference_mode()
    def flush(self) -> Tensor:
        return self._flush(self.state).float().cpu()


class _WindowStream(OverlappedSegments):
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


def load_enhancer(spec: PathLike, device: torch.device | str = "cpu") -> Enhancer:
    """Load ``spec``: ``wiener``, ``pretrained:NAME`` (a model shipped in the package), a
    training checkpoint (.ckpt) or an exported file (``.pt2`` program or TorchScript).

    A ``.pt2`` program has no block API, so long files run in windows (see :meth:`Enhancer.stream`)
    even for a causal model. Raises :class:`ModelLoadError` naming the file for anything else.
    """
    if str(spec).startswith(pretrained.PREFIX):
        spec = pretrained.path(str(spec))
    if str(spec).strip().lower() == "wiener":
        wiener = WienerEnhancer().eval()
        return Enhancer("wiener", "wiener", wiener, wiener.sample_rate, False, None).to(device)
    path = Path(spec)
    check_model_file(path)
    names = archive_names(path)
    if is_program_archive(names):
        program, meta = load_program(path)
        return Enhancer(str(path), "program", program, program.sample_rate, False, None, meta).to(
            device
        )
    if is_torchscript_archive(names):
        module, metadata = load_torchscript(path)
        rate = int(metadata.get("sample_rate", getattr(module, "sample_rate", 0)))
        streams = all(hasattr(module, name) for name in STREAM_METHODS)
        causal = bool(metadata.get("causal", False)) and streams
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


def _fit_length(x: Tensor, length: int) -> Tensor:
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


def enhance_waveform(enhancer: Enhancer, waveform: Tensor, sample_rate: int) -> Tensor:
    """Whole-signal enhancement of (channels, time) at ``sample_rate``: each channel resampled to
    the model's rate, enhanced, resampled back; returns (channels, time) at ``sample_rate``."""
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
    :class:`audiodiag.audio.AudioDecodeError` naming the file when it cannot be decoded or the
    model produces NaN/inf; a partly written output is removed.
    """

    def checked(y: Tensor) -> Tensor:
        if not bool(torch.isfinite(y).all()):
            raise AudioDecodeError(input_path, "model produced NaN/inf output")
        return y

    with AudioBlockReader(input_path) as reader:
        rate, channels, frames = reader.sample_rate, reader.channels, reader.frames
        pipeline = BlockPipeline(enhancer, rate, channels)
        subtype = output_subtype(output_path, reader.subtype)
        with AudioBlockWriter(output_path, rate, channels, frames, subtype) as writer:
            for block in reader.blocks(max(1, int(block_seconds * rate))):
                writer.write(checked(pipeline.process(block)))
                if on_progress is not None:
                    on_progress(block.shape[-1] / rate)
            writer.write(checked(pipeline.flush()))
    return {"seconds": frames / rate, "sample_rate": rate, "channels": channels, "frames": frames}
