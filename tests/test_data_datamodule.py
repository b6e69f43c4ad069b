"""NoisySpeechDataModule: batches, reproducibility, epochs, bad files, Hydra configs."""

from __future__ import annotations

import math

import hydra
import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from test_data_sources import make_demo, make_librispeech, make_mixed_folder

from audiodiag.audio import AudioDecodeError
from audiodiag.data import (
    DataSummaryCallback,
    DemoSpeech,
    FolderSpeech,
    LibriSpeech,
    NoiseSource,
    NoisySpeechDataModule,
    SpeechSource,
)
from audiodiag.paths import CONF_DIR

SPLITS_4 = {"s1": "train", "s2": "train", "s3": "valid", "s4": "test"}


@pytest.fixture
def demo_root(tmp_path):
    return make_demo(tmp_path / "demo", SPLITS_4, per_speaker=3)


def _datamodule(root, **kwargs):
    options = dict(segment_seconds=0.5, batch_size=4, val_mixtures=6, test_mixtures=5, seed=3)
    options.update(kwargs)
    noise = options.pop("noise", NoiseSource())
    return NoisySpeechDataModule(DemoSpeech(root), noise, **options)


def test_batch_contract(demo_root):
    datamodule = _datamodule(demo_root)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"noisy", "clean", "length", "snr_db", "noise_type", "source_id"}
    assert batch["noisy"].shape == batch["clean"].shape == (4, 8000)
    assert batch["noisy"].dtype == batch["clean"].dtype == torch.float32
    assert batch["length"].dtype == torch.int64 and batch["snr_db"].dtype == torch.float32
    assert ((batch["length"] > 0) & (batch["length"] <= 8000)).all()
    assert ((batch["snr_db"] >= -5) & (batch["snr_db"] <= 15)).all()
    assert len(batch["noise_type"]) == 4 and all(isinstance(s, str) for s in batch["source_id"])
    assert all(s.startswith(("s1/", "s2/")) for s in batch["source_id"])
    for i in range(4):
        n = int(batch["length"][i])
        clean, noise = (
            batch["clean"][i, :n].double(),
            (batch["noisy"] - batch["clean"])[i, :n].double(),
        )
        realised = 10 * math.log10(float(clean.square().sum()) / float(noise.square().sum()))
        assert abs(realised - float(batch["snr_db"][i])) < 0.1
        assert float(batch["clean"][i, n:].abs().sum()) == 0.0  # zero padding beyond the length
    assert len(datamodule.datasets["train"]) == 6  # one mixture per training utterance


def _collect(loader):
    batches = list(loader)
    return {
        key: torch.cat([b[key] for b in batches])
        if torch.is_tensor(batches[0][key])
        else sum((b[key] for b in batches), [])
        for key in batches[0]
    }


def test_validation_identical_across_runs_and_workers(demo_root):
    first = _datamodule(demo_root, num_workers=0)
    first.setup("fit")
    reference = _collect(first.val_dataloader())
    assert reference["noisy"].shape == (6, 8000)
    again = _datamodule(demo_root, num_workers=0)
    again.setup("validate")
    with_workers = _datamodule(demo_root, num_workers=2, persistent_workers=False)
    with_workers.setup("fit")
    for other in (_collect(again.val_dataloader()), _collect(with_workers.val_dataloader())):
        for key, value in reference.items():
            if torch.is_tensor(value):
                assert torch.equal(value, other[key]), key
            else:
                assert value == other[key], key
    # The same validation set for any number of epochs (iterating again changes nothing).
    assert torch.equal(_collect(first.val_dataloader())["noisy"], reference["noisy"])
    # A different seed gives different fixed mixtures.
    other_seed = _datamodule(demo_root, seed=4)
    other_seed.setup("validate")
    assert not torch.equal(_collect(other_seed.val_dataloader())["noisy"], reference["noisy"])


def test_train_mixtures_change_each_epoch_and_repeat_per_epoch(demo_root):
    datamodule = _datamodule(demo_root, train_mixtures_per_epoch=8)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epoch0 = _collect(loader)
    epoch1 = _collect(loader)  # a plain loop: next iteration is the next epoch
    assert epoch0["noisy"].shape == (8, 8000)
    assert not torch.equal(epoch0["noisy"], epoch1["noisy"])
    loader.sampler.set_epoch(0)  # what Lightning does at each epoch start
    assert torch.equal(_collect(loader)["noisy"], epoch0["noisy"])
    datamodule.set_epoch(1)
    assert torch.equal(_collect(loader)["noisy"], epoch1["noisy"])
    # A fresh run reproduces epoch 0 exactly.
    fresh = _datamodule(demo_root, train_mixtures_per_epoch=8)
    assert torch.equal(_collect(fresh.train_dataloader())["noisy"], epoch0["noisy"])


def test_babble_and_speech_come_from_the_same_split(demo_root):
    datamodule = _datamodule(demo_root, noise=NoiseSource({"babble": 1.0}, babble_talkers=(2, 3)))
    datamodule.setup()
    loaded: list[str] = []
    store = datamodule.store
    original = store.load

    def spy(path):
        loaded.append(path)
        return original(path)

    store.load = spy  # type: ignore[method-assign]
    for split, speaker in (("valid", "s3"), ("test", "s4")):
        loaded.clear()
        batch = _collect(
            getattr(datamodule, f"{ {'valid': 'val'}.get(split, split) }_dataloader")()
        )
        assert set(batch["noise_type"]) == {"babble"}
        assert loaded and all(f"/{speaker}/" in p for p in loaded), split
    loaded.clear()
    _collect(datamodule.train_dataloader())
    assert loaded and all(("/s1/" in p or "/s2/" in p) for p in loaded)


def test_mixed_rate_folder_through_datamodule(tmp_path):
    specs = make_mixed_folder(tmp_path / "wavs")
    source = FolderSpeech(tmp_path / "wavs")
    datamodule = NoisySpeechDataModule(
        source, NoiseSource({"pink": 1.0}), segment_seconds=2.0, batch_size=8, val_mixtures=None
    )
    datamodule.setup()
    for rel, (rate, seconds, _, _) in specs.items():
        waveform = datamodule.store.load(str(tmp_path / "wavs" / rel))
        assert waveform is not None and waveform.dim() == 1
        assert waveform.shape[0] == math.ceil(int(seconds * rate) * 16000 / rate), rel
        assert float(waveform.abs().max()) <= 1.0
    batch = _collect(datamodule.val_dataloader())
    assert batch["noisy"].shape[1] == 32000
    lengths = {sid: int(n) for sid, n in zip(batch["source_id"], batch["length"], strict=True)}
    for sid, n in lengths.items():
        rate, seconds = specs[sid][0], specs[sid][1]
        assert n == math.ceil(int(seconds * rate) * 16000 / rate)


def test_bad_and_silent_files_are_skipped_counted_and_finite(demo_root):
    (demo_root / "s1" / "s1_0000.flac").write_bytes(b"corrupt" * 50)
    (demo_root / "s1" / "s1_0001.flac").write_bytes(b"")
    sf.write(demo_root / "s2" / "s2_0000.flac", np.zeros(8000, np.float32), 16000)
    datamodule = _datamodule(demo_root, train_mixtures_per_epoch=12)
    with pytest.warns(UserWarning, match="skipping unreadable audio file") as record:
        datamodule.setup("fit")
    messages = " ".join(str(w.message) for w in record)
    assert "s1_0000.flac" in messages and "s1_0001.flac" in messages
    batch = _collect(datamodule.train_dataloader())
    assert batch["noisy"].shape == (12, 8000)
    assert torch.isfinite(batch["noisy"]).all() and torch.isfinite(batch["snr_db"]).all()
    assert "s1/s1_0000.flac" not in batch["source_id"]
    summary = datamodule.bad_file_summary()
    assert summary["bad_files"] == 2 and summary["mixtures"] == 12
    assert set(summary["files"]) == {
        str(demo_root / "s1" / "s1_0000.flac"),
        str(demo_root / "s1" / "s1_0001.flac"),
    }


def test_bad_file_raise_mode(demo_root):
    (demo_root / "s3" / "s3_0001.flac").write_bytes(b"corrupt" * 50)
    datamodule = _datamodule(demo_root, on_bad_file="raise")
    with pytest.raises(AudioDecodeError, match="s3_0001.flac"):
        datamodule.setup("validate")
    with pytest.raises(ValueError, match="on_bad_file='ignore'"):
        _datamodule(demo_root, on_bad_file="ignore")


def test_bad_files_counted_across_workers(demo_root):
    (demo_root / "s2" / "s2_0002.flac").write_bytes(b"corrupt" * 50)
    datamodule = _datamodule(demo_root, cache_audio=False, num_workers=2, persistent_workers=False)
    datamodule.setup("fit")
    _collect(datamodule.train_dataloader())  # only the worker processes decode (no cache)
    summary = datamodule.bad_file_summary()
    assert summary["bad_files"] == 1 and summary["mixtures"] == 6


def _data_config(name: str, **speech):
    config = OmegaConf.merge(
        {"sample_rate": 16000, "noise": OmegaConf.load(CONF_DIR / "noise" / "default.yaml")},
        {"data": OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")},
        {"data": {"speech": speech}} if speech else {},
    )
    return config.data


def test_hydra_configs_instantiate(demo_root, tmp_path):
    config = _data_config("demo", root=str(demo_root))
    config.num_workers = 0
    datamodule = hydra.utils.instantiate(config)
    assert isinstance(datamodule, NoisySpeechDataModule) and isinstance(
        datamodule.speech, DemoSpeech
    )
    assert datamodule.sample_rate == 16000 and datamodule.mixer.snr_db_range == (-5.0, 15.0)
    datamodule.setup("validate")
    assert next(iter(datamodule.val_dataloader()))["noisy"].shape == (16, 32000)

    make_librispeech(
        tmp_path / "ls", {"train-clean-100": [1, 2], "dev-clean": [3], "test-clean": [4]}
    )
    libri = hydra.utils.instantiate(_data_config("librispeech", root=str(tmp_path / "ls")))
    assert isinstance(libri.speech, LibriSpeech)
    assert {u.speaker for u in libri.speech.utterances("valid")} == {"3"}
    for name in ("speechcommands", "vctk"):
        module = hydra.utils.instantiate(_data_config(name))
        assert isinstance(module.speech, SpeechSource) and not module.speech.download
    folder = hydra.utils.instantiate(_data_config("folder", root=str(tmp_path / "ls")))
    assert isinstance(folder.speech, FolderSpeech)
    for noise_name in ("default", "synthetic", "white", "babble"):
        assert isinstance(
            hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "noise" / f"{noise_name}.yaml")),
            NoiseSource,
        )
    folder_noise = OmegaConf.load(CONF_DIR / "noise" / "folder.yaml")
    folder_noise.folder = str(tmp_path / "ls")
    assert hydra.utils.instantiate(folder_noise).types == ("folder",)


def test_short_epochs_walk_through_the_corpus(demo_root):
    datamodule = _datamodule(demo_root, train_mixtures_per_epoch=3)
    loader = datamodule.train_dataloader()
    first, second = _collect(loader)["source_id"], _collect(loader)["source_id"]
    assert len(set(first) | set(second)) == 6  # 6 training utterances, 3 per epoch


def test_lightning_sets_the_epoch(demo_root):
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.first: dict[int, torch.Tensor] = {}

        def training_step(self, batch, batch_idx):
            self.first.setdefault(self.current_epoch, batch["noisy"][0].clone())
            return (self.weight * batch["noisy"].mean()).sum() + self.weight.square().sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    (demo_root / "s1" / "s1_0002.flac").write_bytes(b"corrupt" * 50)
    datamodule = _datamodule(demo_root, train_mixtures_per_epoch=4)
    model = Recorder()
    trainer = L.Trainer(
        callbacks=[DataSummaryCallback()],
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    with pytest.warns(UserWarning, match="s1_0002.flac"):
        trainer.fit(model, datamodule=datamodule)
    assert trainer.callback_metrics["data/bad_files"] == 1.0
    loader = _datamodule(demo_root, train_mixtures_per_epoch=4).train_dataloader()
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        assert torch.equal(next(iter(loader))["noisy"][0], model.first[epoch])
    assert not torch.equal(model.first[0], model.first[1])
