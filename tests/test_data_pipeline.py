"""The input pipeline at scale: manifest, partial reads, noise bank and batched device mixing."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from test_data_sources import make_demo, speechlike

from audiodiag.audio import load_mono
from audiodiag.data import (
    DemoSpeech,
    LibriSpeech,
    NoiseBank,
    NoiseSource,
    NoisySpeechDataModule,
    load_manifest,
)
from audiodiag.data import manifest as manifest_module
from audiodiag.data.datamodule import AudioStore, BadFileLog

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SPLITS_4 = {"s1": "train", "s2": "train", "s3": "valid", "s4": "test"}
NOISE = {"white": 1.0, "pink": 1.0, "hum": 1.0, "babble": 1.0}


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_root(tmp_path):
    return make_demo(tmp_path / "demo", SPLITS_4, per_speaker=3)


def _datamodule(root, **kwargs):
    options = dict(
        segment_seconds=0.5,
        batch_size=4,
        val_mixtures=6,
        test_mixtures=5,
        seed=3,
        cache_audio=False,
        train_mixtures_per_epoch=8,
        noise_bank_clips=3,
        noise_bank_clip_seconds=1.0,
        gain_db_range=(-6.0, 6.0),
    )
    options.update(kwargs)
    noise = options.pop("noise", NoiseSource(NOISE))
    return NoisySpeechDataModule(DemoSpeech(root), noise, **options)


# -- manifest --------------------------------------------------------------------------------
def test_manifest_is_reused_and_rebuilt_when_stale_or_foreign(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    root.mkdir()
    paths = []
    for n, seconds in enumerate((0.5, 0.7, 0.9)):
        path = root / f"f{n}.flac"
        sf.write(path, speechlike(seconds, 16000, n), 16000)
        paths.append(str(path))
    first = load_manifest(root, paths, ["a", "a", "b"])
    assert [first[p].frames for p in paths] == [8000, 11200, 14400]
    saved = json.loads((root / manifest_module.MANIFEST_NAME).read_text())
    assert saved["files"]["f2.flac"][2:] == [14400, 16000, "b"]

    probed: list[str] = []
    real_info = manifest_module.audio_info

    def counting_info(path):
        probed.append(str(path))
        return real_info(path)

    monkeypatch.setattr(manifest_module, "audio_info", counting_info)
    assert load_manifest(root, paths) == first and probed == []  # headers not opened again
    sf.write(paths[1], speechlike(1.2, 22050, 5), 22050)  # changed file: stale entry
    again = load_manifest(root, paths)
    assert probed == [paths[1]] and again[paths[1]].frames == int(1.2 * 22050)
    # A manifest of another root (copied along with the data, or another format) is foreign.
    location = root / manifest_module.MANIFEST_NAME
    data = json.loads(location.read_text())
    data["root"] = "/somewhere/else"
    location.write_text(json.dumps(data))
    probed.clear()
    load_manifest(root, paths)
    assert sorted(probed) == sorted(paths)
    location.write_text("{not json")
    probed.clear()
    assert load_manifest(root, paths)[paths[0]].frames == 8000 and len(probed) == 3


def test_manifest_goes_to_the_user_cache_when_the_root_is_read_only(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    sf.write(root / "a.wav", speechlike(0.3, 16000, 0), 16000)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(manifest_module.os, "access", lambda path, mode: False)
    location = manifest_module.manifest_path(root)
    assert location.parent == tmp_path / "cache" / "audiodiag" / "manifests"
    load_manifest(root, [str(root / "a.wav")])
    assert location.is_file() and not (root / manifest_module.MANIFEST_NAME).exists()


def test_unreadable_headers_are_reported_not_listed(tmp_path):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.flac"
    sf.write(good, speechlike(0.3, 16000, 0), 16000)
    bad.write_bytes(b"corrupt" * 40)
    seen = []
    infos = load_manifest(tmp_path, [str(good), str(bad)], report_bad=lambda p, e: seen.append(p))
    assert list(infos) == [str(good)] and seen == [str(bad)]


# -- partial reads ---------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [16000, 22050, 44100, 8000])
def test_a_crop_reads_only_its_frames_and_equals_the_whole_decode(tmp_path, monkeypatch, rate):
    path = tmp_path / f"long_{rate}.flac"
    sf.write(path, speechlike(6.0, rate, 1), rate, subtype="PCM_24")
    store = AudioStore(16000, BadFileLog(), cache=False)
    store.set_infos(load_manifest(tmp_path, [str(path)]))
    whole = load_mono(path, 16000)
    assert store.length(str(path)) == whole.shape[-1]
    read = []
    from audiodiag.data import datamodule as dm

    real_read = dm.read_audio

    def spy(p, frame_offset=0, num_frames=-1):
        read.append(num_frames)
        return real_read(p, frame_offset=frame_offset, num_frames=num_frames)

    monkeypatch.setattr(dm, "read_audio", spy)
    for start in (0, 12345, whole.shape[-1] - 8000, whole.shape[-1] - 3000):
        piece = store.piece(str(path), start, 8000)
        expected = whole[start : start + 8000]
        assert piece is not None and piece.shape == expected.shape
        # Same samples as cropping the whole decode (resampled pieces: up to float rounding).
        assert torch.allclose(piece, expected, atol=2e-5), float((piece - expected).abs().max())
    # Each read covered the crop plus the resampler's margins, never the 6-s file.
    assert all(0 < n < 0.5 * 6.0 * rate for n in read)


def test_cached_and_uncached_stores_give_the_same_mixtures(demo_root):
    batches = {}
    for cache in (True, False):
        datamodule = _datamodule(demo_root, cache_audio=cache, noise=NoiseSource({"white": 1}))
        datamodule.setup("fit")
        batches[cache] = next(iter(datamodule.val_dataloader()))
    assert torch.equal(batches[True]["noisy"], batches[False]["noisy"])


# -- noise bank and batched mixing -----------------------------------------------------------
def test_noise_bank_is_seeded_per_split_and_epoch():
    noise = NoiseSource({"pink": 1.0, "tonal": 1.0})
    bank = NoiseBank(noise, 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    again = NoiseBank(noise, 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    train0, kinds = bank.get("train", 0)
    assert train0.shape == (4, 16000) and kinds == ["pink", "pink", "tonal", "tonal"]
    assert torch.equal(train0, again.get("train", 0)[0])  # another process, same clips
    assert not torch.equal(train0, bank.get("train", 1)[0])  # training: new clips every epoch
    assert torch.equal(bank.get("valid", 0)[0], bank.get("valid", 7)[0])  # fixed for valid
    assert not torch.equal(bank.get("valid", 0)[0], bank.get("test", 0)[0])
    rows = torch.tensor([0, 3, -1])
    views = bank.windows("train", torch.tensor([0, 0, 0]), rows, torch.tensor([10, 8000, 0]))
    assert torch.equal(views[0], train0[0, 10:8010])
    assert torch.equal(views[1], bank.get("train", 0)[0][3, 8000:16000])
    assert views[2] is None  # a folder recording's row: no noise from the bank


def test_noise_bank_builds_the_next_training_epoch_ahead_with_the_same_clips():
    noise = NoiseSource({"pink": 1.0, "tonal": 1.0})
    bank = NoiseBank(noise, 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    bank.get("train", 0)
    assert bank._ahead is not None and bank._ahead[1] == 1  # epoch 1 is under way
    ahead = bank._ahead
    train1 = bank.get("train", 1)[0]
    assert not ahead[2].is_alive() and bank._ahead[1] == 2  # taken, and epoch 2 started
    fresh = NoiseBank(noise, 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    assert torch.equal(train1, fresh._build("train", 1, None)[0])
    # Epoch 5 was not built ahead (a resumed run): built here, the same clips.
    assert torch.equal(bank.get("train", 5)[0], fresh._build("train", 5, None)[0])


def test_noise_bank_ignores_a_build_ahead_from_another_process():
    noise = NoiseSource({"pink": 1.0})
    bank = NoiseBank(noise, 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    bank.get("train", 0)
    bank.windows("train", torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    assert bank._on_device  # the copy on the "device" (here the CPU)
    # Pickled for a spawned worker: no thread and no device copy travel.
    copy = pickle.loads(pickle.dumps(bank))
    assert copy._ahead is None and copy._on_device == {}
    # Forked: the thread stayed in the parent, so its result never comes; build here instead.
    pid, epoch, thread, _ = bank._ahead
    thread.join()
    bank._ahead = (pid + 1, epoch, thread, {})
    assert torch.equal(bank.get("train", 1)[0], copy.get("train", 1)[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_waits_for_the_bank_being_built_ahead(monkeypatch):
    # A child forked while the build thread holds a lock (the allocator's, say) can deadlock.
    bank = NoiseBank(NoiseSource({"pink": 1.0}), 16000, 8000, clips=2, clip_seconds=1.0, seed=5)
    build, finished = bank._build, []

    def slow_build(split, epoch, draw_speech):
        if epoch == 1:  # the build ahead: long enough that a fork not waiting would overtake it
            time.sleep(0.3)
            finished.append(time.monotonic())
        return build(split, epoch, draw_speech)

    monkeypatch.setattr(bank, "_build", slow_build)
    bank.get("train", 0)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked = time.monotonic()
    os.waitpid(pid, 0)
    assert finished and finished[0] <= forked


@pytest.mark.parametrize("workers", [0, 2])
def test_batched_device_mixing_equals_the_per_item_path(demo_root, workers):
    per_item = _datamodule(demo_root, noise_bank=True, num_workers=workers)
    batched = _datamodule(demo_root, mix_on_device=True, num_workers=workers)
    per_item.setup("fit")
    batched.setup("fit")
    for epoch in (0, 1):
        per_item.set_epoch(epoch)
        batched.set_epoch(epoch)
        expected = list(per_item.train_dataloader())
        recipes = list(batched.train_dataloader())
        assert "noisy" not in recipes[0] and recipes[0]["clean"].shape == (4, 8000)
        got = [batched.on_after_batch_transfer(r, 0) for r in recipes]
        for want, have in zip(expected, got, strict=True):
            assert set(have) == set(want)
            for key in ("noisy", "clean", "snr_db"):
                assert torch.allclose(have[key], want[key], atol=1e-6), key
            assert torch.equal(have["length"], want["length"])
            assert have["noise_type"] == want["noise_type"]
            assert have["source_id"] == want["source_id"]
    assert batched.bad_file_summary()["mixtures"] == 16
    # Validation is mixed per item in both, and equal to the per-item path's.
    for a, b in zip(per_item.val_dataloader(), batched.val_dataloader(), strict=True):
        assert torch.equal(a["noisy"], b["noisy"])


def test_validation_mixtures_do_not_depend_on_workers_or_path(demo_root):
    runs = []
    for workers, device_mixing in ((0, False), (2, False), (2, True)):
        datamodule = _datamodule(
            demo_root, noise_bank=True, mix_on_device=device_mixing, num_workers=workers
        )
        runs.append(torch.cat([b["noisy"] for b in datamodule.test_dataloader()]))
    assert all(torch.equal(runs[0], other) for other in runs[1:])


def test_ddp_ranks_get_different_training_mixtures(demo_root):
    """Under DDP Lightning wraps the sampler; each rank's items (and mixtures) differ."""
    datamodule = _datamodule(demo_root, mix_on_device=True)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    keys = {
        rank: list(DistributedSamplerWrapper(loader.sampler, num_replicas=2, rank=rank))
        for rank in (0, 1)
    }
    assert not set(keys[0]) & set(keys[1]) and len(keys[0]) == len(keys[1]) == 4
    dataset = datamodule.datasets["train"]
    mixed = {}
    for rank, rank_keys in keys.items():
        items = [dataset[k] for k in rank_keys]
        batch = torch.utils.data.default_collate(items)
        mixed[rank] = datamodule.mix_batch(batch)["noisy"]
    assert not torch.allclose(mixed[0], mixed[1])


def test_batched_mixing_runs_in_a_lightning_fit(demo_root):
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.keys: set[str] = set()

        def training_step(self, batch, batch_idx):
            self.keys |= set(batch)
            return (self.weight * batch["noisy"].mean()).sum() + self.weight.square().sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    datamodule = _datamodule(demo_root, mix_on_device=True)
    model = Recorder()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=datamodule)
    assert model.keys == {"noisy", "clean", "length", "snr_db", "noise_type", "source_id"}


def test_device_mixing_needs_the_bank_and_auto_mixes_in_workers_on_a_cpu(demo_root):
    with pytest.raises(ValueError, match="noise_bank"):
        _datamodule(demo_root, mix_on_device=True, noise_bank=False)
    with pytest.raises(ValueError, match="accepted: true, false, auto"):
        _datamodule(demo_root, mix_on_device="gpu")
    auto = _datamodule(demo_root, mix_on_device="auto")
    assert auto.bank is not None and not auto.device_mixing()  # no trainer, or a CPU one
    batch = next(iter(auto.train_dataloader()))
    want = next(iter(_datamodule(demo_root, noise_bank=True).train_dataloader()))
    assert torch.equal(batch["noisy"], want["noisy"])


# -- scripts ---------------------------------------------------------------------------------
def test_bench_corpus_is_librispeech_shaped(tmp_path, demo_root):
    make_bench_corpus = _script("make_bench_corpus")
    demo = make_demo(tmp_path / "demo2", {**SPLITS_4, "s5": "valid"}, per_speaker=3)
    stats = make_bench_corpus.build(
        tmp_path / "bench", train_files=6, eval_files=2, files_per_chapter=4, workers=1, demo=demo
    )
    assert stats["files"] == 10
    source = LibriSpeech(tmp_path / "bench")
    utterances = {s: source.utterances(s) for s in ("train", "valid", "test")}
    assert [len(utterances[s]) for s in utterances] == [6, 2, 2]
    speakers = {s: {u.speaker for u in us} for s, us in utterances.items()}
    assert not speakers["train"] & (speakers["valid"] | speakers["test"])
    for utterance in utterances["train"]:
        assert 10.0 <= sf.info(utterance.path).duration <= 20.0
    transcripts = list((tmp_path / "bench").rglob("*.trans.txt"))
    assert transcripts and all(t.read_text().strip() for t in transcripts)


def test_bench_data_writes_json_records(tmp_path, demo_root):
    bench_data = _script("bench_data")
    out = tmp_path / "bench.json"
    argv = ["--data", "demo", "--root", str(demo_root), "--workers", "0", "--batches", "1"]
    argv += ["--repeats", "2", "--batch-size", "2", "--segment-seconds", "0.5", "--json", str(out)]
    argv += ["--noise", "white"]
    bench_data.main(argv)
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == ["item", "item-bank", "batch"]
    for record in records:
        assert record["workers"] == 0 and record["mixtures_per_s"] > 0
        assert len(record["windows_per_s"]) == 2 and record["cached"] is False
    assert np.isfinite([r["mixtures_per_s"] for r in records]).all()
    assert os.path.getsize(out) > 0


@pytest.mark.slow
@pytest.mark.parametrize("decoded", [False, True])
def test_device_mixing_under_ddp_with_two_gloo_processes(tmp_path, decoded):
    """A real 2-process DDP fit + test with the batched device step on the CPU (gloo); its
    validation and test scores equal a single-process run's on the same checkpoint. With the
    decoded copy both ranks build it at once (one waits for the other's lock) and read it."""
    import subprocess

    run_dir = tmp_path / "run"
    overrides = [
        "data.segment_seconds=0.5", "data.batch_size=4", "data.num_workers=0",
        # 5 validation/test mixtures: not a multiple of 2 ranks (padding would repeat one).
        "data.cache_audio=false", "data.train_mixtures_per_epoch=16", "data.val_mixtures=5",
        "data.test_mixtures=5", "noise=white", "data.mix_on_device=true",
        "data.noise_bank_clips=2", "trainer=ddp_cpu", "trainer.max_epochs=1",
        "trainer.max_time=null", "trainer.enable_progress_bar=false", "logger=none",
        "test_pesq_stoi=false", "test_reference=null", "model.depth=1", "model.context=2",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    if decoded:
        overrides += ["data.decoded_cache=true", f"data.decoded_cache_dir={tmp_path / 'pcm'}"]
    env = {**os.environ, "AUDIODIAG_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "audiodiag.train", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2  # 16 mixtures, batch 4, 2 ranks
    clips = json.loads((run_dir / "test_results.json").read_text())["clips"]
    assert len(clips) == 5  # every test mixture once, none repeated
    ddp = json.loads((run_dir / "metrics.json").read_text())
    single = _single_process_scores(run_dir, ddp["best_checkpoint"])
    assert single["val/si_sdri"] == pytest.approx(ddp["val/si_sdri"], abs=1e-4)
    assert single["test/si_sdri"] == pytest.approx(ddp["test/si_sdri"], abs=1e-4)
    assert (tmp_path / "pcm" / "pcm-16000.i16").is_file() == decoded


def _single_process_scores(run_dir: Path, checkpoint: str) -> dict[str, float]:
    """Validate and test ``checkpoint`` in this process, on one device, with the run's data."""
    import lightning as L
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from audiodiag.module import GainLearner

    cfg = OmegaConf.load(run_dir / "resolved_config.yaml")
    module = GainLearner.load_from_checkpoint(checkpoint, test_pesq_stoi=False)
    scores: dict[str, float] = {}
    for run in ("validate", "test"):
        trainer = L.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
            enable_model_summary=False,
        )  # fmt: skip
        scores.update(getattr(trainer, run)(module, datamodule=instantiate(cfg.data))[0])
    return scores
