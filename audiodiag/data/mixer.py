"""Turn one clean utterance and one noise draw into a fixed-length (noisy, clean) pair."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NO_NOISE_SNR_DB", "SILENT_SNR_DB", "Mixer", "Mixture"]

# SNR is undefined for a silent clean clip or a silent noise draw. We report finite sentinels
# (never NaN/inf) so batches, losses and logs stay finite; they sit far outside any real range.
SILENT_SNR_DB = -100.0
NO_NOISE_SNR_DB = 100.0
# Below this mean power (about -100 dBFS) a signal counts as silent.
_SILENT_POWER = 1e-10


@dataclass
class Mixture:
    """One mixed example: ``noisy = clean + noise`` over ``segment_samples`` samples.

    ``length`` is the number of real speech samples (the rest is zero padding of the clean
    clip); ``snr_db`` is the realised SNR over those samples; ``rescaled`` tells whether both
    signals were scaled down to avoid clipping.
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor
    length: int
    snr_db: float
    gain_db: float
    rescaled: bool


def _power(x: torch.Tensor) -> float:
    return float(x.double().square().mean()) if x.numel() else 0.0


class Mixer:
    """Crop/pad speech to a segment, scale noise to a drawn SNR, and guard against clipping.

    Args:
        sample_rate: Hz.
        segment_seconds: length of every example.
        snr_db_range: SNR drawn from ``[low, high]`` dB, uniformly unless ``snr_db_weights``.
        snr_db_weights: optional relative weights of equal-width bands across
            ``snr_db_range`` (uniform inside each band); e.g. range ``[-5, 30]`` with weights
            ``[2, 2, 2, 2, 1, 1, 1]`` draws -5 to 15 dB twice as often per dB as 15 to 30 dB.
        gain_db_range: optional ``[low, high]`` dB of one random gain applied to both noisy and
            clean (level augmentation); ``None`` keeps the clean level as recorded.
        peak_limit: when ``max(|noisy|, |clean|)`` exceeds it, both are scaled down together
            (the SNR is unchanged) and the example counts as rescaled.
        silent_noise_dbfs: noise RMS used when the clean clip is silent (SNR undefined).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        segment_seconds: float = 2.0,
        snr_db_range: Sequence[float] = (-5.0, 15.0),
        gain_db_range: Sequence[float] | None = None,
        peak_limit: float = 0.99,
        silent_noise_dbfs: float = -30.0,
        snr_db_weights: Sequence[float] | None = None,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate={sample_rate} must be a positive number of Hz")
        if not segment_seconds or segment_seconds <= 0:
            raise ValueError(f"segment_seconds={segment_seconds} must be > 0")
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.segment_samples = int(round(self.segment_seconds * self.sample_rate))
        self.snr_db_range = self._range("snr_db_range", snr_db_range)
        self.snr_db_weights = self._weights(snr_db_weights)
        # The weighted draw's cumulative band probabilities, computed once.
        self._snr_cdf = (
            np.cumsum(self.snr_db_weights) / sum(self.snr_db_weights)
            if self.snr_db_weights is not None
            else None
        )
        self.gain_db_range = (
            self._range("gain_db_range", gain_db_range) if gain_db_range is not None else None
        )
        if not 0 < peak_limit <= 1:
            raise ValueError(f"peak_limit={peak_limit} must be in (0, 1]")
        self.peak_limit = float(peak_limit)
        self.silent_noise_rms = 10.0 ** (float(silent_noise_dbfs) / 20.0)

    @staticmethod
    def _range(name: str, values: Sequence[float]) -> tuple[float, float]:
        pair = tuple(float(v) for v in values)
        if len(pair) != 2 or pair[0] > pair[1] or not all(math.isfinite(v) for v in pair):
            raise ValueError(f"{name}={list(values)} must be [low, high] with finite low <= high")
        return pair[0], pair[1]

    @staticmethod
    def _weights(values: Sequence[float] | None) -> tuple[float, ...] | None:
        if values is None:
            return None
        weights = tuple(float(v) for v in values)
        if not weights or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
            raise ValueError(
                f"snr_db_weights={list(values)} must be null or finite weights >= 0, one per "
                "equal-width band of snr_db_range, at least one of them > 0"
            )
        return weights

    def crop_start(self, total: int, rng: np.random.Generator, need: int | None = None) -> int:
        """Where a random crop of ``need`` samples (default: the segment) of a ``total``-sample
        utterance starts (0 when it is shorter and gets padded). The one draw every crop makes,
        read or cached."""
        n = self.segment_samples if need is None else int(need)
        return int(rng.integers(0, total - n + 1)) if total >= n else 0

    def pad(self, piece: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Zero-pad (or cut) ``piece`` to the segment; returns (segment, true length)."""
        n = self.segment_samples
        total = min(int(piece.shape[-1]), n)
        if total == n and piece.shape[-1] == n:
            # A view (of a waveform cached in memory) is copied; a fresh read is used as is.
            return (piece.clone() if piece._is_view() else piece), n
        out = torch.zeros(n, dtype=torch.float32)
        out[:total] = piece[:total]
        return out, total

    def crop(self, speech: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """Random crop to the segment, or zero-pad at the end; returns (segment, true length)."""
        start = self.crop_start(int(speech.shape[-1]), rng)
        return self.pad(speech[start : start + self.segment_samples])

    def draw_gain_db(self, rng: np.random.Generator) -> float:
        """The optional overall gain (dB), drawn after the SNR as :meth:`mix` does."""
        if self.gain_db_range is None:
            return 0.0
        low, high = self.gain_db_range
        return float(rng.uniform(low, high)) if high > low else low

    def draw_snr_db(self, rng: np.random.Generator) -> float:
        """An SNR from ``snr_db_range``: uniform, or piecewise uniform over ``snr_db_weights``'
        bands. One draw either way (the inverse CDF of the same uniform number), so the weights
        move no other draw of a mixture."""
        low, high = self.snr_db_range
        if high <= low:
            return low
        cdf = self._snr_cdf
        if cdf is None:
            return float(rng.uniform(low, high))
        u = float(rng.random())
        # side="right" skips zero-weight bands: below <= u < cdf[band].
        band = min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)
        below = cdf[band - 1] if band else 0.0
        within = (u - below) / (cdf[band] - below)
        return float(low + (high - low) / len(cdf) * (band + within))

    def mix(
        self,
        clean: torch.Tensor,
        length: int,
        noise: torch.Tensor,
        snr_db: float,
        rng: np.random.Generator | None = None,
        gain_db: float | None = None,
    ) -> Mixture:
        """Mix a cropped ``clean`` segment (true ``length``) with ``noise`` at ``snr_db``.

        Only the noise is scaled, so ``clean`` stays as given unless the optional overall gain
        (drawn from ``rng``, or given as ``gain_db``) or the anti-clipping rescale applies (both
        act on noisy and clean alike). :meth:`mix_batch` is the same for a batch.
        """
        if clean.shape != noise.shape:
            raise ValueError(f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} differ")
        valid = max(1, int(length))
        clean_power = _power(clean[:valid])
        noise_power = _power(noise[:valid])
        if noise_power <= _SILENT_POWER:
            noise = torch.zeros_like(clean)
            realised = NO_NOISE_SNR_DB
        elif clean_power <= _SILENT_POWER:
            noise = noise * float(self.silent_noise_rms / math.sqrt(noise_power))
            realised = SILENT_SNR_DB
        else:
            scale = math.sqrt(clean_power / (noise_power * 10.0 ** (snr_db / 10.0)))
            noise = noise * float(scale)
            realised = float(snr_db)
        noisy = clean + noise
        if gain_db is None:
            gain_db = self.draw_gain_db(rng) if rng is not None else 0.0
        if gain_db != 0.0:
            gain = 10.0 ** (gain_db / 20.0)
            noisy, clean, noise = noisy * gain, clean * gain, noise * gain
        peak = max(float(noisy.abs().max()), float(clean.abs().max()))
        rescaled = peak > self.peak_limit
        if rescaled:
            factor = self.peak_limit / peak
            noisy, clean, noise = noisy * factor, clean * factor, noise * factor
            gain_db += 20.0 * math.log10(factor)
        return Mixture(noisy, clean, noise, int(length), realised, gain_db, rescaled)

    def mix_batch(
        self,
        clean: torch.Tensor,
        lengths: torch.Tensor,
        noise: torch.Tensor | Sequence[torch.Tensor],
        snr_db: torch.Tensor,
        gain_db: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """:meth:`mix` for a batch, on the batch's device: ``clean`` (B, T), ``noise`` (B, T) or
        B rows of T samples (views into a noise bank: on a CPU they are read in place, which
        saves copying them out into fresh memory), the rest (B,). Returns ``noisy``, ``clean``,
        ``snr_db`` (realised, with the same sentinels) and ``rescaled`` (bool). :meth:`mix`
        sums powers in float64, this in float32: both agree to about 1e-6 of full scale."""
        # The noise as one (B, T) tensor (``dense``), or else as B ``rows``.
        dense = noise if isinstance(noise, torch.Tensor) else None
        rows: list[torch.Tensor] = [] if dense is not None else list(noise)
        if dense is None and (clean.device.type != "cpu" or len(rows) != len(clean)):
            dense, rows = torch.stack(rows), []  # one copy kernel on an accelerator
        if clean.dim() != 2 or (
            clean.shape != dense.shape
            if dense is not None
            else any(row.shape != clean.shape[1:] for row in rows)
        ):
            shape = tuple(dense.shape) if dense is not None else [tuple(r.shape) for r in rows]
            raise ValueError(f"clean {tuple(clean.shape)} and noise {shape} must be (B, T)")
        valid = lengths.clamp(min=1).to(torch.float64)
        # Few passes over the batch (it runs on the training device, or on the trainer's CPU):
        # powers as norms (one pass, no temporary), one multiply-add, the peak from max and min.
        if bool((lengths < clean.shape[-1]).any()):
            mask = torch.arange(clean.shape[-1], device=clean.device)[None, :] < lengths[:, None]
            clean_norm = torch.linalg.vector_norm(clean * mask, dim=-1)
        else:
            mask = None
            clean_norm = torch.linalg.vector_norm(clean, dim=-1)
        if dense is not None:
            noise_norm = torch.linalg.vector_norm(dense if mask is None else dense * mask, dim=-1)
        else:
            ends = lengths.clamp(min=1).tolist()
            noise_norm = torch.stack(
                [torch.linalg.vector_norm(row[:end]) for row, end in zip(rows, ends, strict=True)]
            )
        clean_power = clean_norm.double() ** 2 / valid
        noise_power = noise_norm.double() ** 2 / valid
        no_noise = noise_power <= _SILENT_POWER
        silent = ~no_noise & (clean_power <= _SILENT_POWER)
        safe_noise = noise_power.clamp(min=_SILENT_POWER)
        scale = torch.sqrt(clean_power / (safe_noise * 10.0 ** (snr_db.double() / 10.0)))
        scale = torch.where(silent, self.silent_noise_rms / torch.sqrt(safe_noise), scale)
        scale = torch.where(no_noise, torch.zeros_like(scale), scale)
        realised = torch.where(
            no_noise,
            torch.full_like(scale, NO_NOISE_SNR_DB),
            torch.where(silent, torch.full_like(scale, SILENT_SNR_DB), snr_db.double()),
        )
        if dense is not None:
            noisy = torch.addcmul(clean, dense, scale.float()[:, None])
        else:
            noisy = torch.empty_like(clean)
            for i, (row, factor) in enumerate(zip(rows, scale.tolist(), strict=True)):
                torch.add(clean[i], row, alpha=factor, out=noisy[i])
        gain = (10.0 ** (gain_db.double() / 20.0)).float()
        # The gain is positive, so the peak after it is the gain times the peak before it.
        # (amax/amin: an infinity norm costs 20x as much on a CPU.)
        peak = gain * torch.stack(
            (noisy.amax(-1), -noisy.amin(-1), clean.amax(-1), -clean.amin(-1))
        ).amax(0)
        rescaled = peak > self.peak_limit
        total = gain * torch.where(rescaled, self.peak_limit / peak, torch.ones_like(peak))
        if bool((total != 1.0).any()):  # noisy is ours to scale in place; clean is the caller's
            noisy, clean = noisy.mul_(total[:, None]), clean * total[:, None]
        return {
            "noisy": noisy,
            "clean": clean,
            "snr_db": realised.float(),
            "rescaled": rescaled,
        }
