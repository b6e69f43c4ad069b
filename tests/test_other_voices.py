"""scripts/make_other_voices.py: other engines' voices, the real recordings, the mixed root."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from script_helpers import load_script, read_rows

from audiodiag.data import SPLITS, FolderSpeech


def _load():  # type: ignore[no-untyped-def]
    return load_script("make_other_voices")


#: Whose recordings each voice was built from: kal16 and kal_diphone are one man, slt one woman.
TALKER = {"awb": "awb", "rms": "rms", "kal16": "kal", "kal_diphone": "kal", "slt": "slt",
          "cmu_us_slt_arctic_hts": "slt", "ked_diphone": "ked"}  # fmt: skip


def test_training_and_test_voices_share_no_talker() -> None:
    other = _load()
    train = {TALKER[v] for _, v in other.TRAIN_VOICES}
    test = {TALKER[v] for _, v in other.TEST_VOICES}
    assert train == {"awb", "rms", "kal"} and test == {"slt", "ked"}
    cast = other.make_speakers(other.TRAIN_VOICES, 4, "train", random.Random(0))
    valid = [sum(s.split == "valid" for s in cast if s.voice == v) for _, v in other.TRAIN_VOICES]
    assert valid == [1, 1, 1]
    assert len({s.speaker_id for s in cast}) == 12
    assert all(0.8 <= s.pitch <= 1.25 and 0.85 <= s.stretch <= 1.2 for s in cast)
    tests = other.make_speakers(other.TEST_VOICES, 2, "test", random.Random(0))
    assert {s.split for s in tests} == {"test"}
    assert {s.pitch for s in tests if s.engine == "festival"} == {1.0}  # no pitch control there


def test_real_voice_is_resampled_and_levelled(tmp_path: Path) -> None:
    other = _load()
    sounds = tmp_path / "alsa"
    sounds.mkdir()
    t = np.arange(int(1.4 * 48000)) / 48000
    for k, name in enumerate(other.ALSA_SPOKEN):
        tone = 0.5 * np.sin(2 * np.pi * (200 + 20 * k) * t) * (t > 0.2) * (t < 1.2)
        sf.write(str(sounds / f"{name}.wav"), tone.astype(np.float32), 48000)
    count = other.build_real(tmp_path / "real", random.Random(0), sounds, tmp_path / "none")
    assert count == 8
    rows = read_rows(tmp_path / "real" / "metadata.csv")
    assert [r["text"] for r in rows][:2] == ["Front Center", "Front Left"]
    for row in rows:
        audio, sr = sf.read(str(tmp_path / "real" / row["path"]))
        level = 20 * np.log10(np.sqrt(np.mean(audio**2)))
        assert sr == 16000 and 1.0 < len(audio) / sr < 1.2  # trimmed to the tone, margins kept
        assert -28.5 < level < -23.5
    assert len(FolderSpeech(tmp_path / "real").utterances("test")) == 8
    # Without alsa-utils the set is skipped with one line, not an error.
    (sounds / "Side_Right.wav").unlink()
    assert other.build_real(tmp_path / "real2", random.Random(0), sounds, tmp_path / "none") == 0


def _g722(path: Path, seconds: float) -> None:
    """A 200-Hz tone encoded as raw G.722 (Asterisk's prompt format), by ffmpeg."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
           f"sine=frequency=200:sample_rate=16000:duration={seconds}", "-c:a", "g722",
           "-f", "g722", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_asterisk_prompts_are_decoded_and_only_speech_long_enough_is_kept(tmp_path: Path) -> None:
    other = _load()
    folder = tmp_path / "asterisk" / "it_IT_m_Carlo"
    for name, seconds in (("conf-full", 2.5), ("vm-intro", 3.0), ("beep", 2.0), ("yes", 0.6)):
        _g722(folder / f"{name}.g722", seconds)
    (folder / "digits").mkdir()  # subfolders (digits, letters) are not read
    count = other.build_real(tmp_path / "real", random.Random(0), tmp_path / "no-alsa",
                             tmp_path / "asterisk", per_talker=5)  # fmt: skip
    rows = read_rows(tmp_path / "real" / "metadata.csv")
    assert count == 2 and sorted(r["text"] for r in rows) == ["conf-full", "vm-intro"]
    assert {r["speaker"] for r in rows} == {"asterisk_it_carlo"} and rows[0]["language"] == "it"
    audio, sr = sf.read(str(tmp_path / "real" / rows[0]["path"]))
    assert sr == 16000 and len(audio) / sr > 2.0
    # Music on hold: every track decoded, whole.
    music = tmp_path / "moh"
    music.mkdir()
    shutil.copy(folder / "vm-intro.g722", music / "track.g722")
    assert other.build_music(tmp_path / "music", music) == 1
    assert abs(sf.info(str(tmp_path / "music" / "track.flac")).duration - 3.0) < 0.05
    assert other.build_music(tmp_path / "music2", tmp_path / "no-moh") == 0
    with pytest.raises(RuntimeError, match="ffmpeg could not decode .*missing.g722"):
        other.decode_g722(folder / "missing.g722")
    (folder / "empty.g722").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no audio from .*empty.g722"):
        other.decode_g722(folder / "empty.g722")


def test_mixed_root_links_both_corpora(tmp_path: Path) -> None:
    other = _load()
    out = tmp_path / "corpus"
    tone = (0.1 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    for rel in ("train/s1", "train/s2", "valid/s3", "test/s4", "other_train/train/awb_00",
                "other_train/valid/awb_01", "other_voices/test/slt_00"):  # fmt: skip
        (out / rel).mkdir(parents=True)
        sf.write(str(out / rel / "u.flac"), tone, 16000)
    assert other.link_mixed(out) == 6
    mixed = FolderSpeech(out / other.MIXED_DIR)
    speakers = {s: sorted({u.speaker for u in mixed.utterances(s)}) for s in SPLITS}
    assert speakers == {"train": ["awb_00", "s1", "s2"], "valid": ["awb_01", "s3"], "test": ["s4"]}
    # Links are relative: the corpus can move.
    moved = tmp_path / "moved"
    out.rename(moved)
    assert len(FolderSpeech(moved / other.MIXED_DIR).utterances("train")) == 3


@pytest.mark.skipif(
    any(_load().engine_missing(e) for e in ("flite", "festival")),
    reason="flite or festival is not installed",
)
def test_small_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _load()
    for name in ("ALSA_SOUNDS", "ASTERISK_SOUNDS", "ASTERISK_MUSIC"):  # tested above, and slow
        monkeypatch.setattr(other, name, tmp_path / "none")
    out = tmp_path / "corpus"
    counts = other.build(out, train_per_voice=2, train_per_speaker=1, test_per_voice=1,
                         test_per_speaker=1, workers=2)  # fmt: skip
    assert counts[other.TRAIN_DIR] == 6 and counts[other.TEST_DIR] == 3
    assert counts[other.REAL_DIR] == 0 and counts[other.NOISE_DIR] == 0
    train_rows = read_rows(out / other.TRAIN_DIR / "metadata.csv")
    test_rows = read_rows(out / other.TEST_DIR / "metadata.csv")
    for base, table in ((out / other.TRAIN_DIR, train_rows), (out / other.TEST_DIR, test_rows)):
        for row in table:
            info = sf.info(str(base / row["path"]))
            assert info.samplerate == 16000 and info.channels == 1 and info.frames > 8000
    assert {r["voice"] for r in test_rows} == {f"{e}:{v}" for e, v in other.TEST_VOICES}
    texts = [r["text"] for r in train_rows + test_rows]
    assert len(set(texts)) == len(texts)
    assert [len(FolderSpeech(out / other.TRAIN_DIR).utterances(s)) for s in SPLITS] == [3, 3, 0]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_real_train_holds_only_unscored_prompts_of_its_talkers(tmp_path: Path) -> None:
    """Training prompts never include a scored prompt, nor any prompt of a held-out talker."""
    other = _load()
    asterisk = tmp_path / "asterisk"
    for folder in ("en_US_f_Allison", "it_IT_m_Carlo"):
        for name in ("a-prompt", "b-prompt", "c-prompt"):
            _g722(asterisk / folder / f"{name}.g722", 2.0)
    real = tmp_path / "corpus" / "real_voice"
    count = other.build_real(real, random.Random(0), tmp_path / "no-alsa", asterisk, per_talker=1)
    scored = {p.stem for p in real.rglob("*.flac")}
    assert count == 2 and len(scored) == 2
    out = tmp_path / "corpus" / "real_train"
    assert other.build_real_train(out, real, random.Random(0), asterisk) == 2
    trained = {p.stem for p in out.rglob("*.flac")}
    assert {p.parent.name for p in out.rglob("*.flac")} == {"asterisk_en_allison"}
    assert not trained & scored and len(trained | scored) == 4
    # with_real: the corpus' speakers and these talkers, as a folder-compatible root.
    (tmp_path / "corpus" / "train" / "s1").mkdir(parents=True)
    sf.write(str(tmp_path / "corpus" / "train" / "s1" / "u.flac"), np.zeros(16000), 16000)
    assert other.link_mixed(tmp_path / "corpus", "with_real", "real_train") == 2
    mixed = FolderSpeech(tmp_path / "corpus" / "with_real")
    assert sorted({u.speaker for u in mixed.utterances("train")}) == ["asterisk_en_allison", "s1"]
