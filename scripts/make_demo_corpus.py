"""Build the bundled demo speech corpus (data/demo) with espeak-ng.

Synthesises short English sentences written for this project (a small combinatorial grammar,
no third-party text) with twelve espeak-ng "speakers" (voice + variant + pitch), resamples them to
16 kHz mono, trims leading/trailing silence, normalises the level and writes 16-bit FLAC plus
``metadata.csv`` (``path,speaker,voice,text,split``). Speakers, not utterances, are split between
train/valid/test so that no voice leaks between splits.

Only this script needs espeak-ng (``apt-get install espeak-ng``); the committed FLACs mean that
training never does. Deterministic for a given seed and espeak-ng version; rerunning overwrites
the corpus.

Usage::

    python scripts/make_demo_corpus.py --out data/demo
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng voice+variant at a fixed base pitch and speed."""

    speaker_id: str
    voice: str  # espeak-ng -v argument, e.g. "en-gb-scotland+m3"
    pitch: int  # espeak-ng -p base pitch (0-99)
    speed: int  # espeak-ng -s base speed in words per minute
    split: str


# espeak-ng 1.51 silently drops the variant of "en-gb+f1" (the bare "en-gb" name resolves through
# the language list), so British English voices are named "en+..."; check_voices() guards this.
# Twelve speakers over seven English accents and male/female/other variants. Each split gets
# both male- and female-sounding voices; the held-out accents/variants are unseen in training.
SPEAKERS: tuple[Speaker, ...] = (
    Speaker("spk01", "en-us+m1", 42, 175, "train"),
    Speaker("spk02", "en+f1", 62, 170, "train"),
    Speaker("spk03", "en-gb-scotland+m3", 48, 165, "train"),
    Speaker("spk04", "en-gb-x-rp+f2", 66, 180, "train"),
    Speaker("spk05", "en-029+m2", 38, 170, "train"),
    Speaker("spk06", "en-us-nyc+f4", 58, 185, "train"),
    Speaker("spk07", "en-gb-x-gbclan+m4", 52, 175, "train"),
    Speaker("spk08", "en-us+klatt", 50, 170, "train"),
    Speaker("spk09", "en-gb-x-gbcwmd+f3", 64, 175, "valid"),
    Speaker("spk10", "en+croak", 35, 160, "valid"),
    Speaker("spk11", "en-us+f5", 70, 180, "test"),
    Speaker("spk12", "en-gb-x-rp+m7", 44, 170, "test"),
)

# --- sentence grammar (all words chosen for this project) -----------------------------------
# fmt: off
_ADJECTIVES = (
    "quiet", "old", "young", "tired", "clever", "busy", "careful", "happy", "tall", "small",
    "patient", "cheerful", "nervous", "brave", "gentle", "curious", "sleepy", "loud",
)
_PEOPLE = (
    "baker", "farmer", "teacher", "sailor", "doctor", "painter", "driver", "student", "pilot",
    "gardener", "neighbour", "singer", "miner", "clerk", "child", "captain", "nurse", "writer",
)
_VERBS = (
    "carried", "painted", "found", "moved", "cleaned", "sold", "fixed", "opened", "dropped",
    "counted", "packed", "lifted", "washed", "mended", "hid", "bought", "checked", "folded",
)
_OBJECTS = (
    "the red box", "a heavy chair", "seven apples", "the wooden gate", "a paper map",
    "the broken clock", "two blue cups", "a bag of rice", "the green coat", "an old lamp",
    "the silver key", "a pile of books", "the small boat", "three warm loaves", "the letters",
    "a basket of eggs", "the kitchen table", "a long rope",
)
_PLACES = (
    "near the river", "by the station", "in the garden", "at the market", "on the hill",
    "behind the barn", "across the bridge", "under the stairs", "in the harbour",
    "before the storm", "after lunch", "at dawn", "in the rain", "on Sunday morning",
)
_ADVERBS = (
    "slowly", "quickly", "twice", "with care", "in silence", "again", "at last", "once more",
)
_TEMPLATES = (
    "The {adj} {person} {verb} {obj}.",
    "A {person} {verb} {obj} {adverb}.",
    "The {person} {verb} {obj} {place}.",
    "Did the {adj} {person} find {obj}?",
    "Please bring {obj} {place}.",
    "We {verb} {obj} {adverb}.",
    "Nobody saw the {person} {place}.",
    "My {person} {verb} {obj}.",
    "The {adj} {person} waited {place}.",
    "Who {verb} {obj}?",
)
# fmt: on


def make_sentences(count: int, rng: random.Random) -> list[str]:
    """Return ``count`` distinct short English sentences from the project's own grammar."""
    if count <= 0:
        raise ValueError(f"sentence count must be positive, got {count}")
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 100 * count:
            raise RuntimeError(f"could not compose {count} distinct sentences")
        place = rng.choice(_PLACES)
        text = rng.choice(_TEMPLATES).format(
            adj=rng.choice(_ADJECTIVES),
            person=rng.choice(_PEOPLE),
            verb=rng.choice(_VERBS),
            obj=rng.choice(_OBJECTS),
            place=place,
            adverb=rng.choice(_ADVERBS),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# --- synthesis and signal processing --------------------------------------------------------
def espeak_version() -> str:
    """The installed espeak-ng version line, or a clear error if it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit(
            "espeak-ng not found on PATH; install it with `apt-get install -y espeak-ng` "
            "(only this script needs it; the committed corpus does not)"
        )
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    return res.stdout.strip().splitlines()[0]


def synthesise(
    text: str, voice: str, speed: int, pitch: int, wav_path: Path, data_path: str | None = None
) -> tuple[np.ndarray, int]:
    """Run espeak-ng into a temporary WAV (its stdout header has no valid length) and read it;
    ``data_path`` is the folder holding the ``espeak-ng-data`` to use (default: espeak-ng's)."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav_path), text]
    if data_path is not None:
        cmd[1:1] = [f"--path={data_path}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {res.stderr.strip()}")
    audio, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if audio.size == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r}, text {text!r}")
    return audio.mean(axis=1), int(sr)


def check_voices(speakers: tuple[Speaker, ...], wav_path: Path) -> None:
    """Fail if a variant is silently ignored or two speakers synthesise identical audio.

    espeak-ng falls back to a default voice without an error for some names, which would quietly
    merge speakers; a short probe phrase at a fixed speed and pitch detects that.
    """
    probe = "The quick test of this voice."
    seen: dict[bytes, str] = {}

    def render(voice: str) -> bytes:
        return synthesise(probe, voice, 170, 50, wav_path)[0].tobytes()

    for spk in speakers:
        audio = render(spk.voice)
        base = spk.voice.split("+")[0]
        if "+" in spk.voice and audio == render(base):
            raise SystemExit(
                f"espeak-ng ignored the variant in voice {spk.voice!r} ({spk.speaker_id});"
                f" try another language name (e.g. 'en+...')"
            )
        if audio in seen:
            raise SystemExit(
                f"voices {seen[audio]!r} and {spk.voice!r} sound identical in espeak-ng"
            )
        seen[audio] = spk.voice


def trim_silence(
    x: np.ndarray, sr: int, threshold_db: float = -45.0, margin_s: float = 0.05
) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the peak, keeping a margin.

    Light trimming: espeak-ng pads with silence, which would only cost bytes and dilute crops.
    """
    frame = int(0.01 * sr)
    n_frames = len(x) // frame
    if n_frames == 0:
        return x
    frames = x[: n_frames * frame].reshape(n_frames, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    level_db = 20 * np.log10(rms / (np.max(np.abs(x)) + 1e-12))
    active = np.flatnonzero(level_db > threshold_db)
    if active.size == 0:
        return x
    margin = int(margin_s * sr)
    start = max(0, active[0] * frame - margin)
    stop = min(len(x), (active[-1] + 1) * frame + margin)
    return x[start:stop]


def normalise(x: np.ndarray, target_rms_db: float, peak_db: float = -1.0) -> np.ndarray:
    """Scale to ``target_rms_db`` dBFS RMS, then lower if needed so the peak stays <= ``peak_db``."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms <= 0.0:
        raise RuntimeError("cannot normalise a silent utterance")
    gain = 10 ** (target_rms_db / 20) / rms
    peak = float(np.max(np.abs(x))) * gain
    peak_limit = 10 ** (peak_db / 20)
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (x * gain).astype(np.float32)


def fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    """Short raised-cosine fade in/out so trimmed edges do not click."""
    n = min(int(seconds * sr), len(x) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _clean_out_dir(out: Path) -> None:
    """Remove a previous corpus (speaker folders and metadata) so reruns overwrite exactly."""
    for child in out.iterdir() if out.exists() else ():
        if child.is_dir() and re.fullmatch(r"spk\d+", child.name):
            shutil.rmtree(child)
        elif child.name == "metadata.csv":
            child.unlink()


def build(
    out: Path, per_speaker: int, seed: int, rms_db: float, rms_jitter_db: float
) -> list[dict[str, str]]:
    """Synthesise the whole corpus into ``out`` and return the metadata rows."""
    version = espeak_version()
    print(f"using {version}", file=sys.stderr)
    rng = random.Random(seed)
    sentences = make_sentences(per_speaker * len(SPEAKERS), rng)
    out.mkdir(parents=True, exist_ok=True)
    _clean_out_dir(out)
    rows: list[dict[str, str]] = []
    total_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "utt.wav"
        check_voices(SPEAKERS, wav_path)
        for s_index, spk in enumerate(SPEAKERS):
            spk_dir = out / spk.speaker_id
            spk_dir.mkdir(parents=True, exist_ok=True)
            for u in range(per_speaker):
                text = sentences[s_index * per_speaker + u]
                # Per-utterance prosody jitter around the speaker's identity.
                speed = spk.speed + rng.randint(-20, 20)
                pitch = min(99, max(0, spk.pitch + rng.randint(-4, 4)))
                level = rms_db + rng.uniform(-rms_jitter_db, rms_jitter_db)
                audio, sr = synthesise(text, spk.voice, speed, pitch, wav_path)
                wave = torch.from_numpy(audio)
                if sr != SAMPLE_RATE:
                    wave = AF.resample(wave, sr, SAMPLE_RATE)
                x = trim_silence(wave.numpy(), SAMPLE_RATE)
                x = fade(normalise(x, level), SAMPLE_RATE)
                name = f"{spk.speaker_id}_{u:04d}.flac"
                sf.write(
                    str(spk_dir / name),
                    x,
                    SAMPLE_RATE,
                    subtype="PCM_16",
                    format="FLAC",
                    compression_level=1.0,
                )
                total_s += len(x) / SAMPLE_RATE
                rows.append(
                    {
                        "path": f"{spk.speaker_id}/{name}",
                        "speaker": spk.speaker_id,
                        "voice": spk.voice,
                        "text": text,
                        "split": spk.split,
                    }
                )
            print(
                f"{spk.speaker_id} ({spk.voice}, {spk.split}): {per_speaker} utterances",
                file=sys.stderr,
            )
    with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["path", "speaker", "voice", "text", "split"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} utterances, {total_s:.1f} s, to {out}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument("--per-speaker", type=int, default=30, help="utterances per speaker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rms-db", type=float, default=-26.0, help="target RMS level, dBFS")
    parser.add_argument(
        "--rms-jitter-db",
        type=float,
        default=2.0,
        help="uniform +- variation of the RMS target per utterance",
    )
    args = parser.parse_args(argv)
    if args.per_speaker < 1:
        parser.error(f"--per-speaker must be >= 1, got {args.per_speaker}")
    torch.set_num_threads(1)
    build(args.out, args.per_speaker, args.seed, args.rms_db, args.rms_jitter_db)


if __name__ == "__main__":
    main()
