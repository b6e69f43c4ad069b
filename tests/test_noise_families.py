"""Procedural noise families, mixtures and rooms: each family's defining property, in numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from audiodiag.data import NOISE_TYPES, NoiseSource
from audiodiag.data.noise_families import FAMILIES
from audiodiag.data.rooms import apply_room, room_impulse_response
from audiodiag.paths import CONF_DIR

RATE = 16000
SEEDS = range(16)
SYNTHETIC = [t for t in NOISE_TYPES if t not in ("babble", "folder")]


def _draw(kind: str, seed: int, seconds: float = 2.0, **kwargs) -> np.ndarray:
    noise, made = NoiseSource({kind: 1.0}, **kwargs).generate(
        kind, int(seconds * RATE), RATE, np.random.default_rng(seed)
    )
    assert made == kind
    return noise.astype(np.float64)


def _frames(x: np.ndarray, size: int) -> np.ndarray:
    count = x.shape[0] // size
    return x[: count * size].reshape(count, size)


def _stft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    count = (x.shape[0] - n_fft) // hop + 1
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return np.abs(np.fft.rfft(x[index] * np.hanning(n_fft), axis=1)) ** 2


def _peak_hz(x: np.ndarray, n_fft: int = 2048, hop: int = 256) -> np.ndarray:
    """Frequency of the strongest STFT bin per frame (parabolic interpolation)."""
    log_power = np.log(_stft_power(x, n_fft, hop) + 1e-20)
    k = np.clip(log_power.argmax(axis=1), 1, log_power.shape[1] - 2)
    rows = np.arange(k.shape[0])
    a, b, c = log_power[rows, k - 1], log_power[rows, k], log_power[rows, k + 1]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / n_fft


def _pitch_spread(x: np.ndarray) -> float:
    """95th over 5th percentile of the peak frequency track (1.0: the peak never moves)."""
    peak = _peak_hz(x)
    return float(np.percentile(peak, 95) / np.percentile(peak, 5))


def _top_decile_energy(x: np.ndarray) -> float:
    """Share of the energy held by the loudest 10 % of 10-ms frames."""
    energy = np.sort(np.square(_frames(x, RATE // 100)).sum(axis=1))[::-1]
    return float(energy[: max(1, energy.shape[0] // 10)].sum() / energy.sum())


def _seeded_draws(source: NoiseSource, kind: str) -> list[tuple[np.ndarray, str]]:
    """``kind`` drawn by ``source`` for every seed of ``SEEDS`` (2 s, training split)."""
    return [source.generate(kind, 2 * RATE, RATE, np.random.default_rng(s)) for s in SEEDS]


def _envelope_cv(x: np.ndarray) -> float:
    """Coefficient of variation of the RMS of 10-ms frames."""
    rms = np.sqrt(np.square(_frames(x, RATE // 100)).mean(axis=1))
    return float(rms.std() / rms.mean())


def _shape_change_db(x: np.ndarray) -> float:
    """Largest RMS difference (dB) between level-normalised octave-band profiles (250 Hz-8 kHz)
    of any two quarter-second windows: how far the spectral shape moves over the clip."""
    power = _stft_power(x, 1024, 256)
    freqs = np.fft.rfftfreq(1024, 1 / RATE)
    bands = np.stack(
        [power[:, (freqs >= lo) & (freqs < 2 * lo)].sum(1) for lo in 250 * 2 ** np.arange(5)], 1
    )
    windows = bands[: bands.shape[0] // 16 * 16].reshape(-1, 16, bands.shape[1]).sum(1)
    profile = 10 * np.log10(windows)
    profile -= profile.mean(axis=1, keepdims=True)
    return float(np.sqrt(((profile[:, None] - profile[None]) ** 2).mean(-1)).max())


# -- every synthetic type -------------------------------------------------------------------
@pytest.mark.parametrize("kind", SYNTHETIC)
def test_every_type_seeded_finite_unit_rms_right_length(kind):
    for rate, n in ((RATE, 2 * RATE), (8000, 4001)):
        source = NoiseSource({kind: 1.0}, room_probability=0.5)
        a, _ = source.generate(kind, n, rate, np.random.default_rng(7))
        b, _ = source.generate(kind, n, rate, np.random.default_rng(7))
        c, _ = source.generate(kind, n, rate, np.random.default_rng(8))
        assert a.dtype == np.float32 and a.shape == (n,), (kind, rate)
        assert np.isfinite(a).all()
        assert np.array_equal(a, b) and not np.array_equal(a, c), kind
        assert float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) == pytest.approx(1.0, rel=1e-3)


def test_parameters_change_with_every_draw():
    # Not just new noise samples: the sound itself differs (pitch, spacing, shape...).
    for kind in FAMILIES:
        peaks = {round(float(np.median(_peak_hz(_draw(kind, seed)))), -1) for seed in range(6)}
        assert len(peaks) >= 4, (kind, peaks)


# -- defining properties --------------------------------------------------------------------
def test_glide_pitch_moves_while_hum_stays():
    spreads = [_pitch_spread(_draw("glide", seed)) for seed in SEEDS]
    # Every glide moves its strongest partial by more than 3 % (typically 10-40 %).
    assert min(spreads) > 1.03, spreads
    assert float(np.median(spreads)) > 1.08
    assert max(_pitch_spread(_draw("hum", seed)) for seed in range(4)) < 1.005


def test_glide_sweep_is_many_bins_wide():
    tracks = [np.ptp(_peak_hz(_draw("glide", seed)) / (RATE / 2048)) for seed in SEEDS]
    assert float(np.median(tracks)) > 5.0, tracks  # 7.8-Hz bins


def test_transient_energy_sits_in_short_spans():
    shares = [_top_decile_energy(_draw("transient", seed)) for seed in SEEDS]
    assert float(np.mean(shares)) > 0.6 and min(shares) > 0.3, shares
    white = [_top_decile_energy(_draw("white", seed)) for seed in range(4)]
    assert max(white) < 0.15, white


def test_modulated_envelope_varies_while_white_is_steady():
    cvs = [_envelope_cv(_draw("modulated", seed)) for seed in SEEDS]
    assert min(cvs) > 0.15, cvs
    assert float(np.median(cvs)) > 0.3
    white = [_envelope_cv(_draw("white", seed)) for seed in range(4)]
    assert max(white) < 0.1, white


def test_drifting_spectral_shape_moves_while_coloured_noise_stays():
    moves = [_shape_change_db(_draw("drifting", seed)) for seed in SEEDS]
    assert min(moves) > 1.5 and float(np.median(moves)) > 4.0, moves
    for kind in ("white", "pink", "brown"):
        still = [_shape_change_db(_draw(kind, seed)) for seed in range(4)]
        assert max(still) < 1.25, (kind, still)


def test_instruments_change_pitch_and_level_note_by_note():
    for seed in SEEDS:
        x = _draw("instruments", seed)
        assert _pitch_spread(x) > 1.05, seed  # notes change pitch
        assert _envelope_cv(x) > 0.15, seed  # onsets and decays


# -- mixtures -------------------------------------------------------------------------------
def test_mixture_sums_two_or_three_positive_weight_types(monkeypatch):
    source = NoiseSource({"glide": 1.0, "hum": 1.0, "modulated": 1.0, "mixture": 1.0})
    made: list[str] = []
    original = NoiseSource._make

    def spy(self, kind, *args):
        made.append(kind)
        return original(self, kind, *args)

    monkeypatch.setattr(NoiseSource, "_make", spy)
    counts = []
    for seed in range(30):
        made.clear()
        _, kind = source.generate("mixture", RATE, RATE, np.random.default_rng(seed))
        assert kind == "mixture" and made[0] == "mixture"
        parts = made[1:]
        assert set(parts) <= {"glide", "hum", "modulated"} and len(set(parts)) == len(parts)
        counts.append(len(parts))
    assert set(counts) == {2, 3}
    # Alone, a mixture draws from every synthetic type (it is then a held-out family).
    alone = NoiseSource({"mixture": 1.0})
    made.clear()
    for seed in range(40):
        alone.generate("mixture", RATE // 4, RATE, np.random.default_rng(seed))
    assert len(set(made) - {"mixture"}) >= 8 and not {"babble", "folder"} & set(made)


# -- rooms ----------------------------------------------------------------------------------
def test_room_response_decays_at_its_rt60():
    ir = room_impulse_response(RATE, np.random.default_rng(0), rt60_range=(0.5, 0.5))
    assert ir[0] == 1.0 and ir.shape[0] < 0.52 * RATE and np.isfinite(ir).all()
    # Schroeder integration: -5 to -25 dB, extrapolated to 60 dB.
    tail = np.cumsum(np.square(ir[::-1].astype(np.float64)))[::-1]
    decay_db = 10 * np.log10(tail / tail[0])
    t5, t25 = np.argmax(decay_db < -5) / RATE, np.argmax(decay_db < -25) / RATE
    assert 0.3 < 3 * (t25 - t5) < 0.55


def test_apply_room_is_circular_convolution():
    rng = np.random.default_rng(1)
    ir = room_impulse_response(RATE, rng)
    x = rng.standard_normal(RATE).astype(np.float32)
    wet = apply_room(x, ir)
    full = np.convolve(x, ir)
    folded = full[:RATE].copy()
    folded[: full.shape[0] - RATE] += full[RATE:]
    assert wet.shape == x.shape and np.allclose(wet, folded, atol=1e-3)


def test_room_adds_a_tail_to_transients():
    dry = _seeded_draws(NoiseSource({"transient": 1.0}), "transient")
    wet = _seeded_draws(NoiseSource({"transient": 1.0}, room_probability=1.0), "transient")
    shares_dry = [_top_decile_energy(a.astype(np.float64)) for a, _ in dry]
    shares_wet = [_top_decile_energy(b.astype(np.float64)) for b, _ in wet]
    # The same events, smeared: energy spreads out of the loudest frames.
    assert all(w <= d + 0.01 for w, d in zip(shares_wet, shares_dry, strict=True))
    assert float(np.mean(shares_dry) - np.mean(shares_wet)) > 0.08


def test_room_probability_and_rt60_are_checked():
    with pytest.raises(ValueError, match="noise.room_probability"):
        NoiseSource({"white": 1.0}, room_probability=1.5)
    with pytest.raises(ValueError, match="noise.room_rt60_range"):
        NoiseSource({"white": 1.0}, room_rt60_range=(0.0, 0.5))
    with pytest.raises(ValueError, match="noise.mixture_types"):
        NoiseSource({"mixture": 1.0}, mixture_types=(1, 3))


def test_bursts_gate_training_draws_into_events_and_never_touch_valid_or_test():
    steady = NoiseSource({"tonal": 1.0})
    gated = NoiseSource({"tonal": 1.0}, burst_probability=1.0)
    draws = list(zip(_seeded_draws(steady, "tonal"), _seeded_draws(gated, "tonal"), strict=True))
    for (a, _), (b, made) in draws:
        assert made == "tonal" and b.dtype == np.float32 and b.shape == a.shape
        assert math.isclose(
            float(np.sqrt(np.mean(np.square(b, dtype=np.float64)))), 1.0, rel_tol=1e-3
        )
    shares_steady = [_top_decile_energy(a.astype(np.float64)) for (a, _), _ in draws]
    shares_gated = [_top_decile_energy(b.astype(np.float64)) for _, (b, _) in draws]
    # A steady tone spreads its energy over every frame; gated, the loudest tenth holds most.
    assert max(shares_steady) < 0.25 and float(np.mean(shares_gated)) > 0.5, shares_gated
    for split in ("valid", "test"):
        a, _ = steady.generate("tonal", RATE, RATE, np.random.default_rng(7), split)
        b, _ = gated.generate("tonal", RATE, RATE, np.random.default_rng(7), split)
        assert np.array_equal(a, b)


def test_burst_probability_zero_draws_nothing_and_bad_values_name_the_key():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a, _ = NoiseSource({"white": 1.0}).generate("white", RATE, RATE, rng_a)
    b, _ = NoiseSource({"white": 1.0}, burst_probability=0.0).generate("white", RATE, RATE, rng_b)
    assert np.array_equal(a, b) and rng_a.random() == rng_b.random()
    with pytest.raises(ValueError, match="noise.burst_probability"):
        NoiseSource({"white": 1.0}, burst_probability=-0.1)


# -- the default config ---------------------------------------------------------------------
def test_default_config_covers_every_family_in_balance():
    cfg = yaml.safe_load((CONF_DIR / "noise" / "default.yaml").read_text())
    weights = cfg["weights"]
    assert set(weights) == set(NOISE_TYPES) - {"folder"}
    total = sum(weights.values())
    assert all(v > 0 for v in weights.values())
    # No family dominates (instrument-like noise as half of the noise hurt a calibration run).
    assert max(weights.values()) / total <= 0.1
    assert 0 < cfg["room_probability"] < 0.5
    assert 0 < cfg["burst_probability"] < 0.5  # an augmentation, not most of the noise
    source = NoiseSource(weights, room_probability=cfg["room_probability"])
    assert math.isclose(float(source.probabilities.sum()), 1.0)
