"""STFT front end and level-invariant per-bin features for :class:`audiodiag.model.GainNet`.

Framing (used in both causal and offline mode, so that streaming can reproduce it exactly)::

    padded = [ (n_fft - hop) zeros | waveform (T samples) | zeros up to the last frame's end ]
    frame t covers padded[t*hop : t*hop + n_fft]  ==  waveform[t*hop - (n_fft - hop) : (t+1)*hop]
    frames  N = ceil((n_fft - hop + T) / hop)   (every frame that holds at least one input sample)

Frame ``t`` needs input only up to sample ``(t+1)*hop``, so analysis is causal. Synthesis is a
weighted overlap-add (``irfft`` * window, summed, divided by the window-squared envelope), done by
hand rather than with ``torch.istft`` because the envelope of the zero-padded edges is zero there
and ``torch.istft(center=False)`` refuses it. Every input sample is covered by all frames that
overlap it, so the envelope over the output is the steady-state one and ``istft(stft(x)) == x``
to float precision, for any length >= 1 (also shorter than one frame).

Features, per bin (frequency bins never mix):

* ``log_power - mean``: log power minus its mean over time (offline: the whole clip; causal: a
  sliding-window mean over the last ``norm_window_s`` seconds, a cumulative mean until the window
  fills, computed from a float64 cumulative sum);
* ``log_power - floor``: log power minus a noise-floor track, the running minimum of the
  (4-frame smoothed) log power allowed to rise by ``floor_rise_db_per_s``
  (``floor_t = min_{s<=t} (p_s + c (t - s))``), an a-posteriori SNR in the spirit of minimum
  statistics; offline mode uses the minimum over the whole clip.

Both are unchanged when the input is scaled by any gain (level invariance), up to the ``eps``
that keeps silence finite.
"""

# The STFT-gain base reads ``self.stft`` through nn.Module.__getattr__ (typed "Tensor | Module"
# for mypy); "# type:" comments cannot be used there: TorchScript parses them as signatures.
# mypy: disable-error-code="union-attr,operator"
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["StftFrontEnd", "PerBinFeatures", "SpectralGainEnhancer", "num_frames"]


def num_frames(num_samples: int, n_fft: int, hop_length: int) -> int:
    """Number of frames the front end makes for ``num_samples`` input samples (0 for 0)."""
    if num_samples <= 0:
        return 0
    return -(-(n_fft - hop_length + num_samples) // hop_length)


class StftFrontEnd(nn.Module):
    """Causal-framed STFT analysis and weighted overlap-add synthesis.

    Args:
        n_fft: FFT size (>= 2); frequency bins = n_fft // 2 + 1.
        hop_length: hop in samples, 1 <= hop_length <= n_fft.
        window: ``"hann"`` (periodic), ``"hamming"`` or ``"sqrt_hann"``.
    """

    def __init__(self, n_fft: int = 512, hop_length: int = 128, window: str = "hann") -> None:
        super().__init__()
        if n_fft < 2:
            raise ValueError(f"n_fft={n_fft} must be >= 2")
        if not 1 <= hop_length <= n_fft:
            raise ValueError(f"hop_length={hop_length} must be in [1, n_fft={n_fft}]")
        windows = {
            "hann": lambda: torch.hann_window(n_fft),
            "hamming": lambda: torch.hamming_window(n_fft),
            "sqrt_hann": lambda: torch.hann_window(n_fft).sqrt(),
        }
        if window not in windows:
            raise ValueError(f"window={window!r} is not one of {sorted(windows)}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window_name = window
        win = windows[window]()
        # Window-squared envelope of a fully overlapped sample; periodic with period hop_length.
        envelope = torch.zeros(hop_length, dtype=torch.float64)
        w2 = win.double().pow(2)
        for start in range(0, n_fft, hop_length):
            chunk = w2[start : start + hop_length]
            envelope[: chunk.numel()] += chunk
        if float(envelope.min()) < 1e-6:
            raise ValueError(
                f"window={window!r} with n_fft={n_fft}, hop_length={hop_length} violates the "
                "overlap-add condition (NOLA); use a smaller hop_length"
            )
        self.register_buffer("window", win, persistent=False)
        self.register_buffer("envelope", envelope.float(), persistent=False)

    @property
    def num_bins(self) -> int:
        """Frequency bins per frame (n_fft // 2 + 1)."""
        return self.n_fft // 2 + 1

    @property
    def left_pad(self) -> int:
        """Zeros before the first sample (n_fft - hop_length)."""
        return self.n_fft - self.hop_length

    def analysis(self, waveform: Tensor) -> Tensor:
        """(B, T) float -> (B, freq, frames) complex STFT with the causal framing above."""
        length = waveform.shape[-1]
        frames = num_frames(length, self.n_fft, self.hop_length)
        padded_length = (frames - 1) * self.hop_length + self.n_fft
        right = padded_length - self.left_pad - length
        padded = F.pad(waveform, (self.left_pad, right))
        return self.frames_to_spec(padded)

    def frames_to_spec(self, padded: Tensor) -> Tensor:
        """STFT of an already padded (B, (N-1)*hop + n_fft) signal -> (B, freq, N) complex."""
        # torchaudio's Spectrogram(center=False, power=None) is this same call; calling it
        # directly keeps one window buffer shared with synthesis and the streaming core, and
        # the checkpoints' state_dict layout (Spectrogram would register a second window).
        return torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,  # type: ignore[arg-type]
            center=False,
            return_complex=True,
        )

    def synthesis_frames(self, spec: Tensor) -> Tensor:
        """(B, freq, N) complex -> (B, N, n_fft) windowed time frames, before overlap-add."""
        frames = torch.fft.irfft(spec.transpose(1, 2), n=self.n_fft, dim=-1)
        return frames * self.window

    def overlap_add(self, frames: Tensor) -> Tensor:
        """(B, N, n_fft) windowed frames -> (B, (N-1)*hop + n_fft) summed signal (no envelope)."""
        batch, count, n_fft = frames.shape
        total = (count - 1) * self.hop_length + n_fft
        out = F.fold(
            frames.transpose(1, 2),
            output_size=(1, total),
            kernel_size=(1, n_fft),
            stride=(1, self.hop_length),
        )
        return out.reshape(batch, total)

    def synthesis(self, spec: Tensor, length: int) -> Tensor:
        """Inverse of :meth:`analysis`: (B, freq, N) complex -> (B, length) waveform."""
        summed = self.overlap_add(self.synthesis_frames(spec))
        out = summed[:, self.left_pad : self.left_pad + length]
        return out / self.envelope_for(self.left_pad, length)

    def envelope_for(self, start: int, length: int) -> Tensor:
        """Window-squared envelope for padded positions start .. start+length-1."""
        reps = (start % self.hop_length + length) // self.hop_length + 1
        tiled = self.envelope.repeat(reps)  # type: ignore[operator]
        offset = start % self.hop_length
        return tiled[offset : offset + length]

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, hop_length={self.hop_length}, window={self.window_name!r}"


class PerBinFeatures(nn.Module):
    """Level-invariant per-bin features of a complex spectrogram; see the module docstring.

    Args:
        frame_rate: frames per second (sample_rate / hop_length).
        causal: running statistics (True) or whole-clip statistics (False).
        norm_window_s: length of the causal running mean of log power (a sliding window; it is a
            cumulative mean until the window is full).
        floor_rise_db_per_s: how fast the noise-floor track may rise.
        smoothing_frames: causal moving average of power before the floor track (frames).
        skip_frames: leading frames kept out of the floor track (the causal framing's first
            ``n_fft / hop - 1`` frames are partly zero padding and would pin the floor too low).
        eps: power floor that keeps log(0) finite on digital silence.

    Everything is loop-free (cumulative sums and minima), so the model exports with a dynamic
    length. The causal path is :meth:`causal_chunk`, which takes and returns an explicit state so
    that streaming (frames in chunks) computes what offline processing computes.
    """

    num_features = 2
    # Tensors in the causal state (see :meth:`initial_state`); streaming slices states by it.
    # A TorchScript constant, so scripted streaming code can read it too.
    __constants__ = ["state_size"]
    state_size = 4

    def __init__(
        self,
        frame_rate: float,
        causal: bool = True,
        norm_window_s: float = 2.0,
        floor_rise_db_per_s: float = 3.0,
        smoothing_frames: int = 4,
        skip_frames: int = 3,
        eps: float = 1e-10,
    ) -> None:
        super().__init__()
        for name, value in (
            ("frame_rate", frame_rate),
            ("norm_window_s", norm_window_s),
            ("floor_rise_db_per_s", floor_rise_db_per_s),
            ("eps", eps),
        ):
            if not value > 0:
                raise ValueError(f"{name}={value} must be > 0")
        if smoothing_frames < 1:
            raise ValueError(f"smoothing_frames={smoothing_frames} must be >= 1")
        if skip_frames < 0:
            raise ValueError(f"skip_frames={skip_frames} must be >= 0")
        self.causal = causal
        self.frame_rate = float(frame_rate)
        self.norm_window_s = float(norm_window_s)
        self.norm_frames = max(1, round(norm_window_s * frame_rate))
        self.floor_rise_db_per_s = float(floor_rise_db_per_s)
        # dB/s -> natural-log units per frame.
        self.rise = floor_rise_db_per_s / (10.0 * math.log10(math.e)) / frame_rate
        self.smoothing_frames = smoothing_frames
        self.skip_frames = skip_frames
        self.eps = eps

    def initial_state(self, batch: int, bins: int, like: Tensor) -> list[Tensor]:
        """Causal state before the first frame: [cumulative-sum history (B,F,W) float64,
        power history (B,F,S-1), floor minimum (B,F), frame index (1,)]."""
        return [
            like.new_zeros(batch, bins, self.norm_frames, dtype=torch.float64),
            like.new_zeros(batch, bins, self.smoothing_frames - 1),
            like.new_full((batch, bins), float("inf")),
            like.new_zeros(1),
        ]

    def _smooth(self, power: Tensor, history: Tensor, index: Tensor) -> Tensor:
        """Causal mean of power over the last ``smoothing_frames`` frames that exist."""
        count = power.shape[-1]
        k = self.smoothing_frames
        padded = torch.cat([history, power], dim=-1)
        total = padded[..., k - 1 :]
        for lag in range(1, k):
            total = total + padded[..., k - 1 - lag : k - 1 - lag + count]
        return total / (index + 1.0).clamp(max=float(k))

    def causal_chunk(self, spec: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Causal features of consecutive frames (B, F, n) continuing from ``state``.

        Returns (features (B, n, 2, F), new state). Chunks fed in order give the same result as
        one call on all frames (to float64 rounding of a cumulative sum).
        """
        power = spec.real.pow(2) + spec.imag.pow(2)
        logp = torch.log(power + self.eps)
        count = power.shape[-1]
        index = state[3] + torch.arange(count, device=power.device, dtype=power.dtype)
        # Sliding-window mean from a float64 cumulative sum: C_t - C_{t-W} over min(t+1, W).
        window = self.norm_frames
        sums = state[0][..., -1:] + torch.cumsum(logp.double(), dim=-1)
        history = torch.cat([state[0], sums], dim=-1)
        denominator = (index + 1.0).clamp(max=float(window)).double()
        mean = ((history[..., window:] - history[..., :count]) / denominator).to(logp.dtype)
        # Noise floor: floor_t = min_{s<=t}(p_s + c(t-s)) = c*t + min_{s<=t}(p_s - c*s); a
        # cumulative minimum, exact across chunks because min is exact and the ramp uses the
        # absolute frame index. Partly padded leading frames do not count.
        smooth = torch.log(self._smooth(power, state[1], index) + self.eps)
        ramp = index * self.rise
        candidates = torch.where(
            index < self.skip_frames, torch.full_like(smooth, float("inf")), smooth - ramp
        )
        shifted = torch.cat([state[2].unsqueeze(-1), candidates], dim=-1)
        running_min = torch.cummin(shifted, dim=-1).values[..., 1:]
        # Before the first counted frame (very short input) the floor is the current level.
        floor = torch.where(torch.isinf(running_min), smooth, running_min + ramp)
        power_history = torch.cat([state[1], power], dim=-1)
        new_state = [
            history[..., history.shape[-1] - window :],
            power_history[..., power_history.shape[-1] - (self.smoothing_frames - 1) :],
            running_min[..., -1],
            state[3] + count,
        ]
        return self.combine(logp, mean, floor), new_state

    def forward(self, spec: Tensor) -> Tensor:
        """(B, F, N) complex spectrogram -> (B, N, 2, F) float features (time-major)."""
        batch, bins, count = spec.shape
        state = self.initial_state(batch, bins, spec.real)
        if self.causal:
            features, _ = self.causal_chunk(spec, state)
            return features
        power = spec.real.pow(2) + spec.imag.pow(2)
        logp = torch.log(power + self.eps)
        mean = logp.mean(dim=-1, keepdim=True)
        index = torch.arange(count, device=power.device, dtype=power.dtype)
        smooth = torch.log(self._smooth(power, state[1], index) + self.eps)
        # Leading padded frames count only when the clip has nothing else.
        counted = torch.where(
            (index < self.skip_frames) & (index < count - 1),
            torch.full_like(smooth, float("inf")),
            smooth,
        )
        floor = counted.amin(dim=-1, keepdim=True)
        return self.combine(logp, mean, floor)

    def combine(self, logp: Tensor, mean: Tensor, floor: Tensor) -> Tensor:
        """Stack the two features into (B, N, 2, F), scaled to roughly unit range."""
        # 0.2: log-power deviations span about +-10 nats; keep pre-activations near unit scale.
        rel_mean = (logp - mean) * 0.2
        rel_floor = (logp - floor) * 0.2
        # Stacked time-major: torch.stft's output is (B, N, F) in memory, so this is a plain copy
        # and every channel (B, N, F) keeps bins contiguous for the diagonal layers.
        return torch.stack([rel_mean.transpose(1, 2), rel_floor.transpose(1, 2)], dim=2)

    def extra_repr(self) -> str:
        return (
            f"causal={self.causal}, norm_window_s={self.norm_window_s}, "
            f"floor_rise_db_per_s={self.floor_rise_db_per_s}, "
            f"smoothing_frames={self.smoothing_frames}, skip_frames={self.skip_frames}"
        )


class SpectralGainEnhancer(nn.Module):
    """Base of the enhancers that run waveform ─STFT─> gains ─iSTFT─> waveform.

    A subclass sets ``self.stft`` (a :class:`StftFrontEnd`) and defines ``gains_from_spec``
    (complex (B, F, N) -> real gains (B, F, N)); this class adds the waveform-level API, the same
    for the learned :class:`audiodiag.model.GainNet` and the :class:`audiodiag.wiener` reference
    (the encoder -> masker -> decoder split of Asteroid's ``BaseEncoderMaskerDecoder``).
    """

    # No class-level ``stft: StftFrontEnd`` annotation: TorchScript cannot resolve it.

    def gains_from_spec(self, spec: Tensor) -> Tensor:
        raise NotImplementedError

    def _as_batch(self, waveform: Tensor) -> Tensor:
        if waveform.dim() == 1:
            return waveform.unsqueeze(0)
        if waveform.dim() == 2:
            return waveform
        raise ValueError(
            "expects a waveform shaped (time,) or (batch, time), got "
            + str(waveform.dim())
            + " dimensions"
        )

    def gains(self, waveform: Tensor) -> Tensor:
        """Gain map (B, freq, frames) in [floor, 1] for a waveform (B, T) or (T,)."""
        return self.gains_from_spec(self.stft.analysis(self._as_batch(waveform)))

    def forward(self, waveform: Tensor) -> Tensor:
        """Enhance a waveform (B, T) or (T,); returns the same shape."""
        batch = self._as_batch(waveform)
        if batch.shape[-1] == 0:
            return waveform.clone()
        enhanced, _, _ = self.enhance_with_gains(batch)
        return enhanced.reshape(waveform.shape)

    def enhance_with_gains(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Enhance (B, T) with T >= 1; returns (enhanced (B, T), spectrum (B, F, N), gains
        (B, F, N)), for a loss on the masked spectrum beside the waveform's."""
        spec = self.stft.analysis(batch)
        gains = self.gains_from_spec(spec)
        return self.stft.synthesis(spec * gains, batch.shape[-1]), spec, gains
