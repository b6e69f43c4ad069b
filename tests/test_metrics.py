"""Metrics: one SI-SDR (equal to torchmetrics'), PESQ/STOI guards, per-clip records, report."""

from __future__ import annotations

import math

import pytest
import torch

from audiodiag.losses import si_sdr
from audiodiag.metrics import (
    markdown_test_report,
    per_clip_si_sdr,
    pesq_wb,
    score_clip,
    summarize_test_records,
)

SR = 16000


def test_our_si_sdr_is_torchmetrics_zero_mean_si_sdr():
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    g = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 8000, generator=g) + 0.3  # an offset: zero_mean must matter
    estimate = clean + 0.5 * torch.randn(4, 8000, generator=g)
    theirs = scale_invariant_signal_distortion_ratio(estimate, clean, zero_mean=True)
    torch.testing.assert_close(si_sdr(estimate, clean), theirs, atol=1e-4, rtol=0)
    lengths = torch.tensor([8000, 5000, 8000, 100])
    ours = per_clip_si_sdr(estimate, clean, lengths)
    for i, n in enumerate(lengths.tolist()):
        one = scale_invariant_signal_distortion_ratio(estimate[i, :n], clean[i, :n], zero_mean=True)
        assert ours[i].item() == pytest.approx(one.item(), abs=1e-4)


def test_score_clip_record():
    g = torch.Generator().manual_seed(1)
    clean = 0.1 * torch.randn(SR, generator=g)
    noisy = clean + 0.1 * torch.randn(SR, generator=g)
    labels = {"source_id": "a", "noise_type": "white", "snr_db": 0.0}
    record = score_clip(clean, {"noisy": noisy, "model": clean}, SR, labels)
    assert record["seconds"] == 1.0 and not record["silent"]
    assert record["si_sdr"]["noisy"] == pytest.approx(0.0, abs=0.5)
    assert record["si_sdr"]["model"] > 60 and "pesq" not in record
    silent = score_clip(torch.zeros(SR), {"noisy": noisy}, SR, labels, pesq_stoi=True)
    assert silent["silent"] and "pesq" not in silent


def test_pesq_returns_nan_on_silence_instead_of_raising():
    pytest.importorskip("pesq")
    silence = torch.zeros(SR).numpy()
    assert math.isnan(pesq_wb(silence, silence, SR))


def test_summary_groups_by_noise_and_snr_and_skips_silent():
    records = []
    for i, (noise, snr) in enumerate([("white", -5), ("pink", 0), ("white", 5), ("pink", 5)]):
        records.append(
            {
                "noise_type": noise,
                "snr_db": float(snr),
                "silent": False,
                "si_sdr": {"noisy": float(snr), "model": snr + 8.0, "reference": snr + 3.0 + i},
            }
        )
    records.append(
        {
            "noise_type": "white",
            "snr_db": 0.0,
            "silent": True,
            "si_sdr": {"noisy": -50.0, "model": 50.0},
        }
    )
    summary = summarize_test_records(records)
    groups = summary["groups"]
    assert summary["n_silent"] == 1 and groups["all"]["n"] == 4
    assert groups["all"]["si_sdri"]["model"] == pytest.approx(8.0)
    assert groups["white"]["si_sdri"]["reference"] == pytest.approx((3.0 + 5.0) / 2)
    assert groups["5 dB"]["n"] == 2 and groups["-5 dB"]["si_sdr"]["noisy"] == -5.0
    table = markdown_test_report(summary, {"model": "GainNet (mask)"})
    assert "| GainNet (mask) | 8.00 |" in table and "| Wiener |" in table
    # Columns: all, pink, white, -5 dB, 0 dB, 5 dB.
    assert "| noisy input | 1.25 | 2.50 | 0.00 | -5.00 | 0.00 | 5.00 |" in table


def test_snr_buckets_when_snr_is_continuous():
    records = [
        {
            "noise_type": "white",
            "snr_db": s,
            "silent": False,
            "si_sdr": {"noisy": s, "model": s + 1},
        }
        for s in torch.linspace(-5, 14.9, 20).tolist()
    ]
    labels = [g for g, e in summarize_test_records(records)["groups"].items() if e["kind"] == "snr"]
    assert labels == ["[-5, 0) dB", "[0, 5) dB", "[5, 10) dB", "[10, 15) dB"]
