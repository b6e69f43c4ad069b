"""Procedural noise families that a per-bin gain must learn from a bin's history.

Each family is a function ``(num_samples, sample_rate, rng) -> float32 array`` whose parameters
are all drawn from ``rng`` on every call, so one seed gives one sound and the next seed a
different one. Outputs are *not* normalised here; :class:`audiodiag.data.noise.NoiseSource`
scales every draw to unit RMS. Everything is vectorised numpy (no per-sample Python loop): a
2-s draw at 16 kHz costs 1.5-4 ms of CPU (``scripts/bench_noise.py``).

- :func:`glide`: 1-3 tonal sources with harmonics whose pitch moves (vibrato, slow glides,
  siren sweeps), optionally with a steady whine.
- :func:`transient`: trains of clicks, knocks, decaying beeps/chimes and keyboard-like bursts
  on a faint floor.
- :func:`modulated`: noise under a periodic (fan, engine) or random (rain gusts, traffic)
  amplitude envelope, optionally with a moving spectral balance.
- :func:`drifting`: coloured noise whose spectral slope and resonance move over the clip.
- :func:`instruments`: 1-3 harmonic voices playing notes (onsets, decays, changing pitch).

:func:`burst_envelope` is not a family: it is the training augmentation that gates a draw of
any type into a train of events (``NoiseSource(burst_probability=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "FAMILIES",
    "burst_envelope",
    "drifting",
    "glide",
    "instruments",
    "modulated",
    "transient",
]

Family = Callable[[int, int, np.random.Generator], np.ndarray]

_TWO_PI = 2.0 * math.pi


# -- shared helpers -------------------------------------------------------------------------
# Slow trajectories (pitch, vibrato, envelopes) are computed at a control rate of one point per
# millisecond and interpolated: per-sample work is then a few float32 operations.
def _control_hop(sample_rate: int) -> int:
    return max(1, sample_rate // 1000)


def _control_times(num_samples: int, hop: int, sample_rate: int) -> np.ndarray:
    """Times (s) of the control points: one every ``hop`` samples, covering the clip."""
    return np.arange(-(-num_samples // hop) + 1, dtype=np.float64) * (hop / sample_rate)


def _upsample(control: np.ndarray, hop: int, num_samples: int) -> np.ndarray:
    """Linear interpolation of control points (every ``hop`` samples) to ``num_samples``."""
    control = control.astype(np.float32)
    frac = np.arange(hop, dtype=np.float32) / hop
    blocks = control[:-1, None] + (control[1:] - control[:-1])[:, None] * frac[None, :]
    return blocks.reshape(-1)[:num_samples]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _smooth_path(rng: np.random.Generator, num_points: int, knots: int) -> np.ndarray:
    """A smooth random path in [0, 1] over ``num_points``: cosine-eased between random knots."""
    values = rng.uniform(0.0, 1.0, knots + 1)
    position = np.linspace(0.0, knots, num_points, endpoint=False)
    index = position.astype(np.int64)
    frac = position - index
    ease = 0.5 - 0.5 * np.cos(math.pi * frac)
    return values[index] + (values[index + 1] - values[index]) * ease


def _phase(
    freq_hz: np.ndarray, hop: int, num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Running phase (radians, float32) of a control-rate frequency track.

    The frequency is held within each ``hop``; the phase is the running sum of the
    instantaneous frequency, wrapped per block so float32 keeps its precision.
    """
    step = _TWO_PI * freq_hz[:-1] / sample_rate  # radians per sample within each block
    start = np.cumsum(step * hop) - step * hop + rng.uniform(0.0, _TWO_PI)
    start = np.mod(start, _TWO_PI).astype(np.float32)
    ramp = np.arange(hop, dtype=np.float32)
    blocks = start[:, None] + step.astype(np.float32)[:, None] * ramp[None, :]
    return blocks.reshape(-1)[:num_samples]


def _harmonics(phase: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """``sum_k a_k sin(k * phase)`` by the Chebyshev recursion (one sin and one cos in all)."""
    sin1 = np.sin(phase)
    two_cos = 2.0 * np.cos(phase)
    out = np.float32(amplitudes[0]) * sin1
    prev, cur = np.zeros_like(sin1), sin1
    for amp in amplitudes[1:]:
        prev, cur = cur, two_cos * cur - prev
        if amp:
            out += np.float32(amp) * cur
    return out


def _harmonic_amplitudes(
    rng: np.random.Generator, max_freq_hz: float, sample_rate: int, most: int
) -> np.ndarray:
    """Amplitudes of up to ``most`` harmonics, rolled off, none above 0.45 x the sample rate."""
    fit = max(1, int(0.45 * sample_rate / max(max_freq_hz, 1.0)))
    count = min(int(rng.integers(1, most + 1)), fit)
    k = np.arange(1, count + 1, dtype=np.float32)
    amps = rng.uniform(0.3, 1.0, count).astype(np.float32) / k ** rng.uniform(0.7, 2.0)
    if count > 2 and rng.random() < 0.25:  # odd harmonics only (clarinet-, square-like)
        amps[1::2] = 0.0
    amps[0] = max(amps[0], 0.5)
    return amps


def _floor(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform white noise with a random first-order tilt (a faint recording floor)."""
    white = rng.random(num_samples + 1, dtype=np.float32) - np.float32(0.5)
    tilt = np.float32(rng.uniform(-0.9, 0.9))
    return white[1:] + tilt * white[:-1]


def _add_floor(x: np.ndarray, rng: np.random.Generator, below_db: tuple[float, float]) -> None:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    floor = _floor(x.shape[0], rng)
    x += floor * np.float32(rms * 10 ** (-rng.uniform(*below_db) / 20.0))


def _colored_spectrum(
    num_samples: int, sample_rate: int, rng: np.random.Generator, exponent: float
) -> tuple[np.ndarray, np.ndarray]:
    """Random spectrum with power ~ 1/f^exponent (no content below 20 Hz) and its frequencies."""
    freqs = np.fft.rfftfreq(num_samples, d=1.0 / sample_rate)
    parts = rng.standard_normal((2, freqs.shape[0]), dtype=np.float32)
    scale = np.zeros(freqs.shape[0], dtype=np.float32)
    audible = freqs >= 20.0
    scale[audible] = freqs[audible] ** (-exponent / 2.0)
    return (parts[0] + 1j * parts[1]) * scale, freqs


# -- glide ----------------------------------------------------------------------------------
GLIDE_HZ_RANGE = (150.0, 3500.0)


def glide(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Whistles, sirens and whines: 1-3 harmonic tones whose instantaneous frequency moves.

    Per source: fundamental log-uniform in 150-3500 Hz; a mode, ``drift`` (a glide of 5-20 %
    up or down over the clip, along a smooth random path), ``siren`` (periodic sweep of 10-40 %
    at 0.15-2 Hz, sine or rise-and-fall) or ``whine`` (steady within 1 %, only for the second
    and third source); vibrato at 3-8 Hz and 0.5-4 % depth on drifts and sirens; 1-6
    harmonics. The phase is the running sum of the instantaneous frequency. A faint floor sits
    40-55 dB below.
    """
    n = num_samples
    hop = _control_hop(sample_rate)
    t = _control_times(n, hop, sample_rate)
    m = t.shape[0]
    low, high = GLIDE_HZ_RANGE[0], min(GLIDE_HZ_RANGE[1], 0.3 * sample_rate)
    out = np.zeros(n, dtype=np.float32)
    for source in range(int(rng.integers(1, 4))):
        f0 = _log_uniform(rng, low, high)
        # The first source always moves: that is what the family is about.
        mode = ("drift", "siren") if source == 0 else ("drift", "siren", "whine")
        kind = mode[int(rng.integers(len(mode)))]
        if kind == "drift":
            total = rng.uniform(0.05, 0.2) * rng.choice((-1.0, 1.0))
            path = _smooth_path(rng, m, int(rng.integers(1, 3)))
            path = (path - path[0]) / max(float(np.ptp(path)), 1e-6)
            ratio = (1.0 + total) ** path
        elif kind == "siren":
            depth = rng.uniform(0.1, 0.4)
            cycle = np.mod(rng.uniform(0.15, 2.0) * t + rng.uniform(0, 1), 1.0)
            if rng.random() < 0.5:
                wave = 0.5 - 0.5 * np.cos(_TWO_PI * cycle)
            else:  # fast rise, slow fall, like a mechanical siren
                rise = rng.uniform(0.15, 0.5)
                wave = np.where(cycle < rise, cycle / rise, 1.0 - (cycle - rise) / (1.0 - rise))
            ratio = (1.0 + depth) ** wave
        else:
            ratio = 1.0 + 0.01 * (2 * _smooth_path(rng, m, 1) - 1)
        freq = f0 * ratio
        if kind != "whine":
            depth = rng.uniform(0.005, 0.04)
            rate = rng.uniform(3.0, 8.0) * (1.0 + 0.05 * (2 * _smooth_path(rng, m, 1) - 1))
            vibrato = np.sin(_TWO_PI * np.cumsum(rate) * (hop / sample_rate) + rng.uniform(0, 7))
            freq = freq * (1.0 + depth * vibrato)
        amps = _harmonic_amplitudes(rng, float(freq.max()), sample_rate, 6)
        phase = _phase(freq, hop, n, sample_rate, rng)
        # A whine stays below the moving sources, so the clip is about movement.
        level = (
            1.0
            if source == 0
            else rng.uniform(0.1, 0.35)
            if kind == "whine"
            else rng.uniform(0.4, 1.0)
        )
        out += np.float32(level) * _harmonics(phase, amps)
    _add_floor(out, rng, (40.0, 55.0))
    return out


# -- transient ------------------------------------------------------------------------------
_EVENT_KINDS = ("click", "knock", "chime", "keys")
_CHIME_RATIOS = np.array([1.0, 2.76, 5.40, 8.93])  # a struck bar's inharmonic partials


def _event_onsets(
    n: int, sample_rate: int, rng: np.random.Generator, max_gap: float, latest: int
) -> np.ndarray:
    """Onset samples of an event train over ``n`` samples: gaps of 0 to ``max_gap`` seconds from
    a random phase; one onset before ``latest`` when none falls inside."""
    gaps = rng.uniform(0.0, max_gap, int(n / sample_rate / (0.25 * max_gap)) + 2)
    onsets = np.cumsum(gaps * sample_rate).astype(np.int64)
    onsets -= int(rng.uniform(0, max_gap) * sample_rate)
    onsets = onsets[(onsets >= 0) & (onsets < n)]
    if onsets.size == 0:
        onsets = np.array([int(rng.integers(0, latest))])
    return onsets


def _peak_one(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.abs(x).max()), 1e-9)).astype(np.float32)


def _click(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    length = max(4, int(rng.uniform(0.5, 3.0) * 1e-3 * sample_rate))
    t = np.arange(length, dtype=np.float32)
    return _peak_one(rng.standard_normal(length, dtype=np.float32) * np.exp(-4.0 * t / length))


def _knock(sample_rate: int, rng: np.random.Generator, modes: np.ndarray) -> np.ndarray:
    decay_s = rng.uniform(0.008, 0.06)
    t = np.arange(int(5 * decay_s * sample_rate), dtype=np.float32) / sample_rate
    freqs = (modes * rng.uniform(0.97, 1.03, modes.shape[0])).astype(np.float32)
    phases = np.asarray(rng.uniform(0, _TWO_PI, size=modes.shape[0]), dtype=np.float32)
    ringing = np.sin(_TWO_PI * freqs[:, None] * t[None, :] + phases[:, None]).sum(axis=0)
    out = (ringing * np.exp(-t / decay_s)).astype(np.float32)
    attack = _click(sample_rate, rng)
    out[: attack.shape[0]] += 0.5 * attack
    return _peak_one(out)


def _chime(sample_rate: int, rng: np.random.Generator, f0: float, inharmonic: bool) -> np.ndarray:
    count = int(rng.integers(2, 5))
    ratios = _CHIME_RATIOS[:count] if inharmonic else np.arange(1, count + 1, dtype=np.float64)
    freqs = f0 * ratios * rng.uniform(0.995, 1.005, count)
    freqs = freqs[freqs < 0.45 * sample_rate].astype(np.float32)
    decay_s = rng.uniform(0.02, 0.15)
    t = np.arange(int(4 * decay_s * sample_rate), dtype=np.float32) / sample_rate
    # Higher partials die faster, as in struck metal and piezo beepers.
    decays = (decay_s / np.sqrt(ratios[: freqs.shape[0]])).astype(np.float32)
    amps = (rng.uniform(0.3, 1.0, freqs.shape[0]) / np.arange(1, freqs.shape[0] + 1)).astype(
        np.float32
    )
    phases = np.asarray(rng.uniform(0, _TWO_PI, size=freqs.shape[0]), dtype=np.float32)
    partials = np.sin(_TWO_PI * freqs[:, None] * t[None, :] + phases[:, None])
    out = (amps[:, None] * partials * np.exp(-t[None, :] / decays[:, None])).sum(axis=0)
    attack = min(t.shape[0], max(1, int(rng.uniform(0.5, 5.0) * 1e-3 * sample_rate)))
    out[:attack] *= np.linspace(0.0, 1.0, attack, dtype=np.float32)
    return _peak_one(out)


def _keys(sample_rate: int, rng: np.random.Generator, band: tuple[float, float]) -> np.ndarray:
    """A key press and its release: two short bursts of band-passed noise."""
    length = int(rng.uniform(0.005, 0.025) * sample_rate)
    gap = int(rng.uniform(0.03, 0.09) * sample_rate)
    size = gap + length
    spectrum = np.fft.rfft(rng.standard_normal(length).astype(np.float32))
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    spectrum[(freqs < band[0]) | (freqs > band[1])] = 0.0
    burst = np.fft.irfft(spectrum, n=length).astype(np.float32)
    burst *= np.exp(-5.0 * np.arange(length, dtype=np.float32) / length)
    out = np.zeros(size, dtype=np.float32)
    out[:length] += burst
    out[gap:] += burst * np.float32(10 ** (-rng.uniform(4.0, 12.0) / 20.0))
    return _peak_one(out)


def transient(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Trains of short events: clicks, knocks, beeps/chimes that decay, keyboard typing.

    One or two event kinds per clip (a door keeps its resonances, a beeper its pitch: the
    per-kind parameters are drawn once per clip and jittered per event). Onsets are spaced by
    0 to ``max_gap`` seconds (``max_gap`` 0.2-1 s, at least one event per clip), each event's
    level is drawn within ±6 dB. Knocks: 1-3 damped modes at 80-1500 Hz (decay 8-60 ms);
    chimes/beeps: 2-4 harmonic or inharmonic partials from 400-3500 Hz decaying in 20-150 ms;
    clicks: 0.5-3 ms broadband; keys: 5-25 ms noise bursts band-passed within 800-7000 Hz and
    a softer release. A floor sits 25-40 dB below the events.
    """
    n = num_samples
    chosen = rng.choice(len(_EVENT_KINDS), size=int(rng.integers(1, 3)), replace=False)
    kinds = [_EVENT_KINDS[int(i)] for i in chosen]
    # Knocks and chimes come from one source per clip (a door, a beeper): two takes each,
    # made once and reused. Clicks and key presses are drawn afresh for every event.
    takes: dict[str, list[np.ndarray]] = {}
    if "knock" in kinds:
        modes = np.array([_log_uniform(rng, 80.0, 1500.0) for _ in range(int(rng.integers(1, 4)))])
        takes["knock"] = [_knock(sample_rate, rng, modes) for _ in range(2)]
    if "chime" in kinds:
        f0 = _log_uniform(rng, 400.0, min(3500.0, 0.3 * sample_rate))
        inharmonic = bool(rng.random() < 0.5)
        takes["chime"] = [_chime(sample_rate, rng, f0, inharmonic) for _ in range(2)]
    low = _log_uniform(rng, 800.0, 3000.0)
    band = (low, min(low * rng.uniform(1.5, 4.0), 7000.0, 0.45 * sample_rate))
    max_gap = rng.uniform(0.2, 1.0)
    onsets = _event_onsets(n, sample_rate, rng, max_gap, latest=max(1, n - sample_rate // 20))
    levels = 10 ** (np.asarray(rng.uniform(-6.0, 6.0, size=onsets.shape[0])) / 20.0)
    picks = np.asarray(rng.integers(0, 2 * len(kinds), size=onsets.shape[0]))
    out = np.zeros(n, dtype=np.float32)
    for onset, level, pick in zip(onsets.tolist(), levels.tolist(), picks.tolist(), strict=True):
        kind = kinds[pick % len(kinds)]
        if kind in takes:
            event = takes[kind][pick // len(kinds)]
        elif kind == "click":
            event = _click(sample_rate, rng)
        else:
            event = _keys(sample_rate, rng, band)
        stop = min(n, onset + event.shape[0])
        out[onset:stop] += np.float32(level) * event[: stop - onset]
    _add_floor(out, rng, (25.0, 40.0))
    return out


def burst_envelope(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """An amplitude envelope that turns a steady sound into a train of short events.

    Multiplied onto white noise it gives clicks, onto a tone beeps, onto band noise knocks or
    key presses: what a transient is made of, in every family's spectrum. Onsets are spaced by
    0 to ``max_gap`` seconds (``max_gap`` 0.1-1 s, at least one event), each event rises
    linearly in 0.5-5 ms and decays exponentially with a time constant of 5-200 ms (both drawn
    per clip, log-uniform; levels ±6 dB per event), over a floor 20-40 dB below the events.
    Computed as an impulse train convolved with the event shape (one FFT product).
    """
    n = num_samples
    onsets = _event_onsets(n, sample_rate, rng, rng.uniform(0.1, 1.0), latest=n)
    impulses = np.zeros(n, dtype=np.float64)
    np.add.at(impulses, onsets, 10 ** (rng.uniform(-6.0, 6.0, size=onsets.shape[0]) / 20.0))
    attack = max(1, int(_log_uniform(rng, 0.5e-3, 5e-3) * sample_rate))
    decay = _log_uniform(rng, 5e-3, 0.2) * sample_rate
    length = min(n, attack + int(5 * decay))
    shape = np.exp(-(np.arange(length) - attack).clip(min=0) / decay)
    shape[:attack] = np.arange(1, attack + 1) / attack
    size = 1 << (n + length - 1).bit_length()
    train = np.fft.irfft(np.fft.rfft(impulses, size) * np.fft.rfft(shape, size), size)[:n]
    floor = 10 ** (-rng.uniform(20.0, 40.0) / 20.0)
    return (train.clip(min=0.0) + floor).astype(np.float32)


# -- modulated ------------------------------------------------------------------------------
def modulated(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Fans, engines, rain gusts, traffic: noise under a moving amplitude envelope.

    Carrier: coloured noise, 1/f^e with e in [0, 2]. Envelope, half the time periodic (rate
    0.5-20 Hz drifting by up to 5 %, depth 50-95 %, pulse sharpness 1-4: fans and engines),
    otherwise random (a smooth log-normal path with 0.5-5 knots per second, sigma 0.5-1.5:
    gusts, passing traffic). Half the draws also move the spectral balance: the carrier's low
    and high parts (split at 300-3000 Hz) are cross-faded by a second slow path.
    """
    n = num_samples
    hop = _control_hop(sample_rate)
    m = _control_times(n, hop, sample_rate).shape[0]
    spectrum, freqs = _colored_spectrum(n, sample_rate, rng, rng.uniform(0.0, 2.0))
    if rng.random() < 0.5:
        rate = rng.uniform(0.5, 20.0) * (1.0 + 0.05 * (2 * _smooth_path(rng, m, 2) - 1))
        cycle = np.cumsum(rate) * (hop / sample_rate) + rng.uniform(0, 1)
        pulse = (0.5 + 0.5 * np.cos(_TWO_PI * cycle)) ** rng.uniform(1.0, 4.0)
        depth = rng.uniform(0.5, 0.95)
        envelope = 1.0 - depth + depth * pulse
    else:
        knots = max(1, int(rng.uniform(0.5, 5.0) * n / sample_rate))
        path = _smooth_path(rng, m, knots)
        path = np.clip((path - path.mean()) / max(float(path.std()), 1e-6), -2.5, 2.5)
        envelope = np.exp(rng.uniform(0.5, 1.5) * path)
    carrier = np.fft.irfft(spectrum, n=n).astype(np.float32)
    if rng.random() < 0.5:
        split = _log_uniform(rng, 300.0, 3000.0)
        low = np.fft.irfft(np.where(freqs < split, spectrum, 0), n=n).astype(np.float32)
        high = carrier - low
        balance = 0.1 + 0.8 * _smooth_path(rng, m, int(rng.integers(1, 5)))
        low *= math.sqrt(float(np.mean(high**2)) / max(float(np.mean(low**2)), 1e-20))
        carrier = _upsample(np.sqrt(balance), hop, n) * low
        carrier += _upsample(np.sqrt(1.0 - balance), hop, n) * high
    return carrier * _upsample(envelope, hop, n)


# -- drifting -------------------------------------------------------------------------------
def _ola_noise(spectra: np.ndarray, frame: int, num_samples: int) -> np.ndarray:
    """Overlap-add (hop = frame / 2, sine window: constant power) of per-frame spectra."""
    hop = frame // 2
    window = np.sin(math.pi * (np.arange(frame) + 0.5) / frame).astype(np.float32)
    frames = np.fft.irfft(spectra, n=frame, axis=1).astype(np.float32) * window
    out = np.zeros((frames.shape[0] + 1, hop), dtype=np.float32)
    out[:-1] += frames[:, :hop]
    out[1:] += frames[:, hop:]
    return out.reshape(-1)[hop : hop + num_samples]


def drifting(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise whose spectral shape moves over the clip.

    Made frame by frame (32-ms frames, half overlap): the spectral slope 1/f^e moves between
    two exponents in [-0.5, 2.5] at least 1 apart, and (in 70 % of draws) a resonance of
    6-20 dB, 0.3-1.5 octaves wide, glides between two centres 150-6000 Hz at least one octave
    apart; both along smooth random paths with 1-3 knots.
    """
    frame = 2 ** round(math.log2(0.032 * sample_rate))
    hop = frame // 2
    count = num_samples // hop + 2
    freqs = np.fft.rfftfreq(frame, 1.0 / sample_rate).astype(np.float32)
    freqs[0] = freqs[1]
    log_f = np.log2(freqs)
    start = rng.uniform(-0.5, 2.5)
    # The end exponent lies at least 1 away, on a side with room for it.
    rooms = [room for room in (2.5 - start, -(start + 0.5)) if abs(room) >= 1.0]
    room = rooms[int(rng.integers(len(rooms)))]
    end = start + math.copysign(rng.uniform(1.0, abs(room)), room)
    slope_path = _smooth_path(rng, count, int(rng.integers(1, 4)))
    slope_path = (slope_path - slope_path.min()) / max(float(np.ptp(slope_path)), 1e-6)
    exponent = (start + (end - start) * slope_path).astype(np.float32)
    log_mag = -0.5 * exponent[:, None] * log_f[None, :]
    if rng.random() < 0.7:
        top = math.log2(min(6000.0, 0.4 * sample_rate))
        c0 = rng.uniform(math.log2(150.0), top - 1.0)
        c1 = rng.uniform(c0 + 1.0, top)
        if rng.random() < 0.5:
            c0, c1 = c1, c0
        path = _smooth_path(rng, count, int(rng.integers(1, 4)))
        path = (path - path.min()) / max(float(np.ptp(path)), 1e-6)
        centre = (c0 + (c1 - c0) * path).astype(np.float32)
        width = rng.uniform(0.3, 1.5)
        gain = rng.uniform(6.0, 20.0) / 20.0 * math.log2(10.0)
        log_mag += gain * np.exp(-0.5 * ((log_f[None, :] - centre[:, None]) / width) ** 2)
    magnitude = np.exp2(log_mag - log_mag.max(axis=1, keepdims=True))
    magnitude[:, freqs < 20.0] = 0.0
    magnitude[:, 0] = 0.0
    parts = rng.standard_normal((2, count, freqs.shape[0]), dtype=np.float32)
    spectra = (parts[0] + 1j * parts[1]) * magnitude
    # Even loudness per frame: the shape moves, not the level.
    spectra /= np.sqrt(np.mean(magnitude**2, axis=1, keepdims=True)) + 1e-12
    return _ola_noise(spectra, frame, num_samples)


# -- instruments ----------------------------------------------------------------------------
_SCALES = (
    np.array([0, 2, 4, 5, 7, 9, 11]),  # major
    np.array([0, 2, 3, 5, 7, 8, 10]),  # minor
    np.array([0, 2, 4, 7, 9]),  # pentatonic
    np.arange(12),  # chromatic
)


def _voice(
    n: int, sample_rate: int, rng: np.random.Generator, beat_s: float, scale: np.ndarray
) -> np.ndarray:
    hop = _control_hop(sample_rate)
    t = _control_times(n, hop, sample_rate)
    durations = beat_s * rng.choice(
        (0.5, 1.0, 1.0, 1.5, 2.0), int(n / sample_rate / beat_s * 2) + 4
    )
    onsets = np.concatenate(([0.0], np.cumsum(durations)))[:-1] - rng.uniform(0, beat_s)
    count = onsets.shape[0]
    steps = rng.integers(-3, 4, count)
    degree = np.cumsum(steps) % (3 * scale.shape[0])  # wander within three octaves
    semitones = 12 * (degree // scale.shape[0]) + scale[degree % scale.shape[0]]
    root = _log_uniform(rng, 70.0, min(700.0, 0.05 * sample_rate))
    note_hz = root * 2.0 ** (semitones / 12.0) * rng.uniform(0.997, 1.003, count)
    velocity = np.asarray(rng.uniform(0.4, 1.0, size=count)) * (rng.random(count) > 0.12)  # rests
    idx = np.clip(np.searchsorted(onsets, t, side="right") - 1, 0, count - 1)
    since = t - onsets[idx]
    log_hz = np.log(note_hz)
    if rng.random() < 0.3:  # portamento: slide from the previous note
        slide = rng.uniform(0.02, 0.12)
        prev = log_hz[np.maximum(idx - 1, 0)]
        log_f = prev + (log_hz[idx] - prev) * np.minimum(since / slide, 1.0)
    else:
        log_f = log_hz[idx]
    freq = np.exp(log_f)
    if rng.random() < 0.5:
        freq *= 1.0 + rng.uniform(0.003, 0.015) * np.sin(_TWO_PI * rng.uniform(4.0, 7.0) * t)
    if rng.random() < 0.5:  # plucked or struck: fast attack, exponential decay
        attack = rng.uniform(0.002, 0.01)
        shape = np.exp(-since / rng.uniform(0.1, 0.8))
    else:  # bowed or blown: slower attack, held, released before the next note
        attack = rng.uniform(0.02, 0.08)
        release = rng.uniform(0.03, 0.1)
        shape = np.clip((durations[idx] - since) / release, 0.0, 1.0)
    envelope = velocity[idx] * np.minimum(since / attack, 1.0) * shape
    amps = _harmonic_amplitudes(rng, float(freq.max()), sample_rate, 10)
    phase = _phase(freq, hop, n, sample_rate, rng)
    return _harmonics(phase, amps) * _upsample(envelope, hop, n)


def instruments(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """1-3 harmonic voices playing notes together, like instruments.

    One beat (0.12-0.6 s) and scale (major, minor, pentatonic or chromatic) per clip; each
    voice has its own register (root 70-700 Hz, notes wandering over three octaves), note
    lengths of 0.5-2 beats with rests, velocities, plucked (2-10 ms attack, 0.1-0.8 s decay)
    or sustained (20-80 ms attack, release before the next note) envelopes, 1-10 harmonics,
    optional vibrato (4-7 Hz, 0.3-1.5 %) and portamento (20-120 ms slides). A faint floor sits
    40-55 dB below.
    """
    beat_s = rng.uniform(0.12, 0.6)
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    out = np.zeros(num_samples, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        out += np.float32(rng.uniform(0.4, 1.0)) * _voice(
            num_samples, sample_rate, rng, beat_s, scale
        )
    _add_floor(out, rng, (40.0, 55.0))
    return out


#: Family name -> generator, as used by ``NoiseSource``.
FAMILIES: dict[str, Family] = {
    "glide": glide,
    "transient": transient,
    "modulated": modulated,
    "drifting": drifting,
    "instruments": instruments,
}
