"""WienerEnhancer: interface, robustness, and a real improvement on a noisy test signal."""

from __future__ import annotations

import pytest
import torch

from audiodiag.losses import si_sdr
from audiodiag.wiener import WienerEnhancer


def _speech_like(seconds: float = 3.0, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Harmonic bursts with gaps: on/off like speech, a few formant-ish partials."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    voiced = sum((1.0 / k) * torch.sin(k * phase) for k in range(1, 12))
    gate = (torch.sin(2 * torch.pi * 2.1 * t + torch.rand(1, generator=g) * 6) > -0.2).float()
    gate = torch.nn.functional.conv1d(gate.view(1, 1, -1), torch.ones(1, 1, 161) / 161, padding=80)
    return (voiced * gate.flatten() * 0.1).unsqueeze(0)


def test_improves_si_sdr_on_white_noise() -> None:
    clean = _speech_like()
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    noise = noise * clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()  # 0 dB SNR
    noisy = clean + noise
    enhanced = WienerEnhancer()(noisy)
    gain_db = (si_sdr(enhanced, clean) - si_sdr(noisy, clean)).item()
    assert gain_db > 3.0, gain_db


@pytest.mark.parametrize("shape", [(1,), (100,), (2, 513), (16000,)])
def test_length_shape_and_silence(shape: tuple[int, ...]) -> None:
    wiener = WienerEnhancer()
    for x in (torch.randn(shape) * 0.1, torch.zeros(shape)):
        y = wiener(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert wiener(torch.zeros(shape)).abs().max() == 0


def test_gains_bounded_and_nothing_to_train() -> None:
    wiener = WienerEnhancer(gain_floor_db=-20.0)
    assert sum(p.numel() for p in wiener.parameters()) == 0
    gains = wiener.gains(torch.randn(2, 8000))
    assert gains.shape == (2, 257, 66)
    assert gains.min() >= 0.1 - 1e-6 and gains.max() <= 1.0
    with pytest.raises(ValueError, match="dd_alpha"):
        WienerEnhancer(dd_alpha=1.5)
    with pytest.raises(ValueError, match="batch, time"):
        wiener(torch.zeros(1, 1, 10))
