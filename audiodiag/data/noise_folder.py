"""A folder of real noise recordings (MUSAN, DNS Challenge, WHAM!, DEMAND, your own).

What it does, so that ``noise=folder noise.folder=PATH`` just works on a corpus as it unpacks:

- **categories**: a file's category is its first-level subfolder (MUSAN: ``music``, ``noise``,
  ``speech``; DEMAND: ``DKITCHEN``, ...), ``.`` for files directly in the folder (DNS), or the
  first of ``category_globs`` that matches its relative path. Each category has a weight
  (default 1); draws pick a category by weight, then a file in proportion to its duration.
- **a cached manifest** of every file's frames and rate (:mod:`audiodiag.data.manifest`, the
  one shared with the speech sources): read from headers once, kept beside the data when the
  folder is writable, else in the user cache folder. Files are matched by size and modification
  time; changed or new files are probed again, a manifest of another folder is rebuilt.
- **splits by recording**: train/valid/test by a hash of each file's relative path, within each
  category; DEMAND-style folders of channel files (``ch01.wav``...) split by folder, so one
  recording never crosses splits; WHAM!-style ``tr/``, ``cv/``, ``tt/`` folders are used as given.
- **partial reads**: a crop decodes only its own frames (plus a resampler margin).
- **bad files**: unreadable files are skipped and counted (one warning line); a category with
  weight > 0 and no readable file stops with one line naming it.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiodiag.audio import AudioDecodeError, read_audio, resample, scan_audio, to_mono
from audiodiag.data.manifest import load_manifest, manifest_path
from audiodiag.data.speech import SPLITS, assign_splits

__all__ = ["NoiseFile", "NoiseFolder"]

log = logging.getLogger(__name__)

# Folder names that *are* splits (WHAM!: tr/cv/tt), mapped to ours.
_SPLIT_FOLDERS = {
    "tr": "train",
    "train": "train",
    "cv": "valid",
    "valid": "valid",
    "val": "valid",
    "dev": "valid",
    "tt": "test",
    "test": "test",
}
_CHANNEL_FILE = re.compile(r"^ch\d+\.(wav|flac|ogg)$", re.IGNORECASE)
ROOT_CATEGORY = "."
SPLIT_BY = ("auto", "file", "folder", "subfolders")

ReportBad = Callable[[str, Exception], None]


@dataclass(frozen=True)
class NoiseFile:
    """One readable recording: absolute ``path``, ``rel`` path, ``category``, header facts."""

    path: str
    rel: str
    category: str
    frames: int
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def _fit_length(x: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Random crop when longer, tiling from a random offset when shorter."""
    if x.shape[0] >= num_samples:
        start = int(rng.integers(0, x.shape[0] - num_samples + 1))
        return x[start : start + num_samples]
    reps = math.ceil(num_samples / x.shape[0]) + 1
    tiled = np.tile(x, reps)
    start = int(rng.integers(0, x.shape[0]))
    return tiled[start : start + num_samples]


class NoiseFolder:
    """Recordings under ``root``, by category and split, read crop by crop.

    Args:
        root: the folder (searched recursively for wav/flac/ogg).
        categories: category -> weight; unlisted categories found in the folder weigh 1, a
            weight of 0 leaves a category out. A listed category that is not in the folder is
            an error naming the ones that are.
        category_globs: optional category -> glob (or list of globs) on the relative path,
            e.g. ``{"street": "*/STRAFFIC/*"}``; the first match wins, unmatched files are
            ``other``. Without it the category is the first-level subfolder.
        split_by: ``file`` (hash of the relative path), ``folder`` (hash of the parent folder:
            channel files of one recording stay together), ``subfolders`` (first-level folders
            named tr/cv/tt or train/valid/test are the splits) or ``auto`` (``subfolders`` when
            they look like that, ``folder`` for ``chNN.wav`` channel files, else ``file``).
        split: False gives every split every file (no held-out recordings).
        split_fractions: train/valid/test shares for hashed splits.
        manifest: ``auto`` (beside the data if writable, else the user cache; see
            :mod:`audiodiag.data.manifest`) or a file path.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        categories: Mapping[str, float] | None = None,
        category_globs: Mapping[str, str | Sequence[str]] | None = None,
        split_by: str = "auto",
        split: bool = True,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        manifest: str | os.PathLike = "auto",
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.weights = {str(k): float(v) for k, v in dict(categories or {}).items()}
        bad = sorted(k for k, v in self.weights.items() if v < 0 or not math.isfinite(v))
        if bad:
            raise ValueError(f"noise.categories for {bad} must be finite and >= 0")
        self.globs: dict[str, list[str]] = {
            str(k): [v] if isinstance(v, str) else [str(p) for p in v]
            for k, v in dict(category_globs or {}).items()
        }
        if split_by not in SPLIT_BY:
            raise ValueError(f"noise.split_by='{split_by}' is invalid; accepted: {list(SPLIT_BY)}")
        self.split_by = split_by
        self.split = bool(split)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        self.manifest = manifest
        self.manifest_path: Path | None = None
        self.unreadable: dict[str, str] = {}  # rel path -> reason
        self._files: dict[str, dict[str, list[NoiseFile]]] | None = None
        self._cumulative: dict[tuple[str, str], np.ndarray] = {}
        self._bad: set[str] = set()

    def __repr__(self) -> str:
        return f"NoiseFolder('{self.root}', categories={self.weights or 'all'}, split_by={self.split_by})"

    # -- listing ------------------------------------------------------------------------------
    def setup(self, report_bad: ReportBad | None = None) -> None:
        """Scan, update the manifest, split and check every category (once).

        Unreadable files are left out, logged in one line, and passed to ``report_bad`` (which
        may raise to stop, e.g. ``data.on_bad_file=raise``)."""
        if self._files is not None:
            return
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"noise folder '{self.root}' does not exist; set noise.folder=PATH"
            )
        paths = scan_audio(self.root)
        if not paths:
            raise ValueError(
                f"noise folder '{self.root}' holds no audio files (looked for *.wav, *.flac, "
                "*.ogg recursively)"
            )
        facts = self._manifest_facts(paths)
        split_by = self._resolve_split_by(paths)
        readable: list[tuple[NoiseFile, str | None]] = []
        self.unreadable = {}
        unreadable_categories: list[str] = []
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            given_split = None
            if split_by == "subfolders":
                first, _, rest = rel.partition("/")
                given_split, rel_in_split = _SPLIT_FOLDERS.get(first.lower()), rest
            else:
                rel_in_split = rel
            category = self._category(rel_in_split)
            frames, rate, error = facts[rel]
            if error is not None:
                self.unreadable[rel] = error
                unreadable_categories.append(category)
                continue
            readable.append((NoiseFile(str(path), rel, category, frames, rate), given_split))
        if self.unreadable:
            if report_bad is not None:
                for rel, reason in self.unreadable.items():
                    report_bad(str(self.root / rel), AudioDecodeError(self.root / rel, reason))
            example = next(iter(self.unreadable.items()))
            log.warning(
                "noise folder '%s': skipped %d unreadable file(s), e.g. %s (%s)",
                self.root,
                len(self.unreadable),
                *example,
            )
        self._check_categories(readable, unreadable_categories)
        self._files = self._split(readable, split_by)
        log.info(
            "noise folder '%s': %s (split by %s)",
            self.root,
            ", ".join(
                f"{c}: {sum(len(v[c]) for v in self._files.values() if c in v)} files"
                for c in self.categories()
            ),
            split_by,
        )

    def _category(self, rel: str) -> str:
        if self.globs:
            for name, patterns in self.globs.items():
                if any(fnmatch.fnmatch(rel, p) for p in patterns):
                    return name
            return "other"
        first, sep, _ = rel.partition("/")
        return first if sep else ROOT_CATEGORY

    def _resolve_split_by(self, paths: Sequence[Path]) -> str:
        if self.split_by != "auto":
            return self.split_by
        firsts = {
            p.relative_to(self.root).parts[0].lower()
            for p in paths
            if len(p.relative_to(self.root).parts) > 1
        }
        if (
            firsts
            and firsts <= set(_SPLIT_FOLDERS)
            and len({_SPLIT_FOLDERS[f] for f in firsts}) >= 2
        ):
            return "subfolders"
        if sum(bool(_CHANNEL_FILE.match(p.name)) for p in paths) > len(paths) // 2:
            return "folder"
        return "file"

    def _check_categories(
        self, readable: Sequence[tuple[NoiseFile, str | None]], unreadable: Sequence[str]
    ) -> None:
        found: dict[str, int] = {}
        for item, _ in readable:
            found[item.category] = found.get(item.category, 0) + 1
        all_found = set(found) | set(unreadable)
        missing = sorted(set(self.weights) - all_found)
        if missing:
            how = (
                "from noise.category_globs"
                if self.globs
                else "first-level subfolders, '.' for files at the top"
            )
            raise ValueError(
                f"noise.categories names {missing} but noise folder '{self.root}' has "
                f"categories {sorted(all_found)} ({how})"
            )
        for category in sorted(all_found):
            if self.weights.get(category, 1.0) > 0 and not found.get(category):
                bad = sum(c == category for c in unreadable)
                raise ValueError(
                    f"noise folder '{self.root}': category '{category}' has no readable audio "
                    f"({bad} unreadable file(s)); fix the files or set "
                    f"noise.categories.{category}=0"
                )
        if not any(self.weights.get(c, 1.0) > 0 for c in found):
            raise ValueError(
                f"noise.categories={self.weights} leaves no category of '{self.root}' with weight > 0"
            )

    def _split(
        self, readable: Sequence[tuple[NoiseFile, str | None]], split_by: str
    ) -> dict[str, dict[str, list[NoiseFile]]]:
        files: dict[str, dict[str, list[NoiseFile]]] = {s: {} for s in SPLITS}
        if not self.split or len(readable) < 3:
            if self.split:
                log.warning(
                    "noise folder '%s' has %d readable file(s): every split uses all of them",
                    self.root,
                    len(readable),
                )
            for item, _ in readable:
                for s in SPLITS:
                    files[s].setdefault(item.category, []).append(item)
            return files

        def recording(item: NoiseFile) -> str:
            # One key per recording: the file, or its folder of channel files.
            return item.rel.rsplit("/", 1)[0] if split_by == "folder" else item.rel

        by_category: dict[str, list[tuple[NoiseFile, str | None]]] = {}
        for item, given in readable:
            by_category.setdefault(item.category, []).append((item, given))
        # Categories with three or more recordings are split within themselves (each split gets
        # some of each); smaller ones (a DEMAND environment is one recording) are split together.
        groups: list[list[tuple[NoiseFile, str | None]]] = []
        pooled: list[tuple[NoiseFile, str | None]] = []
        for items in by_category.values():
            if len({recording(item) for item, _ in items}) >= 3:
                groups.append(items)
            else:
                pooled.extend(items)
        if pooled:
            groups.append(pooled)
        for items in groups:
            if split_by == "subfolders":
                chosen = {item.rel: given or "train" for item, given in items}
            else:
                mapping = assign_splits({recording(i) for i, _ in items}, self.split_fractions)
                chosen = {item.rel: mapping[recording(item)] for item, _ in items}
            for item, _ in items:
                files[chosen[item.rel]].setdefault(item.category, []).append(item)
        for split in SPLITS[1:]:
            absent = sorted(set(self.categories_in(files)) - set(self.categories_in(files, split)))
            if absent:
                log.warning(
                    "noise folder '%s': no %s recording of %s (too few files); its draws use "
                    "the other categories",
                    self.root,
                    split,
                    absent,
                )
        return files

    def categories(self, split: str | None = None) -> list[str]:
        """Categories with weight > 0 (that have files in ``split`` when given)."""
        self.setup()
        assert self._files is not None
        return self.categories_in(self._files, split)

    def categories_in(
        self, files: Mapping[str, Mapping[str, list[NoiseFile]]], split: str | None = None
    ) -> list[str]:
        splits = [split] if split else list(SPLITS)
        found = {c for s in splits for c, v in files[s].items() if v}
        return sorted(c for c in found if self.weights.get(c, 1.0) > 0)

    def files(self, split: str, category: str | None = None) -> list[NoiseFile]:
        """Readable recordings of ``split`` (of one category, or of every weighted category)."""
        self.setup()
        assert self._files is not None
        names = [category] if category else self.categories(split)
        return [f for c in names for f in self._files[split].get(c, [])]

    def _manifest_facts(self, paths: Sequence[Path]) -> dict[str, tuple[int, int, str | None]]:
        """rel path -> (frames, rate, error) from the corpus manifest, probing what changed."""
        if str(self.manifest) == "auto":
            self.manifest_path = manifest_path(self.root)
        else:
            self.manifest_path = Path(self.manifest).expanduser()
        errors: dict[str, str] = {}

        def note_bad(path: str, error: Exception) -> None:
            errors[path] = error.reason if isinstance(error, AudioDecodeError) else str(error)

        infos = load_manifest(
            self.root, [str(p) for p in paths], location=self.manifest_path, report_bad=note_bad
        )
        facts: dict[str, tuple[int, int, str | None]] = {}
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            info = infos.get(str(path))
            if info is None:
                facts[rel] = (0, 0, errors.get(str(path), "unreadable header"))
            elif info.frames <= 0:
                facts[rel] = (0, 0, "file holds no samples")
            else:
                facts[rel] = (info.frames, info.sample_rate, None)
        return facts

    # -- drawing ------------------------------------------------------------------------------
    def draw(
        self,
        num_samples: int,
        sample_rate: int,
        rng: np.random.Generator,
        split: str = "train",
        report_bad: ReportBad | None = None,
    ) -> tuple[np.ndarray, str] | None:
        """A mono crop of ``num_samples`` at ``sample_rate`` and its category, or None when the
        split has no readable file left."""
        names = self.categories(split)
        if not names:
            return None
        weights = np.array([self.weights.get(c, 1.0) for c in names])
        category = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        pool = self.files(split, category)
        key = (split, category)
        if key not in self._cumulative:
            self._cumulative[key] = np.cumsum([f.seconds for f in pool])
        cumulative = self._cumulative[key]
        first = int(np.searchsorted(cumulative, rng.uniform(0, cumulative[-1]), side="right"))
        for attempt in range(len(pool)):
            item = pool[(min(first, len(pool) - 1) + attempt) % len(pool)]
            if item.path in self._bad:
                continue
            # Read only the crop (plus a little for the resampler's edges).
            need = math.ceil(num_samples * item.sample_rate / sample_rate) + 64
            offset = int(rng.integers(0, item.frames - need + 1)) if item.frames > need else 0
            try:
                waveform, _ = read_audio(
                    item.path, frame_offset=offset, num_frames=min(need, item.frames)
                )
            except AudioDecodeError as error:
                if report_bad is None:
                    raise
                report_bad(item.path, error)
                self._bad.add(item.path)
                continue
            mono = resample(to_mono(waveform), item.sample_rate, sample_rate).numpy()
            return _fit_length(mono, num_samples, rng), category
        return None
