"""A per-corpus manifest of audio file lengths, so start-up never re-opens every file.

The manifest maps each file (relative to the corpus root) to its size and modification time
(what makes an entry stale), frame count, sample rate and speaker. It lives beside the data
(``<root>/.audiodiag-manifest.json``) or, when the root is not writable, in the user cache
folder (``$XDG_CACHE_HOME/audiodiag/manifests/``). A manifest of another format or another root
is foreign and rebuilt; an entry whose file changed size or time is measured again from the
header (``soundfile.info``, no decoding). A start-up then costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiodiag.audio import AudioDecodeError, audio_info
from audiodiag.paths import is_read_only_data

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "FileInfo", "load_manifest", "manifest_path"]

log = logging.getLogger(__name__)

MANIFEST_NAME = ".audiodiag-manifest.json"
MANIFEST_FORMAT = "audiodiag-manifest/1"


@dataclass(frozen=True)
class FileInfo:
    """Header facts about one file: ``frames`` at its own ``sample_rate``."""

    frames: int
    sample_rate: int


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "audiodiag" / "manifests"


def root_id(root: Path) -> str:
    """A file-name-safe id of ``root`` for the user cache: its name and a hash of its path."""
    digest = hashlib.md5(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"{Path(root).name}-{digest}"


def file_key(root: Path, path: str) -> str:
    """How a file is keyed in a corpus' caches: relative to ``root``, else its absolute path."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def manifest_path(root: Path) -> Path:
    """Where the manifest of ``root`` lives: beside the data when writable, else the cache (also
    for the bundled demo corpus and anything in site-packages: never written into)."""
    root = Path(root)
    if os.access(root, os.W_OK) and not is_read_only_data(root):
        return root / MANIFEST_NAME
    return _user_cache_dir() / f"{root_id(root)}.json"


def _read(path: Path, root: Path) -> dict[str, list]:
    """Entries of a valid manifest for ``root``; {} for a missing, broken or foreign one."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("rebuilding the unreadable manifest '%s': %s", path, error)
        return {}
    if (
        not isinstance(data, dict)
        or data.get("format") != MANIFEST_FORMAT
        or data.get("root") != str(root.resolve())
        or not isinstance(data.get("files"), dict)
    ):
        log.warning("rebuilding the manifest '%s': written for another format or root", path)
        return {}
    return data["files"]


def _write(path: Path, root: Path, files: dict[str, list]) -> None:
    """Write atomically (several processes may build the same manifest at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": MANIFEST_FORMAT, "root": str(root.resolve()), "files": files}
    handle, tmp = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users of the data read it too
        os.replace(tmp, path)
    except OSError as error:  # a read-only or full disk only costs the next start-up time
        log.warning("could not write the manifest '%s': %s", path, error)
        Path(tmp).unlink(missing_ok=True)


def load_manifest(
    root: str | os.PathLike,
    paths: Sequence[str],
    speakers: Sequence[str | None] | None = None,
    location: Path | None = None,
    report_bad: Callable[[str, Exception], None] | None = None,
) -> dict[str, FileInfo]:
    """Frames and sample rate of every readable file in ``paths`` (absolute), from the cached
    manifest of ``root`` where it is current, from the file headers where not.

    Files whose header cannot be read are left out and passed to ``report_bad`` (with the
    :class:`~audiodiag.audio.AudioDecodeError`); they are probed again next time. ``location`` overrides where the manifest is kept (default: :func:`manifest_path`).
    """
    root = Path(root)
    location = location or manifest_path(root)
    entries = _read(location, root)
    out: dict[str, FileInfo] = {}
    changed = 0
    for n, path in enumerate(paths):
        key = file_key(root, path)
        try:
            stat = os.stat(path)
        except OSError as error:
            if report_bad is not None:
                report_bad(path, AudioDecodeError(path, f"cannot stat: {error.strerror}"))
            continue
        entry = entries.get(key)
        if not (isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]):
            try:
                frames, rate, _ = audio_info(path)
            except AudioDecodeError as error:
                entries.pop(key, None)
                if report_bad is not None:
                    report_bad(path, error)
                continue
            speaker = speakers[n] if speakers is not None else None
            entry = [stat.st_size, stat.st_mtime_ns, frames, rate, speaker]
            entries[key] = entry
            changed += 1
        out[path] = FileInfo(int(entry[2]), int(entry[3]))
    if changed:
        log.info("manifest '%s': measured %d of %d files", location, changed, len(paths))
        _write(location, root, entries)
    return out
