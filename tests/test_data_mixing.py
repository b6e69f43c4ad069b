"""Mixer (SNR, crop/pad, clean unchanged, clipping, silence) and noise generators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_data_sources import speechlike

from audiodiag.data import NO_NOISE_SNR_DB, NOISE_TYPES, SILENT_SNR_DB, Mixer, NoiseSource

RATE = 16000


def _snr_db(clean: torch.Tensor, noise: torch.Tensor) -> float:
    return 10 * math.log10(
        float(clean.double().square().sum()) / float(noise.double().square().sum())
    )


@pytest.mark.parametrize("kind", [k for k in NOISE_TYPES if k not in ("babble", "folder")])
def test_realised_snr_within_0_1_db_and_clean_unchanged(kind):
    mixer = Mixer(RATE, segment_seconds=1.0, snr_db_range=(-5, 15))
    source = NoiseSource({kind: 1.0})
    for seed in range(5):
        rng = np.random.default_rng(seed)
        speech = torch.from_numpy(speechlike(1.5, RATE, seed))
        clean, length = mixer.crop(speech, rng)
        original = clean.clone()
        noise, made = source.sample(mixer.segment_samples, RATE, rng)
        assert made == kind
        snr = mixer.draw_snr_db(rng)
        assert -5 <= snr <= 15
        mix = mixer.mix(clean, length, torch.from_numpy(noise), snr, rng)
        if mix.rescaled:  # impulsive noise peaks far above its RMS: both scaled together
            assert kind in ("transient", "mixture")
            factor = float(mix.clean.abs().max() / original.abs().max())
            assert factor < 1 and torch.allclose(mix.clean, original * factor, atol=1e-6)
        else:
            assert torch.equal(mix.clean, original)  # only the noise is scaled
        assert torch.allclose(mix.noisy - mix.clean, mix.noise, atol=1e-6)
        assert abs(_snr_db(mix.clean, mix.noisy - mix.clean) - snr) < 0.1
        assert mix.snr_db == pytest.approx(snr)


def test_crop_and_pad_record_true_length():
    mixer = Mixer(RATE, segment_seconds=0.5)
    rng = np.random.default_rng(0)
    long = torch.arange(RATE, dtype=torch.float32)
    crop, length = mixer.crop(long, rng)
    assert crop.shape == (8000,) and length == 8000
    assert torch.equal(crop, long[int(crop[0]) : int(crop[0]) + 8000])  # a contiguous window
    short = torch.ones(3000)
    padded, length = mixer.crop(short, rng)
    assert padded.shape == (8000,) and length == 3000
    assert float(padded[3000:].abs().sum()) == 0.0
    # SNR over the true length only: padding does not dilute the speech power.
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal(8000).astype(np.float32))
    mix = mixer.mix(padded * 0.1, length, noise, 5.0)
    assert abs(_snr_db(mix.clean[:3000], mix.noise[:3000]) - 5.0) < 0.1


def test_silent_clean_and_silent_noise_stay_finite():
    mixer = Mixer(RATE, segment_seconds=0.25)
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    mix = mixer.mix(torch.zeros(4000), 4000, noise, 0.0)
    assert mix.snr_db == SILENT_SNR_DB
    assert torch.isfinite(mix.noisy).all() and float(mix.noisy.abs().max()) > 0
    rms = float(mix.noise.square().mean().sqrt())
    assert 20 * math.log10(rms) == pytest.approx(-30.0, abs=0.01)
    mix = mixer.mix(torch.zeros(4000), 0, torch.zeros(4000), 10.0)
    assert mix.snr_db == NO_NOISE_SNR_DB and torch.isfinite(mix.noisy).all()
    speech = torch.from_numpy(speechlike(0.25, RATE, 0))
    mix = mixer.mix(speech, 4000, torch.zeros(4000), 10.0)
    assert torch.equal(mix.noisy, speech) and mix.snr_db == NO_NOISE_SNR_DB


def test_anti_clipping_scales_both_and_keeps_snr():
    mixer = Mixer(RATE, segment_seconds=0.25, peak_limit=0.9)
    loud = torch.from_numpy(speechlike(0.25, RATE, 3)) * 4.0  # peaks well above 1
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    mix = mixer.mix(loud, 4000, noise, 0.0)
    assert mix.rescaled
    peak = max(float(mix.noisy.abs().max()), float(mix.clean.abs().max()))
    assert peak == pytest.approx(0.9, rel=1e-5)
    assert abs(_snr_db(mix.clean, mix.noise) - 0.0) < 0.01
    ratio = mix.clean / loud
    assert torch.allclose(
        ratio[loud.abs() > 0.01], ratio[loud.abs() > 0.01][0].expand(1), rtol=1e-4
    )


def test_random_gain_applies_to_both():
    mixer = Mixer(RATE, segment_seconds=0.25, gain_db_range=(-12, -6))
    speech = torch.from_numpy(speechlike(0.25, RATE, 1))
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    mix = mixer.mix(speech, 4000, noise, 3.0, np.random.default_rng(5))
    assert -12 <= mix.gain_db <= -6
    assert torch.allclose(mix.clean, speech * 10 ** (mix.gain_db / 20), atol=1e-6)
    assert abs(_snr_db(mix.clean, mix.noise) - 3.0) < 0.1


def test_mixer_rejects_bad_ranges():
    with pytest.raises(ValueError, match="snr_db_range"):
        Mixer(snr_db_range=(10, -5))
    with pytest.raises(ValueError, match="segment_seconds"):
        Mixer(segment_seconds=0)


def test_snr_weights_shape_the_draw_and_equal_weights_change_nothing():
    uniform = Mixer(snr_db_range=(-5, 30))
    equal = Mixer(snr_db_range=(-5, 30), snr_db_weights=[1] * 7)
    for seed in range(50):  # one draw either way: the same numbers, and the same stream after
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        assert equal.draw_snr_db(b) == pytest.approx(uniform.draw_snr_db(a), abs=1e-9)
        assert a.random() == b.random()
    weighted = Mixer(snr_db_range=(-5, 30), snr_db_weights=[2, 2, 2, 2, 1, 1, 1])
    rng = np.random.default_rng(0)
    draws = np.array([weighted.draw_snr_db(rng) for _ in range(20000)])
    counts = np.histogram(draws, bins=7, range=(-5, 30))[0] / draws.size
    assert np.allclose(counts, np.array([2, 2, 2, 2, 1, 1, 1]) / 11, atol=0.01)
    gaps = Mixer(snr_db_range=(0, 30), snr_db_weights=[1, 0, 3])  # a zero band is never drawn
    draws = np.array([gaps.draw_snr_db(rng) for _ in range(4000)])
    assert not ((draws > 10) & (draws < 20)).any()
    assert (draws >= 20).mean() == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1], [1, float("nan")]])
def test_bad_snr_weights_name_the_key(weights):
    with pytest.raises(ValueError, match="snr_db_weights"):
        Mixer(snr_db_weights=weights)


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / RATE)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum())


def test_noise_types_seeded_finite_unit_rms_and_shaped():
    source = NoiseSource()
    n = RATE
    for kind in ("white", "pink", "brown", "hum", "tonal", "band"):
        a, _ = source.generate(kind, n, RATE, np.random.default_rng(7))
        b, _ = source.generate(kind, n, RATE, np.random.default_rng(7))
        c, _ = source.generate(kind, n, RATE, np.random.default_rng(8))
        assert a.dtype == np.float32 and a.shape == (n,)
        assert np.array_equal(a, b) and not np.array_equal(a, c), kind
        assert np.isfinite(a).all()
        assert float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) == pytest.approx(1.0, rel=1e-3)
    # Spectral slopes: power per octave is flat for pink, falls ~6 dB/octave for brown.
    pink, _ = source.generate("pink", 4 * n, RATE, np.random.default_rng(0))
    brown, _ = source.generate("brown", 4 * n, RATE, np.random.default_rng(0))
    white, _ = source.generate("white", 4 * n, RATE, np.random.default_rng(0))
    for x, expected in ((white, 3.0), (pink, 0.0), (brown, -3.0)):
        octave_change = 10 * math.log10(_band_power(x, 2000, 4000) / _band_power(x, 1000, 2000))
        assert octave_change == pytest.approx(expected, abs=1.0)
    # Hum: nearly all energy within 2 Hz of multiples of 50 or 60 Hz.
    hum, _ = source.generate("hum", n, RATE, np.random.default_rng(3))
    spectrum = np.abs(np.fft.rfft(hum)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    near = np.zeros_like(freqs, dtype=bool)
    for f0 in (50.0, 60.0):
        near |= np.abs(freqs - f0 * np.round(freqs / f0)) <= 2.0
    assert spectrum[near & (freqs < 600)].sum() / spectrum.sum() > 0.95


def test_noise_weights_and_errors(tmp_path):
    source = NoiseSource({"white": 3.0, "pink": 1.0, "hum": 0.0})
    kinds = [source.draw_type(np.random.default_rng(i)) for i in range(400)]
    assert set(kinds) == {"white", "pink"}
    assert 0.65 < kinds.count("white") / 400 < 0.85
    with pytest.raises(ValueError, match="unknown noise types \\['rain'\\]"):
        NoiseSource({"rain": 1.0})
    with pytest.raises(ValueError, match="no positive weight"):
        NoiseSource({"white": 0.0})
    with pytest.raises(ValueError, match="noise.folder"):
        NoiseSource({"folder": 1.0})
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "readme.txt").write_text("no audio here")
    empty = NoiseSource({"folder": 1.0}, folder=tmp_path / "only_text")
    with pytest.raises(ValueError, match=str(tmp_path / "only_text")):
        empty.setup()


def test_babble_uses_given_speech_and_falls_back():
    source = NoiseSource({"babble": 1.0}, babble_talkers=(2, 2))
    pool = [torch.from_numpy(speechlike(0.7, RATE, s)) for s in range(3)]
    calls = []

    def draw(rng):
        calls.append(1)
        return pool[int(rng.integers(len(pool)))]

    noise, kind = source.sample(RATE, RATE, np.random.default_rng(0), draw_speech=draw)
    assert kind == "babble" and len(calls) == 2 and np.isfinite(noise).all()
    _, kind = source.sample(RATE, RATE, np.random.default_rng(0), draw_speech=lambda rng: None)
    assert kind == "pink"


def test_noise_type_draw_equals_generator_choice():
    """draw_type replaces Generator.choice(p=...) (10x the cost) with the same single draw, so
    seeded mixtures are what they were."""
    noise = NoiseSource({"white": 1.0, "pink": 2.5, "hum": 0.5, "babble": 3.0})
    for seed in range(200):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = noise.types[int(a.choice(len(noise.types), p=noise.probabilities))]
        assert noise.draw_type(b) == expected
        assert a.random() == b.random()  # and the stream goes on from the same place
