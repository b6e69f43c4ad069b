"""GainLearner: plain hyperparameters, loss, silent-clip guard, NaN guard, test records."""

from __future__ import annotations

import io
import math

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from audiodiag.losses import masked_magnitude_loss
from audiodiag.module import (
    DEFAULT_OPTIMIZER,
    DEFAULT_SCHEDULER,
    GainLearner,
    NonFiniteLossError,
    _WarmupCosine,
)
from audiodiag.nets import build_net
from audiodiag.paths import CONF_DIR

SR = 16000
NET = {"kind": "gainnet", "layer": "elementwise", "depth": 1, "context": 2, "seed": 0}


def _speech_like(n: int, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Amplitude-modulated harmonic tones: voiced-speech-like, with pauses."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 120 + 80 * torch.rand(n, 1, generator=gen)
    wave = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
    envelope = (torch.sin(2 * math.pi * 3 * t + torch.rand(n, 1, generator=gen) * 6) > 0).float()
    return 0.1 * wave * envelope


class _Batches(Dataset):
    """In-memory batches shaped like the DataModule's (already collated)."""

    def __init__(
        self, n_batches: int, batch: int = 4, silent_first: bool = False, seconds: float = 0.5
    ) -> None:
        gen = torch.Generator().manual_seed(1)
        self.items = []
        for b in range(n_batches):
            clean = _speech_like(batch, seconds, seed=b)
            if silent_first and b == 0:
                clean[0] = 0.0
            noisy = clean + 0.05 * torch.randn(clean.shape, generator=gen)
            self.items.append(
                {
                    "noisy": noisy,
                    "clean": clean,
                    "length": torch.full((batch,), clean.shape[-1], dtype=torch.long),
                    "snr_db": torch.full((batch,), 5.0),
                    "noise_type": ["white"] * batch,
                    "source_id": [f"clip{b}_{i}" for i in range(batch)],
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _loader(n_batches: int, **kwargs) -> DataLoader:
    return DataLoader(_Batches(n_batches, **kwargs), batch_size=None)


def _trainer(**kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def test_hparams_are_plain_and_checkpoint_loads_weights_only(tmp_path):
    cfg = OmegaConf.create({"net": NET, "optimizer": {"lr": 1e-3}})
    module = GainLearner(net=cfg.net, optimizer=cfg.optimizer, test_reference=None)
    assert type(module.hparams["net"]) is dict
    assert module.hparams["optimizer"]["lr"] == 1e-3
    trainer = _trainer(max_steps=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader(1))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    net = build_net(checkpoint["hyper_parameters"]["net"])
    state = {k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    x = _speech_like(1)
    torch.testing.assert_close(net(x), module.net(x))


def test_bad_module_settings_name_the_key():
    with pytest.raises(ValueError, match=r"scheduler\.name='step' is unknown"):
        GainLearner(net=NET, scheduler={"name": "step"})
    with pytest.raises(ValueError, match=r"optimizer\.name='lbfgs' is unknown"):
        GainLearner(net=NET, optimizer={"name": "lbfgs"})
    with pytest.raises(ValueError, match=r"loss\.l1 is unknown"):
        GainLearner(net=NET, loss={"l1": 1.0})


def test_loss_is_negative_si_sdr_and_ignores_padding():
    module = GainLearner(net=NET, loss={"si_sdr": 1.0, "spectral": 0.0})
    clean = _speech_like(2)
    noisy = clean + 0.1 * torch.randn_like(clean)
    loss, sdr = module.compute_loss(noisy, clean)
    assert loss.item() == pytest.approx(-sdr.item())
    # Garbage beyond the true length must not change the loss.
    lengths = torch.tensor([4000, 6000])
    padded_noisy, padded_clean = noisy.clone(), clean.clone()
    for i, n in enumerate(lengths):
        padded_clean[i, n:] = 0.0
        padded_noisy[i, n:] = 0.0
    reference, _ = module.compute_loss(padded_noisy, padded_clean, lengths)
    padded_noisy[:, 6000:] = 5.0
    padded_noisy[0, 4000:] = 5.0
    masked, _ = module.compute_loss(padded_noisy, padded_clean, lengths)
    assert masked.item() == pytest.approx(reference.item(), abs=1e-4)


def test_masked_magnitude_term_adds_to_the_loss_and_trains():
    weight = 50.0
    plain = GainLearner(net=NET, loss={"masked_magnitude": 0.0})
    module = GainLearner(net=NET, loss={"masked_magnitude": weight})
    clean = _speech_like(2)
    noisy = clean + 0.1 * torch.randn_like(clean)
    enhanced, masked = module.enhance(noisy)
    assert masked is not None and plain.enhance(noisy)[1] is None
    torch.testing.assert_close(enhanced, plain.net(noisy))
    spec, gains = masked
    loss, sdr = module.compute_loss(enhanced, clean, masked=masked)
    term = masked_magnitude_loss(gains, spec, module.net.stft.analysis(clean))
    assert loss.item() == pytest.approx(-sdr.item() + weight * term.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in module.net.parameters())


def test_silent_clean_clip_leaves_no_nan_in_validation_means():
    module = GainLearner(net=NET)
    metrics = _trainer().validate(module, dataloaders=_loader(2, silent_first=True))[0]
    assert math.isfinite(metrics["val/si_sdri"]) and math.isfinite(metrics["val/si_sdr"])
    # With identity-like initial gains, the improvement is small but defined.
    assert -10.0 < metrics["val/si_sdri"] < 10.0


def test_nan_loss_stops_with_step_and_batch_index():
    module = GainLearner(net=NET)
    original = module.enhance
    calls = {"n": 0}

    def poisoned(waveform):
        calls["n"] += 1
        out, masked = original(waveform)
        return (out * float("nan") if calls["n"] == 3 else out), masked

    module.enhance = poisoned  # type: ignore[method-assign]
    trainer = _trainer(max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"global step 2, epoch 0, batch index 2"):
        trainer.fit(module, train_dataloaders=_loader(4))


def test_training_reduces_loss_on_a_tiny_set():
    torch.manual_seed(0)
    module = GainLearner(net=NET, optimizer={"lr": 1e-2}, scheduler={"name": "none"})
    loader = _loader(2)
    before = _trainer().validate(module, dataloaders=loader, verbose=False)[0]["val/loss"]
    _trainer(max_epochs=8, num_sanity_val_steps=0, limit_val_batches=0).fit(module, loader)
    after = _trainer().validate(module, dataloaders=loader, verbose=False)[0]["val/loss"]
    assert after < before - 1.0, (before, after)


def test_test_step_records_and_pesq_stoi_by_group():
    module = GainLearner(net=NET, test_pesq_stoi=True, test_reference=None)
    results = _trainer().test(
        module, dataloaders=_loader(1, silent_first=True, seconds=2.0), verbose=False
    )[0]
    assert math.isfinite(results["test/si_sdri"])
    records = module.test_records
    assert len(records) == 4 and records[0]["silent"] and not records[1]["silent"]
    if "pesq" in records[1]:  # pesq/pystoi installed
        assert 1.0 <= records[1]["pesq"]["model"] <= 4.7
        assert 0.0 < records[1]["stoi"]["noisy"] <= 1.0
        assert math.isfinite(results["test/pesq"])


def test_warmup_cosine_schedule():
    schedule = _WarmupCosine(warmup=10, total=110, floor=0.1)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)


def test_hparams_survive_torch_save_weights_only():
    module = GainLearner(net=OmegaConf.create(NET), loss=OmegaConf.create({"spectral": 0.5}))
    buffer = io.BytesIO()
    torch.save({"hyper_parameters": dict(module.hparams)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["hyper_parameters"]["loss"] == {
        "si_sdr": 1.0,
        "spectral": 0.5,
        "masked_magnitude": 20.0,
    }


def test_per_bin_weights_read_every_diagonal_layer_in_the_shared_layout():
    from audiodiag.callbacks import per_bin_weights
    from audiodiag.model import GainNet

    dense = per_bin_weights(GainNet(layer="mask", bandwidth=1, depth=1))
    vector = per_bin_weights(GainNet(layer="diag", bandwidth=1, depth=1))
    assert dense.keys() == vector.keys() and len(dense) == GainNet(depth=1).num_diagonal_layers
    for name, bands in dense.items():
        assert bands.shape == (3, 257)
        torch.testing.assert_close(bands, vector[name])


def test_defaults_are_those_of_train_yaml():
    # One place for every default: conf/train.yaml is what users see; the module's fallbacks
    # (used when it is built without a config) must train the same way.
    cfg = OmegaConf.load(CONF_DIR / "train.yaml")
    assert OmegaConf.to_container(cfg.optimizer) == DEFAULT_OPTIMIZER
    assert OmegaConf.to_container(cfg.scheduler) == DEFAULT_SCHEDULER
    module = GainLearner(net=NET)
    assert module.hparams["optimizer"]["lr"] == cfg.optimizer.lr
