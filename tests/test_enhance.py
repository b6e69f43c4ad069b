"""``python -m audiodiag.enhance``: folders, mixed rates and channels, refusal to overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiag.enhance import enhance_paths, main
from audiodiag.inference import load_enhancer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(models: dict[str, Path]) -> Path:
    return models["exported"]


# (relative path, sample rate, channels, frames, subtype)
FILES = [
    ("a.wav", 44100, 2, 44100 * 2 + 7, "PCM_24"),
    ("speech/b.flac", 8000, 1, 8000, "PCM_16"),
    ("speech/deep/c.wav", 16000, 3, 1234, "FLOAT"),
    ("speech/deep/d.ogg", 22050, 1, 22050, "VORBIS"),
    ("tiny.wav", 48000, 1, 50, "PCM_16"),  # shorter than one frame at any rate
]


def _make_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for rel, rate, channels, frames, subtype in FILES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(frames) / rate
        tone = 0.3 * np.sin(2 * np.pi * 300 * t)[:, None]
        data = (tone + 0.05 * rng.standard_normal((frames, channels))).astype(np.float32)
        sf.write(path, data, rate, subtype=subtype)
    (root / "notes.txt").write_text("not audio")
    (root / "speech" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")


def test_folder_round_trip_mixed_rates_and_channels(model: Path, tmp_path: Path) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    _make_folder(source)
    with pytest.warns(UserWarning) as caught:
        summary = enhance_paths(
            load_enhancer(model), source, target, block_seconds=0.5, progress=False
        )
    messages = " ".join(str(w.message) for w in caught)
    assert "notes.txt" in messages and "broken.wav" in messages
    assert len(summary.written) == len(FILES)
    assert set(summary.skipped) == {
        str(source / "notes.txt"),
        str(source / "speech" / "broken.wav"),
    }
    for rel, rate, channels, frames, subtype in FILES:
        info = sf.info(str(target / rel))
        assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames), rel
        assert info.subtype == subtype, rel
        data, _ = sf.read(str(target / rel), always_2d=True)
        assert np.isfinite(data).all()
        if frames > 1000:
            assert np.abs(data).max() > 0.01, f"{rel} came out silent"
    assert "skipped 2 file(s)" in summary.line()


def test_cli_single_file_and_summary(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "x.wav"
    sf.write(
        src, 0.1 * np.random.default_rng(1).standard_normal((16000, 2)).astype(np.float32), 32000
    )
    out = tmp_path / "enhanced" / "x.wav"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "audiodiag.enhance",
            f"model={model}",
            f"input={src}",
            f"output={out}",
            "device=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "enhanced 1 file(s)" in result.stdout
    assert "s audio" in result.stderr  # the progress bar
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames) == (32000, 2, 16000)


def test_refuses_to_overwrite_inputs(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    _make_folder(source)
    wav = source / "a.wav"
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    cases = [
        ([f"input={wav}", f"output={wav}"], "is the input file itself"),
        ([f"input={source}", f"output={source}"], "lies inside input"),
        ([f"input={source}", f"output={source / 'enhanced'}"], "lies inside input"),
        ([f"input={source / 'speech'}", f"output={source}"], "contains input"),
    ]
    for args, message in cases:
        assert main([f"model={model}", *args]) == 2
        err = capsys.readouterr().err
        assert message in err, (args, err)
    # An output folder that is an input file's folder, given as the file's own name:
    assert main([f"model={model}", f"input={wav}", f"output={source}"]) == 2
    assert "is the input file itself" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert after == before


def test_cli_bad_arguments(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "model=MODEL" in capsys.readouterr().out
    assert main([f"model={model}", "input=x"]) == 2
    assert "missing output=" in capsys.readouterr().err
    assert main([f"model={model}", "input=x", "output=y", "colour=red"]) == 2
    assert "unknown argument 'colour'" in capsys.readouterr().err
    bad = tmp_path / "half.pt"
    bad.write_bytes(model.read_bytes()[:1000])
    (tmp_path / "in").mkdir()
    assert main([f"model={bad}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'o'}"]) == 2
    assert str(bad) in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([f"model={model}", "input=x", "output=y", "device=cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_wiener_enhances_a_folder(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    sf.write(
        source / "n.wav",
        0.1 * np.random.default_rng(2).standard_normal(24000).astype(np.float32),
        16000,
    )
    assert main(["model=wiener", f"input={source}", f"output={tmp_path / 'out'}"]) == 0
    assert sf.info(str(tmp_path / "out" / "n.wav")).frames == 24000
