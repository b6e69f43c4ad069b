"""SI-SDR and spectral losses: numbers against torchmetrics, invariances, silent input."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from audiodiag.features import StftFrontEnd
from audiodiag.losses import (
    fourth_root_magnitude,
    masked_magnitude_loss,
    neg_si_sdr_loss,
    si_sdr,
    spectral_magnitude_loss,
)


def _pair(batch: int = 4, length: int = 8000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, length, generator=g) + 0.3  # non-zero mean on purpose
    estimate = 0.7 * target + 0.5 * torch.randn(batch, length, generator=g) - 0.2
    return estimate, target


def test_si_sdr_matches_torchmetrics_zero_mean() -> None:
    estimate, target = _pair()
    ours = si_sdr(estimate, target, eps=torch.finfo(torch.float32).eps)
    ref = scale_invariant_signal_distortion_ratio(estimate, target, zero_mean=True)
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)
    # The default eps (1e-8) differs only in the 6th digit.
    torch.testing.assert_close(si_sdr(estimate, target), ref, atol=1e-3, rtol=0)
    # ...and not with zero_mean=False: the offset matters, so the choice is real.
    ref_raw = scale_invariant_signal_distortion_ratio(estimate, target, zero_mean=False)
    assert (ours - ref_raw).abs().max() > 0.05


def test_si_sdr_known_value_and_invariances() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randn(1, 16000, generator=g)
    target = target - target.mean()
    noise = torch.randn(1, 16000, generator=g)
    noise = noise - noise.mean()
    # Make the noise orthogonal to the target, scaled to exactly 10 dB below it.
    noise = noise - (noise * target).sum() / (target * target).sum() * target
    noise = noise * (target.pow(2).sum() / noise.pow(2).sum() / 10.0).sqrt()
    value = si_sdr(target + noise, target)
    assert value.item() == pytest.approx(10.0, abs=1e-3)
    # Scale and offset invariance.
    assert si_sdr(3.0 * (target + noise) + 0.5, target).item() == pytest.approx(10.0, abs=1e-3)
    assert si_sdr(target, target).item() > 60


def test_si_sdr_silent_and_shapes() -> None:
    silent = torch.zeros(2, 4000)
    speech = torch.randn(2, 4000)
    for est, tgt in ((silent, silent), (speech, silent), (silent, speech)):
        assert torch.isfinite(si_sdr(est, tgt)).all()
    assert si_sdr(torch.randn(3, 2, 100), torch.randn(3, 2, 100)).shape == (3, 2)
    with pytest.raises(ValueError, match="shape"):
        si_sdr(torch.randn(2, 100), torch.randn(2, 101))


def test_neg_si_sdr_loss_is_negative_mean_with_finite_gradient() -> None:
    estimate, target = _pair()
    loss = neg_si_sdr_loss(estimate, target)
    assert loss.item() == pytest.approx(-si_sdr(estimate, target).mean().item(), abs=1e-6)
    silent = torch.zeros(2, 1000, requires_grad=True)
    neg_si_sdr_loss(silent, torch.zeros(2, 1000)).backward()
    assert silent.grad is not None and torch.isfinite(silent.grad).all()


def test_spectral_magnitude_loss() -> None:
    estimate, target = _pair(batch=2, length=4000)
    assert spectral_magnitude_loss(target, target).item() == pytest.approx(0.0, abs=1e-7)
    far = spectral_magnitude_loss(estimate, target).item()
    near = spectral_magnitude_loss(0.5 * estimate + 0.5 * target, target).item()
    assert 0 < near < far
    # Hand-computed single resolution: L1 of |STFT|^0.3 with a Hann window and hop n/4.
    win = torch.hann_window(256)
    spec = lambda x: torch.stft(x, 256, 64, window=win, return_complex=True).abs()  # noqa: E731
    manual = ((spec(estimate) + 1e-8) ** 0.3 - (spec(target) + 1e-8) ** 0.3).abs().mean()
    single = spectral_magnitude_loss(estimate, target, fft_sizes=(256,))
    assert single.item() == pytest.approx(manual.item(), rel=1e-5)
    # Shorter than the largest FFT, and silent: finite values and gradients.
    short = torch.zeros(1, 300, requires_grad=True)
    loss = spectral_magnitude_loss(short, torch.zeros(1, 300))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(short.grad).all()
    with pytest.raises(ValueError, match="compress"):
        spectral_magnitude_loss(target, target, compress=0.0)


def test_fourth_root_magnitude_matches_abs_and_is_finite_at_zero() -> None:
    spec = torch.complex(torch.randn(3, 9, 5), torch.randn(3, 9, 5))
    torch.testing.assert_close(
        fourth_root_magnitude(spec), spec.abs().pow(0.25), rtol=1e-5, atol=1e-6
    )
    assert float(fourth_root_magnitude(torch.zeros(2, dtype=torch.complex64)).max()) < 1e-2


def test_masked_magnitude_loss_scores_the_masked_spectrum() -> None:
    front = StftFrontEnd(512, 128)
    estimate, target = _pair(batch=2, length=8000)
    noisy_spec, clean_spec = front.analysis(estimate), front.analysis(target)
    gains = torch.rand(noisy_spec.shape, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    gains.requires_grad_(True)
    loss = masked_magnitude_loss(gains, noisy_spec, clean_spec)
    # |g X| ** (1/4) against |S| ** (1/4), written out with complex abs.
    explicit = ((gains * noisy_spec).abs().pow(0.25) - clean_spec.abs().pow(0.25)).abs().mean()
    torch.testing.assert_close(loss, explicit, rtol=1e-4, atol=1e-6)
    loss.backward()
    assert gains.grad is not None and bool(torch.isfinite(gains.grad).all())
    # Gains that turn the noisy magnitudes into the clean ones leave nothing to learn.
    exact = clean_spec.abs() / noisy_spec.abs().clamp_min(1e-12)
    assert masked_magnitude_loss(exact, noisy_spec, clean_spec) < 1e-3 * loss
    with pytest.raises(ValueError, match="must have one shape"):
        masked_magnitude_loss(gains[..., 1:], noisy_spec, clean_spec)


def test_masked_magnitude_gradient_keeps_the_gains_memory_layout() -> None:
    # GainNet's gains are a transposed view of a (B, N, F) tensor; a gradient that came back in
    # (B, F, N) order would make every backward op of the network work on strided memory.
    front = StftFrontEnd(512, 128)
    estimate, target = _pair(batch=2, length=8000)
    noisy_spec, clean_spec = front.analysis(estimate), front.analysis(target)
    logits = torch.rand(noisy_spec.transpose(1, 2).shape, requires_grad=True)
    time_major = logits * 1.0
    seen: list[torch.Tensor] = []
    time_major.register_hook(seen.append)
    masked_magnitude_loss(
        torch.sigmoid(time_major).transpose(1, 2), noisy_spec, clean_spec
    ).backward()
    assert seen[0].is_contiguous()
