"""A classical reference: decision-directed Wiener filtering with a minimum-statistics noise
estimate. Same waveform-to-waveform interface as :class:`audiodiag.model.GainNet`, nothing to
train, so every results table can show a non-learned row.

Per time-frequency bin (Ephraim & Malah 1984; Scalart & Filho 1996 for the Wiener form)::

    noise_psd   = bias * min over a sliding window of the smoothed periodogram   (Martin 2001,
                  simplified: fixed smoothing and bias instead of the optimal ones)
    post_snr_t  = |X_t|^2 / noise_psd_t
    prior_snr_t = a * G_{t-1}^2 * post_snr_{t-1} + (1 - a) * max(post_snr_t - 1, 0)
                  (decision-directed; floored at xi_min)
    G_t         = prior_snr_t / (1 + prior_snr_t)     (floored at gain_floor)

The STFT is :class:`audiodiag.features.StftFrontEnd`, so the output has exactly the input's
length and short or silent input is safe (the noise PSD is floored by ``eps``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from audiodiag.features import SpectralGainEnhancer, StftFrontEnd

__all__ = ["WienerEnhancer"]


class WienerEnhancer(SpectralGainEnhancer):
    """Decision-directed Wiener enhancer (waveform (B, T) or (T,) in, same shape out).

    Args:
        sample_rate: sample rate in Hz (sets the time constants in frames).
        n_fft, hop_length, window: STFT settings.
        window_seconds: length of the minimum-statistics search window (centred: this is an
            offline reference; 1.5 s follows Martin 2001).
        smoothing: recursive smoothing factor of the periodogram before the minimum search.
        bias: compensation of the minimum's downward bias (the minimum of smoothed noise power
            lies below its mean).
        dd_alpha: decision-directed weight of the previous frame (0.98 is the classic value).
        prior_snr_min_db: floor of the a-priori SNR (limits musical noise).
        gain_floor_db: lowest gain in dB.
        eps: power floor, keeps silence finite.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        window: str = "hann",
        window_seconds: float = 1.5,
        smoothing: float = 0.8,
        bias: float = 1.5,
        dd_alpha: float = 0.98,
        prior_snr_min_db: float = -25.0,
        gain_floor_db: float = -25.0,
        eps: float = 1e-10,
    ) -> None:
        super().__init__()
        checks = (
            ("sample_rate", sample_rate, sample_rate > 0),
            ("window_seconds", window_seconds, window_seconds > 0),
            ("smoothing", smoothing, 0.0 <= smoothing < 1.0),
            ("bias", bias, bias > 0),
            ("dd_alpha", dd_alpha, 0.0 <= dd_alpha < 1.0),
            ("gain_floor_db", gain_floor_db, gain_floor_db <= 0),
            ("eps", eps, eps > 0),
        )
        for name, value, ok in checks:
            if not ok:
                raise ValueError(f"WienerEnhancer: {name}={value} is out of range")
        self.sample_rate = int(sample_rate)
        self.stft = StftFrontEnd(n_fft, hop_length, window)
        frames = max(1, round(window_seconds * sample_rate / hop_length))
        self.search_frames = frames + 1 - frames % 2  # odd, so the window can be centred
        self.smoothing = smoothing
        self.bias = bias
        self.dd_alpha = dd_alpha
        self.prior_snr_min = 10.0 ** (prior_snr_min_db / 10.0)
        self.gain_floor = 10.0 ** (gain_floor_db / 20.0)
        self.eps = eps

    def noise_psd(self, power: Tensor) -> Tensor:
        """Minimum-statistics noise PSD (B, F, N) of a power spectrogram (B, F, N)."""
        batch, bins, count = power.shape
        smooth = torch.empty_like(power)
        state = power[..., 0]
        for t in range(count):
            state = self.smoothing * state + (1.0 - self.smoothing) * power[..., t]
            smooth[..., t] = state
        half = self.search_frames // 2
        flat = smooth.reshape(batch * bins, 1, count)
        # Pad with +inf so the edges take the minimum over the frames that exist.
        padded = F.pad(flat, (half, half), value=float("inf"))
        minimum = -F.max_pool1d(-padded, kernel_size=self.search_frames, stride=1)
        return (self.bias * minimum).reshape(batch, bins, count) + self.eps

    def gains_from_spec(self, spec: Tensor) -> Tensor:
        """Wiener gains (B, F, N) in [gain_floor, 1] for a complex spectrogram (B, F, N)."""
        power = spec.real.pow(2) + spec.imag.pow(2)
        noise = self.noise_psd(power)
        post = power / noise
        gains = torch.empty_like(power)
        previous = torch.zeros_like(power[..., 0])  # G_{t-1}^2 * post_{t-1}
        for t in range(power.shape[-1]):
            ml = (post[..., t] - 1.0).clamp(min=0.0)
            prior = (self.dd_alpha * previous + (1.0 - self.dd_alpha) * ml).clamp(
                min=self.prior_snr_min
            )
            gain = prior / (1.0 + prior)
            gains[..., t] = gain
            previous = gain.pow(2) * post[..., t]
        return gains.clamp(min=self.gain_floor, max=1.0)

    @torch.no_grad()
    def forward(self, waveform: Tensor) -> Tensor:
        """Enhance a waveform (B, T) or (T,); returns the same shape (nothing to train: no
        autograd graph through the frame loops)."""
        return super().forward(waveform)

    def extra_repr(self) -> str:
        return (
            f"search_frames={self.search_frames}, smoothing={self.smoothing}, bias={self.bias}, "
            f"dd_alpha={self.dd_alpha}, gain_floor={self.gain_floor:.4f}"
        )
