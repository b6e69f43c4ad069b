"""Noise sources: seeded synthetic generators and folders of real recordings.

Every generator takes a ``numpy.random.Generator`` (the caller seeds it from the mixture index),
so the same index always gives the same noise. Colored noise is made by shaping a random
spectrum with one FFT, which costs about as much as copying the samples. The procedural
families (glide, transient, modulated, drifting, instruments) live in
:mod:`audiodiag.data.noise_families`, the synthetic room in :mod:`audiodiag.data.rooms`. All
outputs are scaled to unit RMS; the mixer sets the level from the drawn SNR.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from audiodiag.data.noise_families import FAMILIES, burst_envelope
from audiodiag.data.noise_folder import ROOT_CATEGORY, NoiseFolder, _fit_length
from audiodiag.data.rooms import apply_room, room_impulse_response

__all__ = ["NOISE_TYPES", "NoiseSource"]

log = logging.getLogger(__name__)

#: Every noise type, as named in ``noise.weights`` and in the by-noise-type test tables.
NOISE_TYPES: tuple[str, ...] = (
    "white",  # Gaussian, flat spectrum
    "pink",  # 1/f
    "brown",  # 1/f^2
    "hum",  # 50/60 Hz mains with harmonics
    "tonal",  # 1-3 steady or warbling tones
    "band",  # band-limited noise, 1/2 to 2 octaves
    "babble",  # 3-6 other utterances of the same split
    "glide",  # whistles, sirens, whines: harmonic tones whose pitch moves
    "transient",  # clicks, knocks, decaying beeps/chimes, typing
    "modulated",  # noise under a periodic or random envelope (fans, engines, gusts)
    "drifting",  # coloured noise whose spectral shape moves
    "instruments",  # 1-3 harmonic voices playing notes
    "mixture",  # 2-3 of the other positive-weight types summed
    "folder",  # recordings under noise.folder (labelled folder/<category>)
)

# What a ``mixture`` combines when no other type has a positive weight.
_MIXTURE_FALLBACK: tuple[str, ...] = (
    "white", "pink", "brown", "hum", "tonal", "band", *FAMILIES,
)  # fmt: skip

# Colored noise below this frequency is inaudible drift that would eat the SNR budget.
_MIN_COLOR_HZ = 20.0

DrawSpeech = Callable[[np.random.Generator], "torch.Tensor | None"]
ReportBad = Callable[[str, Exception], None]


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms).astype(np.float32) if rms > 1e-12 else x.astype(np.float32)


def _random_spectrum(num_bins: int, rng: np.random.Generator) -> np.ndarray:
    parts = rng.standard_normal((2, num_bins))
    return parts[0] + 1j * parts[1]


class NoiseSource:
    """Draws noise of configured types with configured weights.

    Args:
        weights: type -> relative probability. Types: ``white``, ``pink`` (1/f), ``brown``
            (1/f^2), ``hum`` (mains hum with harmonics), ``tonal`` (a few steady/warbling tones),
            ``band`` (band-limited noise), ``babble`` (sum of other utterances of the speech
            source, same split), ``glide`` (whistles, sirens, whines: tones whose pitch moves),
            ``transient`` (clicks, knocks, decaying beeps/chimes, typing), ``modulated``
            (noise under a periodic or random envelope: fans, engines, gusts), ``drifting``
            (coloured noise whose spectral shape moves), ``instruments`` (harmonic voices
            playing notes), ``mixture`` (2-3 of the other positive-weight types summed),
            ``folder`` (recordings under ``folder``). Zero weights are off.
        folder: directory of noise recordings (wav/flac/ogg, recursive), used by ``folder``;
            see :class:`~audiodiag.data.noise_folder.NoiseFolder` (MUSAN, DNS, WHAM!, DEMAND).
        split_folder: give train/valid/test disjoint recordings when the folder holds at least
            three files (False: every split uses every file).
        categories: folder category (first-level subfolder, ``.`` for top-level files) ->
            weight; unlisted categories weigh 1, 0 leaves one out.
        category_globs: category -> glob(s) on the relative path, instead of subfolders.
        split_by: ``auto``, ``file``, ``folder`` or ``subfolders`` (see ``NoiseFolder``).
        manifest: where the folder's manifest lives: ``auto`` or a file path.
        hum_frequencies: mains fundamentals to choose from (Hz).
        hum_harmonics: highest harmonic number of the hum.
        babble_talkers: inclusive range of talkers summed into babble.
        tonal_tones: inclusive range of the number of tones.
        tonal_hz_range / band_hz_range: frequency ranges (Hz) for tones and noise bands.
        mixture_types: inclusive range of how many types a ``mixture`` sums.
        room_probability: chance that a synthetic or babble draw (not a recording) is played
            through a random synthetic room (see :mod:`audiodiag.data.rooms`).
        room_rt60_range: reverberation time range (s) of those rooms.
        burst_probability: chance that a *training* draw of any type is gated into a train of
            short events (:func:`~audiodiag.data.noise_families.burst_envelope`): onsets and
            decays in every family's spectrum, so that what a model learns about transients
            does not come from the ``transient`` family alone. Validation and test draws are
            never gated (the fixed mixtures stay the same).
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        folder: str | os.PathLike | None = None,
        split_folder: bool = True,
        hum_frequencies: Sequence[float] = (50.0, 60.0),
        hum_harmonics: int = 8,
        babble_talkers: Sequence[int] = (3, 6),
        tonal_tones: Sequence[int] = (1, 3),
        tonal_hz_range: Sequence[float] = (100.0, 4000.0),
        band_hz_range: Sequence[float] = (100.0, 7000.0),
        mixture_types: Sequence[int] = (2, 3),
        room_probability: float = 0.0,
        room_rt60_range: Sequence[float] = (0.15, 0.8),
        categories: Mapping[str, float] | None = None,
        category_globs: Mapping[str, str | Sequence[str]] | None = None,
        split_by: str = "auto",
        manifest: str | os.PathLike = "auto",
        burst_probability: float = 0.0,
    ) -> None:
        if weights is None:
            weights = {t: 1.0 for t in NOISE_TYPES if t != "folder"}
        weights = {str(k): float(v) for k, v in dict(weights).items()}
        unknown = sorted(set(weights) - set(NOISE_TYPES))
        if unknown:
            raise ValueError(
                f"unknown noise types {unknown} in noise.weights; accepted: {list(NOISE_TYPES)}"
            )
        negative = sorted(k for k, v in weights.items() if v < 0 or not math.isfinite(v))
        if negative:
            raise ValueError(f"noise.weights for {negative} must be finite and >= 0")
        active = {k: v for k, v in weights.items() if v > 0}
        if not active:
            raise ValueError(
                f"noise.weights={weights} has no positive weight; give at least one type > 0"
            )
        if "folder" in active and (folder is None or str(folder) in ("", "???")):
            raise ValueError(
                "noise type 'folder' has weight > 0 but noise.folder is not set; set noise.folder=PATH"
            )
        self.types = tuple(active)
        total = sum(active.values())
        self.probabilities = np.array([active[t] / total for t in self.types])
        # What Generator.choice(p=...) computes on every call (the same single draw).
        self._cdf = np.cumsum(self.probabilities)
        self._cdf /= self._cdf[-1]
        self.folder = Path(folder).expanduser() if folder not in (None, "", "???") else None
        self.split_folder = bool(split_folder)
        self.recordings = (
            NoiseFolder(
                self.folder,
                categories=categories,
                category_globs=category_globs,
                split_by=split_by,
                split=self.split_folder,
                manifest=manifest,
            )
            if self.folder is not None
            else None
        )
        self.hum_frequencies = tuple(float(f) for f in hum_frequencies)
        self.hum_harmonics = int(hum_harmonics)
        self.babble_talkers = (int(babble_talkers[0]), int(babble_talkers[1]))
        self.tonal_tones = (int(tonal_tones[0]), int(tonal_tones[1]))
        self.tonal_hz_range = (float(tonal_hz_range[0]), float(tonal_hz_range[1]))
        self.band_hz_range = (float(band_hz_range[0]), float(band_hz_range[1]))
        if self.babble_talkers[0] < 1 or self.babble_talkers[1] < self.babble_talkers[0]:
            raise ValueError(
                f"noise.babble_talkers={list(babble_talkers)} must be [min>=1, max>=min]"
            )
        self.mixture_types = (int(mixture_types[0]), int(mixture_types[1]))
        if self.mixture_types[0] < 2 or self.mixture_types[1] < self.mixture_types[0]:
            raise ValueError(
                f"noise.mixture_types={list(mixture_types)} must be [min>=2, max>=min]"
            )
        self.room_probability = float(room_probability)
        if not 0.0 <= self.room_probability <= 1.0:
            raise ValueError(f"noise.room_probability={room_probability} must be in [0, 1]")
        self.room_rt60_range = (float(room_rt60_range[0]), float(room_rt60_range[1]))
        if not 0.0 < self.room_rt60_range[0] <= self.room_rt60_range[1]:
            raise ValueError(
                f"noise.room_rt60_range={list(room_rt60_range)} must be [low>0, high>=low] seconds"
            )
        self.burst_probability = float(burst_probability)
        if not 0.0 <= self.burst_probability <= 1.0:
            raise ValueError(f"noise.burst_probability={burst_probability} must be in [0, 1]")

    def __repr__(self) -> str:
        weights = dict(zip(self.types, np.round(self.probabilities, 3).tolist(), strict=True))
        folder = f", folder='{self.folder}'" if self.folder else ""
        return f"NoiseSource(probabilities={weights}{folder})"

    # -- folder of recordings ---------------------------------------------------------------
    def setup(self, report_bad: ReportBad | None = None) -> None:
        """List the noise folder (when used): scan, manifest, splits, category checks;
        unreadable recordings go to ``report_bad``."""
        if "folder" in self.types and self.recordings is not None:
            self.recordings.setup(report_bad)

    def folder_files(self, split: str) -> list[str]:
        """Recordings used for ``split`` (empty when the ``folder`` type is off)."""
        if "folder" not in self.types or self.recordings is None:
            return []
        return [f.path for f in self.recordings.files(split)]

    def _folder_noise(
        self,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str,
        report_bad: ReportBad | None,
    ) -> tuple[np.ndarray, str] | None:
        assert self.recordings is not None
        drawn = self.recordings.draw(num_samples, sample_rate, rng, split, report_bad)
        if drawn is None:
            return None
        noise, category = drawn
        return noise, "folder" if category == ROOT_CATEGORY else f"folder/{category}"

    # -- synthetic generators ---------------------------------------------------------------
    @staticmethod
    def colored(
        num_samples: int, exponent: float, sample_rate: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Gaussian noise with power spectral density ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
        if exponent == 0:
            return rng.standard_normal(num_samples, dtype=np.float32)
        freqs = np.fft.rfftfreq(num_samples, d=1.0 / sample_rate)
        spectrum = _random_spectrum(freqs.shape[0], rng)
        scale = np.zeros_like(freqs)
        audible = freqs >= _MIN_COLOR_HZ
        scale[audible] = freqs[audible] ** (-exponent / 2.0)
        return np.fft.irfft(spectrum * scale, n=num_samples).astype(np.float32)

    def _band(self, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        low_hz, high_hz = self.band_hz_range
        high_hz = min(high_hz, 0.49 * sample_rate)
        # A band between half an octave and two octaves wide, centred log-uniformly.
        width_octaves = rng.uniform(0.5, 2.0)
        center = math.exp(rng.uniform(math.log(low_hz), math.log(high_hz)))
        lo = max(low_hz, center / 2 ** (width_octaves / 2))
        hi = min(high_hz, center * 2 ** (width_octaves / 2))
        freqs = np.fft.rfftfreq(num_samples, d=1.0 / sample_rate)
        spectrum = _random_spectrum(freqs.shape[0], rng)
        spectrum = np.where((freqs < lo) | (freqs > hi), 0.0, spectrum)
        return np.fft.irfft(spectrum, n=num_samples).astype(np.float32)

    def _hum(self, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        f0 = float(rng.choice(self.hum_frequencies)) * (1.0 + rng.uniform(-0.005, 0.005))
        rolloff = rng.uniform(0.5, 1.5)
        coefficients = []
        for k in range(1, self.hum_harmonics + 1):
            if k * f0 >= 0.49 * sample_rate:
                break
            amplitude = rng.uniform(0.3, 1.0) / k**rolloff
            coefficients.append(amplitude * np.exp(1j * rng.uniform(0, 2 * np.pi)))
        # sum_k c_k z^k with z = exp(i 2 pi f0 t), by Horner's rule: one sin/cos pair in all.
        phase = np.mod(2 * np.pi * f0 / sample_rate * np.arange(num_samples), 2 * np.pi)
        phase = phase.astype(np.float32)
        z = np.empty(num_samples, dtype=np.complex64)
        z.real, z.imag = np.cos(phase), np.sin(phase)
        acc = np.full(num_samples, coefficients[-1], dtype=np.complex64)
        for c in reversed(coefficients[:-1]):
            acc = acc * z + np.complex64(c)
        out = (acc * z).imag
        hum = _unit_rms(out)
        # A faint broadband floor, as in real recordings, so the hum is not a pure line spectrum.
        return hum + 0.03 * rng.standard_normal(num_samples, dtype=np.float32)

    def _tonal(self, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        low_hz, high_hz = self.tonal_hz_range
        high_hz = min(high_hz, 0.45 * sample_rate)
        t = np.arange(num_samples, dtype=np.float64) / sample_rate
        out = np.zeros(num_samples, dtype=np.float64)
        for _ in range(int(rng.integers(self.tonal_tones[0], self.tonal_tones[1] + 1))):
            freq = math.exp(rng.uniform(math.log(low_hz), math.log(high_hz)))
            # Optional slow warble (sirens, alarms, whistles); depth 0 keeps the tone steady.
            depth = rng.choice([0.0, rng.uniform(0.005, 0.05)])
            rate = rng.uniform(0.2, 6.0)
            phase = 2 * np.pi * freq * t
            if depth:
                phase += depth * freq / rate * np.sin(2 * np.pi * rate * t)
            out += rng.uniform(0.3, 1.0) * np.sin(phase + rng.uniform(0, 2 * np.pi))
        return _unit_rms(out)

    def _babble(
        self, num_samples: int, rng: np.random.Generator, draw_speech: DrawSpeech | None
    ) -> np.ndarray | None:
        if draw_speech is None:
            return None
        talkers = int(rng.integers(self.babble_talkers[0], self.babble_talkers[1] + 1))
        out = np.zeros(num_samples, dtype=np.float32)
        used = 0
        for _ in range(talkers * 2):  # a few spare draws for silent or unreadable utterances
            speech = draw_speech(rng)
            if speech is None or speech.numel() == 0:
                continue
            segment = _fit_length(speech.numpy(), num_samples, rng)
            if float(np.abs(segment).max()) < 1e-6:
                continue
            out += _unit_rms(segment)
            used += 1
            if used == talkers:
                break
        return out if used else None

    # -- public API -------------------------------------------------------------------------
    def draw_type(self, rng: np.random.Generator) -> str:
        """Pick a noise type by weight."""
        if len(self.types) == 1:
            return self.types[0]
        # Same draw and result as rng.choice(len(types), p=probabilities), at a tenth the cost.
        return self.types[int(self._cdf.searchsorted(rng.random(), side="right"))]

    def generate(
        self,
        kind: str,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str = "train",
        draw_speech: DrawSpeech | None = None,
        report_bad: ReportBad | None = None,
    ) -> tuple[np.ndarray, str]:
        """Make ``num_samples`` of noise of type ``kind`` at unit RMS.

        Returns ``(noise float32 (num_samples,), type actually made)``: babble without other
        utterances, or a folder without readable files, falls back to pink noise; a recording
        is labelled ``folder/<category>`` (``folder`` for files at the top of the folder). With
        ``room_probability`` > 0, anything but a recording may pass through a random room, and
        with ``burst_probability`` > 0 a training draw may be gated into bursts first (the type
        label stays the same).
        """
        out, made = self._make(kind, num_samples, sample_rate, rng, split, draw_speech, report_bad)
        # Training only, and no draw at 0, so valid/test mixtures and old seeds stay the same.
        p = self.burst_probability
        if split == "train" and p > 0.0 and rng.random() < p:
            out = _unit_rms(out) * burst_envelope(num_samples, sample_rate, rng)
        # Recordings carry their own room; the draw is skipped at 0 so old seeds keep their noise.
        wet = not made.startswith("folder") and self.room_probability > 0.0
        if wet and rng.random() < self.room_probability:
            ir = room_impulse_response(sample_rate, rng, self.room_rt60_range)
            out = apply_room(_unit_rms(out), ir)
        return _unit_rms(out), made

    def _make(
        self,
        kind: str,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str,
        draw_speech: DrawSpeech | None,
        report_bad: ReportBad | None,
    ) -> tuple[np.ndarray, str]:
        """One dry draw of ``kind`` (not normalised) and the type actually made."""
        out: np.ndarray | None
        if kind == "white":
            out = rng.standard_normal(num_samples, dtype=np.float32)
        elif kind == "pink":
            out = self.colored(num_samples, 1.0, sample_rate, rng)
        elif kind == "brown":
            out = self.colored(num_samples, 2.0, sample_rate, rng)
        elif kind == "hum":
            out = self._hum(num_samples, sample_rate, rng)
        elif kind == "tonal":
            out = self._tonal(num_samples, sample_rate, rng)
        elif kind == "band":
            out = self._band(num_samples, sample_rate, rng)
        elif kind == "babble":
            out = self._babble(num_samples, rng, draw_speech)
        elif kind in FAMILIES:
            out = FAMILIES[kind](num_samples, sample_rate, rng)
        elif kind == "mixture":
            out = self._mixture(num_samples, sample_rate, rng, split, draw_speech, report_bad)
        elif kind == "folder":
            drawn = self._folder_noise(num_samples, sample_rate, rng, split, report_bad)
            out, kind = drawn if drawn is not None else (None, kind)
        else:
            raise ValueError(f"unknown noise type '{kind}'; accepted: {list(NOISE_TYPES)}")
        if out is None:
            kind, out = "pink", self.colored(num_samples, 1.0, sample_rate, rng)
        return out, kind

    def _mixture(
        self,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str,
        draw_speech: DrawSpeech | None,
        report_bad: ReportBad | None,
    ) -> np.ndarray:
        """2-3 distinct types, each at unit RMS within ±6 dB, summed.

        The parts come from the other types with a positive weight (in proportion to it), so a
        type left out of training never enters through a mixture either.
        """
        pool = [t for t in self.types if t not in ("mixture", "folder")]
        if pool:
            weights = np.array([self.probabilities[self.types.index(t)] for t in pool])
        else:
            pool = list(_MIXTURE_FALLBACK)
            weights = np.ones(len(pool))
        count = min(len(pool), int(rng.integers(self.mixture_types[0], self.mixture_types[1] + 1)))
        picks = rng.choice(len(pool), size=count, replace=False, p=weights / weights.sum())
        out = np.zeros(num_samples, dtype=np.float32)
        for pick in picks:
            part, _ = self._make(
                pool[int(pick)], num_samples, sample_rate, rng, split, draw_speech, report_bad
            )
            out += np.float32(10 ** (rng.uniform(-6.0, 6.0) / 20.0)) * _unit_rms(part)
        return out

    def sample(
        self,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str = "train",
        draw_speech: DrawSpeech | None = None,
        report_bad: ReportBad | None = None,
    ) -> tuple[np.ndarray, str]:
        """Draw a type by weight and generate it (see :meth:`generate`)."""
        kind = self.draw_type(rng)
        return self.generate(kind, num_samples, sample_rate, rng, split, draw_speech, report_bad)
