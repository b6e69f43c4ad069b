"""Audio file input/output shared by the whole package.

Decoding goes through soundfile (libsndfile), so wav/flac/ogg in any subtype (int16, int24,
int32, float) comes back as float32 in [-1, 1]. Resampling uses torchaudio's windowed-sinc
kernel, cached per (source rate, target rate) pair because building it costs more than applying
it to a short utterance.

Also here, so that every layer above uses one of each: the folder scan (:func:`scan_audio`),
block I/O with bounded memory (:class:`AudioBlockReader`, :class:`AudioBlockWriter`) and the
exact block-wise resampler (:class:`StreamingResampler`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioDecodeError",
    "AudioBlockReader",
    "AudioBlockWriter",
    "OverlappedSegments",
    "StreamingResampler",
    "audio_info",
    "is_audio_file",
    "load_mono",
    "output_subtype",
    "read_audio",
    "resample",
    "scan_audio",
    "to_mono",
    "write_audio",
]

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")

PathLike = str | os.PathLike


class AudioDecodeError(ValueError):
    """A file could not be decoded as audio (corrupt, empty, unreadable or non-finite).

    ``path`` and ``reason`` are kept as attributes so callers can count and report bad files.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode audio file '{self.path}': {reason}")

    def __reduce__(self):  # keep picklable across DataLoader worker processes
        return (AudioDecodeError, (self.path, self.reason))


def is_audio_file(path: PathLike) -> bool:
    """True when the file name ends in one of :data:`AUDIO_EXTENSIONS` (case-insensitive)."""
    return str(path).lower().endswith(AUDIO_EXTENSIONS)


def scan_audio(root: PathLike, others: list[Path] | None = None) -> list[Path]:
    """Every audio file under ``root`` (recursive, links followed), folder by folder in name
    order. The one folder scan of the package: speech and noise folders, enhance, evaluate.

    ``others``, when given, receives the files that are not audio (hidden files left out).
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(str(root), followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if is_audio_file(name):
                found.append(Path(dirpath) / name)
            elif others is not None and not name.startswith("."):
                others.append(Path(dirpath) / name)
    return found


def audio_info(path: PathLike) -> tuple[int, int, int]:
    """Return ``(frames, sample_rate, channels)`` from the header, without decoding samples."""
    try:
        info = sf.info(str(path))
    except Exception as error:  # soundfile raises RuntimeError / LibsndfileError / OSError
        raise AudioDecodeError(path, _short(error)) from error
    return int(info.frames), int(info.samplerate), int(info.channels)


def read_audio(
    path: PathLike, frame_offset: int = 0, num_frames: int = -1
) -> tuple[torch.Tensor, int]:
    """Decode a file into ``(waveform (channels, time) float32 in [-1, 1], sample_rate)``.

    ``frame_offset``/``num_frames`` read only part of the file (``-1``: to the end), so a crop
    of a long noise recording costs only its own length. Raises :class:`AudioDecodeError`
    naming the file when it is missing, corrupt, empty, or holds NaN/inf samples.
    """
    try:
        data, sample_rate = sf.read(
            str(path),
            frames=num_frames,
            start=frame_offset,
            dtype="float32",
            always_2d=True,
        )
    except Exception as error:
        raise AudioDecodeError(path, _short(error)) from error
    if data.size == 0:
        raise AudioDecodeError(path, "file holds no samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(path, "file holds NaN or infinite samples")
    # Float files may carry values slightly outside [-1, 1]; the contract promises that range.
    np.clip(data, -1.0, 1.0, out=data)
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))
    return waveform, int(sample_rate)


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average channels: (channels, time) -> (time,); a (time,) input is returned as is."""
    if waveform.dim() == 1:
        return waveform
    if waveform.dim() != 2:
        raise ValueError(f"expected (time,) or (channels, time), got shape {tuple(waveform.shape)}")
    return waveform.mean(dim=0) if waveform.shape[0] > 1 else waveform[0]


_RESAMPLERS: dict[tuple[int, int, str], torchaudio.transforms.Resample] = {}
_RESAMPLERS_LOCK = threading.Lock()


def _resampler(
    orig_freq: int, new_freq: int, device: torch.device
) -> torchaudio.transforms.Resample:
    key = (orig_freq, new_freq, str(device))
    with _RESAMPLERS_LOCK:
        module = _RESAMPLERS.get(key)
        if module is None:
            module = torchaudio.transforms.Resample(orig_freq, new_freq).to(device)
            _RESAMPLERS[key] = module
    return module


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample along the last axis with a cached torchaudio kernel (no-op for equal rates).

    Works on any leading shape and on the tensor's own device; returns float32.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return waveform
    with torch.no_grad():
        return _resampler(int(orig_freq), int(new_freq), waveform.device)(waveform.float())


def load_mono(path: PathLike, sample_rate: int) -> torch.Tensor:
    """Decode, downmix and resample a file to a mono float32 tensor ``(time,)`` at ``sample_rate``.

    Raises :class:`AudioDecodeError` for undecodable files (see :func:`read_audio`).
    """
    waveform, file_rate = read_audio(path)
    mono = resample(to_mono(waveform), file_rate, sample_rate)
    # The sinc kernel can overshoot slightly on full-scale input; keep the [-1, 1] promise.
    return mono.clamp_(-1.0, 1.0).contiguous()


def _samples_for_file(
    path: PathLike, waveform: torch.Tensor | np.ndarray, clip: bool
) -> np.ndarray:
    """(channels, time) or (time,) -> float32 (time[, channels]) for soundfile; refuses NaN/inf
    naming ``path``; clips to [-1, 1] for integer formats."""
    if isinstance(waveform, torch.Tensor):
        data = waveform.detach().to("cpu", torch.float32).numpy()
    else:
        data = np.asarray(waveform, dtype=np.float32)
    if data.ndim == 2:
        data = data.T  # soundfile wants (time, channels)
    elif data.ndim != 1:
        raise ValueError(f"expected (time,) or (channels, time), got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"refusing to write NaN/inf samples to '{path}'")
    return np.clip(data, -1.0, 1.0) if clip else data


def _is_float_subtype(subtype: str | None) -> bool:
    return subtype is not None and subtype.upper() in ("FLOAT", "DOUBLE")


def write_audio(
    path: PathLike,
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int,
    subtype: str | None = "PCM_16",
) -> Path:
    """Write ``(channels, time)`` or ``(time,)`` audio; integer subtypes are clipped to [-1, 1].

    The format follows the file extension (wav/flac/ogg). Parent folders are created.
    """
    path = Path(path)
    data = _samples_for_file(path, waveform, clip=not _is_float_subtype(subtype))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".ogg":
        subtype = "VORBIS"
    sf.write(str(path), data, int(sample_rate), subtype=subtype)
    return path


def output_subtype(path: PathLike, in_subtype: str | None) -> str:
    """Sample format for writing ``path``: the input's where the format takes it, else PCM_16
    (Vorbis for .ogg)."""
    ext = Path(path).suffix.lower().lstrip(".")
    fmt = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext, "WAV")
    if fmt == "OGG":
        return "VORBIS"
    if in_subtype and sf.check_format(fmt, in_subtype):
        return in_subtype
    return "PCM_16"


class AudioBlockReader:
    """Read a file block by block (bounded memory): a context manager with ``frames``,
    ``sample_rate``, ``channels`` and ``subtype`` from the header, and :meth:`blocks`.

    Every failure raises :class:`AudioDecodeError` naming the file.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as error:  # libsndfile errors vary
            raise AudioDecodeError(self.path, _short(error)) from error
        self.frames = int(self._file.frames)
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.subtype = self._file.subtype
        if self.frames <= 0:
            self._file.close()
            raise AudioDecodeError(self.path, "file holds no samples")

    def __enter__(self) -> AudioBlockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def blocks(self, block_frames: int) -> Iterator[torch.Tensor]:
        """(channels, n) float32 blocks in [-1, 1] of up to ``block_frames`` samples."""
        while True:
            try:
                data = self._file.read(block_frames, dtype="float32", always_2d=True)
            except Exception as error:
                raise AudioDecodeError(self.path, f"decoding failed: {error}") from error
            if data.shape[0] == 0:
                return
            if not np.isfinite(data).all():
                raise AudioDecodeError(self.path, "file holds NaN or infinite samples")
            yield torch.from_numpy(np.clip(data, -1.0, 1.0).T.copy())


class AudioBlockWriter:
    """Write exactly ``frames`` samples block by block; a context manager that removes the
    file when the block loop fails, so no partly written output is left behind.

    Blocks past ``frames`` are cut; :meth:`close` pads a short file with silence.
    """

    def __init__(
        self, path: PathLike, sample_rate: int, channels: int, frames: int, subtype: str
    ) -> None:
        self.path = Path(path)
        self.frames = frames
        self.channels = channels
        self.written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = sf.SoundFile(
            str(self.path), "w", samplerate=sample_rate, channels=channels, subtype=subtype
        )
        self._clip = not _is_float_subtype(subtype)

    def write(self, block: torch.Tensor) -> None:
        """Append (channels, n); NaN/inf raise ``ValueError`` naming the file."""
        block = block[..., : max(0, self.frames - self.written)]
        if block.shape[-1] == 0:
            return
        data = _samples_for_file(self.path, block.reshape(self.channels, -1), self._clip)
        self._file.write(data)
        self.written += data.shape[0]

    def close(self) -> None:
        """Pad to ``frames`` (keeps the length promise) and close."""
        if self.written < self.frames:
            missing = self.frames - self.written
            self._file.write(np.zeros((missing, self.channels), dtype=np.float32))
            self.written = self.frames
        self._file.close()

    def __enter__(self) -> AudioBlockWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            self.path.unlink(missing_ok=True)


def _short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    # libsndfile repeats the path ("Error opening 'x.wav': reason"); the caller names it already.
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    return text


# ---------------------------------------------------------------------- block I/O
class OverlappedSegments:
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


class StreamingResampler(OverlappedSegments):
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
