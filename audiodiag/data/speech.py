"""Clean-speech sources: each lists utterances per split (train/valid/test) without decoding.

A source only *lists* files (path, speaker, id); decoding, resampling and caching happen in
:class:`audiodiag.data.datamodule.AudioStore`. Splits never share a speaker: datasets with
speakers are split by speaker, speaker-less folders by a hash of the file id. Every source
checks that no speaker lands in two splits before returning its index.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiodiag.audio import scan_audio
from audiodiag.data.download import download_and_extract
from audiodiag.paths import DATA_DIR, DEMO_CORPUS_DIR, check_data_root

__all__ = [
    "SPLITS",
    "DemoSpeech",
    "FolderSpeech",
    "LibriSpeech",
    "SpeechCommands",
    "SpeechSource",
    "Utterance",
    "VCTK",
    "assign_splits",
    "stable_hash",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "valid", "test")

# Download locations; module-level so tests (and mirrors) can point them elsewhere.
LIBRISPEECH_BASE_URL = "http://www.openslr.org/resources/12/"
SPEECHCOMMANDS_BASE_URL = "http://download.tensorflow.org/data/"
VCTK_URL = "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip"
# Subset names and archive SHA-256 sums, copied from torchaudio 2.11
# (torchaudio/datasets/librispeech.py, speechcommands.py and vctk.py: `_DATA_SUBSETS`,
# `_CHECKSUMS`), whose private names may change in any release.
LIBRISPEECH_SUBSETS: tuple[str, ...] = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)  # fmt: skip
CHECKSUMS: dict[str, str] = {
    LIBRISPEECH_BASE_URL + "dev-clean.tar.gz":
        "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    LIBRISPEECH_BASE_URL + "dev-other.tar.gz":
        "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    LIBRISPEECH_BASE_URL + "test-clean.tar.gz":
        "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    LIBRISPEECH_BASE_URL + "test-other.tar.gz":
        "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    LIBRISPEECH_BASE_URL + "train-clean-100.tar.gz":
        "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    LIBRISPEECH_BASE_URL + "train-clean-360.tar.gz":
        "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    LIBRISPEECH_BASE_URL + "train-other-500.tar.gz":
        "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
    SPEECHCOMMANDS_BASE_URL + "speech_commands_v0.01.tar.gz":
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    SPEECHCOMMANDS_BASE_URL + "speech_commands_v0.02.tar.gz":
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    VCTK_URL: "f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c",
}  # fmt: skip
DEFAULT_LIBRISPEECH_SUBSETS: dict[str, list[str]] = {
    "train": ["train-clean-100"],
    "valid": ["dev-clean"],
    "test": ["test-clean"],
}


@dataclass(frozen=True)
class Utterance:
    """One clean speech file: absolute ``path``, ``speaker`` (None when unknown) and a unique
    ``source_id`` that names it in batches and logs."""

    path: str
    speaker: str | None
    source_id: str


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big")


def _fractions(split_fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in split_fractions)
    if len(values) != 3 or any(f < 0 for f in values) or sum(values) <= 0:
        raise ValueError(
            f"split_fractions={list(split_fractions)} is invalid; expected three non-negative "
            "numbers for train, valid, test, e.g. [0.8, 0.1, 0.1]"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def assign_splits(
    keys: Iterable[str], split_fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """Map each key (speaker or file id) to ``train``/``valid``/``test`` deterministically.

    With many keys the split is a pure hash threshold, so adding files never moves old ones.
    With few keys (< 50, e.g. a handful of voices) keys are ranked by hash and cut by count, so
    every split with a non-zero fraction gets at least one key when there are three or more.
    """
    train_f, valid_f, test_f = _fractions(split_fractions)
    unique = sorted(set(keys))
    if len(unique) >= 50:
        out = {}
        for key in unique:
            u = (stable_hash(key) % 1_000_003) / 1_000_003
            out[key] = "train" if u < train_f else ("valid" if u < train_f + valid_f else "test")
        return out
    ordered = sorted(unique, key=lambda k: (stable_hash(k), k))
    n = len(ordered)
    n_valid = round(n * valid_f)
    n_test = round(n * test_f)
    if n >= 3:
        n_valid = max(n_valid, 1 if valid_f > 0 else 0)
        n_test = max(n_test, 1 if test_f > 0 else 0)
    while n_valid + n_test >= n and (n_valid or n_test) and train_f > 0:
        # Keep at least one key for training.
        if n_valid >= n_test and n_valid:
            n_valid -= 1
        else:
            n_test -= 1
    out = {}
    for i, key in enumerate(ordered):
        if i < n_valid:
            out[key] = "valid"
        elif i < n_valid + n_test:
            out[key] = "test"
        else:
            out[key] = "train"
    return out


def _check_no_leak(index: Mapping[str, list[Utterance]], where: str) -> None:
    seen: dict[str, str] = {}
    for split in SPLITS:
        for utt in index.get(split, []):
            if utt.speaker is None:
                continue
            other = seen.setdefault(utt.speaker, split)
            if other != split:
                raise ValueError(
                    f"{where}: speaker '{utt.speaker}' appears in both '{other}' and '{split}'; "
                    "splits must not share speakers"
                )


def _missing_root(what: str, path: Path | str, download_flag: bool = True) -> FileNotFoundError:
    hint = (
        "set data.speech.download=true to download it, or data.speech.root=PATH to use a copy"
        if download_flag
        else "set data.speech.root=PATH to an existing copy"
    )
    return FileNotFoundError(f"{what} not found at '{path}'; {hint}")


class SpeechSource:
    """Base class: lists clean utterances per split; subclasses fill :meth:`_build_index`.

    Args:
        root: dataset folder.
        download: fetch the dataset into ``root`` when it is missing (``prepare``).
        split_fractions: train/valid/test fractions for sources split by speaker or file hash.
    """

    name = "speech"

    def __init__(
        self,
        root: str | os.PathLike | None,
        download: bool = False,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.download = bool(download)
        self.split_fractions = _fractions(split_fractions)
        self._index: dict[str, list[Utterance]] | None = None

    # -- public API -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Download the dataset when missing and ``download`` is set (call on one rank only)."""
        if self.download and not self.is_available():
            if self.root is not None:
                check_data_root(self.root)  # never download into site-packages
            self._download()

    def is_available(self) -> bool:
        """True when the files are already on disk."""
        return self.root is not None and self.root.is_dir()

    def utterances(self, split: str) -> list[Utterance]:
        """The utterances of ``split`` (``train``, ``valid`` or ``test``), sorted by id."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; expected one of {list(SPLITS)}")
        if self._index is None:
            self.prepare()
            index = self._build_index()
            for key in SPLITS:
                index.setdefault(key, [])
                index[key].sort(key=lambda u: u.source_id)
            _check_no_leak(index, f"{type(self).__name__}(root='{self.root}')")
            self._index = index
        return list(self._index[split])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root='{self.root}')"

    # -- hooks ------------------------------------------------------------------------------
    def _build_index(self) -> dict[str, list[Utterance]]:
        raise NotImplementedError

    def _download(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot download; set its root")

    def _split_by_speaker(self, utterances: list[Utterance]) -> dict[str, list[Utterance]]:
        """Split by speaker when every utterance has one, else by a hash of the source id."""
        use_speaker = all(u.speaker is not None for u in utterances)
        keys = [str(u.speaker) if use_speaker else u.source_id for u in utterances]
        mapping = assign_splits(keys, self.split_fractions)
        index: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
        for utt, key in zip(utterances, keys, strict=True):
            index[mapping[key]].append(utt)
        return index


class LibriSpeech(SpeechSource):
    """LibriSpeech through ``torchaudio.datasets.LIBRISPEECH`` (listed with ``get_metadata``).

    Args:
        root: folder holding ``LibriSpeech/<subset>/`` (the archive's layout).
        subsets: either ``{train: [...], valid: [...], test: [...]}`` (official subsets, whose
            speakers are disjoint; default train-clean-100 / dev-clean / test-clean) or a list
            of subsets pooled and split by speaker.
        download: download missing subsets from openslr.org with torchaudio's downloader.
    """

    name = "librispeech"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        subsets: Mapping[str, Sequence[str]] | Sequence[str] | str | None = None,
        download: bool = False,
        folder_in_archive: str = "LibriSpeech",
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        super().__init__(
            DATA_DIR / "librispeech" if root is None else root, download, split_fractions
        )
        self.folder_in_archive = folder_in_archive
        self.subsets_by_split: dict[str, list[str]] | None
        if subsets is None:
            subsets = DEFAULT_LIBRISPEECH_SUBSETS
        if isinstance(subsets, str):
            subsets = [subsets]
        if isinstance(subsets, Mapping):
            mapping = dict(subsets)
            unknown_keys = set(mapping) - set(SPLITS)
            if unknown_keys:
                raise ValueError(
                    f"LibriSpeech subsets has keys {sorted(unknown_keys)}; accepted: {list(SPLITS)}"
                )
            self.subsets_by_split = {k: [str(s) for s in v] for k, v in mapping.items()}
            names = [s for v in self.subsets_by_split.values() for s in v]
        else:
            self.subsets_by_split = None
            names = [str(s) for s in subsets]
        for subset in names:
            if subset not in LIBRISPEECH_SUBSETS:
                raise ValueError(
                    f"unknown LibriSpeech subset '{subset}'; accepted: {list(LIBRISPEECH_SUBSETS)}"
                )
        self.subsets = list(dict.fromkeys(names))

    def _subset_dir(self, subset: str) -> Path:
        assert self.root is not None
        return self.root / self.folder_in_archive / subset

    def is_available(self) -> bool:
        return all(self._subset_dir(s).is_dir() for s in self.subsets)

    def _download(self) -> None:
        assert self.root is not None
        for subset in self.subsets:
            if self._subset_dir(subset).is_dir():
                continue
            url = f"{LIBRISPEECH_BASE_URL}{subset}.tar.gz"
            download_and_extract(url, self.root, checksum=CHECKSUMS.get(url))

    def _list_subset(self, subset: str) -> list[Utterance]:
        from torchaudio.datasets import LIBRISPEECH

        if not self._subset_dir(subset).is_dir():
            raise _missing_root(f"LibriSpeech subset '{subset}'", self._subset_dir(subset))
        dataset = LIBRISPEECH(
            str(self.root), url=subset, folder_in_archive=self.folder_in_archive, download=False
        )
        assert self.root is not None
        base = self.root / self.folder_in_archive
        out = []
        for n in range(len(dataset)):
            # get_metadata reads only the transcript, never the audio.
            relpath, _, _, speaker, chapter, utterance = dataset.get_metadata(n)
            source_id = f"{speaker}-{chapter}-{utterance:04d}"
            out.append(Utterance(str(base / relpath), str(speaker), source_id))
        return out

    def _build_index(self) -> dict[str, list[Utterance]]:
        if self.subsets_by_split is not None:
            return {
                split: [u for subset in subsets for u in self._list_subset(subset)]
                for split, subsets in self.subsets_by_split.items()
            }
        return self._split_by_speaker([u for s in self.subsets for u in self._list_subset(s)])

    def __repr__(self) -> str:
        return f"LibriSpeech(root='{self.root}', subsets={self.subsets_by_split or self.subsets})"


class SpeechCommands(SpeechSource):
    """Speech Commands through ``torchaudio.datasets.SPEECHCOMMANDS``.

    ``split="official"`` uses the dataset's validation/testing lists (themselves drawn by a hash
    of the speaker, so no speaker leaks); ``"speaker"`` splits by our own speaker hash.
    """

    name = "speechcommands"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        url: str = "speech_commands_v0.02",
        folder_in_archive: str = "SpeechCommands",
        download: bool = False,
        split: str = "official",
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        super().__init__(
            DATA_DIR / "speechcommands" if root is None else root, download, split_fractions
        )
        if url not in ("speech_commands_v0.01", "speech_commands_v0.02"):
            raise ValueError(
                f"unknown Speech Commands version '{url}'; accepted: speech_commands_v0.01, "
                "speech_commands_v0.02"
            )
        if split not in ("official", "speaker"):
            raise ValueError(f"split='{split}' is invalid; accepted: official, speaker")
        self.url = url
        self.folder_in_archive = folder_in_archive
        self.split = split

    @property
    def data_dir(self) -> Path:
        """Folder holding the label folders (``<root>/SpeechCommands/<version>``)."""
        assert self.root is not None
        return self.root / self.folder_in_archive / self.url

    def is_available(self) -> bool:
        return self.data_dir.is_dir()

    def _download(self) -> None:
        assert self.root is not None
        url = f"{SPEECHCOMMANDS_BASE_URL}{self.url}.tar.gz"
        # Same layout as torchaudio: archive in root, contents in root/SpeechCommands/<version>.
        download_and_extract(url, self.root, self.data_dir, checksum=CHECKSUMS.get(url))

    def _build_index(self) -> dict[str, list[Utterance]]:
        from torchaudio.datasets import SPEECHCOMMANDS

        if not self.is_available():
            raise _missing_root("Speech Commands", self.data_dir)
        official = self.split == "official" and all(
            (self.data_dir / f).is_file() for f in ("validation_list.txt", "testing_list.txt")
        )
        if self.split == "official" and not official:
            log.warning(
                "Speech Commands at '%s' has no validation_list.txt/testing_list.txt; "
                "splitting by speaker hash instead",
                self.data_dir,
            )
        subsets = {"train": "training", "valid": "validation", "test": "testing"}
        lists = subsets.items() if official else [("all", None)]
        found: dict[str, list[Utterance]] = {}
        for split, subset in lists:
            dataset = SPEECHCOMMANDS(
                str(self.root),
                url=self.url,
                folder_in_archive=self.folder_in_archive,
                download=False,
                subset=subset,
            )
            base = self.root / self.folder_in_archive  # type: ignore[operator]
            found[split] = []
            for n in range(len(dataset)):
                relpath, _, label, speaker, number = dataset.get_metadata(n)
                source_id = f"{label}/{speaker}_nohash_{number}"
                found[split].append(Utterance(str(base / relpath), str(speaker), source_id))
        if official:
            return found
        return self._split_by_speaker(found["all"])


class VCTK(SpeechSource):
    """VCTK 0.92 (torchaudio's ``VCTK_092`` layout and download URL).

    ``VCTK_092`` has no ``get_metadata``, so files are listed here from
    ``<root>/VCTK-Corpus-0.92/wav48_silence_trimmed/<speaker>/<speaker>_<id>_<mic>.flac`` and
    split by speaker. Files are 48 kHz; they are resampled on load.
    """

    name = "vctk"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        mic_id: str = "mic2",
        audio_ext: str = ".flac",
        download: bool = False,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        super().__init__(DATA_DIR / "vctk" if root is None else root, download, split_fractions)
        if mic_id not in ("mic1", "mic2"):
            raise ValueError(f"mic_id='{mic_id}' is invalid; accepted: mic1, mic2")
        self.mic_id = mic_id
        self.audio_ext = audio_ext

    @property
    def corpus_dir(self) -> Path:
        """``<root>/VCTK-Corpus-0.92``."""
        assert self.root is not None
        return self.root / "VCTK-Corpus-0.92"

    def is_available(self) -> bool:
        return (self.corpus_dir / "wav48_silence_trimmed").is_dir()

    def _download(self) -> None:
        assert self.root is not None
        download_and_extract(VCTK_URL, self.root, self.corpus_dir, checksum=CHECKSUMS.get(VCTK_URL))

    def _build_index(self) -> dict[str, list[Utterance]]:
        audio_dir = self.corpus_dir / "wav48_silence_trimmed"
        if not audio_dir.is_dir():
            raise _missing_root("VCTK 0.92", audio_dir)
        suffix = f"_{self.mic_id}{self.audio_ext}"
        utterances = []
        for speaker_dir in sorted(p for p in audio_dir.iterdir() if p.is_dir()):
            for path in sorted(speaker_dir.iterdir()):
                if path.name.endswith(suffix):
                    source_id = path.name[: -len(suffix)]
                    utterances.append(Utterance(str(path), speaker_dir.name, source_id))
        if not utterances:
            raise ValueError(f"no '*{suffix}' files under '{audio_dir}'; check mic_id/audio_ext")
        return self._split_by_speaker(utterances)


class FolderSpeech(SpeechSource):
    """Any folder of wav/flac/ogg files, searched recursively.

    When the root holds ``train/``, ``valid/`` or ``test/`` folders, they *are* the splits (other
    folders beside them are ignored), and by default each file's parent folder names its speaker
    (``<root>/<split>/<speaker>/<file>``; the check that no speaker is in two splits applies).
    Otherwise, with ``speaker_from_parent`` the parent folder names the speaker and splits are by
    speaker; without it splits are by a hash of the file's relative path.

    Args:
        root: the folder.
        speaker_from_parent: take the speaker from the parent folder; ``None`` (default) means
            yes with split folders, no without.
        split_fractions: train/valid/test fractions when the root has no split folders.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        speaker_from_parent: bool | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        if root is None or str(root) in ("", "???"):
            raise ValueError("FolderSpeech needs a folder: set data.speech.root=PATH")
        super().__init__(root, False, split_fractions)
        self.speaker_from_parent = speaker_from_parent

    def split_folders(self) -> list[str]:
        """The split folders (``train``/``valid``/``test``) present under the root."""
        assert self.root is not None
        return [s for s in SPLITS if (self.root / s).is_dir()]

    def _build_index(self) -> dict[str, list[Utterance]]:
        assert self.root is not None
        if not self.root.is_dir():
            raise _missing_root("speech folder", self.root, download_flag=False)
        split_dirs = self.split_folders()
        by_parent = self.speaker_from_parent
        if by_parent is None:
            by_parent = bool(split_dirs)
        files = {s: scan_audio(self.root / s) for s in split_dirs} or {"all": scan_audio(self.root)}
        if not any(files.values()):
            raise ValueError(
                f"speech folder '{self.root}' holds no audio files (looked for "
                "*.wav, *.flac, *.ogg recursively)"
            )
        found: dict[str, list[Utterance]] = {}
        for split, paths in files.items():
            base = self.root / split if split in SPLITS else self.root
            found[split] = []
            for path in paths:
                rel = path.relative_to(self.root).as_posix()
                # A file directly in a split folder has no speaker folder.
                parent_is_split = path.parent == base and split in SPLITS
                speaker = path.parent.name if by_parent and not parent_is_split else None
                found[split].append(Utterance(str(path), speaker, rel))
        if split_dirs:
            return found
        return self._split_by_speaker(found["all"])


class DemoSpeech(SpeechSource):
    """The bundled demo corpus (default root: ``audiodiag.paths.DEMO_CORPUS_DIR``).

    Reads ``metadata.csv`` (columns ``path,speaker,voice,text,split``; paths relative to the
    corpus folder). Without it, scans ``<speaker>/*.flac`` and splits by speaker hash.
    """

    name = "demo"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    ) -> None:
        super().__init__(root if root is not None else DEMO_CORPUS_DIR, False, split_fractions)

    def _build_index(self) -> dict[str, list[Utterance]]:
        assert self.root is not None
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"demo corpus not found at '{self.root}'; it ships in the repository under "
                "data/demo (set AUDIODIAG_DATA or data.speech.root=PATH to point elsewhere)"
            )
        metadata = self.root / "metadata.csv"
        if not metadata.is_file():
            utterances = [
                Utterance(str(p), p.parent.name, p.relative_to(self.root).as_posix())
                for p in scan_audio(self.root)
            ]
            if not utterances:
                raise ValueError(f"demo corpus folder '{self.root}' holds no audio files")
            return self._split_by_speaker(utterances)
        index: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
        with open(metadata, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "speaker", "split"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"'{metadata}' lacks columns {sorted(missing)}; expected path,speaker,split"
                )
            for line, row in enumerate(reader, start=2):
                split = row["split"].strip()
                if split not in SPLITS:
                    raise ValueError(
                        f"'{metadata}' line {line}: split '{split}' is invalid; "
                        f"accepted: {list(SPLITS)}"
                    )
                rel = row["path"].strip()
                index[split].append(Utterance(str(self.root / rel), row["speaker"].strip(), rel))
        return index
