"""Scores of enhanced speech: SI-SDR, PESQ-WB, STOI, one record per clip, and the report.

One SI-SDR everywhere: :func:`audiodiag.losses.si_sdr` (zero-mean, as Asteroid; torchmetrics'
``zero_mean=True`` gives the same numbers, a test holds them equal). :func:`score_clip` builds
the per-clip record that both the training module's test loop and ``python -m
audiodiag.evaluate`` write, and :func:`summarize_test_records` / :func:`markdown_test_report`
turn records into the tables. Nothing here imports Lightning or torchmetrics; PESQ and STOI are
optional packages, imported only when scored.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from audiodiag.audio import resample
from audiodiag.losses import si_sdr

__all__ = [
    "SILENCE_RMS",
    "markdown_test_report",
    "per_clip_si_sdr",
    "pesq_stoi_available",
    "pesq_wb",
    "score_clip",
    "silent_mask",
    "stoi_score",
    "summarize_test_records",
]

#: A clean clip whose RMS is below this (about -100 dBFS) counts as silent.
SILENCE_RMS = 1e-5


def silent_mask(clean: Tensor, lengths: Tensor | None = None) -> Tensor:
    """(B,) bool: True where the clean reference is silent (RMS below :data:`SILENCE_RMS`)."""
    if lengths is None:
        energy = clean.float().pow(2).mean(dim=-1)
    else:
        time = torch.arange(clean.shape[-1], device=clean.device)
        valid = (time[None, :] < lengths[:, None]).to(clean.dtype)
        energy = (clean.float().pow(2) * valid).sum(-1) / lengths.clamp_min(1).to(clean.dtype)
    return energy.sqrt() < SILENCE_RMS


def per_clip_si_sdr(estimate: Tensor, clean: Tensor, lengths: Tensor) -> Tensor:
    """(B,) zero-mean SI-SDR of each clip over its true length (padding excluded)."""
    estimate, clean = estimate.float(), clean.float()
    if bool((lengths == clean.shape[-1]).all()):
        return si_sdr(estimate, clean)
    values = [
        si_sdr(estimate[i, : int(n)], clean[i, : int(n)]) for i, n in enumerate(lengths.tolist())
    ]
    return torch.stack(values)


def pesq_stoi_available() -> tuple[bool, str]:
    """(True, "") when pesq and pystoi import, else (False, one line saying what to install)."""
    missing = []
    for name in ("pesq", "pystoi"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        return False, (
            f"PESQ/STOI skipped on test: {' and '.join(missing)} not installed "
            "(pip install 'audiodiag[metrics]')"
        )
    return True, ""


def pesq_wb(clean: Any, degraded: Any, sample_rate: int) -> float:
    """Wideband PESQ of one clip (16 kHz; resampled if needed), NaN where PESQ refuses."""
    from pesq import pesq

    if sample_rate != 16000:
        clean = resample(torch.as_tensor(clean), sample_rate, 16000).numpy()
        degraded = resample(torch.as_tensor(degraded), sample_rate, 16000).numpy()
    try:  # PESQ raises on silence ("No utterances detected") and on clips under ~0.25 s.
        return float(pesq(16000, clean, degraded, "wb"))
    except Exception:  # noqa: BLE001 - any PESQ failure makes this clip's score undefined
        return math.nan


def stoi_score(clean: Any, degraded: Any, sample_rate: int) -> float:
    """STOI of one clip, NaN where pystoi cannot score it (too short after silence removal)."""
    from pystoi import stoi

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(stoi(clean, degraded, sample_rate, extended=False))
    except Exception:  # noqa: BLE001
        return math.nan
    # pystoi returns 1e-5 with a warning when fewer than 30 frames survive: not a score.
    return math.nan if value <= 1e-5 else value


def score_clip(
    clean: Tensor,
    systems: Mapping[str, Tensor],
    sample_rate: int,
    labels: Mapping[str, Any],
    pesq_stoi: bool = False,
) -> dict[str, Any]:
    """The record of one clip: its labels, length, silence, and every system's scores.

    ``clean`` and each of ``systems`` (e.g. ``noisy``, ``model``, ``reference``) are (time,)
    waveforms of the same true length; ``labels`` gives ``source_id``, ``noise_type`` and
    ``snr_db``. PESQ-WB and STOI are added when ``pesq_stoi`` and the clean clip is not silent.
    """
    clean = clean.detach().float().cpu()
    waves = {name: wav.detach().float().cpu() for name, wav in systems.items()}
    silent = bool(silent_mask(clean.unsqueeze(0))[0])
    record: dict[str, Any] = {
        "source_id": str(labels.get("source_id", "")),
        "noise_type": str(labels.get("noise_type", "unknown")),
        "snr_db": float(labels.get("snr_db", math.nan)),
        "seconds": clean.shape[-1] / sample_rate,
        "silent": silent,
        "si_sdr": {name: float(si_sdr(wav, clean)) for name, wav in waves.items()},
    }
    if pesq_stoi and not silent:
        ref = clean.numpy()
        record["pesq"] = {k: pesq_wb(ref, v.numpy(), sample_rate) for k, v in waves.items()}
        record["stoi"] = {k: stoi_score(ref, v.numpy(), sample_rate) for k, v in waves.items()}
    return record


# ---------------------------------------------------------------------- test report
def _snr_groups(records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Group record indices by SNR: exact values when there are few, else 5 dB buckets."""
    snrs = [float(r["snr_db"]) for r in records]
    finite = [s for s in snrs if math.isfinite(s)]
    distinct = sorted({round(s, 2) for s in finite})
    groups: dict[str, list[int]] = defaultdict(list)
    keyed: dict[float, str] = {}
    for i, s in enumerate(snrs):
        if not math.isfinite(s):
            label, order = "SNR n/a", math.inf
        elif len(distinct) <= 8:
            order = round(s, 2)
            label = f"{order:g} dB"
        else:
            lo = 5.0 * math.floor(s / 5.0)
            order = lo
            label = f"[{lo:g}, {lo + 5:g}) dB"
        keyed[order] = label
        groups[label].append(i)
    return {keyed[k]: groups[keyed[k]] for k in sorted(keyed)}


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def summarize_test_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean scores per system, overall and by noise type and SNR, from per-clip records.

    Returns ``{"n_clips", "n_silent", "systems", "groups": {label: {"kind", "n", "si_sdr":
    {system: dB}, "si_sdri": {...}, "pesq": {...}, "stoi": {...}}}}``; silent clips are left
    out of every mean. ``label`` is ``"all"``, a noise type, or an SNR value/bucket.
    """
    scored = [r for r in records if not r.get("silent")]
    systems: list[str] = []
    for r in scored:
        for name in r["si_sdr"]:
            if name not in systems:
                systems.append(name)
    by_noise: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(scored):
        by_noise[str(r["noise_type"])].append(i)
    groups: dict[str, tuple[str, list[int]]] = {"all": ("all", list(range(len(scored))))}
    for name in sorted(by_noise):
        groups[name] = ("noise", by_noise[name])
    for label, idx in _snr_groups(scored).items():
        groups[label] = ("snr", idx)

    summary: dict[str, Any] = {
        "n_clips": len(records),
        "n_silent": len(records) - len(scored),
        "systems": systems,
        "groups": {},
    }
    for label, (kind, idx) in groups.items():
        rows = [scored[i] for i in idx]
        entry: dict[str, Any] = {"kind": kind, "n": len(rows)}
        for metric in ("si_sdr", "pesq", "stoi"):
            if not any(metric in r for r in rows):
                continue
            entry[metric] = {
                s: _mean([r.get(metric, {}).get(s, math.nan) for r in rows]) for s in systems
            }
        entry["si_sdri"] = {
            s: _mean([r["si_sdr"][s] - r["si_sdr"]["noisy"] for r in rows])
            for s in systems
            if s != "noisy"
        }
        summary["groups"][label] = entry
    return summary


def markdown_test_report(
    summary: Mapping[str, Any], system_names: Mapping[str, str] | None = None
) -> str:
    """Markdown tables (one per metric): rows are systems, columns overall / noise / SNR."""
    names = {"noisy": "noisy input", "reference": "Wiener", "model": "model"}
    names.update(system_names or {})
    labels = list(summary["groups"])
    header = "| system | " + " | ".join(labels) + " |"
    rule = "|---|" + "---:|" * len(labels)
    counts = "| clips | " + " | ".join(str(summary["groups"][g]["n"]) for g in labels) + " |"
    out = [
        f"Test set: {summary['n_clips']} clips ({summary['n_silent']} silent, left out). "
        "SI-SDR on zero-mean signals.",
        "",
    ]
    titles = {
        "si_sdr": "SI-SDR (dB)",
        "si_sdri": "SI-SDR improvement (dB)",
        "pesq": "PESQ-WB",
        "stoi": "STOI",
    }
    for metric, title in titles.items():
        if not any(metric in summary["groups"][g] for g in labels):
            continue
        out += [f"**{title}**", "", header, rule, counts]
        for system in summary["systems"]:
            if metric == "si_sdri" and system == "noisy":
                continue
            cells = []
            for g in labels:
                value = summary["groups"][g].get(metric, {}).get(system)
                cells.append("n/a" if value is None else f"{value:.2f}")
            out.append(f"| {names.get(system, system)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
