"""Issue 12, bad values and files: one line naming the key or file, no traceback, the real
reason in metrics.json; and the silent surprises now said out loud (README, Reliability)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from audiodiag import evaluate, sweep_report
from audiodiag.cli import error_line, run_entry
from audiodiag.module import GainLearner
from audiodiag.paths import CONF_DIR, REPO_ROOT
from audiodiag.train import ConfigError, resolve_ckpt_path, train

TINY_NET = {"kind": "gainnet", "layer": "elementwise", "depth": 1, "context": 2}


def _write(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.astype(np.float32), rate)


def _train_cli(tmp_path: Path, *args: str, env: dict | None = None):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AUDIODIAG_NUM_THREADS": "1"}
    environment.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "audiodiag.train", f"hydra.run.dir={tmp_path}", *args],
        cwd=tmp_path,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


# --------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": {"si_sdr": "abc"}}, r"loss\.si_sdr='abc' is not a finite number; accepted"),
        ({"loss": {"spectral": -1}}, r"loss\.spectral=-1 is out of range; accepted: a number >= 0"),
        ({"optimizer": {"lr": -1}}, r"optimizer\.lr=-1 is out of range; accepted: a number > 0"),
        ({"optimizer": {"lr": "nan"}}, r"optimizer\.lr='nan' is not a finite number"),
        ({"optimizer": {"betas": [0.9, 1.5]}}, r"optimizer\.betas"),
        ({"scheduler": {"warmup_steps": 2.5}}, r"scheduler\.warmup_steps=2\.5 must be a whole"),
        ({"scheduler": {"min_lr_ratio": 2}}, r"scheduler\.min_lr_ratio=2 is out of range"),
    ],
)
def test_bad_training_numbers_name_their_key(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GainLearner(net=TINY_NET, **settings)


def test_bad_value_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    result = _train_cli(tmp_path, "loss.si_sdr=abc")
    output = result.stdout + result.stderr  # Hydra's job logging prints to stdout
    assert result.returncode == 1
    assert "Traceback" not in output
    assert "loss.si_sdr='abc' is not a finite number" in output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "loss.si_sdr='abc'" in metrics["error"]
    # The switch brings the traceback back for whoever debugs it.
    result = _train_cli(tmp_path, "optimizer.lr=-1", env={"HYDRA_FULL_ERROR": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" in output
    assert "optimizer.lr=-1" in output


def test_truncated_checkpoint_is_named_before_lightning_reads_it(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {}}, good)
    data = good.read_bytes()
    half = tmp_path / "half.ckpt"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"ckpt_path=.*half\.ckpt.*not a complete checkpoint"):
        resolve_ckpt_path(str(half), tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(data[:100])
    with pytest.raises(ConfigError, match=r"ckpt_path=last: .*not a complete checkpoint"):
        resolve_ckpt_path("last", tmp_path)
    assert resolve_ckpt_path(str(good), tmp_path) == str(good)


def test_corpus_of_only_corrupt_files_reports_the_real_reason(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for speaker in range(4):
        path = corpus / f"spk{speaker}" / "u.wav"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    run_dir = tmp_path / "run"
    overrides = [
        "data=folder",
        f"data.speech.root={corpus}",
        "data.num_workers=0",
        "data.segment_seconds=0.5",
        "data.batch_size=2",
        "model.depth=1",
        "logger=none",
        "callbacks=minimal",
        "trainer.enable_progress_bar=false",
        f"paths.output_dir={run_dir}",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with pytest.raises(Exception, match="no readable audio file"):
        train(cfg)
    error = json.loads((run_dir / "metrics.json").read_text())["error"]
    assert "no readable audio file" in error and "data.speech.root" in error


def test_worker_errors_report_the_worker_reason_not_the_wrapper() -> None:
    # What torch.utils.data re-raises in the main process when a worker fails.
    wrapped = RuntimeError(
        "Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\nRuntimeError: no readable audio file in the '
        "'valid' split (4 file(s) tried, e.g. a.wav)"
    )
    line = error_line(wrapped)
    assert line.startswith("RuntimeError: no readable audio file") and "Caught" not in line


def test_unexpected_errors_are_one_line_unless_debugging(capsys, monkeypatch) -> None:
    def body(args: list[str]) -> int:
        raise KeyError("boom")

    monkeypatch.delenv("AUDIODIAG_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert run_entry(body, []) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: KeyError: 'boom'") and "--debug" in err
    with pytest.raises(KeyError):
        run_entry(body, ["--debug"])
    monkeypatch.setenv("AUDIODIAG_DEBUG", "1")
    with pytest.raises(KeyError):
        run_entry(body, [])


# --------------------------------------------------------------------------- silent surprises
def test_evaluate_skips_and_counts_mismatched_and_too_short_pairs(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    rate = 16000
    clean = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate)
    _write(tmp_path / "noisy" / "good.wav", clean + 0.05 * rng.standard_normal(rate))
    _write(tmp_path / "clean" / "good.wav", clean)
    _write(tmp_path / "noisy" / "long.wav", 0.1 * rng.standard_normal(3 * rate))  # 3 s ...
    _write(tmp_path / "clean" / "long.wav", clean[: rate // 2])  # ... against 0.5 s
    _write(tmp_path / "noisy" / "tiny.wav", np.array([0.1]))  # one sample
    _write(tmp_path / "clean" / "tiny.wav", np.array([0.1]))
    out = tmp_path / "r.json"
    args = [f"noisy_dir={tmp_path / 'noisy'}", f"clean_dir={tmp_path / 'clean'}"]
    code = evaluate.main(["model=wiener", *args, "pesq_stoi=false", f"json={out}"])
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["summary"]["groups"]["all"]["n"] == 1  # only the good pair is averaged
    assert report["skipped_count"] == 2 and "Skipped 2 clip(s)" in captured.out
    skipped = report["skipped"]
    assert "noisy is 3.00 s but clean" in skipped[str(tmp_path / "noisy" / "long.wav")]
    assert "shorter than 0.1 s" in skipped["tiny.wav"]

    (tmp_path / "noisy" / "good.wav").unlink()
    code = evaluate.main(["model=wiener", *args, "pesq_stoi=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no clips to score: all 2 clip(s) were skipped (first:" in err


def test_a_deleted_sweep_job_is_a_missing_row(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "    params: null\n  overrides:\n    task:\n    - layer=elementwise,sparse\n"
        "    - model.depth=1,2\nmonitor: val/si_sdri\n"
    )
    for number, overrides in enumerate(
        [["layer=elementwise", "model.depth=1"], ["layer=elementwise", "model.depth=2"]]
    ):
        job = sweep / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (job / "metrics.json").write_text(json.dumps({"status": "ok", "val/si_sdri": number}))
    (sweep / "1" / "metrics.json").write_bytes(b'{"status": "ok", "note": "\xff\xfe"}')  # not UTF-8
    # Job 2 finished but was deleted afterwards; job 3 never left a folder either.
    assert sweep_report.main([str(sweep)]) == 0
    report = capsys.readouterr().out
    rows = {
        cells[1]: cells
        for line in report.splitlines()[1:]
        if line.startswith("| ") and (cells := [c.strip() for c in line.strip("|").split(" | ")])
    }
    assert rows["2"][-2] == "missing" and "deleted" in rows["2"][-1]
    assert "layer=sparse model.depth=1" in rows["2"][2]
    assert rows["3"][-2] == "missing" and "layer=sparse model.depth=2" in rows["3"][2]
    assert rows["1"][-2] == "unknown" and "UnicodeDecodeError" in rows["1"][-1]
    assert "4 jobs" in report and "2 missing" in report
