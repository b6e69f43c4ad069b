"""Issue 12, outputs: nothing a user had is lost, nothing half-written is left, and every bad
output path ends in one line (README, Reliability)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodiag import enhance, evaluate, export, sweep_report
from audiodiag.atomic import OutputError, atomic_write, check_output

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder where no file can be created (chmod for a normal user; root ignores modes, so
    there it is /sys, which refuses new files even to root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        handle, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        yield Path("/sys")
        return
    os.close(handle)
    os.unlink(name)
    pytest.skip("no read-only folder available to root here")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _tone(path: Path, seconds: float = 0.5, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype=subtype)
    return path


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- the helper itself
def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("the user's file")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) != 0o600


def test_check_output_names_the_key_and_what_is_accepted(tmp_path: Path, read_only_dir) -> None:
    a_file = tmp_path / "a.wav"
    a_file.write_bytes(b"x")
    cases = [
        (tmp_path, "is a folder"),
        (tmp_path / "x.mp3", "accepted: .wav"),
        (a_file / "x.wav", "which is a file"),
        (read_only_dir / "x.wav", "cannot create files"),
        (a_file, "exists; pass overwrite=true"),
    ]
    for path, message in cases:
        with pytest.raises(OutputError, match=message) as info:
            check_output(path, "output", suffixes=(".wav",))
        assert str(info.value).startswith(f"output={path}")
    with pytest.raises(OutputError, match="is also an input"):
        check_output(tmp_path / "." / "a.wav", "out", inputs=[a_file], overwrite=True)


# --------------------------------------------------------------------------- enhance
def test_enhance_never_deletes_an_output_it_did_not_write(tmp_path: Path, capsys) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    _tone(source / "good.wav")
    # A header that decodes, then NaN samples: the failure comes mid-write, after the header pass.
    bad = np.zeros(8000, dtype=np.float32)
    bad[4000:] = np.nan
    sf.write(source / "bad.wav", bad, 16000, subtype="FLOAT")
    _tone(target / "bad.wav", 0.1)  # the user's own files at both output paths
    _tone(target / "good.wav", 0.1)
    before = _snapshot(target)

    assert enhance.main(["model=wiener", f"input={source}", f"output={target}"]) == 0
    out = capsys.readouterr().out
    assert "kept 2 existing output(s) untouched (overwrite=true replaces them)" in out
    assert _snapshot(target) == before

    assert (
        enhance.main(["model=wiener", f"input={source}", f"output={target}", "overwrite=true"]) == 0
    )
    out = capsys.readouterr().out
    assert "enhanced 1 file(s)" in out and "replaced 1 existing output(s)" in out
    assert "skipped 1 file(s)" in out and "NaN" in out
    after = _snapshot(target)
    assert after["bad.wav"] == before["bad.wav"]  # the failed input left the old file alone
    assert after["good.wav"] != before["good.wav"]
    assert sorted(p.name for p in target.iterdir()) == ["bad.wav", "good.wav"]  # no temp files


def test_enhance_bad_outputs_end_in_one_line(tmp_path: Path, read_only_dir, capsys) -> None:
    noisy = _tone(tmp_path / "noisy.wav")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    existing = _tone(tmp_path / "existing.wav", 0.1)
    before = _snapshot(tmp_path)
    cases = [
        (notes, "accepted: .wav, .flac, .ogg"),
        (tmp_path / "clean.mp3", "accepted: .wav, .flac, .ogg"),
        (read_only_dir / "clean.wav", "cannot create files"),
        (notes / "clean.wav", "which is a file"),
        (existing, "exists; pass overwrite=true"),
    ]
    for output, message in cases:
        assert enhance.main(["model=wiener", f"input={noisy}", f"output={output}"]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"output={output}" in line and message in line, line
    # A folder input into a read-only place or under a file: the same, before any work.
    for output in (read_only_dir / "out", notes / "out"):
        assert enhance.main(["model=wiener", f"input={tmp_path}", f"output={output}"]) == 2
        assert "output=" in _one_line_error(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- export
def test_export_refuses_to_write_over_its_checkpoint_or_into_bad_places(
    models: dict[str, Path], tmp_path: Path, read_only_dir, capsys
) -> None:
    ckpt = tmp_path / "c" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(models["ckpt"].read_bytes())
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"an older export")
    before = _snapshot(tmp_path)
    cases = [
        ([f"out={ckpt}"], "is also an input"),
        ([f"out={tmp_path / 'c' / '.' / 'last.ckpt'}"], "is also an input"),
        ([f"out={tmp_path / 'x.pt'}", f"onnx={ckpt}"], "is also an input"),
        ([f"out={tmp_path / 'c'}"], "is a folder"),
        ([f"out={read_only_dir / 'm.pt'}"], "cannot create files"),
        ([f"out={tmp_path / 'x.pt'}", f"onnx={read_only_dir / 'm.onnx'}"], "cannot create files"),
        ([f"out={ckpt / 'm.pt'}"], "which is a file"),
        ([f"out={tmp_path / 'x.pt'}", f"onnx={ckpt / 'm.onnx'}"], "which is a file"),
        ([f"out={existing}"], "exists; pass overwrite=true"),
    ]
    for args, message in cases:
        assert export.main([f"ckpt={ckpt}", *args]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert message in line, (args, line)
    assert _snapshot(tmp_path) == before  # checkpoint intact, nothing new, no c.tmp

    assert export.main([f"ckpt={ckpt}", f"out={existing}", "overwrite=true"]) == 0
    assert "replaced the existing file" in capsys.readouterr().out
    assert existing.read_bytes() != b"an older export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "model.pt"]


# --------------------------------------------------------------------------- evaluate
def test_evaluate_checks_json_before_the_evaluation_runs(
    tmp_path: Path, read_only_dir, monkeypatch, capsys
) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the json path was checked")

    monkeypatch.setattr(evaluate, "evaluate_clips", must_not_run)
    a_file = tmp_path / "old.json"
    a_file.write_text("{}")
    cases = [
        (tmp_path, "is a folder"),
        (read_only_dir / "r.json", "cannot create files"),
        (a_file / "r.json", "which is a file"),
        (a_file, "exists; pass overwrite=true"),
    ]
    for path, message in cases:
        assert evaluate.main(["model=wiener", f"json={path}", "limit=1"]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"json={path}" in line and message in line, line
    assert a_file.read_text() == "{}"


# --------------------------------------------------------------------------- sweep_report
def test_sweep_report_csv_is_checked_first_and_kept_unless_asked(tmp_path: Path, capsys) -> None:
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({"status": "ok", "val/si_sdri": 1.0}))
    csv_file = tmp_path / "old.csv"
    csv_file.write_text("mine")
    assert sweep_report.main([str(tmp_path / "sweep"), "--csv", str(csv_file)]) == 2
    assert "exists; pass --overwrite" in _one_line_error(capsys.readouterr().err)
    assert sweep_report.main([str(tmp_path / "sweep"), "--csv", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys.readouterr().err)
    assert csv_file.read_text() == "mine"
    assert sweep_report.main([str(tmp_path / "sweep"), "--csv", str(csv_file), "--overwrite"]) == 0
    assert csv_file.read_text().startswith("rank,job,status")
