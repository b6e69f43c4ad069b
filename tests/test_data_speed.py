"""Speed perturbation of training speech (``data.speed_range``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data_datamodule import SPLITS_4, _collect, _datamodule
from test_data_sources import make_demo

from audiodiag.data.speed import SPEED_STEPS, SpeedPerturb

RATE = 16000


@pytest.fixture
def demo_root(tmp_path):
    return make_demo(tmp_path / "demo", SPLITS_4, per_speaker=3)


def _peak_hz(signal: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(signal * torch.hann_window(signal.numel())).abs()
    return float(spectrum.argmax()) * RATE / signal.numel()


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_factor_scales_pitch_and_keeps_the_segment_length(factor):
    segment = RATE
    need = SpeedPerturb.samples_needed(segment, factor)
    t = torch.arange(need) / RATE
    faster = SpeedPerturb.apply(torch.sin(2 * torch.pi * 440.0 * t), factor)
    assert abs(faster.numel() - segment) <= 1
    assert _peak_hz(faster[:segment]) == pytest.approx(440.0 * factor, abs=2.0)


def test_draws_stay_in_range_on_the_grid_and_unit_factor_is_identity():
    speed = SpeedPerturb([0.9, 1.1])
    factors = {speed.draw(np.random.default_rng(n)) for n in range(200)}
    assert factors == {0.9, 0.95, 1.0, 1.05, 1.1}
    assert all(round(f * SPEED_STEPS) == f * SPEED_STEPS for f in factors)
    piece = torch.randn(100)
    assert SpeedPerturb.apply(piece, 1.0) is piece
    assert SpeedPerturb([1.0, 1.0]).draw(np.random.default_rng(0)) == 1.0


@pytest.mark.parametrize("bad", [[1.1, 0.9], [0.2, 1.0], [1.0, 3.0], [1.0]])
def test_bad_range_names_the_key(bad):
    with pytest.raises(ValueError, match=r"data\.speed_range=.*\[0\.9, 1\.1\]"):
        SpeedPerturb(bad)


def test_only_training_speech_is_perturbed(demo_root):
    plain = _datamodule(demo_root, train_mixtures_per_epoch=8)
    fast = _datamodule(demo_root, train_mixtures_per_epoch=8, speed_range=(1.1, 1.1))
    for datamodule in (plain, fast):
        datamodule.setup("fit")
        datamodule.setup("test")
    train_plain = _collect(plain.train_dataloader())
    train_fast = _collect(fast.train_dataloader())
    assert train_fast["clean"].shape == train_plain["clean"].shape
    assert not torch.allclose(train_fast["clean"], train_plain["clean"])
    # Same utterances in the same order, only their speed differs (pitch: the test above).
    assert train_fast["source_id"] == train_plain["source_id"]
    for split in ("val", "test"):
        a = _collect(getattr(plain, f"{split}_dataloader")())
        b = _collect(getattr(fast, f"{split}_dataloader")())
        assert torch.equal(a["noisy"], b["noisy"]) and torch.equal(a["clean"], b["clean"])


def test_batched_and_item_paths_give_the_same_perturbed_mixtures(demo_root):
    options = dict(train_mixtures_per_epoch=8, speed_range=(0.9, 1.1), noise_bank=True)
    item = _datamodule(demo_root, **options)
    batched = _datamodule(demo_root, mix_on_device=True, **options)
    item.setup("fit")
    batched.setup("fit")
    expected = _collect(item.train_dataloader())
    got = [batched.mix_batch(b) for b in batched.train_dataloader()]
    noisy = torch.cat([b["noisy"] for b in got])
    assert torch.allclose(noisy, expected["noisy"], atol=1e-6)
