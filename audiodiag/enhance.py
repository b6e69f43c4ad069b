"""Enhance audio files with a trained or exported model: ``python -m audiodiag.enhance``.

::

    python -m audiodiag.enhance model=model.pt input=noisy.wav output=clean.wav
    python -m audiodiag.enhance model=best.ckpt input=recordings/ output=enhanced/ device=cuda
    python -m audiodiag.enhance model=wiener input=recordings/ output=wiener/

``input`` is a file or a folder (searched recursively; the output keeps the relative paths and
file names). Any sample rate and channel count: each channel is resampled to the model's rate,
enhanced, and written back at the input's rate, channel count, length and sample format. Files
are processed in blocks (``block_seconds``), so memory does not grow with the file's length.
Outputs never overwrite inputs; files that are not audio, or that cannot be decoded, are skipped
with a warning and counted in the summary. Each output is written to a temporary file beside it
and renamed into place only when the whole file was enhanced, so a failure never leaves a partial
file and never removes a file that was there before. An existing output is kept (and counted in
the summary) unless ``overwrite=true``; for a single file an existing output is refused instead.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from audiodiag import pretrained
from audiodiag.atomic import OutputError, atomic_write, check_output, check_output_folder
from audiodiag.audio import (
    AUDIO_EXTENSIONS,
    AudioDecodeError,
    audio_info,
    is_audio_file,
    scan_audio,
)
from audiodiag.cli import CliError, parse_bool, parse_cli, parse_float, resolve_device, run_entry
from audiodiag.inference import Enhancer, enhance_file, load_enhancer
from audiodiag.loading import ModelLoadError

__all__ = ["EnhanceSummary", "enhance_paths", "main", "plan_outputs"]

USAGE = f"""usage: python -m audiodiag.enhance [model=MODEL] input=PATH output=PATH [device=cpu]

Enhance an audio file, or every audio file under a folder (recursively, keeping relative paths).

  model=MODEL        pretrained:NAME (a model shipped in the package; default pretrained:causal),
                     an exported TorchScript file (audiodiag.export), a training checkpoint
                     (.ckpt), or 'wiener' (the classical reference)
  input=PATH         audio file or folder ({", ".join(AUDIO_EXTENSIONS)}; any rate and channels)
  output=PATH        output file (for a file input) or folder; never one of the inputs
  overwrite=false    replace existing outputs (default: keep them; a folder run counts them,
                     a single file is refused)
  device=cpu|cuda    where the model runs (default cpu)
  block_seconds=10   audio read and processed per block (memory does not grow with file length)
  threads=N          CPU threads for torch (default: torch's choice)
  --debug            show the traceback of an unexpected error (also AUDIODIAG_DEBUG=1)
"""


@dataclass
class EnhanceSummary:
    """What a run did: files written, files skipped (path -> reason), existing outputs kept or
    replaced, seconds of audio."""

    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    kept: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def line(self) -> str:
        """One-line summary for the terminal."""
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")
        text = (
            f"enhanced {len(self.written)} file(s), {self.audio_seconds:.1f} s of audio in "
            f"{self.wall_seconds:.1f} s (real-time factor {rtf:.4f})"
        )
        if self.replaced:
            text += f"; replaced {len(self.replaced)} existing output(s) (overwrite=true)"
        if self.kept:
            text += (
                f"; kept {len(self.kept)} existing output(s) untouched (overwrite=true replaces "
                "them)"
            )
        if self.skipped:
            text += f"; skipped {len(self.skipped)} file(s) (not audio or undecodable)"
        return text


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def plan_outputs(
    input_path: Path, output_path: Path, overwrite: bool = False
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Map inputs to outputs; returns ``(pairs, non-audio files)``.

    Raises :class:`CliError` when an output would overwrite an input, or when the output folder
    lies inside the input folder, and :class:`audiodiag.atomic.OutputError` for an output that
    cannot be written (not an audio extension, unwritable place, under a file) or, for a single
    file without ``overwrite``, already exists.
    """
    if not input_path.exists():
        raise CliError(f"input={input_path} does not exist")
    source = input_path.resolve()
    target = output_path.resolve()
    if input_path.is_file():
        if output_path.is_dir():
            target = target / input_path.name
        if target == source or (target.exists() and target.samefile(source)):
            raise CliError(
                f"output={output_path} is the input file itself; choose another output path"
            )
        if not is_audio_file(source):
            raise CliError(
                f"input={input_path} is not an audio file; accepted: {', '.join(AUDIO_EXTENSIONS)}"
            )
        check_output(
            target, "output", inputs=[source], overwrite=overwrite, suffixes=AUDIO_EXTENSIONS
        )
        return [(input_path, target)], []
    if target == source or _inside(target, source):
        raise CliError(
            f"output={output_path} lies inside input={input_path}; the outputs would mix with "
            "(and could overwrite) the inputs: choose a folder outside the input folder"
        )
    if _inside(source, target):
        raise CliError(
            f"output={output_path} contains input={input_path}; outputs written there could "
            "overwrite inputs (nested folders with the same names): choose a folder outside it"
        )
    if output_path.exists() and not output_path.is_dir():
        raise CliError(f"output={output_path} is a file; a folder input needs an output folder")
    check_output_folder(output_path, "output")
    others: list[Path] = []
    pairs = [(p, target / p.relative_to(input_path)) for p in scan_audio(input_path, others)]
    inputs = {p.resolve() for p, _ in pairs}
    for src, dst in pairs:
        if dst in inputs:
            raise CliError(
                f"output for {src} would overwrite the input {dst}; choose another output"
            )
    return pairs, others


def _existing_outputs(
    pairs: list[tuple[Path, Path]], overwrite: bool, summary: EnhanceSummary
) -> list[tuple[Path, Path]]:
    """The pairs to enhance: an existing output is kept (and counted) unless ``overwrite``; an
    output path that is a folder is skipped, never replaced."""
    todo: list[tuple[Path, Path]] = []
    for src, dst in pairs:
        if dst.is_dir():
            summary.skipped[str(src)] = f"output {dst} is a folder"
        elif dst.exists() and not overwrite:
            summary.kept.append(dst)
        else:
            todo.append((src, dst))
    return todo


def _readable(
    pairs: list[tuple[Path, Path]], summary: EnhanceSummary, warn: Callable[[str], None]
) -> list[tuple[Path, Path, float]]:
    """Header-only pass: (input, output, seconds) of each decodable file, for the progress bar;
    undecodable files go to ``summary.skipped`` here."""
    todo: list[tuple[Path, Path, float]] = []
    for src, dst in pairs:
        try:
            frames, rate, _ = audio_info(src)
        except AudioDecodeError as error:
            warn(f"skipping {src}: {error.reason}")
            summary.skipped[str(src)] = error.reason
            continue
        todo.append((src, dst, frames / rate))
    return todo


def _enhance_one(
    enhancer: Enhancer,
    job: tuple[Path, Path, float],
    block_seconds: float,
    bar: tqdm,
    summary: EnhanceSummary,
    warn: Callable[[str], None],
) -> None:
    """Enhance ``(src, dst, seconds)`` into ``summary``; an undecodable input is skipped."""
    src, dst, seconds = job
    done = 0.0

    def advance(step: float) -> None:
        nonlocal done
        done += step
        bar.update(step)

    existed = dst.exists()
    try:
        # Written beside dst and renamed only on success: a failure leaves dst as it was.
        with atomic_write(dst) as tmp:
            info = enhance_file(enhancer, src, tmp, block_seconds, on_progress=advance)
    except AudioDecodeError as error:
        warn(f"skipping {src}: {error.reason}")
        summary.skipped[str(src)] = error.reason
        bar.update(max(0.0, seconds - done))
        return
    summary.written.append(dst)
    if existed:
        summary.replaced.append(dst)
    summary.audio_seconds += float(info["seconds"])


def enhance_paths(
    enhancer: Enhancer,
    input_path: str | Path,
    output_path: str | Path,
    block_seconds: float = 10.0,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> EnhanceSummary:
    """Enhance a file or a folder; see the module docstring. Returns an :class:`EnhanceSummary`.

    ``warn`` receives one line per skipped file (default: :func:`warnings.warn`). Existing
    outputs are kept (``summary.kept``) unless ``overwrite`` (then ``summary.replaced``).
    """
    if warn is None:

        def warn(message: str) -> None:
            warnings.warn(message, stacklevel=3)

    pairs, others = plan_outputs(Path(input_path), Path(output_path), overwrite)
    summary = EnhanceSummary()
    for path in others:
        warn(f"skipping {path}: not an audio file ({', '.join(AUDIO_EXTENSIONS)})")
        summary.skipped[str(path)] = "not an audio file"
    pairs = _existing_outputs(pairs, overwrite, summary)
    todo = _readable(pairs, summary, warn)
    started = time.perf_counter()
    total = sum(seconds for _, _, seconds in todo)
    with tqdm(
        total=total,
        unit="s",
        unit_scale=False,
        desc="enhance",
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]",
    ) as bar:
        for src, dst, seconds in todo:
            bar.set_postfix_str(src.name, refresh=False)
            _enhance_one(enhancer, (src, dst, seconds), block_seconds, bar, summary, warn)
        bar.update(max(0.0, total - bar.n))  # float steps may fall a hair short of the total
    summary.wall_seconds = time.perf_counter() - started
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m audiodiag.enhance``; returns the exit status (0 done, 1 some
    files failed or an unexpected error, 2 bad arguments)."""
    return run_entry(_main, argv)


def _main(argv: list[str]) -> int:
    try:
        args = parse_cli(
            argv,
            {"model", "input", "output", "device", "block_seconds", "threads", "overwrite"},
            USAGE,
            required=("input", "output"),
        )
        if args is None:
            return 0
        if "threads" in args:
            torch.set_num_threads(int(parse_float("threads", args["threads"], 0)))
        device = resolve_device(args.get("device"))
        block = parse_float("block_seconds", args.get("block_seconds", "10"), 0.0)
        overwrite = parse_bool("overwrite", args.get("overwrite", "false"))
        # Outputs are checked before the model loads: a bad path costs nothing.
        plan_outputs(Path(args["input"]), Path(args["output"]), overwrite)
        enhancer = load_enhancer(args.get("model", pretrained.PREFIX + pretrained.DEFAULT), device)
        summary = enhance_paths(
            enhancer,
            args["input"],
            args["output"],
            block,
            warn=lambda message: tqdm.write(f"warning: {message}", file=sys.stderr),
            overwrite=overwrite,
        )
    except (CliError, ModelLoadError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary.line())
    for path, reason in summary.skipped.items():
        print(f"  skipped {path}: {reason}")
    for kept in summary.kept[:10]:
        print(f"  kept existing {kept} (overwrite=true replaces it)")
    if len(summary.kept) > 10:
        print(f"  ... and {len(summary.kept) - 10} more existing output(s) kept")
    return 0 if summary.written or not summary.skipped else 1


if __name__ == "__main__":
    sys.exit(main())
