"""Training losses and the SI-SDR metric.

SI-SDR is always computed on **zero-mean** signals (torchmetrics'
``scale_invariant_signal_distortion_ratio(..., zero_mean=True)``, Asteroid's convention); the
loss, the validation metrics and the evaluate command all use this one definition (through
:mod:`audiodiag.metrics`; ``tests/test_metrics.py`` holds it equal to torchmetrics').
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "si_sdr",
    "neg_si_sdr_loss",
    "spectral_magnitude_loss",
    "fourth_root_magnitude",
    "masked_magnitude_loss",
]


def _check_pair(estimate: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if estimate.shape != target.shape:
        raise ValueError(
            f"{name}: estimate shape {tuple(estimate.shape)} != target shape "
            f"{tuple(target.shape)}; pass waveforms of the same shape (..., time)"
        )
    if estimate.dim() == 0:
        raise ValueError(f"{name}: expected waveforms shaped (..., time), got a scalar")
    return estimate, target


def si_sdr(estimate: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant signal-to-distortion ratio in dB, on zero-mean signals.

    Args:
        estimate: (..., time) enhanced waveforms.
        target: (..., time) reference waveforms, same shape.
        eps: stabiliser added to both energies, so silent clips give a finite value
            (a silent target and any estimate give about 0 dB or below, never NaN/inf).

    Returns:
        (...) SI-SDR per signal, e.g. (batch,) for (batch, time) input.
    """
    estimate, target = _check_pair(estimate, target, "si_sdr")
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    # Same formula as torchmetrics, so the two agree to float precision.
    alpha = ((estimate * target).sum(dim=-1, keepdim=True) + eps) / (
        target.pow(2).sum(dim=-1, keepdim=True) + eps
    )
    projection = alpha * target
    noise = estimate - projection
    ratio = (projection.pow(2).sum(dim=-1) + eps) / (noise.pow(2).sum(dim=-1) + eps)
    return 10.0 * torch.log10(ratio)


def neg_si_sdr_loss(estimate: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Negative mean SI-SDR (dB) over the batch: the loss to minimise."""
    return -si_sdr(estimate, target, eps=eps).mean()


def spectral_magnitude_loss(
    estimate: Tensor,
    target: Tensor,
    fft_sizes: Sequence[int] = (256, 512, 1024),
    compress: float = 0.3,
    eps: float = 1e-8,
) -> Tensor:
    """Multi-resolution L1 distance between power-law compressed STFT magnitudes.

    ``|X|**compress`` (0.3 is common in speech enhancement) weighs quiet time-frequency regions
    more than a plain magnitude loss without the instability of a log at zero. For each FFT size
    the hop is a quarter of it and the window a Hann window; the losses are averaged.

    Args:
        estimate, target: (..., time) waveforms of the same shape.
        fft_sizes: FFT sizes (each > 1); input shorter than a size is zero-padded for it.
        compress: magnitude exponent in (0, 1].
        eps: added before the power so gradients stay finite at zero magnitude.

    Returns:
        scalar loss.
    """
    estimate, target = _check_pair(estimate, target, "spectral_magnitude_loss")
    if not fft_sizes:
        raise ValueError("spectral_magnitude_loss: fft_sizes is empty; give e.g. (256, 512, 1024)")
    if not 0.0 < compress <= 1.0:
        raise ValueError(f"spectral_magnitude_loss: compress={compress} must be in (0, 1]")
    length = estimate.shape[-1]
    est = estimate.reshape(-1, length)
    tgt = target.reshape(-1, length)
    total = est.new_zeros(())
    for n_fft in fft_sizes:
        if n_fft < 2:
            raise ValueError(f"spectral_magnitude_loss: fft size {n_fft} must be >= 2")
        if length < n_fft:
            pad = n_fft - length
            e, t = torch.nn.functional.pad(est, (0, pad)), torch.nn.functional.pad(tgt, (0, pad))
        else:
            e, t = est, tgt
        window = torch.hann_window(n_fft, device=est.device, dtype=est.dtype)
        hop = n_fft // 4
        spec_e = torch.stft(e, n_fft, hop, window=window, return_complex=True)
        spec_t = torch.stft(t, n_fft, hop, window=window, return_complex=True)
        mag_e = (spec_e.abs() + eps).pow(compress)
        mag_t = (spec_t.abs() + eps).pow(compress)
        total = total + (mag_e - mag_t).abs().mean()
    return total / len(fft_sizes)


def fourth_root_magnitude(spec: Tensor, eps: float = 1e-8) -> Tensor:
    """``|X| ** (1/4)`` of a complex spectrum, as ``(|X|^2 + eps^2) ** (1/8)`` by three square
    roots: no complex ``abs`` (whose gradient is undefined at zero) and no fractional ``pow``
    (on a CPU about ten times the cost of the square roots)."""
    return (spec.real.square() + spec.imag.square() + eps * eps).sqrt().sqrt().sqrt()


def masked_magnitude_loss(gains: Tensor, noisy_spec: Tensor, clean_spec: Tensor) -> Tensor:
    """L1 distance between compressed magnitudes of the masked spectrum and the clean one.

    Magnitudes are compressed by a fourth root (the power-law compression that tracks loudness,
    like :func:`spectral_magnitude_loss`'s 0.3): ``|gains * X| ** (1/4) = gains ** (1/4) *
    |X| ** (1/4)``, on the model's own STFT frames. Unlike :func:`spectral_magnitude_loss` it
    transforms no estimate (no STFT of the output and no backward through one), so it costs a few
    elementwise passes over the gains. It scores the masked spectrum, not the STFT of the
    resynthesised output (the two differ where the gains change faster than the frames
    overlap); SI-SDR beside it scores the waveform.

    Args:
        gains: (B, F, N) real gains in (0, 1].
        noisy_spec, clean_spec: (B, F, N) complex STFTs of the input and of the reference,
            same front end.
    """
    if not gains.shape == noisy_spec.shape == clean_spec.shape:
        raise ValueError(
            f"masked_magnitude_loss: gains {tuple(gains.shape)}, noisy {tuple(noisy_spec.shape)} "
            f"and clean {tuple(clean_spec.shape)} spectra must have one shape (B, F, N)"
        )
    # On (B, N, F) views: torch.stft's memory order, in which GainNet's gains are laid out too.
    # The mean's gradient comes back in the logical order, and in (B, F, N) order it would reach
    # the network transposed, making each of its backward ops several times slower.
    gains, noisy_spec, clean_spec = (t.transpose(-1, -2) for t in (gains, noisy_spec, clean_spec))
    with torch.no_grad():
        noisy = fourth_root_magnitude(noisy_spec)
        clean = fourth_root_magnitude(clean_spec)
    return (gains.sqrt().sqrt() * noisy - clean).abs().mean()
