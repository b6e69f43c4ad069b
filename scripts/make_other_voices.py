"""Speech from synthesisers other than espeak-ng, recorded speech and recorded music, beside the
larger corpus.

Every model here trains on espeak-ng's formant voices; users enhance real speech. This script
adds to ``scripts/make_train_corpus.py``'s corpus what a model can be judged on (and optionally
trained with) beyond espeak-ng:

- ``other_train/{train,valid}/<speaker>/``: Flite's ``awb``, ``rms`` and ``kal16`` voices
  (statistical-parametric and diphone voices built from recordings of real speakers), each as
  several speakers at its own base pitch and tempo. Used only through ``with_other``.
- ``other_voices/test/<speaker>/``: voices no training set uses, from both other engines:
  Flite's ``slt``, Festival's ``cmu_us_slt_arctic_hts`` (HTS) and ``ked_diphone``. An unheard
  speaker and, for Festival, an unheard engine.
- ``real_voice/test/<talker>/``: recorded speech. ``alsa``: the eight spoken channel names that
  alsa-utils installs (``/usr/share/sounds/alsa/*.wav``, 1.3-1.5 s each); and, from Debian's
  ``asterisk-core-sounds-*-g722`` (telephone prompts read by professional voice talents,
  wideband G.722 at 16 kHz, decoded with ffmpeg), ``--asterisk-per-talker`` prompts of at least
  1.5 s from each of five sets: Allison (English and Spanish), June (Canadian French), Carlo
  (Italian, a man) and the Russian voice. Real talkers and microphones, five languages.
- ``real_noise/music/``: the five music-on-hold tracks of Debian's ``asterisk-moh-opsound-g722``
  (18 min of recorded music, CC-BY-SA), decoded: a real noise family, scored with
  ``noise=folder noise.folder=CORPUS/real_noise noise.split_folder=false``.
- ``with_other/{train,valid,test}/<speaker>``: links to the corpus' own speaker folders and
  ``other_train``'s: a folder-compatible root to train on both (``data=folder
  data.speech.root=CORPUS/with_other``), whose test split is the corpus' own.
- ``real_train/train/<talker>/``: every other speech prompt (>= 1 s) of three of Asterisk's voice
  sets (Allison in English and Spanish, June), none of them in ``real_voice``; ``with_real``
  links them beside the corpus' speakers as ``with_other`` does. Carlo, the Russian voice and
  alsa's talker stay unheard.

Each speech set has its own ``metadata.csv`` (the corpus' columns; ``voice`` names the engine
and voice, or the recording). Utterances are trimmed, levelled (-26 dBFS RMS, +-2 dB) and faded
like the corpus'. Synthetic sentences come from the corpus' English grammar and avoid the demo
corpus and each other. Deterministic for a seed and the packages' versions; a rerun replaces
these seven folders and nothing else. Needs ``apt-get install -y flite festival
festvox-kdlpc16k festvox-us-slt-hts alsa-utils ffmpeg asterisk-core-sounds-{en,es,fr,it,ru}-g722
asterisk-moh-opsound-g722`` (a recorded set whose package or ffmpeg is missing is skipped, with
a line that says so)::

    AUDIODIAG_DATA=/work/data python scripts/make_other_voices.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
import torchaudio.functional as AF

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_demo_corpus as demo  # noqa: E402  (siblings: the same clean-up and sentences)
import make_train_corpus as corpus  # noqa: E402

from audiodiag.paths import DATA_DIR  # noqa: E402

SAMPLE_RATE = demo.SAMPLE_RATE
TRAIN_DIR, TEST_DIR, REAL_DIR, MIXED_DIR = "other_train", "other_voices", "real_voice", "with_other"
NOISE_DIR, REAL_TRAIN_DIR, REAL_MIXED_DIR = "real_noise", "real_train", "with_real"
#: Everything this script writes (a rerun replaces these and nothing else).
FOLDERS = (TRAIN_DIR, TEST_DIR, REAL_DIR, MIXED_DIR, NOISE_DIR, REAL_TRAIN_DIR, REAL_MIXED_DIR)
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_MUSIC = Path("/usr/share/asterisk/moh")
#: Asterisk's prompt folders: one talker each (Allison reads English and Spanish).
ASTERISK_TALKERS = {
    "en_US_f_Allison": "asterisk_en_allison",
    "es_MX_f_Allison": "asterisk_es_allison",
    "fr_CA_f_June": "asterisk_fr_june",
    "it_IT_m_Carlo": "asterisk_it_carlo",
    "ru_RU_f_IvrvoiceRU": "asterisk_ru",
}
#: Talkers whose other prompts ``real_train`` holds (``with_real`` trains on them); Carlo, the
#: Russian voice and alsa's talker are never trained on.
REAL_TRAIN_TALKERS = ("asterisk_en_allison", "asterisk_es_allison", "asterisk_fr_june")
#: Prompts that are signals, not speech.
NOT_SPEECH = ("beep", "tone", "silence")
ALSA_SPOKEN = (
    "Front_Center",
    "Front_Left",
    "Front_Right",
    "Rear_Center",
    "Rear_Left",
    "Rear_Right",
    "Side_Left",
    "Side_Right",
)  # fmt: skip  (Noise.wav, the ninth file, is pink noise)
#: (engine, voice) pairs. Training and test share no speaker: kal16 and kal_diphone are one
#: talker, and slt is one talker in both engines, so each stays on one side.
TRAIN_VOICES = (("flite", "awb"), ("flite", "rms"), ("flite", "kal16"))
TEST_VOICES = (
    ("flite", "slt"),
    ("festival", "cmu_us_slt_arctic_hts"),
    ("festival", "ked_diphone"),
)


@dataclass(frozen=True)
class Speaker:
    """One voice of an engine at a base pitch factor and tempo (its own 'speaker')."""

    speaker_id: str
    engine: str
    voice: str
    pitch: float  # factor on the voice's mean F0 (Flite only)
    stretch: float  # duration stretch: > 1 is slower
    split: str


def engine_missing(engine: str) -> str | None:
    """Why ``engine`` cannot run here, or None."""
    exe = "flite" if engine == "flite" else "text2wave"
    if shutil.which(exe) is None:
        package = "flite" if engine == "flite" else "festival festvox-kdlpc16k festvox-us-slt-hts"
        return f"{exe} not found on PATH; install it with `apt-get install -y {package}`"
    return None


def render(engine: str, voice: str, text: str, pitch: float, stretch: float, wav: Path) -> None:
    """Synthesise ``text`` into ``wav`` with one engine's voice."""
    if engine == "flite":
        # Flite's voices centre F0 near 100 Hz (male) or 170 Hz (slt); the factor scales it.
        mean = 170.0 if voice == "slt" else 105.0
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(wav),
               "--setf", f"int_f0_target_mean={mean * pitch:.1f}",
               "--setf", f"duration_stretch={stretch:.3f}"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
    else:
        script = f"(voice_{voice}) (Parameter.set 'Duration_Stretch {stretch:.3f})"
        txt = wav.with_suffix(".txt")
        txt.write_text(text + "\n", encoding="utf-8")
        cmd = ["text2wave", "-eval", script, str(txt), "-o", str(wav)]
        res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not wav.is_file() or wav.stat().st_size <= 44:
        raise RuntimeError(f"{engine} failed for voice {voice!r}: {res.stderr.strip()[-300:]}")


def _synthesise_one(job: dict[str, Any]) -> float:
    """Synthesise, resample, trim, level and write one utterance; return its seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "utt.wav"
        engine, voice, text = str(job["engine"]), str(job["voice"]), str(job["text"])
        render(engine, voice, text, float(job["pitch"]), float(job["stretch"]), wav)
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    return _write(torch.from_numpy(audio.mean(axis=1)), int(sr), job)


def _write(wave: torch.Tensor, sr: int, job: dict[str, Any]) -> float:
    if sr != SAMPLE_RATE:
        wave = AF.resample(wave, sr, SAMPLE_RATE)
    x = demo.trim_silence(wave.numpy(), SAMPLE_RATE)
    x = demo.fade(demo.normalise(x, float(job["level_db"])), SAMPLE_RATE)
    path = Path(str(job["file"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16", format="FLAC", compression_level=1.0)
    return len(x) / SAMPLE_RATE


def make_speakers(
    voices: tuple[tuple[str, str], ...], per_voice: int, split: str, rng: random.Random
) -> list[Speaker]:
    """``per_voice`` speakers of every voice, spread over pitch factors 0.8-1.25 (Flite) and
    tempi 0.85-1.2; with ``split='train'`` one speaker of each voice goes to ``valid``."""
    out = []
    for engine, voice in voices:
        for k in range(per_voice):
            pitch = 1.0 if engine == "festival" else round(rng.uniform(0.8, 1.25), 3)
            stretch = round(rng.uniform(0.85, 1.2), 3)
            which = "valid" if split == "train" and k == per_voice - 1 else split
            out.append(Speaker(f"{voice}_{k:02d}", engine, voice, pitch, stretch, which))
    return out


def _jobs(
    speakers: list[Speaker], per_speaker: int, texts: list[str], base: Path, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    jobs, rows = [], []
    for spk in speakers:
        for u in range(per_speaker):
            text = texts.pop()
            rel = f"{spk.split}/{spk.speaker_id}/{spk.speaker_id}_{u:04d}.flac"
            level = -26.0 + rng.uniform(-2.0, 2.0)
            jobs.append({"engine": spk.engine, "voice": spk.voice, "text": text,
                         "pitch": spk.pitch, "stretch": spk.stretch, "level_db": level,
                         "file": str(base / rel)})  # fmt: skip
            rows.append({"path": rel, "speaker": spk.speaker_id,
                         "voice": f"{spk.engine}:{spk.voice}", "language": "en",
                         "variant": "", "pitch": spk.pitch, "speed": spk.stretch,
                         "text": text, "split": spk.split})  # fmt: skip
    return jobs, rows


def build(
    out: Path,
    train_per_voice: int = 8,
    train_per_speaker: int = 24,
    test_per_voice: int = 4,
    test_per_speaker: int = 8,
    seed: int = 0,
    workers: int | None = None,
    asterisk_per_talker: int = 24,
) -> dict[str, int]:
    """(Re)write the seven folders in ``out``; returns the count of each (utterances, linked
    speaker folders, music tracks)."""
    for engine in {e for e, _ in TRAIN_VOICES + TEST_VOICES}:
        if (why := engine_missing(engine)) is not None:
            raise SystemExit(why)
    rng = random.Random(f"other-{seed}")
    cast = make_speakers(TRAIN_VOICES, train_per_voice, "train", rng)
    tests = make_speakers(TEST_VOICES, test_per_voice, "test", rng)
    n_texts = len(cast) * train_per_speaker + len(tests) * test_per_speaker
    texts = corpus.make_sentences(n_texts, rng, "en", exclude=corpus.demo_sentences())
    train_jobs, train_rows = _jobs(cast, train_per_speaker, texts, out / TRAIN_DIR, rng)
    test_jobs, test_rows = _jobs(tests, test_per_speaker, texts, out / TEST_DIR, rng)
    for name in FOLDERS:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    with multiprocessing.get_context("fork").Pool(workers, initializer=corpus._init_worker) as pool:
        pool.map(_synthesise_one, train_jobs + test_jobs, chunksize=4)
    corpus._write_metadata(out / TRAIN_DIR / "metadata.csv", train_rows)
    corpus._write_metadata(out / TEST_DIR / "metadata.csv", test_rows)
    counts = {TRAIN_DIR: len(train_rows), TEST_DIR: len(test_rows)}
    counts[REAL_DIR] = build_real(
        out / REAL_DIR, rng, ALSA_SOUNDS, ASTERISK_SOUNDS, asterisk_per_talker
    )
    counts[MIXED_DIR] = link_mixed(out)
    counts[REAL_TRAIN_DIR] = build_real_train(
        out / REAL_TRAIN_DIR, out / REAL_DIR, rng, ASTERISK_SOUNDS
    )
    counts[REAL_MIXED_DIR] = link_mixed(out, REAL_MIXED_DIR, REAL_TRAIN_DIR)
    counts[NOISE_DIR] = build_music(out / NOISE_DIR / "music", ASTERISK_MUSIC)
    if not (out / "train").is_dir():
        print(f"{out} has no train/ folder (make_train_corpus.py): {MIXED_DIR} holds Flite alone")
    return counts


def link_mixed(out: Path, mixed: str = MIXED_DIR, extra: str = TRAIN_DIR) -> int:
    """``out/mixed``: relative links to every speaker folder of the corpus' splits and of
    ``out/extra``'s; returns the number of speakers linked."""
    linked = 0
    for split in corpus.SPLITS:
        for source in (out / split, out / extra / split):
            if not source.is_dir():
                continue
            for speaker in sorted(p for p in source.iterdir() if p.is_dir()):
                link = out / mixed / split / speaker.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path("..", "..", speaker.relative_to(out)))
                linked += 1
    return linked


def build_real(
    base: Path,
    rng: random.Random,
    sounds: Path = ALSA_SOUNDS,
    asterisk: Path = ASTERISK_SOUNDS,
    per_talker: int = 24,
) -> int:
    """The recorded talkers, levelled like the rest; returns the utterance count (0 when none
    is installed)."""
    rows = _alsa_rows(base, rng, sounds)
    for folder, talker in ASTERISK_TALKERS.items():
        rows += _asterisk_rows(base, rng, asterisk / folder, talker, per_talker)
    if rows:
        corpus._write_metadata(base / "metadata.csv", rows)
    return len(rows)


def _real_row(rel: str, talker: str, voice: str, language: str, text: str) -> dict[str, Any]:
    return {"path": rel, "speaker": talker, "voice": voice, "language": language, "variant": "",
            "pitch": "", "speed": "", "text": text, "split": "test"}  # fmt: skip


def _alsa_rows(base: Path, rng: random.Random, sounds: Path) -> list[dict[str, Any]]:
    """alsa-utils' eight spoken channel names."""
    missing = [name for name in ALSA_SPOKEN if not (sounds / f"{name}.wav").is_file()]
    if missing:
        print(
            f"skipped alsa's voice: {sounds / missing[0]}.wav is missing "
            "(apt-get install alsa-utils)"
        )
        return []
    rows = []
    for name in ALSA_SPOKEN:
        audio, sr = sf.read(str(sounds / f"{name}.wav"), dtype="float32", always_2d=True)
        rel = f"test/alsa/alsa_{name}.flac"
        job = {"level_db": -26.0 + rng.uniform(-2.0, 2.0), "file": str(base / rel)}
        _write(torch.from_numpy(audio.mean(axis=1)), int(sr), job)
        rows.append(_real_row(rel, "alsa", "recording:alsa-utils", "en", name.replace("_", " ")))
    return rows


def speech_prompts(folder: Path) -> list[Path]:
    """A talker's top-level prompts, by name, without the signals (beeps, tones, silence)."""
    return sorted(p for p in folder.glob("*.g722") if not any(w in p.stem for w in NOT_SPEECH))


def _asterisk_rows(
    base: Path, rng: random.Random, folder: Path, talker: str, count: int
) -> list[dict[str, Any]]:
    """``count`` of one talker's prompts (top-level ones, speech only, >= 1.5 s), drawn in a
    seeded order; [] with a note when the package or ffmpeg is missing."""
    prompts = speech_prompts(folder)
    if not prompts or shutil.which("ffmpeg") is None:
        print(f"skipped {talker}: no prompts in {folder} or no ffmpeg (see this script's help)")
        return []
    rng.shuffle(prompts)
    rows: list[dict[str, Any]] = []
    language = folder.name[:2]
    for prompt in prompts:
        if len(rows) == count:
            break
        wave = decode_g722(prompt)
        if len(demo.trim_silence(wave.numpy(), SAMPLE_RATE)) < 1.5 * SAMPLE_RATE:
            continue
        rel = f"test/{talker}/{talker}_{prompt.stem}.flac"
        job = {"level_db": -26.0 + rng.uniform(-2.0, 2.0), "file": str(base / rel)}
        _write(wave, SAMPLE_RATE, job)
        rows.append(_real_row(rel, talker, f"recording:asterisk:{folder.name}", language,
                              prompt.stem))  # fmt: skip
    return rows


def build_real_train(
    base: Path, real_voice: Path, rng: random.Random, asterisk: Path = ASTERISK_SOUNDS
) -> int:
    """Every speech prompt (>= 1 s) of REAL_TRAIN_TALKERS that ``real_voice`` does not hold, as
    ``base/train/<talker>/``: recorded speech to train with, whose held-out prompts and the other
    talkers stay unheard. Returns the utterance count (0 without the packages)."""
    used = {p.stem for p in real_voice.rglob("*.flac")}
    count = 0
    for folder, talker in ASTERISK_TALKERS.items():
        if talker not in REAL_TRAIN_TALKERS or shutil.which("ffmpeg") is None:
            continue
        for prompt in speech_prompts(asterisk / folder):
            name = f"{talker}_{prompt.stem}"
            if name in used:
                continue
            wave = decode_g722(prompt)
            if len(demo.trim_silence(wave.numpy(), SAMPLE_RATE)) < SAMPLE_RATE:
                continue
            job = {"level_db": -26.0 + rng.uniform(-2.0, 2.0),
                   "file": str(base / "train" / talker / f"{name}.flac")}  # fmt: skip
            _write(wave, SAMPLE_RATE, job)
            count += 1
    return count


def build_music(base: Path, tracks: Path = ASTERISK_MUSIC) -> int:
    """Asterisk's music-on-hold tracks as 16 kHz FLAC; returns how many (0, with a note, when
    the package or ffmpeg is missing)."""
    sources = sorted(tracks.glob("*.g722"))
    if not sources or shutil.which("ffmpeg") is None:
        print(f"skipped the music: no tracks in {tracks} or no ffmpeg (see this script's help)")
        return 0
    base.mkdir(parents=True, exist_ok=True)
    for source in sources:
        wave = decode_g722(source).numpy()
        sf.write(str(base / f"{source.stem}.flac"), wave, SAMPLE_RATE, subtype="PCM_16")
    return len(sources)


def decode_g722(path: Path) -> torch.Tensor:
    """A raw G.722 file (Asterisk's ``.g722``) as 16 kHz mono float, by ffmpeg."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "prompt.wav"
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "g722", "-i", str(path),
               "-ar", str(SAMPLE_RATE), "-ac", "1", str(wav)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"ffmpeg could not decode {path}: {res.stderr.strip()[-300:]}")
        audio, _ = sf.read(str(wav), dtype="float32")
    if audio.size == 0:
        raise RuntimeError(f"ffmpeg decoded no audio from {path}")
    return torch.from_numpy(audio)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DATA_DIR / "espeak_train",
        help="the corpus folder to add the sets to (default: $AUDIODIAG_DATA/espeak_train)",
    )  # fmt: skip
    parser.add_argument("--train-per-voice", type=int, default=8, help="speakers per voice")
    parser.add_argument("--train-per-speaker", type=int, default=24)
    parser.add_argument("--test-per-voice", type=int, default=4)
    parser.add_argument("--test-per-speaker", type=int, default=8)
    parser.add_argument("--asterisk-per-talker", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    args = parser.parse_args(argv)
    counts = build(
        args.out, args.train_per_voice, args.train_per_speaker, args.test_per_voice,
        args.test_per_speaker, args.seed, args.workers, args.asterisk_per_talker,
    )  # fmt: skip
    for name, count in counts.items():
        linked = "speaker folders linked"
        units = {MIXED_DIR: linked, REAL_MIXED_DIR: linked, NOISE_DIR: "music tracks"}
        unit = units.get(name, "utterances")
        print(f"{args.out / name}: {count} {unit}")


if __name__ == "__main__":
    main()
