"""A synthetic room: a random exponentially decaying impulse response, applied by FFT.

The response is a direct path followed, after a short gap, by a Gaussian tail whose envelope
falls 60 dB in ``rt60`` seconds, with high frequencies dying faster (air and wall absorption).
That is the statistical model behind most reverberators, and it costs one FFT pair per clip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["apply_room", "room_impulse_response"]

# exp(-6.9078) = 10^(-60/20): the amplitude falls 60 dB over rt60.
_LN_1000 = math.log(1000.0)


def room_impulse_response(
    sample_rate: int,
    rng: np.random.Generator,
    rt60_range: Sequence[float] = (0.15, 0.8),
    drr_db_range: Sequence[float] = (-6.0, 6.0),
) -> np.ndarray:
    """A random room impulse response (float32, peak 1 at sample 0).

    ``rt60`` (s) is drawn uniformly from ``rt60_range``; the direct-to-reverberant energy ratio
    in dB from ``drr_db_range``; the tail starts 1-10 ms after the direct path and is low-passed
    progressively (its high band decays up to twice as fast).
    """
    rt60 = float(rng.uniform(rt60_range[0], rt60_range[1]))
    gap = int(rng.uniform(0.001, 0.01) * sample_rate)
    length = gap + int(rt60 * sample_rate)
    t = np.arange(length - gap, dtype=np.float32) / sample_rate
    tail = rng.standard_normal(length - gap, dtype=np.float32)
    # Split the tail into a smoothed (low) and a remaining (high) part; the high part decays
    # faster, so later reverberation sounds darker, as in real rooms.
    low = 0.5 * (tail + np.concatenate(([0.0], tail[:-1])).astype(np.float32))
    high = tail - low
    high_speed = rng.uniform(1.2, 2.0)
    decay = _LN_1000 / rt60
    tail = low * np.exp(-decay * t) + high * np.exp(-decay * high_speed * t)
    drr = 10 ** (rng.uniform(drr_db_range[0], drr_db_range[1]) / 10.0)
    tail *= np.float32(1.0 / math.sqrt(drr * float(np.sum(np.square(tail, dtype=np.float64)))))
    ir = np.zeros(length, dtype=np.float32)
    ir[0] = 1.0
    ir[gap:] += tail
    return ir


def apply_room(signal: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """Convolve ``signal`` with ``impulse_response`` by FFT, keeping ``signal``'s length.

    The convolution is circular: the reverberation of the clip's end wraps onto its start,
    as if the clip were a crop of a longer, steady recording (no silent-room onset).
    """
    n = signal.shape[0]
    ir = impulse_response
    if ir.shape[0] > n:  # fold a response longer than the clip onto itself (circular)
        ir = np.bincount(np.arange(ir.shape[0]) % n, weights=ir, minlength=n)
    wet = np.fft.irfft(np.fft.rfft(signal, n=n) * np.fft.rfft(ir, n=n), n=n)
    return wet.astype(np.float32)
