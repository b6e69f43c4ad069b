"""Write a LibriSpeech-shaped tree from the demo voices, for input-pipeline benchmarks and tests.

The tree has the layout of the real corpus, so ``data=librispeech data.speech.root=OUT`` trains
on it (torchaudio's ``LIBRISPEECH`` lists it)::

    OUT/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac
    OUT/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Each file concatenates random demo utterances of one demo voice (with 50-300 ms pauses) into
10-20 s of 16 kHz 16-bit FLAC, like LibriSpeech's utterances; the transcript holds the sentences
spoken. ``train-clean-100`` is made from the demo's training voices, ``dev-clean`` and
``test-clean`` from its validation and test voices, so the subsets keep disjoint voices. Each
demo voice stands for several LibriSpeech speaker ids (the same voice: this is a benchmark for
file sizes and counts, not a corpus to learn from). Default: 1,040 training files (about 4.3 h,
about 450 MB), 48 + 48 in dev/test. Deterministic for a seed.

Usage::

    python scripts/make_bench_corpus.py /tmp/bench_librispeech
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiodiag.paths import DEMO_CORPUS_DIR

SAMPLE_RATE = 16000
SUBSET_OF_SPLIT = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}

_utterances: dict[str, list[tuple[np.ndarray, str]]] = {}


def _read_demo(demo: Path) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """split -> demo speaker -> [(path, text)] from the demo corpus's metadata.csv."""
    metadata = demo / "metadata.csv"
    if not metadata.is_file():
        raise SystemExit(f"demo corpus metadata not found at '{metadata}'")
    out: dict[str, dict[str, list[tuple[str, str]]]] = {}
    with open(metadata, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_speaker = out.setdefault(row["split"], {})
            by_speaker.setdefault(row["speaker"], []).append((str(demo / row["path"]), row["text"]))
    return out


def _load_voice(items: list[tuple[str, str]]) -> list[tuple[np.ndarray, str]]:
    return [(sf.read(path, dtype="float32")[0], text) for path, text in items]


def _write_chapter(job: tuple[str, int, int, int, list[tuple[str, str]], int]) -> int:
    """Write one chapter folder (files + transcript); returns the samples written."""
    folder, speaker, chapter, files, items, seed = job
    key = items[0][0]
    if key not in _utterances:  # each worker decodes a voice once
        _utterances[key] = _load_voice(items)
    voice = _utterances[key]
    rng = np.random.default_rng([seed, speaker, chapter])
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    total = 0
    for n in range(files):
        target = int(rng.uniform(10.0, 20.0) * SAMPLE_RATE)
        pieces, texts, length = [], [], 0
        while length < target:
            audio, text = voice[int(rng.integers(len(voice)))]
            pause = np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE), dtype=np.float32)
            pieces += [audio, pause]
            texts.append(text.rstrip(".?!").upper())
            length += audio.shape[0] + pause.shape[0]
        wave = np.concatenate(pieces)[: int(20.0 * SAMPLE_RATE)]
        file_id = f"{speaker}-{chapter}-{n:04d}"
        sf.write(str(out / f"{file_id}.flac"), wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        lines.append(f"{file_id} {' '.join(texts)}")
        total += wave.shape[0]
    (out / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return total


def build(
    out: Path,
    train_files: int = 1040,
    eval_files: int = 48,
    speakers_per_voice: int = 5,
    files_per_chapter: int = 13,
    seed: int = 0,
    workers: int | None = None,
    demo: Path = DEMO_CORPUS_DIR,
) -> dict[str, object]:
    """Write the tree under ``out``; returns counts and timings."""
    started = time.perf_counter()
    by_split = _read_demo(demo)
    base = out / "LibriSpeech"
    jobs = []
    speaker_id = 100
    for split, subset in SUBSET_OF_SPLIT.items():
        if (base / subset).is_dir():
            shutil.rmtree(base / subset)
        wanted = train_files if split == "train" else eval_files
        voices = sorted(by_split.get(split, {}))
        if not voices:
            raise SystemExit(f"demo corpus has no '{split}' speakers")
        chapters = -(-wanted // files_per_chapter)
        for c in range(chapters):
            voice = voices[c % len(voices)]
            # Spread chapters over speakers_per_voice LibriSpeech ids for each demo voice.
            speaker = (
                speaker_id
                + voices.index(voice) * speakers_per_voice
                + (c // len(voices)) % speakers_per_voice
            )
            files = min(files_per_chapter, wanted - c * files_per_chapter)
            folder = base / subset / str(speaker) / str(1000 + c)
            jobs.append((str(folder), speaker, 1000 + c, files, by_split[split][voice], seed))
        speaker_id += len(voices) * speakers_per_voice
    workers = workers or multiprocessing.cpu_count()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        samples = pool.map(_write_chapter, jobs)
    files = sum(job[3] for job in jobs)
    stats = {
        "out": str(out),
        "files": files,
        "hours": sum(samples) / SAMPLE_RATE / 3600,
        "bytes": sum(p.stat().st_size for p in base.rglob("*.flac")),
        "seconds": time.perf_counter() - started,
    }
    print(
        f"wrote {files} FLAC files ({stats['hours']:.2f} h, {stats['bytes'] / 1e6:.0f} MB) "
        f"under {base} in {stats['seconds']:.1f} s with {workers} processes",
        file=sys.stderr,
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (LibriSpeech/ is made inside)")
    parser.add_argument("--train-files", type=int, default=1040)
    parser.add_argument("--eval-files", type=int, default=48, help="files in dev/test each")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train_files < 1 or args.eval_files < 1:
        parser.error("--train-files and --eval-files must be >= 1")
    build(args.out, args.train_files, args.eval_files, seed=args.seed, workers=args.workers)


if __name__ == "__main__":
    main()
