"""Audio file input/output shared by the whole package.

Decoding goes through soundfile (libsndfile), so wav/flac/ogg in any subtype (int16, int24,
int32, float) comes back as float32 in [-1, 1]. Resampling uses torchaudio's windowed-sinc
kernel, cached per (source rate, target rate) pair because building it costs more than applying
it to a short utterance.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioDecodeError",
    "audio_info",
    "is_audio_file",
    "load_mono",
    "read_audio",
    "resample",
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
    is_float = subtype is not None and subtype.upper() in ("FLOAT", "DOUBLE")
    if not is_float:
        data = np.clip(data, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".ogg":
        subtype = "VORBIS"
    sf.write(str(path), data, int(sample_rate), subtype=subtype)
    return path


def _short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    # libsndfile repeats the path ("Error opening 'x.wav': reason"); the caller names it already.
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    return text
