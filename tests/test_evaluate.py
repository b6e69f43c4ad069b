"""``python -m audiodiag.evaluate``: demo test mixtures, folder pairs, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodiag.evaluate import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs(root: Path) -> None:
    """noisy/<type>/k.wav and clean/<type>/k.flac: two noise types, SNRs about 0 and 10 dB."""
    rng = np.random.default_rng(0)
    for noise_type in ("white", "hum"):
        for k, snr_db in enumerate((0.0, 10.0)):
            t = np.arange(16000) / 16000
            clean = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
            if noise_type == "white":
                noise = rng.standard_normal(16000)
            else:
                noise = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 150 * t)
            noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
            for folder, data, ext in (("noisy", clean + noise, "wav"), ("clean", clean, "flac")):
                path = root / folder / noise_type / f"{k}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, data.astype(np.float32), 16000)
    sf.write(root / "noisy" / "orphan.wav", np.zeros(1600, dtype=np.float32), 16000)


def test_folder_pair_table_and_json(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pairs(tmp_path)
    out = tmp_path / "report.json"
    code = main(
        [
            f"model={models['exported']}",
            f"noisy_dir={tmp_path / 'noisy'}",
            f"clean_dir={tmp_path / 'clean'}",
            "reference=wiener",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    text = captured.out
    for heading in (
        "SI-SDR (dB)",
        "SI-SDR improvement (dB)",
        "PESQ-WB",
        "STOI",
        "Real-time factor",
    ):
        assert heading in text
    assert "| system | all | hum | white | 0 dB | 10 dB |" in text and "| Wiener |" in text
    assert "orphan.wav" in captured.err  # no clean partner: skipped, named
    report = json.loads(out.read_text())
    groups = report["summary"]["groups"]
    assert groups["all"]["n"] == 4
    assert groups["white"]["n"] == 2 and groups["hum"]["n"] == 2
    snr_labels = [g for g, v in groups.items() if v["kind"] == "snr"]
    assert len(snr_labels) == 2  # about 0 dB and about 10 dB
    assert abs(groups["all"]["si_sdr"]["noisy"] - 5.0) < 1.0
    assert all(np.isfinite(v) for v in groups["all"]["pesq"].values())
    assert report["rtf"] > 0 and report["markdown"].startswith("## tiny.pt")


def test_demo_test_mixtures(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.json"
    code = main(
        [
            f"model={models['ckpt']}",
            "data=demo",
            "data.test_mixtures=6",
            "limit=4",
            "pesq_stoi=false",
            f"json={out}",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["summary"]["n_clips"] == 4
    assert "PESQ-WB" not in capsys.readouterr().out
    kinds = {v["kind"] for v in report["summary"]["groups"].values()}
    assert kinds == {"all", "noise", "snr"}


def test_bad_arguments(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    assert "noisy_dir=DIR" in capsys.readouterr().out
    half = tmp_path / "half.ckpt"
    data = models["ckpt"].read_bytes()
    half.write_bytes(data[: len(data) // 2])
    assert main([f"model={half}"]) == 2
    assert str(half) in capsys.readouterr().err
    assert main(["model=wiener", f"noisy_dir={tmp_path}"]) == 2
    assert "clean_dir" in capsys.readouterr().err
    assert main(["model=wiener", "data=nonexistent_corpus"]) == 2
    assert "nonexistent_corpus" in capsys.readouterr().err
