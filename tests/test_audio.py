"""audiodiag.audio: decoding every subtype to float32 [-1, 1], downmix, resampling, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiag.audio import (
    AUDIO_EXTENSIONS,
    AudioDecodeError,
    audio_info,
    is_audio_file,
    load_mono,
    read_audio,
    resample,
    write_audio,
)


def _tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("subtype", "ext", "tolerance"),
    [
        ("PCM_16", ".wav", 2.0**-14),
        ("PCM_24", ".wav", 2.0**-22),
        ("PCM_32", ".wav", 1e-7),
        ("FLOAT", ".wav", 0.0),
        ("PCM_16", ".flac", 2.0**-14),
        ("PCM_24", ".flac", 2.0**-22),
    ],
)
def test_read_audio_subtypes_are_float32_in_range(tmp_path, subtype, ext, tolerance):
    x = _tone(0.25, 16000)
    path = tmp_path / f"tone_{subtype}{ext}"
    sf.write(path, x, 16000, subtype=subtype)
    waveform, rate = read_audio(path)
    assert rate == 16000
    assert waveform.dtype == torch.float32
    assert waveform.shape == (1, x.shape[0])
    assert float((waveform[0] - torch.from_numpy(x)).abs().max()) <= tolerance


def test_read_audio_clips_float_overs_and_keeps_channels(tmp_path):
    stereo = np.stack([_tone(0.1, 8000) * 3.0, -_tone(0.1, 8000)], axis=1)  # left peaks at 1.5
    sf.write(tmp_path / "hot.wav", stereo, 8000, subtype="FLOAT")
    waveform, rate = read_audio(tmp_path / "hot.wav")
    assert rate == 8000 and waveform.shape == (2, 800)
    assert float(waveform.abs().max()) == pytest.approx(1.0)


def test_read_audio_partial(tmp_path):
    x = np.arange(1000, dtype=np.float32) / 1000
    sf.write(tmp_path / "ramp.wav", x, 8000, subtype="FLOAT")
    part, _ = read_audio(tmp_path / "ramp.wav", frame_offset=100, num_frames=50)
    assert torch.allclose(part[0], torch.from_numpy(x[100:150]))
    assert audio_info(tmp_path / "ramp.wav") == (1000, 8000, 1)


def test_load_mono_downmixes_and_resamples(tmp_path):
    left, right = _tone(1.0, 44100, amplitude=0.4), _tone(1.0, 44100, amplitude=0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 44100, subtype="PCM_24")
    mono = load_mono(tmp_path / "st.wav", 16000)
    assert mono.shape == (16000,) and mono.dtype == torch.float32
    # Average of 0.4 and 0.2 amplitude tones in phase = 0.3 amplitude; RMS 0.3/sqrt(2).
    rms = float(mono[1000:-1000].square().mean().sqrt())
    assert rms == pytest.approx(0.3 / math.sqrt(2), rel=0.01)


def test_resample_rates_and_passthrough():
    x = torch.from_numpy(_tone(0.5, 22050))
    assert resample(x, 22050, 22050) is x
    y = resample(x, 22050, 16000)
    assert y.shape == (8000,)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


@pytest.mark.parametrize(
    "content", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"not audio at all" * 10]
)
def test_corrupt_and_empty_files_raise_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as info:
        read_audio(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path)


def test_zero_frame_file_raises(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="no samples"):
        load_mono(path, 16000)


def test_missing_file_raises(tmp_path):
    with pytest.raises(AudioDecodeError, match="nope.flac"):
        read_audio(tmp_path / "nope.flac")


def test_write_audio_round_trip_and_clipping(tmp_path):
    x = torch.tensor([0.0, 0.5, -0.5, 2.0, -2.0])
    path = write_audio(tmp_path / "sub" / "x.wav", x, 16000)
    waveform, rate = read_audio(path)
    assert rate == 16000
    assert waveform[0, 3] == pytest.approx(1.0, abs=1e-4) and waveform[0, 4] == pytest.approx(-1.0)
    stereo = torch.zeros(2, 100)
    write_audio(tmp_path / "s.flac", stereo, 8000)
    assert read_audio(tmp_path / "s.flac")[0].shape == (2, 100)
    write_audio(tmp_path / "o.ogg", torch.from_numpy(_tone(0.2, 16000)), 16000)
    assert read_audio(tmp_path / "o.ogg")[1] == 16000
    with pytest.raises(ValueError, match="NaN"):
        write_audio(tmp_path / "bad.wav", torch.tensor([float("nan")]), 16000)


def test_extensions():
    assert AUDIO_EXTENSIONS == (".wav", ".flac", ".ogg")
    assert is_audio_file("a/B.FLAC") and not is_audio_file("a/b.mp3")
