"""Checks on the committed demo corpus (data/demo): layout, format, size and speaker splits.

Reads headers only (soundfile.info), so the whole module runs in well under a second.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import soundfile as sf

# The committed corpus, located from this file (not audiodiag.paths, which AUDIODIAG_DATA redirects).
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "data" / "demo"
METADATA = DEMO / "metadata.csv"
MAX_BYTES = 15 * 1024 * 1024
SPLITS = {"train", "valid", "test"}

pytestmark = pytest.mark.skipif(
    not METADATA.is_file(),
    reason=f"demo corpus missing: {METADATA} (run scripts/make_demo_corpus.py)",
)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(METADATA, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["path", "speaker", "voice", "text", "split"]
        return list(reader)


def test_metadata_matches_files_on_disk(rows: list[dict[str, str]]) -> None:
    listed = {r["path"] for r in rows}
    assert len(listed) == len(rows), "duplicate paths in metadata.csv"
    on_disk = {p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.flac")}
    assert listed == on_disk, (
        f"only in metadata: {sorted(listed - on_disk)[:5]}, only on disk: {sorted(on_disk - listed)[:5]}"
    )
    for r in rows:
        # Layout <speaker>/<speaker>_<nnnn>.flac keeps speaker identity recoverable from the path.
        folder, name = r["path"].split("/")
        assert folder == r["speaker"] and name.startswith(r["speaker"] + "_"), r["path"]
        assert r["text"].strip(), f"empty text for {r['path']}"


def test_enough_utterances_and_speakers(rows: list[dict[str, str]]) -> None:
    assert len(rows) >= 300
    assert len({r["speaker"] for r in rows}) >= 6
    assert len({r["text"] for r in rows}) == len(rows), "sentences should not repeat"


def test_every_file_is_16k_mono_pcm16_flac(rows: list[dict[str, str]]) -> None:
    for r in rows:
        info = sf.info(str(DEMO / r["path"]))
        assert (info.samplerate, info.channels) == (16000, 1), f"{r['path']}: {info}"
        assert (info.format, info.subtype) == ("FLAC", "PCM_16"), f"{r['path']}: {info}"
        assert 0.5 < info.duration < 6.0, f"{r['path']}: {info.duration} s"


def test_speakers_split_without_leaks(rows: list[dict[str, str]]) -> None:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        assert r["split"] in SPLITS, f"{r['path']}: split {r['split']!r}"
        splits_of[r["speaker"]].add(r["split"])
    leaked = {s: v for s, v in splits_of.items() if len(v) > 1}
    assert not leaked, f"speakers in more than one split: {leaked}"
    assert {r["split"] for r in rows} == SPLITS, "every split needs at least one speaker"


def test_total_size_within_budget() -> None:
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, f"data/demo is {total / 2**20:.1f} MiB, budget 15 MiB"


def test_audio_is_not_silent_or_clipped() -> None:
    # Full decode of a few files only: level normalisation should leave speech well above silence.
    import numpy as np

    files = sorted(DEMO.glob("spk*/*_0000.flac"))
    assert files
    for path in files:
        x, _ = sf.read(str(path), dtype="float32")
        rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12)
        assert -35.0 < rms_db < -15.0, f"{path}: RMS {rms_db:.1f} dBFS"
        assert np.max(np.abs(x)) < 0.99, f"{path}: clipped"


def test_generator_script_agrees_with_corpus(
    rows: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The script's speaker table must agree with the corpus even without espeak-ng installed.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_demo_corpus", Path(REPO_ROOT / "scripts" / "make_demo_corpus.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the script executes.
    monkeypatch.setitem(sys.modules, "make_demo_corpus", mod)
    spec.loader.exec_module(mod)
    table = {s.speaker_id: (s.voice, s.split) for s in mod.SPEAKERS}
    assert len(table) == len(mod.SPEAKERS)
    assert {r["speaker"]: (r["voice"], r["split"]) for r in rows} == table
    import random

    sentences = mod.make_sentences(50, random.Random(0))
    assert len(set(sentences)) == 50
    assert sentences == mod.make_sentences(50, random.Random(0))
