"""Speech sources on dataset-shaped trees the tests build: listing, splits, errors.

The tree builders here are reused by the other ``test_data_*`` modules.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodiag.data import (
    SPLITS,
    VCTK,
    DemoSpeech,
    FolderSpeech,
    LibriSpeech,
    SpeechCommands,
    assign_splits,
)


def speechlike(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A non-silent, speech-band test signal (two tones under a syllable-rate envelope)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f1, f2 = rng.uniform(120, 250), rng.uniform(600, 2500)
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(3, 6) * t) ** 2
    x = 0.2 * envelope * (np.sin(2 * math.pi * f1 * t) + 0.5 * np.sin(2 * math.pi * f2 * t))
    x = x.astype(np.float32)
    if channels > 1:
        return np.stack([x * (1.0 - 0.2 * c) for c in range(channels)], axis=1)
    return x


def make_librispeech(root: Path, subsets: dict[str, list[int]], per_chapter: int = 2) -> Path:
    """``root/LibriSpeech/<subset>/<speaker>/<chapter>/<spk>-<ch>-<nnnn>.flac`` + transcripts."""
    for subset, speakers in subsets.items():
        for speaker in speakers:
            chapter = speaker * 10 + 1
            folder = root / "LibriSpeech" / subset / str(speaker) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            lines = []
            for n in range(per_chapter):
                fileid = f"{speaker}-{chapter}-{n:04d}"
                sf.write(
                    folder / f"{fileid}.flac", speechlike(0.6 + 0.3 * n, 16000, speaker + n), 16000
                )
                lines.append(f"{fileid} HELLO WORLD NUMBER {n}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def make_speechcommands(root: Path, speakers: list[str], labels=("yes", "no")) -> Path:
    """``root/SpeechCommands/speech_commands_v0.02/<label>/<speaker>_nohash_<n>.wav`` + lists."""
    base = root / "SpeechCommands" / "speech_commands_v0.02"
    for i, label in enumerate(labels):
        for j, speaker in enumerate(speakers):
            (base / label).mkdir(parents=True, exist_ok=True)
            sf.write(
                base / label / f"{speaker}_nohash_0.wav", speechlike(1.0, 16000, i * 100 + j), 16000
            )
    (base / "_background_noise_").mkdir(exist_ok=True)
    sf.write(base / "_background_noise_" / "white.wav", np.zeros(1600, np.float32), 16000)
    valid = [f"{label}/{speakers[0]}_nohash_0.wav" for label in labels]
    test = [f"{label}/{speakers[1]}_nohash_0.wav" for label in labels]
    (base / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (base / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def make_mixed_folder(root: Path) -> dict[str, tuple[int, float, int, str]]:
    """Wavs at 8, 22.05 and 44.1 kHz, mono and stereo, 16- and 24-bit, in nested folders."""
    specs = {
        "a/low_8k.wav": (8000, 0.5, 1, "PCM_16"),
        "a/b/stereo_22k.wav": (22050, 0.75, 2, "PCM_16"),
        "c/deep_44k_24bit.wav": (44100, 0.4, 1, "PCM_24"),
        "c/stereo_44k_24bit.wav": (44100, 1.1, 2, "PCM_24"),
        "d/float_16k.flac": (16000, 0.3, 1, "PCM_24"),
        "d/more_22k.wav": (22050, 0.5, 1, "PCM_16"),
    }
    for i, (rel, (rate, seconds, channels, subtype)) in enumerate(specs.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, speechlike(seconds, rate, i, channels), rate, subtype=subtype)
    (root / "notes.txt").write_text("not audio")
    return specs


def make_demo(
    root: Path, speakers: dict[str, str], per_speaker: int = 3, csv_file: bool = True
) -> Path:
    """Demo layout ``root/<spk>/<spk>_<nnnn>.flac`` (+ metadata.csv with the given splits)."""
    rows = []
    for k, (speaker, split) in enumerate(speakers.items()):
        (root / speaker).mkdir(parents=True, exist_ok=True)
        for n in range(per_speaker):
            rel = f"{speaker}/{speaker}_{n:04d}.flac"
            sf.write(root / rel, speechlike(0.5 + 0.4 * n, 16000, 10 * k + n), 16000)
            rows.append(
                {"path": rel, "speaker": speaker, "voice": "v", "text": "t", "split": split}
            )
    if csv_file:
        with open(root / "metadata.csv", "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["path", "speaker", "voice", "text", "split"]
            )
            writer.writeheader()
            writer.writerows(rows)
    return root


def _speakers_by_split(source) -> dict[str, set]:
    return {s: {u.speaker for u in source.utterances(s)} for s in SPLITS}


def _assert_disjoint(by_split: dict[str, set]) -> None:
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not (by_split[a] & by_split[b]), (a, b)


def test_librispeech_official_subsets(tmp_path):
    make_librispeech(
        tmp_path, {"train-clean-100": [19, 26, 27], "dev-clean": [84], "test-clean": [121]}
    )
    source = LibriSpeech(
        tmp_path,
        subsets={"train": ["train-clean-100"], "valid": ["dev-clean"], "test": ["test-clean"]},
    )
    train = source.utterances("train")
    assert len(train) == 6 and len(source.utterances("valid")) == 2
    assert train[0].source_id == "19-191-0000"
    assert Path(train[0].path).is_file()
    assert _speakers_by_split(source) == {
        "train": {"19", "26", "27"},
        "valid": {"84"},
        "test": {"121"},
    }


def test_librispeech_pooled_split_by_speaker(tmp_path):
    speakers = list(range(100, 112))
    make_librispeech(tmp_path, {"dev-clean": speakers}, per_chapter=2)
    source = LibriSpeech(tmp_path, subsets=["dev-clean"])
    by_split = _speakers_by_split(source)
    _assert_disjoint(by_split)
    assert all(by_split[s] for s in SPLITS)
    assert set().union(*by_split.values()) == {str(s) for s in speakers}
    assert sum(len(source.utterances(s)) for s in SPLITS) == 24


def test_librispeech_missing_root_names_path_and_flag(tmp_path):
    source = LibriSpeech(tmp_path / "nowhere", subsets=["dev-clean"])
    with pytest.raises(FileNotFoundError) as info:
        source.utterances("train")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "data.speech.download=true" in message


def test_librispeech_rejects_unknown_subset(tmp_path):
    with pytest.raises(ValueError, match="dev-dirty"):
        LibriSpeech(tmp_path, subsets=["dev-dirty"])


def test_speechcommands_official_lists(tmp_path):
    make_speechcommands(tmp_path, ["aaaa1111", "bbbb2222", "cccc3333", "dddd4444"])
    source = SpeechCommands(tmp_path)
    by_split = _speakers_by_split(source)
    assert by_split == {
        "train": {"cccc3333", "dddd4444"},
        "valid": {"aaaa1111"},
        "test": {"bbbb2222"},
    }
    ids = [u.source_id for u in source.utterances("train")]
    assert "yes/cccc3333_nohash_0" in ids
    assert not any("_background_noise_" in u.path for s in SPLITS for u in source.utterances(s))


def test_speechcommands_speaker_split_and_missing(tmp_path):
    make_speechcommands(tmp_path, [f"spk{i:05d}" for i in range(8)])
    by_split = _speakers_by_split(SpeechCommands(tmp_path, split="speaker"))
    _assert_disjoint(by_split)
    assert all(by_split.values())
    with pytest.raises(FileNotFoundError, match="data.speech.download=true"):
        SpeechCommands(tmp_path / "x").utterances("train")


def test_vctk_lists_files_itself(tmp_path):
    audio = tmp_path / "VCTK-Corpus-0.92" / "wav48_silence_trimmed"
    for k, speaker in enumerate(["p225", "p226", "p227", "p228", "p229"]):
        (audio / speaker).mkdir(parents=True)
        for n in (1, 2):
            for mic in ("mic1", "mic2"):
                sf.write(
                    audio / speaker / f"{speaker}_{n:03d}_{mic}.flac",
                    speechlike(0.3, 48000, k),
                    48000,
                )
    source = VCTK(tmp_path)
    by_split = _speakers_by_split(source)
    _assert_disjoint(by_split)
    assert sum(len(v) for v in by_split.values()) == 5
    utts = [u for s in SPLITS for u in source.utterances(s)]
    assert len(utts) == 10 and all(u.path.endswith("_mic2.flac") for u in utts)
    with pytest.raises(FileNotFoundError, match="data.speech.download=true"):
        VCTK(tmp_path / "none").utterances("train")


def test_folder_source_recursive_hash_split(tmp_path):
    make_mixed_folder(tmp_path)
    source = FolderSpeech(tmp_path)
    ids = {s: {u.source_id for u in source.utterances(s)} for s in SPLITS}
    assert set().union(*ids.values()) == {
        "a/low_8k.wav",
        "a/b/stereo_22k.wav",
        "c/deep_44k_24bit.wav",
        "c/stereo_44k_24bit.wav",
        "d/float_16k.flac",
        "d/more_22k.wav",
    }
    assert all(ids.values())  # 6 files: every split gets at least one
    by_parent = _speakers_by_split(FolderSpeech(tmp_path, speaker_from_parent=True))
    _assert_disjoint(by_parent)


def test_folder_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        FolderSpeech(tmp_path / "missing").utterances("train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no audio"):
        FolderSpeech(tmp_path / "empty").utterances("train")


def test_folder_source_split_folders_are_the_splits(tmp_path):
    layout = {"train": ["s1", "s2"], "valid": ["s3"], "test": ["s4"], "heldout": ["h1"]}
    for n, (split, speakers) in enumerate(layout.items()):
        for speaker in speakers:
            (tmp_path / split / speaker).mkdir(parents=True)
            sf.write(tmp_path / split / speaker / "a.flac", speechlike(0.3, 16000, n), 16000)
    sf.write(tmp_path / "train" / "loose.wav", speechlike(0.3, 16000, 9), 16000)
    source = FolderSpeech(tmp_path)
    assert source.split_folders() == ["train", "valid", "test"]
    speakers = {s: {u.speaker for u in source.utterances(s)} for s in SPLITS}
    # Parent folder = speaker; a file directly in a split folder has none; others are ignored.
    assert speakers == {"train": {"s1", "s2", None}, "valid": {"s3"}, "test": {"s4"}}
    assert "valid/s3/a.flac" in {u.source_id for u in source.utterances("valid")}
    # The same speaker folder in two splits is a leak and is refused.
    (tmp_path / "test" / "s1").mkdir()
    sf.write(tmp_path / "test" / "s1" / "b.flac", speechlike(0.3, 16000, 5), 16000)
    with pytest.raises(ValueError, match="speaker 's1' appears in both"):
        FolderSpeech(tmp_path).utterances("train")
    # Without speakers from the parent the split folders still decide the split.
    plain = FolderSpeech(tmp_path, speaker_from_parent=False)
    assert {u.speaker for u in plain.utterances("test")} == {None}
    assert len(plain.utterances("test")) == 2


def test_demo_reads_metadata_csv(tmp_path):
    make_demo(tmp_path, {"spk01": "train", "spk02": "train", "spk03": "valid", "spk04": "test"})
    source = DemoSpeech(tmp_path)
    assert _speakers_by_split(source) == {
        "train": {"spk01", "spk02"},
        "valid": {"spk03"},
        "test": {"spk04"},
    }
    assert source.utterances("valid")[0].source_id == "spk03/spk03_0000.flac"


def test_demo_csv_leak_is_refused(tmp_path):
    make_demo(tmp_path, {"spk01": "train", "spk02": "valid"})
    text = (
        (tmp_path / "metadata.csv")
        .read_text()
        .replace("spk02_0002.flac,spk02", "spk02_0002.flac,spk01")
    )
    (tmp_path / "metadata.csv").write_text(text)
    with pytest.raises(ValueError, match="speaker 'spk01' appears in both"):
        DemoSpeech(tmp_path).utterances("train")


def test_demo_without_csv_scans_folders(tmp_path):
    make_demo(tmp_path, {f"spk{i:02d}": "train" for i in range(6)}, per_speaker=2, csv_file=False)
    by_split = _speakers_by_split(DemoSpeech(tmp_path))
    _assert_disjoint(by_split)
    assert all(by_split.values())


def test_bundled_demo_corpus_has_disjoint_speakers():
    source = DemoSpeech()
    if not source.root.is_dir():  # type: ignore[union-attr]
        pytest.skip("bundled demo corpus not generated yet")
    by_split = _speakers_by_split(source)
    _assert_disjoint(by_split)
    assert all(by_split.values())


def test_assign_splits_deterministic_and_stable():
    few = [f"s{i}" for i in range(5)]
    assert assign_splits(few) == assign_splits(list(reversed(few)))
    assert set(assign_splits(few).values()) == set(SPLITS)
    many = [f"speaker{i}" for i in range(400)]
    mapping = assign_splits(many)
    counts = {s: sum(v == s for v in mapping.values()) for s in SPLITS}
    assert 280 <= counts["train"] <= 360 and counts["valid"] >= 20 and counts["test"] >= 20
    # Pure hash split for large sets: adding keys never moves existing ones.
    bigger = assign_splits(many + [f"new{i}" for i in range(50)])
    assert all(bigger[k] == v for k, v in mapping.items())
    with pytest.raises(ValueError, match="split_fractions"):
        assign_splits(few, (0.5, 0.5))


def test_copied_torchaudio_constants_match_torchaudio():
    """speech.py copies torchaudio's private subset names and checksums; they must agree."""
    from audiodiag.data import speech

    librispeech = pytest.importorskip("torchaudio.datasets.librispeech")
    commands = pytest.importorskip("torchaudio.datasets.speechcommands")
    vctk = pytest.importorskip("torchaudio.datasets.vctk")
    if not all(hasattr(m, "_CHECKSUMS") for m in (librispeech, commands, vctk)):
        pytest.skip("this torchaudio no longer has the private constants")
    assert list(speech.LIBRISPEECH_SUBSETS) == list(librispeech._DATA_SUBSETS)
    theirs = {**librispeech._CHECKSUMS, **commands._CHECKSUMS, **vctk._CHECKSUMS}
    assert theirs == speech.CHECKSUMS
