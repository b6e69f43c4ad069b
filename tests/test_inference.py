"""Loading models, block processing, chunked long files and streaming (audiodiag.inference)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiag.audio import StreamingResampler
from audiodiag.inference import enhance_file, enhance_waveform, load_enhancer
from audiodiag.loading import ModelLoadError

pytestmark = pytest.mark.usefixtures("one_thread")


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max()) if a.numel() else 0.0


def _noisy(length: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000.0
    tone = 0.3 * torch.sin(2 * torch.pi * 440.0 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) / 2
    return (tone + 0.05 * torch.randn(channels, length, generator=generator)).clamp(-1, 1)


@pytest.mark.parametrize("kind", ["ckpt", "exported"])
def test_loaded_model_is_causal_with_latency(models: dict[str, Path], kind: str) -> None:
    enhancer = load_enhancer(models[kind])
    assert enhancer.sample_rate == 16000
    assert enhancer.causal and enhancer.streamable
    assert enhancer.latency_samples == 512 - 128


@pytest.mark.parametrize("kind", ["ckpt", "exported"])
@pytest.mark.parametrize("block_ms", [10, 100, 37.3])
def test_streaming_equals_offline(models: dict[str, Path], kind: str, block_ms: float) -> None:
    enhancer = load_enhancer(models[kind])
    x = _noisy(16000 + 77, channels=2)
    offline = enhancer(x)
    stream = enhancer.stream(batch=2)
    block = int(block_ms * 16)
    pieces = [stream.process(x[:, i : i + block]) for i in range(0, x.shape[-1], block)]
    pieces.append(stream.flush())
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == offline.shape
    assert float((streamed - offline).abs().max()) <= 1e-4
    # Output never runs ahead of the input by more than the framing allows.
    emitted = sum(p.shape[-1] for p in pieces[:10])
    assert emitted <= 10 * block


def test_exported_stream_matches_streaming_enhancer(models: dict[str, Path]) -> None:
    """The exported block API and the model package's StreamingEnhancer emit the same samples."""
    exported = load_enhancer(models["exported"])
    eager = load_enhancer(models["ckpt"])
    x = _noisy(5000)
    a, b = exported.stream(1), eager.stream(1)
    for start in range(0, 5000, 480):
        out_a = a.process(x[:, start : start + 480])
        out_b = b.process(x[:, start : start + 480])
        assert out_a.shape == out_b.shape
        assert _max_diff(out_a, out_b) <= 1e-4
    assert _max_diff(a.flush(), b.flush()) <= 1e-4


@pytest.mark.parametrize(
    ("orig", "new"), [(44100, 16000), (16000, 44100), (8000, 16000), (48000, 16000)]
)
def test_streaming_resampler_equals_whole(orig: int, new: int) -> None:
    from audiodiag.audio import resample

    x = torch.randn(2, orig * 2 + 13, generator=torch.Generator().manual_seed(1))
    whole = resample(x, orig, new)
    resampler = StreamingResampler(orig, new, segment_samples=3000)
    pieces = []
    for start, size in zip(range(0, x.shape[-1], 997), [997] * 10_000, strict=False):
        pieces.append(resampler.process(x[:, start : start + size]))
    pieces.append(resampler.flush())
    chunked = torch.cat(pieces, dim=-1)
    assert chunked.shape == whole.shape
    assert float((chunked - whole).abs().max()) <= 1e-5


@pytest.mark.parametrize("kind", ["ckpt", "exported"])
def test_chunked_file_equals_whole_file(models: dict[str, Path], kind: str, tmp_path: Path) -> None:
    """44.1 kHz stereo through 0.3 s blocks equals whole-signal processing."""
    enhancer = load_enhancer(models[kind])
    rate = 44100
    x = 0.5 * _noisy(int(rate * 2.3), channels=2).numpy().T
    src = tmp_path / "in.wav"
    sf.write(src, x, rate, subtype="FLOAT")
    out = tmp_path / "out.wav"
    # FLOAT output keeps the comparison free of 16-bit quantisation.
    enhance_file(enhancer, src, tmp_path / "out_float.wav", block_seconds=0.3)
    info = sf.info(str(out.with_name("out_float.wav")))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        rate,
        2,
        x.shape[0],
        "FLOAT",
    )
    chunked, _ = sf.read(str(out.with_name("out_float.wav")), dtype="float32", always_2d=True)
    whole = enhance_waveform(enhancer, torch.from_numpy(x.T.copy()), rate).numpy().T
    assert float(np.abs(chunked - np.clip(whole, -1, 1)).max()) <= 1e-4


def test_wiener_windows_close_to_whole(tmp_path: Path) -> None:
    """Non-causal models run on windows with context: close to, not equal to, whole-file."""
    from audiodiag.losses import si_sdr

    enhancer = load_enhancer("wiener")
    enhancer.window_seconds, enhancer.context_seconds = 1.5, 1.0
    x = _noisy(16000 * 5)
    whole = enhancer(x)
    stream = enhancer.stream(1)
    pieces = [stream.process(x[:, i : i + 4000]) for i in range(0, x.shape[-1], 4000)]
    chunked = torch.cat(pieces + [stream.flush()], dim=-1)
    assert chunked.shape == whole.shape
    assert float(si_sdr(chunked, whole)) > 30.0


@pytest.mark.parametrize("kind", ["ckpt", "exported", "wiener"])
@pytest.mark.parametrize("case", ["silent", "clipped", "short"])
def test_degenerate_input_no_nan_same_length(
    models: dict[str, Path], kind: str, case: str, tmp_path: Path
) -> None:
    enhancer = load_enhancer(models.get(kind, kind))
    if case == "silent":
        x = np.zeros((8000, 1), dtype=np.float32)
    elif case == "clipped":
        x = np.sign(np.sin(np.arange(8000) / 5.0))[:, None].astype(np.float32)
    else:
        x = 0.1 * np.random.default_rng(0).standard_normal((37, 2)).astype(np.float32)
    src = tmp_path / "x.wav"
    sf.write(src, x, 22050, subtype="PCM_16")
    enhance_file(enhancer, src, tmp_path / "y.wav", block_seconds=0.1)
    y, rate = sf.read(str(tmp_path / "y.wav"), always_2d=True)
    assert rate == 22050 and y.shape == x.shape and np.isfinite(y).all()
    whole = enhancer(torch.from_numpy(x.T.copy()))
    assert whole.shape == (x.shape[1], x.shape[0]) and bool(torch.isfinite(whole).all())


def test_truncated_checkpoint_error_names_file(models: dict[str, Path], tmp_path: Path) -> None:
    data = models["ckpt"].read_bytes()
    for name, payload in (("half.ckpt", data[: len(data) // 2]), ("text.pt", b"not a model\n")):
        bad = tmp_path / name
        bad.write_bytes(payload)
        with pytest.raises(ModelLoadError, match=str(bad)):
            load_enhancer(bad)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_enhancer(tmp_path / "missing.ckpt")


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - runs code when unpickled
        return (print, ("UNPICKLED CODE RAN",))


def test_checkpoint_is_loaded_weights_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}}, "payload": _Evil()}, path)
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_enhancer(path)
    assert "UNPICKLED CODE RAN" not in capsys.readouterr().out
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(ModelLoadError, match="not a Lightning checkpoint"):
        load_enhancer(plain)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, numpy as np, soundfile as sf, torch
    torch.set_num_threads(1)
    from audiodiag.inference import load_enhancer, enhance_file
    src, dst, model, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rate = 16000
    rng = np.random.default_rng(0)
    with sf.SoundFile(src, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(int(seconds // 10)):
            f.write((0.1 * rng.standard_normal(rate * 10)).astype(np.float32))
    enhancer = load_enhancer(model)
    enhancer(torch.zeros(1, rate))  # warm up allocations that any run needs
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    enhance_file(enhancer, src, dst, block_seconds=10.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - base) / 1024.0)
    """
)


def _extra_memory_mb(models: dict[str, Path], tmp_path: Path, seconds: float) -> float:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEMORY_SCRIPT,
            str(tmp_path / "long.wav"),
            str(tmp_path / "out.wav"),
            str(models["exported"]),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    frames = sf.info(str(tmp_path / "out.wav")).frames
    assert frames == int(seconds) * 16000
    return float(result.stdout.strip().splitlines()[-1])


def test_long_file_memory_is_bounded(models: dict[str, Path], tmp_path: Path) -> None:
    """5 minutes in 10 s blocks: the peak RSS growth is that of one block (~120 MB here), far
    below whole-file processing (~30x more); the slow test shows one hour needs the same."""
    extra = _extra_memory_mb(models, tmp_path, 300)
    assert extra < 250, f"peak RSS grew by {extra:.0f} MB for a 5-minute file"


@pytest.mark.slow
def test_one_hour_file_needs_few_hundred_mb(models: dict[str, Path], tmp_path: Path) -> None:
    extra = _extra_memory_mb(models, tmp_path, 3600)
    assert extra < 300, f"peak RSS grew by {extra:.0f} MB for a one-hour file"
