"""Score an enhancer on test mixtures or on a folder pair: ``python -m audiodiag.evaluate``.

::

    python -m audiodiag.evaluate model=model.pt                      # demo test mixtures
    python -m audiodiag.evaluate model=best.ckpt data=librispeech data.test_mixtures=256
    python -m audiodiag.evaluate model=wiener --json wiener.json
    python -m audiodiag.evaluate model=model.pt noisy_dir=noisy/ clean_dir=clean/

With a data config (default ``data=demo``), the fixed test mixtures of that config's DataModule
are scored (Hydra composes ``conf/train.yaml``; ``data.*``, ``noise``, ``noise.*``,
``sample_rate`` and ``seed`` overrides pass through). With ``noisy_dir``/``clean_dir``, every
audio file under ``noisy_dir`` is paired with the file of the same relative path (any audio
extension) under ``clean_dir``; the noise type is the first sub-folder name (``all`` when flat)
and the SNR is measured from the pair.

Prints Markdown tables (SI-SDR, SI-SDR improvement, PESQ-WB, STOI; overall, by noise type, by
SNR bucket; the noisy input as a row) and the real-time factor of the model. SI-SDR is computed on
zero-mean signals, as in training. ``json=PATH`` (or ``--json PATH``) writes the same numbers;
the path is checked before the evaluation runs (never a folder, an input, or an existing file
without ``overwrite=true``) and the file is renamed into place only when complete.

Nothing is dropped silently: a pair whose noisy and clean files differ in length by more than
:data:`LENGTH_TOLERANCE_SECONDS`, and a clip shorter than :data:`MIN_CLIP_SECONDS` (its SI-SDR
means nothing), are skipped, listed with their reason and counted in the report.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from audiodiag import pretrained
from audiodiag.atomic import OutputError, atomic_write, check_output
from audiodiag.audio import AUDIO_EXTENSIONS, AudioDecodeError, load_mono, scan_audio
from audiodiag.cli import CliError, parse_bool, parse_cli, parse_float, resolve_device, run_entry
from audiodiag.inference import Enhancer, enhance_waveform, load_enhancer
from audiodiag.loading import ModelLoadError
from audiodiag.metrics import (
    markdown_test_report,
    pesq_stoi_available,
    score_clip,
    summarize_test_records,
)
from audiodiag.paths import CONF_DIR

__all__ = ["Clip", "evaluate_clips", "folder_clips", "datamodule_clips", "main"]

USAGE = """usage: python -m audiodiag.evaluate [model=MODEL] [data=demo | noisy_dir=DIR clean_dir=DIR]

Score a model on the fixed test mixtures of a data config, or on noisy/clean folder pairs.

  model=MODEL          pretrained:NAME (shipped; default pretrained:causal), an exported
                       TorchScript file, a training checkpoint (.ckpt) or 'wiener'
  data=NAME            data config (conf/data: demo, librispeech, ...; default demo);
                       data.KEY=VALUE, noise=NAME, noise.KEY=VALUE, sample_rate=, seed= pass on
  noisy_dir=DIR        folder of noisy files (recursive) ...
  clean_dir=DIR        ... and their clean references at the same relative paths
  reference=wiener     also score the Wiener reference on the same clips (default: none)
  pesq_stoi=true       PESQ-WB and STOI (needs pesq and pystoi; default true)
  limit=N              score only the first N clips
  device=cpu|cuda      where the model runs (default cpu)
  threads=N            torch CPU threads (default 1, so the real-time factor is per core)
  json=PATH            also write the results as JSON (also --json PATH); checked first
  overwrite=false      replace an existing json file (default: refuse before evaluating)
  --debug              show the traceback of an unexpected error (also AUDIODIAG_DEBUG=1)

Pairs whose lengths differ by more than 10 ms and clips shorter than 0.1 s are skipped and
counted (their SI-SDR would be a crop of another signal, or meaningless).
"""

#: Noisy/clean pairs may differ by this much (resampling rounding) and are cropped to the shorter.
LENGTH_TOLERANCE_SECONDS = 0.01
#: Shorter clips are skipped: a few samples give an SI-SDR of 0 dB or noise, not a score.
MIN_CLIP_SECONDS = 0.1

#: A test clip: noisy and clean (time,) at ``rate``, with its labels.
Clip = dict[str, Any]


def datamodule_clips(overrides: Sequence[str], limit: int | None = None) -> Iterator[Clip]:
    """The fixed test mixtures of the data config composed from ``overrides``.

    Each clip is cut to its true length (the batch ``length``), so padding is never scored.
    """
    # Hydra only for this source: a folder pair or a model load does not pay its import.
    import hydra
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = list(overrides)
    if not any(o.split("=", 1)[0].lstrip("+") == "data.num_workers" for o in overrides):
        overrides.append("data.num_workers=0")  # one pass over a fixed set: no worker start-up
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    except Exception as error:  # noqa: BLE001 - Hydra raises several kinds for bad overrides
        raise CliError(f"cannot compose the data config from {overrides}: {error}") from error
    finally:
        GlobalHydra.instance().clear()
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    rate = int(datamodule.sample_rate)
    count = 0
    for batch in datamodule.test_dataloader():
        for i in range(batch["noisy"].shape[0]):
            if limit is not None and count >= limit:
                return
            n = int(batch["length"][i])
            yield {
                "noisy": batch["noisy"][i, :n].float(),
                "clean": batch["clean"][i, :n].float(),
                "rate": rate,
                "snr_db": float(batch["snr_db"][i]),
                "noise_type": str(batch["noise_type"][i]),
                "source_id": str(batch["source_id"][i]),
            }
            count += 1


def _measured_snr_db(noisy: torch.Tensor, clean: torch.Tensor) -> float:
    noise = (noisy - clean).double().pow(2).sum()
    signal = clean.double().pow(2).sum()
    if float(noise) == 0.0:
        return math.inf if float(signal) > 0 else math.nan
    # 0.1 dB is plenty for bucketing; "+ 0.0" turns -0.0 into 0.0 for the table labels.
    return round(float(10.0 * torch.log10(signal.clamp_min(1e-20) / noise)), 1) + 0.0


def folder_clips(
    noisy_dir: str | Path,
    clean_dir: str | Path,
    sample_rate: int,
    limit: int | None = None,
    skipped: dict[str, str] | None = None,
) -> Iterator[Clip]:
    """Pairs ``noisy_dir/REL`` with ``clean_dir/REL`` (same stem, any audio extension).

    Files without a clean partner, or that cannot be decoded, go to ``skipped`` (path -> reason).
    """
    noisy_root, clean_root = Path(noisy_dir), Path(clean_dir)
    for key, root in (("noisy_dir", noisy_root), ("clean_dir", clean_root)):
        if not root.is_dir():
            raise CliError(f"{key}={root} is not a folder")
    skipped = {} if skipped is None else skipped
    files = scan_audio(noisy_root)
    if not files:
        raise CliError(
            f"noisy_dir={noisy_root} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})"
        )
    count = 0
    for noisy_path in files:
        if limit is not None and count >= limit:
            return
        rel = noisy_path.relative_to(noisy_root)
        candidates = [clean_root / rel] + [
            (clean_root / rel).with_suffix(ext) for ext in AUDIO_EXTENSIONS
        ]
        clean_path = next((c for c in candidates if c.is_file()), None)
        if clean_path is None:
            skipped[str(noisy_path)] = (
                f"no clean file {clean_root / rel} (any of {AUDIO_EXTENSIONS})"
            )
            continue
        try:
            noisy = load_mono(noisy_path, sample_rate)
            clean = load_mono(clean_path, sample_rate)
        except AudioDecodeError as error:
            skipped[str(error.path)] = error.reason
            continue
        mismatch = abs(noisy.shape[-1] - clean.shape[-1])
        if mismatch > LENGTH_TOLERANCE_SECONDS * sample_rate:
            skipped[str(noisy_path)] = (
                f"noisy is {noisy.shape[-1] / sample_rate:.2f} s but clean {clean_path} is "
                f"{clean.shape[-1] / sample_rate:.2f} s; a pair must have the same length "
                f"(up to {LENGTH_TOLERANCE_SECONDS * 1000:.0f} ms is cropped)"
            )
            continue
        n = min(noisy.shape[-1], clean.shape[-1])
        noisy, clean = noisy[:n], clean[:n]
        yield {
            "noisy": noisy,
            "clean": clean,
            "rate": sample_rate,
            "snr_db": _measured_snr_db(noisy, clean),
            "noise_type": rel.parts[0] if len(rel.parts) > 1 else "all",
            "source_id": rel.as_posix(),
        }
        count += 1


def evaluate_clips(
    enhancer: Enhancer,
    clips: Iterable[Clip],
    pesq_stoi: bool = True,
    reference: Enhancer | None = None,
    progress: bool = True,
    skipped: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score ``enhancer`` (and ``reference``) on ``clips``; returns the report dict.

    ``{"records": [...], "summary": summarize_test_records(...), "rtf": model seconds per audio
    second, "audio_seconds", "model_seconds", "pesq_stoi": bool, "note": str, "skipped": n}``.
    Clips shorter than :data:`MIN_CLIP_SECONDS` go to ``skipped`` (id -> reason).
    """
    skipped = {} if skipped is None else skipped
    note = ""
    if pesq_stoi:
        pesq_stoi, note = pesq_stoi_available()
    records: list[dict[str, Any]] = []
    model_seconds = 0.0
    audio_seconds = 0.0
    for clip in tqdm(clips, desc="evaluate", unit="clip", disable=not progress):
        noisy, clean, rate = clip["noisy"], clip["clean"], int(clip["rate"])
        if noisy.shape[-1] < MIN_CLIP_SECONDS * rate:
            skipped[str(clip["source_id"])] = (
                f"{noisy.shape[-1]} sample(s) ({noisy.shape[-1] / rate * 1000:.1f} ms) is "
                f"shorter than {MIN_CLIP_SECONDS} s; its SI-SDR would mean nothing"
            )
            continue
        started = time.perf_counter()
        enhanced = enhance_waveform(enhancer, noisy.unsqueeze(0), rate)[0]
        model_seconds += time.perf_counter() - started
        audio_seconds += noisy.shape[-1] / rate
        if not bool(torch.isfinite(enhanced).all()):
            raise RuntimeError(f"{enhancer.name} produced NaN/inf on clip {clip['source_id']}")
        systems = {"noisy": noisy, "model": enhanced}
        if reference is not None:
            systems["reference"] = enhance_waveform(reference, noisy.unsqueeze(0), rate)[0]
        records.append(score_clip(clean, systems, rate, clip, pesq_stoi))
    if not records:
        raise CliError(f"no clips to score: {_why_no_clips(skipped)}")
    return {
        "model": enhancer.name,
        "records": records,
        "summary": summarize_test_records(records),
        "audio_seconds": audio_seconds,
        "model_seconds": model_seconds,
        "rtf": model_seconds / audio_seconds if audio_seconds else math.nan,
        "threads": torch.get_num_threads(),
        "pesq_stoi": bool(pesq_stoi),
        "note": note,
        "skipped_count": len(skipped),
    }


def _why_no_clips(skipped: dict[str, str]) -> str:
    """Why an evaluation found nothing to score, in one line."""
    if not skipped:
        return "the source yielded no clips (limit=0, or an empty test set)"
    path, reason = next(iter(skipped.items()))
    return f"all {len(skipped)} clip(s) were skipped (first: {path}: {reason})"


def markdown_report(report: dict[str, Any], source: str) -> str:
    """The Markdown printed by the command: metric tables plus the real-time factor."""
    names = {"model": Path(report["model"]).name if report["model"] != "wiener" else "wiener"}
    text = [f"## {names['model']} on {source}", "", markdown_test_report(report["summary"], names)]
    text.append(
        f"Real-time factor: {report['rtf']:.4f} ({report['model_seconds']:.2f} s for "
        f"{report['audio_seconds']:.1f} s of audio, {report['threads']} thread(s), clip by clip)"
    )
    if report.get("skipped_count"):
        text.append(
            f"\nSkipped {report['skipped_count']} clip(s) (not scored; each is listed with its "
            "reason on stderr and under 'skipped' in the JSON)"
        )
    if report.get("note"):
        text.append(f"\n{report['note']}")
    return "\n".join(text)


#: Keys passed on to Hydra's composition of the data config.
_PASSTHROUGH = ("data", "noise", "sample_rate", "seed")
_ARGUMENTS = (
    "model",
    "noisy_dir",
    "clean_dir",
    "reference",
    "pesq_stoi",
    "limit",
    "device",
    "threads",
    "json",
    "overwrite",
    *_PASSTHROUGH,
)


def _clips(
    args: dict[str, str], sample_rate: int, limit: int | None, skipped: dict[str, str]
) -> tuple[Iterable[Clip], str]:
    """The clips the arguments name (a folder pair or a data config's test mixtures), and a
    phrase saying which."""
    if "noisy_dir" in args or "clean_dir" in args:
        if not args.get("noisy_dir") or not args.get("clean_dir"):
            raise CliError("give both noisy_dir=DIR and clean_dir=DIR")
        clips = folder_clips(args["noisy_dir"], args["clean_dir"], sample_rate, limit, skipped)
        return clips, f"{args['noisy_dir']} vs {args['clean_dir']}"
    overrides = [
        f"{k}={v}"
        for k, v in args.items()
        if k in _PASSTHROUGH or k.startswith(("data.", "noise."))
    ]
    if "data" not in args:
        overrides.insert(0, "data=demo")
    source = f"the test mixtures of data={args.get('data', 'demo')}"
    return datamodule_clips(overrides, limit), source


def _check_json(args: dict[str, str]) -> Path | None:
    """The ``json=`` output, checked before the evaluation so that a bad path loses nothing."""
    if not args.get("json"):
        return None
    overwrite = parse_bool("overwrite", args.get("overwrite", "false"))
    inputs = [args[k] for k in ("model", "noisy_dir", "clean_dir") if args.get(k)]
    return check_output(args["json"], "json", inputs=inputs, overwrite=overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m audiodiag.evaluate``; returns the exit status (0 done, 2 bad
    input, 1 unexpected error)."""
    return run_entry(_main, argv)


def _main(argv: list[str]) -> int:
    skipped: dict[str, str] = {}
    try:
        args = parse_cli(argv, _ARGUMENTS, USAGE, prefixes=("data.", "noise."))
        if args is None:
            return 0
        json_path = _check_json(args)
        torch.set_num_threads(int(parse_float("threads", args.get("threads", "1"), 0)))
        device = resolve_device(args.get("device"))
        limit = int(parse_float("limit", args["limit"], 0)) if "limit" in args else None
        pesq_stoi = parse_bool("pesq_stoi", args.get("pesq_stoi", "true"))
        enhancer = load_enhancer(args.get("model", pretrained.PREFIX + pretrained.DEFAULT), device)
        reference_name = args.get("reference", "none").lower()
        if reference_name not in ("none", "wiener"):
            raise CliError(f"reference={reference_name!r} is unknown; accepted: none, wiener")
        reference = load_enhancer("wiener") if reference_name == "wiener" else None
        clips, source = _clips(args, enhancer.sample_rate, limit, skipped)
        report = evaluate_clips(enhancer, clips, pesq_stoi, reference, skipped=skipped)
    except (CliError, ModelLoadError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = markdown_report(report, source)
    print(text)
    for path, reason in skipped.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if json_path is not None:
        report["markdown"] = text
        report["skipped"] = skipped
        replaced = " (replaced the existing file: overwrite=true)" if json_path.exists() else ""
        with atomic_write(json_path) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {json_path}{replaced}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
