"""scripts/make_train_corpus.py on a handful of utterances: layout, splits, held-out voices."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from script_helpers import load_script, read_rows

from audiodiag.data import SPLITS, DemoSpeech, FolderSpeech


def _load():  # type: ignore[no-untyped-def]
    return load_script("make_train_corpus")


def test_sentences_are_new_and_distinct() -> None:
    corpus = _load()
    demo = corpus.demo_sentences()
    assert len(demo) >= 360
    texts = corpus.make_sentences(3000, random.Random(0), exclude=demo)
    assert len(set(texts)) == 3000 and not set(texts) & demo
    german = corpus.make_sentences(20, random.Random(0), language="de")
    assert len(set(german)) == 20 and not set(german) & set(texts)


def test_speakers_hold_languages_and_variants_out() -> None:
    corpus = _load()
    cast = corpus.make_speakers(120, 20, corpus.split_counts(120), random.Random(0))
    train = [s for s in cast if s.split != "heldout"]
    held = [s for s in cast if s.split == "heldout"]
    assert len({(s.language, s.variant, s.pitch, s.speed) for s in train}) == 120
    assert [sum(s.split == split for s in train) for split in SPLITS] == [96, 12, 12]
    assert len(held) == 20 and {s.language for s in held} == set(corpus.HELDOUT_LANGUAGES)
    assert not {s.language for s in held} & {s.language for s in train}
    assert not {s.variant for s in held} & {s.variant for s in train}
    # The blind set: variants used nowhere else, each equally often, in the held-out languages.
    blind = corpus.make_extra_speakers("blind", 18, random.Random(0))
    variants = [s.variant for s in blind]
    assert {variants.count(v) for v in corpus.BLIND_VARIANTS} == {2}
    assert len({(s.language, s.variant) for s in blind}) == 18
    assert {s.language for s in blind} == set(corpus.HELDOUT_LANGUAGES)
    assert not set(variants) & {s.variant for s in cast}
    with pytest.raises(ValueError, match="at most 45 blind speakers"):
        corpus.make_extra_speakers("blind", 46, random.Random(0))
    # The young set: child-like variants this script writes, none an espeak-ng name.
    young = corpus.make_extra_speakers("young", 12, random.Random(0))
    assert {s.variant for s in young} == set(corpus.YOUNG_VARIANTS)
    assert len({(s.language, s.variant) for s in young}) == 12
    assert not {s.variant for s in young} & {s.variant for s in cast + blind}
    with pytest.raises(ValueError, match="at most 30 young speakers"):
        corpus.make_extra_speakers("young", 31, random.Random(0))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_young_variants_change_the_voice(tmp_path: Path) -> None:
    """The written variant files load: each renders differently from its bare language and
    from every other young variant (espeak-ng falls back silently on a bad file)."""
    corpus = _load()
    data_path = str(corpus.write_young_variants(tmp_path))
    renders = {
        voice: corpus._render("A short probe sentence.", voice, data_path)
        for voice in ("en-gb-x-rp", *(f"en-gb-x-rp+{name}" for name in corpus.YOUNG_VARIANTS))
    }
    assert len(set(renders.values())) == len(renders)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_small_corpus_layout_and_disjoint_speakers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _load()
    out = tmp_path / "corpus"
    stats = corpus.build(out, speakers=5, per_speaker=2, heldout_speakers=5,
                         heldout_per_speaker=1, workers=2, blind_speakers=2,
                         blind_per_speaker=1, young_speakers=2, young_per_speaker=1)  # fmt: skip
    assert stats["utterances"] == 10 and stats["heldout_utterances"] == 5
    assert stats["blind_utterances"] == 2 and stats["young_utterances"] == 2
    rows = read_rows(out / "metadata.csv")
    held_rows = read_rows(out / "heldout_voices" / "metadata.csv")
    assert list(rows[0]) == list(corpus.FIELDS)
    for base, table in ((out, rows), (out / "heldout_voices", held_rows)):
        for row in table:
            info = sf.info(str(base / row["path"]))
            assert info.samplerate == 16000 and info.channels == 1 and info.frames > 8000
            assert row["path"].startswith(f"{row['split']}/{row['speaker']}/")
    # data=folder reads the split folders, speaker = parent folder, heldout_voices/ is ignored.
    folder = FolderSpeech(out)
    by_split = {s: {u.speaker for u in folder.utterances(s)} for s in SPLITS}
    assert [len(by_split[s]) for s in SPLITS] == [3, 1, 1]
    assert not (by_split["train"] & by_split["valid"] or by_split["train"] & by_split["test"])
    assert sum(len(folder.utterances(s)) for s in SPLITS) == 10
    # data=demo reads the same splits from metadata.csv.
    demo = DemoSpeech(out)
    assert {s: {u.speaker for u in demo.utterances(s)} for s in SPLITS} == by_split
    # The held-out set is a test split of voices and languages never used in training.
    held = FolderSpeech(out / "heldout_voices")
    assert len(held.utterances("test")) == 5 and not held.utterances("train")
    assert not {r["language"] for r in held_rows} & {r["language"] for r in rows}
    assert not {r["variant"] for r in held_rows} & {r["variant"] for r in rows}
    assert not {r["text"] for r in rows + held_rows} & corpus.demo_sentences()
    # The blind set: its own variants, held-out languages, sentences not used elsewhere.
    blind_rows = read_rows(out / "blind_voices" / "metadata.csv")
    assert len(FolderSpeech(out / "blind_voices").utterances("test")) == 2
    assert {r["language"] for r in blind_rows} <= set(corpus.HELDOUT_LANGUAGES)
    assert not {r["variant"] for r in blind_rows} & {r["variant"] for r in rows + held_rows}
    assert not {r["text"] for r in blind_rows} & {r["text"] for r in rows + held_rows}
    # The young set: likewise, its sentences avoid the blind set's too.
    young_rows = read_rows(out / "young_voices" / "metadata.csv")
    assert len(FolderSpeech(out / "young_voices").utterances("test")) == 2
    assert {r["variant"] for r in young_rows} <= set(corpus.YOUNG_VARIANTS)
    assert not {r["text"] for r in young_rows} & {r["text"] for r in rows + held_rows + blind_rows}
    # --blind-only / --young-only rewrite that set alone: the rest of the corpus is untouched.
    for kind, speakers, per_speaker in (("blind", 3, 1), ("young", 1, 2)):
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and kind not in str(p)}
        corpus.main(["--out", str(out), f"--{kind}-only", f"--{kind}-speakers", str(speakers),
                     f"--{kind}-per-speaker", str(per_speaker), "--workers", "2"])  # fmt: skip
        after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and kind not in str(p)}
        assert after == before
        assert len(read_rows(out / f"{kind}_voices" / "metadata.csv")) == speakers * per_speaker
    # A negative count is refused with the flag's name.
    with pytest.raises(SystemExit):
        corpus.main(["--out", str(out), "--young-speakers", "-1"])
    assert "--young-speakers must be >= 0" in capsys.readouterr().err
