"""Folders of real noise recordings: MUSAN, DEMAND, WHAM! and DNS layouts, categories and their
weights, splits by recording, the cached manifest, partial reads, bad files, and training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

import audiodiag.data.manifest as manifest_module
import audiodiag.data.noise_folder as noise_folder_module
from audiodiag.data import SPLITS, NoiseSource
from audiodiag.data.noise_folder import NoiseFolder
from audiodiag.paths import CONF_DIR
from audiodiag.train import train

RATE = 16000


def _write(path: Path, seconds: float, rate: int, seed: int, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (int(seconds * rate), channels) if channels > 1 else (int(seconds * rate),)
    sf.write(path, (0.1 * rng.standard_normal(shape)).astype(np.float32), rate)


def make_musan(root: Path) -> Path:
    """``music/``, ``noise/``, ``speech/`` with sub-sources, long files, a corrupt file, notes."""
    for c, (category, sub) in enumerate(
        (("music", "fma"), ("noise", "free-sound"), ("speech", "librivox"))
    ):
        for i in range(7):
            _write(
                root / category / sub / f"{category}-{i:04d}.wav", 0.5 + 0.1 * i, RATE, 10 * c + i
            )
        (root / category / sub / "LICENSE").write_text("CC")
    _write(root / "music" / "fma" / "music-long.wav", 30.0, 44100, 99, channels=2)
    _write(root / "noise" / "free-sound" / "noise-long.wav", 30.0, 8000, 98)
    (root / "noise" / "free-sound" / "noise-broken.wav").write_bytes(b"RIFF not really" * 30)
    (root / "README").write_text("MUSAN-shaped test tree")
    return root


@pytest.fixture
def musan(tmp_path) -> Path:
    return make_musan(tmp_path / "musan")


def test_musan_categories_splits_and_bad_file(musan):
    reported: list[str] = []
    source = NoiseSource({"folder": 1.0}, folder=musan)
    source.setup(report_bad=lambda path, error: reported.append(path))
    folder = source.recordings
    assert reported == [str(musan / "noise" / "free-sound" / "noise-broken.wav")]
    assert list(folder.unreadable) == ["noise/free-sound/noise-broken.wav"]
    assert folder.categories() == ["music", "noise", "speech"]
    by_split = {s: {f.rel for f in folder.files(s)} for s in SPLITS}
    # No recording in two splits, and every readable recording in one.
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert not by_split["valid"] & by_split["test"]
    assert sum(len(v) for v in by_split.values()) == 3 * 7 + 2
    for split in SPLITS:  # each category is in every split (7-8 files each)
        assert folder.categories(split) == ["music", "noise", "speech"], split
    # Draws come back at the asked rate and length, labelled by category, never from another split.
    test_files = {f.path for f in folder.files("test")}
    for seed in range(20):
        noise, kind = source.sample(RATE // 2, RATE, np.random.default_rng(seed), split="test")
        assert (
            noise.shape == (RATE // 2,) and noise.dtype == np.float32 and np.isfinite(noise).all()
        )
        assert kind in ("folder/music", "folder/noise", "folder/speech")
    assert test_files and all(f.endswith(".wav") for f in test_files)


def test_category_weights_are_respected(musan):
    source = NoiseSource(
        {"folder": 1.0}, folder=musan, categories={"music": 0.3, "noise": 1.0, "speech": 0.0}
    )
    kinds = [source.sample(RATE // 8, RATE, np.random.default_rng(seed))[1] for seed in range(300)]
    music = kinds.count("folder/music") / len(kinds)
    assert "folder/speech" not in kinds
    assert abs(music - 0.3 / 1.3) < 0.08, music  # 0.23 expected; 3.3 standard errors allowed
    assert kinds.count("folder/noise") + kinds.count("folder/music") == len(kinds)


def test_long_files_are_read_crop_by_crop(musan, monkeypatch):
    reads: list[tuple[str, int, int]] = []
    real_read = noise_folder_module.read_audio

    def spy(path, frame_offset=0, num_frames=-1):
        reads.append((Path(path).name, frame_offset, num_frames))
        return real_read(path, frame_offset, num_frames)

    monkeypatch.setattr(noise_folder_module, "read_audio", spy)
    source = NoiseSource({"folder": 1.0}, folder=musan, split_folder=False)
    for seed in range(30):
        source.sample(RATE // 2, RATE, np.random.default_rng(seed))
    long_reads = [r for r in reads if r[0] == "music-long.wav"]
    assert long_reads, "the 30-s file (most of music's duration) was never drawn"
    need = math.ceil(RATE // 2 * 44100 / RATE) + 64
    assert all(n == need for _, _, n in long_reads)  # half a second, not 30 s
    assert len({offset for _, offset, _ in long_reads}) > 1  # from different places


def test_manifest_is_reused_and_refreshed(musan, monkeypatch):
    NoiseFolder(musan).setup()
    manifest = musan / manifest_module.MANIFEST_NAME
    assert manifest.is_file()
    assert len(json.loads(manifest.read_text())["files"]) == 3 * 7 + 2

    probed: list[str] = []
    real_info = manifest_module.audio_info

    def spy(path):
        probed.append(Path(path).name)
        return real_info(path)

    monkeypatch.setattr(manifest_module, "audio_info", spy)
    again = NoiseFolder(musan)
    again.setup()
    # Only the corrupt file is tried again (it may have been fixed); no readable file is opened.
    assert probed == ["noise-broken.wav"]
    assert {f.rel for s in SPLITS for f in again.files(s)} == {
        f.rel for s in SPLITS for f in NoiseFolder(musan).files(s)
    }
    probed.clear()
    changed = musan / "speech" / "librivox" / "speech-0003.wav"
    _write(changed, 2.5, RATE, 7)
    refreshed = NoiseFolder(musan)
    refreshed.setup()
    assert sorted(probed) == ["noise-broken.wav", "speech-0003.wav"]
    frames = {f.rel: f.frames for s in SPLITS for f in refreshed.files(s)}
    assert frames["speech/librivox/speech-0003.wav"] == int(2.5 * RATE)
    # A manifest written for another folder (copied along with the data) is rebuilt.
    payload = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**payload, "root": "/somewhere/else"}))
    probed.clear()
    NoiseFolder(musan).setup()
    assert len(probed) == 3 * 7 + 3


def test_manifest_goes_to_the_user_cache_when_the_folder_is_read_only(musan, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(manifest_module.os, "access", lambda path, mode: False)
    folder = NoiseFolder(musan)
    folder.setup()
    assert folder.manifest_path is not None and folder.manifest_path.is_file()
    assert (tmp_path / "cache") in folder.manifest_path.parents
    assert not (musan / manifest_module.MANIFEST_NAME).exists()


def test_empty_or_unknown_category_stops_with_one_line(tmp_path):
    root = tmp_path / "corpus"
    _write(root / "noise" / "a.wav", 1.0, RATE, 0)
    _write(root / "noise" / "b.wav", 1.0, RATE, 1)
    (root / "music").mkdir()
    (root / "music" / "broken.wav").write_bytes(b"nope" * 50)
    with pytest.raises(
        ValueError, match="category 'music' has no readable audio .*noise.categories.music=0"
    ):
        NoiseFolder(root).setup()
    NoiseFolder(root, categories={"music": 0.0}).setup()  # left out: fine
    with pytest.raises(ValueError, match=r"names \['musik'\] .* categories \['music', 'noise'\]"):
        NoiseFolder(root, categories={"musik": 1.0}).setup()
    with pytest.raises(ValueError, match="noise.split_by"):
        NoiseFolder(root, split_by="random")


def test_demand_layout_keeps_each_recording_in_one_split(tmp_path):
    root = tmp_path / "demand"
    environments = ["DKITCHEN", "DLIVING", "NPARK", "OOFFICE", "PCAFETER", "STRAFFIC", "TBUS"]
    for e, env in enumerate(environments):
        for ch in range(1, 5):
            _write(root / env / f"ch{ch:02d}.wav", 0.5, RATE, 10 * e + ch)
    folder = NoiseFolder(root)
    folder.setup()
    assert folder.categories() == sorted(environments)
    env_split: dict[str, set[str]] = {}
    for split in SPLITS:
        for f in folder.files(split):
            env_split.setdefault(f.category, set()).add(split)
    # All 16 (here 4) microphones of an environment are one recording: one split each.
    assert all(len(splits) == 1 for splits in env_split.values()), env_split
    assert {next(iter(s)) for s in env_split.values()} == set(SPLITS)


def test_wham_layout_uses_its_own_splits(tmp_path):
    root = tmp_path / "wham_noise"
    for folder_name, count in (("tr", 6), ("cv", 2), ("tt", 2)):
        for i in range(count):
            _write(root / folder_name / f"{folder_name}{i}.wav", 0.5, 8000, i + 10 * count)
    source = NoiseSource({"folder": 1.0}, folder=root)
    source.setup()
    names = {s: sorted(Path(p).name for p in source.folder_files(s)) for s in SPLITS}
    assert names == {
        "train": [f"tr{i}.wav" for i in range(6)],
        "valid": ["cv0.wav", "cv1.wav"],
        "test": ["tt0.wav", "tt1.wav"],
    }
    _, kind = source.sample(RATE // 4, RATE, np.random.default_rng(0), split="valid")
    assert kind == "folder"  # files at the top of a split folder: no category


def test_dns_flat_layout_and_globs(tmp_path):
    root = tmp_path / "noise_fullband"
    for i in range(12):
        name = f"door_{i}.wav" if i % 3 == 0 else f"fan_{i}.wav"
        _write(root / name, 0.5, 48000, i)
    plain = NoiseSource({"folder": 1.0}, folder=root)
    _, kind = plain.sample(RATE // 4, RATE, np.random.default_rng(0))
    assert kind == "folder"
    globbed = NoiseFolder(
        root, category_globs={"door": "door_*", "fan": ["fan_*"]}, categories={"door": 0.0}
    )
    globbed.setup()
    assert globbed.categories() == ["fan"]
    assert all(Path(f.path).name.startswith("fan_") for s in SPLITS for f in globbed.files(s))


def test_noise_folder_trains_end_to_end(musan, tmp_path):
    overrides = [
        "data.segment_seconds=0.5",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.cache_audio=false",
        "data.train_mixtures_per_epoch=8",
        "data.val_mixtures=4",
        "data.test_mixtures=4",
        "noise=folder",
        f"noise.folder={musan}",
        "noise.categories={music:0.3,noise:1.0,speech:0.2}",
        "trainer.fast_dev_run=true",
        "trainer.max_time=null",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "test_pesq_stoi=false",
        "test_reference=null",
        "logger=none",
        "model.depth=1",
        "model.context=2",
        f"paths.output_dir={tmp_path / 'run'}",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert math.isfinite(train(cfg))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["global_step"] == 1
