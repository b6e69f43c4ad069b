"""Dataset download and archive extraction that never writes outside the target folder.

Python's ``tarfile`` extraction filters cannot be relied on: ``filter="data"`` is bypassable on
unpatched 3.11-3.13 releases (CVE-2025-4517: a symlink chain whose real path exceeds PATH_MAX),
and checking member names as text misses chained links. :func:`safe_extract` therefore never
calls ``extract``. It checks the whole archive lexically first (names, link targets, types,
sizes, counts, and the links already in the destination), then writes every member itself into
a private temporary folder beside the destination, with exclusive creation and without following
links, and moves the result into place only when the whole archive was written.

Policy (also in README, "Datasets"):

* names must be relative, without ``..``, backslashes or drive letters, at most 1024 characters
  (255 bytes per component), and appear once (a folder may repeat);
* a member may not pass through a symlink member (declared anywhere in the archive) nor
  through a symlink already in the destination;
* a tar symlink must be relative; its target, resolved step by step from the link's folder,
  must stay inside the root and may not pass through or name another link;
* a tar hard link must name a regular file declared earlier; its data is *copied*, never linked;
* zip entries flagged as symlinks are refused (zip archives of datasets hold none);
* devices, fifos and other special members are refused;
* the bytes actually written are capped (``max_bytes``) and so is the member count.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from torch.hub import download_url_to_file

__all__ = [
    "DEFAULT_MAX_MEMBERS",
    "UnsafeArchiveError",
    "default_max_bytes",
    "download_and_extract",
    "safe_extract",
]

log = logging.getLogger(__name__)

# Largest dataset archive in use (LibriSpeech train-other-500) holds ~160k members.
DEFAULT_MAX_MEMBERS = 500_000
# Audio datasets are FLAC/WAV: they expand little. 10x the archive (at least 1 GiB) is generous
# for them and still stops a decompression bomb, whose ratio runs to the thousands.
DEFAULT_EXPANSION_RATIO = 10
DEFAULT_MIN_BYTES = 1 << 30
MAX_NAME_CHARS = 1024
MAX_COMPONENT_BYTES = 255
_CHUNK = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder, pass through a link, is a
    device/fifo, or the archive exceeds the size or member-count cap. Nothing was written."""


def default_max_bytes(archive: str | os.PathLike) -> int:
    """The default cap on extracted bytes: 10x the archive's size, at least 1 GiB."""
    return max(DEFAULT_EXPANSION_RATIO * os.path.getsize(archive), DEFAULT_MIN_BYTES)


@dataclass(frozen=True)
class _Entry:
    """One archive member, normalised: ``parts`` is its path below the root."""

    name: str
    parts: tuple[str, ...]
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    size: int
    link: str = ""  # symlink target as written; hard-link target name
    handle: Any = None  # TarInfo or ZipInfo


def _refuse(archive: Path, name: str, why: str) -> UnsafeArchiveError:
    # repr keeps the message on one line whatever the member name holds.
    return UnsafeArchiveError(f"refusing to extract '{archive}': member {name!r} {why}")


def _parts(archive: Path, name: str) -> tuple[str, ...]:
    """Split a member name (or hard-link target) into safe components, or refuse it."""
    if "\x00" in name or "\\" in name:
        raise _refuse(archive, name, "has a name with a backslash or NUL")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _refuse(archive, name, "has a '..' component")
    if len(name) > MAX_NAME_CHARS or any(
        len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in parts
    ):
        raise _refuse(
            archive,
            name,
            f"has a path longer than {MAX_NAME_CHARS} characters "
            f"(or a component over {MAX_COMPONENT_BYTES} bytes)",
        )
    return parts


# ---------------------------------------------------------------------------------------------
# Readers: list the members as _Entry and open a member's data.


class _TarReader:
    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed in close()

    def entries(self, max_members: int) -> Iterator[_Entry]:
        for count, member in enumerate(self.tar, start=1):
            if count > max_members:
                raise _refuse(
                    self.archive, member.name, f"exceeds the cap of {max_members} members"
                )
            name = member.name
            if member.isdir():
                kind = "dir"
            elif member.isreg():
                kind = "file"
            elif member.issym():
                kind = "symlink"
            elif member.islnk():
                kind = "hardlink"
            else:
                raise _refuse(self.archive, name, "is a device, fifo or other special file")
            parts = _parts(self.archive, name)
            if not parts and kind != "dir":
                raise _refuse(self.archive, name, "names the extraction root itself")
            size = member.size if kind == "file" else 0
            yield _Entry(name, parts, kind, size, member.linkname, member)

    def open(self, entry: _Entry) -> IO[bytes]:
        stream = self.tar.extractfile(entry.handle)
        assert stream is not None  # a regular member always has a stream
        return stream

    def close(self) -> None:
        self.tar.close()


class _ZipReader:
    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.zip = zipfile.ZipFile(archive)

    def entries(self, max_members: int) -> Iterator[_Entry]:
        for count, info in enumerate(self.zip.infolist(), start=1):
            name = info.filename
            if count > max_members:
                raise _refuse(self.archive, name, f"exceeds the cap of {max_members} members")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                # Refused rather than written as a text file: dataset zips hold no links.
                raise _refuse(self.archive, name, "is a symlink (refused in zip archives)")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise _refuse(self.archive, name, "is a device, fifo or other special file")
            kind = "dir" if info.is_dir() else "file"
            parts = _parts(self.archive, name)
            if not parts and kind != "dir":
                raise _refuse(self.archive, name, "names the extraction root itself")
            yield _Entry(name, parts, kind, info.file_size if kind == "file" else 0, "", info)

    def open(self, entry: _Entry) -> IO[bytes]:
        return self.zip.open(entry.handle)

    def close(self) -> None:
        self.zip.close()


def _reader(archive: Path) -> _TarReader | _ZipReader:
    if zipfile.is_zipfile(archive):
        return _ZipReader(archive)
    try:
        return _TarReader(archive)
    except tarfile.TarError as error:
        raise ValueError(
            f"'{archive}' is neither a tar nor a zip archive ({error}); accepted: .tar, .tar.gz, "
            ".tgz, .tar.bz2, .tar.xz, .zip"
        ) from error


# ---------------------------------------------------------------------------------------------
# Check: the whole archive, before anything is written.


class _Existing:
    """What already sits in the destination at a member path (cached ``lstat``)."""

    def __init__(self, archive: Path, root: Path) -> None:
        self.archive, self.root = archive, root
        self.cache: dict[tuple[str, ...], str | None] = {}

    def __call__(self, parts: tuple[str, ...], name: str) -> str | None:
        if parts not in self.cache:
            try:
                mode = os.lstat(self.root.joinpath(*parts)).st_mode
            except (FileNotFoundError, NotADirectoryError):
                self.cache[parts] = None
            except OSError as error:
                raise _refuse(
                    self.archive, name, f"cannot be checked in '{self.root}' ({error})"
                ) from error
            else:
                self.cache[parts] = (
                    "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"
                )
        return self.cache[parts]


def _fold(parts: tuple[str, ...]) -> tuple[str, ...]:
    """Compare link paths as a case-insensitive, normalising filesystem (macOS, Windows) would:
    there ``A/x`` passes through a link ``a``. On Linux this only refuses more."""
    return tuple(unicodedata.normalize("NFC", part).casefold() for part in parts)


def _check(archive: Path, entries: list[_Entry], root: Path, max_bytes: int) -> None:
    """Refuse the archive unless every member lands inside ``root`` without passing a link."""
    existing = _Existing(archive, root)
    symlinks = {_fold(e.parts) for e in entries if e.kind == "symlink"}  # later ones count too
    kinds: dict[tuple[str, ...], str] = {(): "dir"}
    sizes: dict[tuple[str, ...], int] = {}
    total = 0
    for entry in entries:
        name, parts = entry.name, entry.parts
        if not parts:
            continue  # "." or "./": the root folder itself
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            if _fold(prefix) in symlinks:
                raise _refuse(archive, name, f"passes through the link '{'/'.join(prefix)}'")
            if kinds.setdefault(prefix, "dir") != "dir":
                raise _refuse(archive, name, f"passes through the file '{'/'.join(prefix)}'")
            there = existing(prefix, name)
            if there == "link":
                raise _refuse(
                    archive, name, f"passes through the existing link '{root.joinpath(*prefix)}'"
                )
            if there == "file":
                raise _refuse(archive, name, f"needs a folder where '{root.joinpath(*prefix)}' is")
        kind = "file" if entry.kind == "hardlink" else entry.kind
        if parts in kinds and not (kinds[parts] == "dir" and kind == "dir"):
            raise _refuse(archive, name, "appears twice (or as a file and a folder)")
        kinds[parts] = kind
        there = existing(parts, name)
        if there == "dir" and kind != "dir":
            raise _refuse(archive, name, f"would replace the folder '{root.joinpath(*parts)}'")
        if there in ("file", "link") and kind == "dir":
            raise _refuse(archive, name, f"would replace the file '{root.joinpath(*parts)}'")
        if entry.kind == "symlink":
            _check_symlink(archive, entry, symlinks, existing)
        size = entry.size
        if entry.kind == "hardlink":
            try:
                target: tuple[str, ...] | None = _parts(archive, entry.link)
            except UnsafeArchiveError:
                target = None  # absolute, '..', too long: refused just below, naming this member
            if target is None or kinds.get(target) != "file" or target == parts:
                raise _refuse(
                    archive,
                    name,
                    f"is a hard link to {entry.link!r}, which is not a regular file declared "
                    "earlier in the archive",
                )
            size = sizes[target]
        sizes[parts] = size
        total += size
        if total > max_bytes:
            raise _refuse(archive, name, f"takes the archive past max_bytes={max_bytes}")


def _check_symlink(
    archive: Path,
    entry: _Entry,
    symlinks: set[tuple[str, ...]],
    existing: Callable[[tuple[str, ...], str], str | None],
) -> None:
    target = entry.link
    if not target or target.startswith("/") or "\\" in target or target[1:2] == ":":
        raise _refuse(
            archive, entry.name, f"is a link to {target!r} (absolute, empty or with a backslash)"
        )
    position = list(entry.parts[:-1])
    # Resolve step by step; '..' is only lexical because no step may itself be a link.
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not position:
                raise _refuse(archive, entry.name, f"is a link to {target!r}, outside the root")
            position.pop()
            continue
        position.append(part)
        step = tuple(position)
        if _fold(step) in symlinks or existing(step, entry.name) == "link":
            raise _refuse(
                archive, entry.name, f"is a link to {target!r}, through the link '{'/'.join(step)}'"
            )


# ---------------------------------------------------------------------------------------------
# Write: into a private temporary folder, never following a link.


def _makedirs(base: Path, parts: tuple[str, ...], made: set[Path]) -> Path:
    path = base
    for part in parts:
        path = path / part
        if path in made:
            continue
        made.add(path)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # never descend through a link
                raise NotADirectoryError(f"'{path}' is not a folder") from None
    return path


def _copy(source: IO[bytes], path: Path, mode: int, budget: int) -> int:
    """Write ``source`` to a new file at ``path`` (exclusive, no link followed); return bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, mode)
    written = 0
    with open(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > budget:
                raise OverflowError
            out.write(chunk)
    return written


def _write(
    archive: Path, reader: _TarReader | _ZipReader, entries: list[_Entry], tmp: Path, cap: int
) -> None:
    total, made = 0, set[Path]()
    for entry in entries:
        if not entry.parts:
            continue
        parent = _makedirs(tmp, entry.parts[:-1], made)
        path = parent / entry.parts[-1]
        if entry.kind == "dir":
            _makedirs(parent, entry.parts[-1:], made)
        elif entry.kind == "symlink":
            os.symlink(entry.link, path)
        else:
            executable = isinstance(entry.handle, tarfile.TarInfo) and entry.handle.mode & 0o100
            mode = 0o755 if executable else 0o644
            try:
                if entry.kind == "hardlink":
                    source_path = tmp.joinpath(*_parts(archive, entry.link))
                    fd = os.open(source_path, os.O_RDONLY | _NOFOLLOW | _BINARY)
                    with open(fd, "rb") as source:
                        total += _copy(source, path, mode, cap - total)
                else:
                    with reader.open(entry) as source:
                        total += _copy(source, path, mode, cap - total)
            except OverflowError:
                raise _refuse(
                    archive, entry.name, f"takes the archive past max_bytes={cap}"
                ) from None


def _move_into_place(tmp: Path, root: Path) -> None:
    """Move the checked tree into ``root``: one rename when ``root`` is new, else a merge."""
    if not os.path.lexists(root):
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        os.rename(tmp, root)
        return
    _merge(tmp, root)


def _merge(source: Path, target: Path) -> None:
    for name in sorted(os.listdir(source)):
        src, dst = source / name, target / name
        if stat.S_ISDIR(os.lstat(src).st_mode) and os.path.isdir(dst) and not dst.is_symlink():
            _merge(src, dst)
        else:
            os.replace(src, dst)  # a file or link replaces a file or link; never follows one


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def safe_extract(
    archive: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract a ``.tar[.gz|.bz2|.xz]``/``.tgz``/``.zip`` archive into ``destination``.

    The whole archive is checked first (see the module docstring for the policy) and an offending
    member raises :class:`UnsafeArchiveError` naming the archive and the member. The members
    are then written into a temporary folder beside ``destination`` and moved into place only
    when all of them were written; on any failure while checking or writing, the temporary
    folder is removed and ``destination`` is left as it was. Into a new folder the move is one
    rename; over an existing folder the archive's files and links replace those of the same name
    and everything else is kept (an I/O error during that merge is not rolled back).

    Args:
        max_bytes: cap on the bytes actually written (default :func:`default_max_bytes`).
        max_members: cap on the number of members.

    Returns the paths of the extracted regular files (hard-link copies included).
    """
    archive = Path(archive)
    root = Path(destination).resolve()
    if os.path.lexists(root) and not root.is_dir():
        raise NotADirectoryError(f"cannot extract '{archive}' into '{root}': not a folder")
    cap = default_max_bytes(archive) if max_bytes is None else int(max_bytes)
    with _closing(_reader(archive)) as reader:
        try:
            entries = list(reader.entries(max_members))
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ValueError(f"'{archive}' is corrupt or truncated ({error})") from error
        _check(archive, entries, root, cap)
        created = _missing_parents(root.parent)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
        except PermissionError:
            if not root.is_dir():
                raise
            # A read-only parent (a mount point): the temporary folder goes inside the root.
            tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
            clash = next((e for e in entries if e.parts[:1] == (tmp.name,)), None)
            if clash is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                raise _refuse(archive, clash.name, "collides with the temporary folder") from None
        try:
            _write(archive, reader, entries, tmp, cap)
            _move_into_place(tmp, root)
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in created:  # innermost first; only the empty folders made here
                try:
                    os.rmdir(folder)
                except OSError:
                    break
            if isinstance(error, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error)):
                raise ValueError(f"'{archive}' is corrupt or truncated ({error})") from error
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # what a merge left: emptied folders
    return [root.joinpath(*e.parts) for e in entries if e.kind in ("file", "hardlink")]


class _closing:
    def __init__(self, reader: _TarReader | _ZipReader) -> None:
        self.reader = reader

    def __enter__(self) -> _TarReader | _ZipReader:
        return self.reader

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


def download_and_extract(
    url: str,
    download_dir: str | os.PathLike,
    extract_to: str | os.PathLike | None = None,
    checksum: str | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Download ``url`` into ``download_dir`` (skipped when the archive is already there), then
    :func:`safe_extract` it into ``extract_to`` (default ``download_dir``).

    Uses ``torch.hub.download_url_to_file`` (which also accepts ``file://`` URLs and checks a
    SHA-256 prefix when ``checksum`` is given). ``max_bytes`` caps the extracted size (pass the
    dataset's real size when known; default :func:`default_max_bytes`).
    """
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    archive = download_dir / os.path.basename(url.rstrip("/"))
    if not archive.is_file():
        log.info("downloading %s -> %s", url, archive)
        download_url_to_file(url, str(archive), hash_prefix=checksum)
    target = Path(extract_to) if extract_to is not None else download_dir
    log.info("extracting %s -> %s", archive, target)
    safe_extract(archive, target, max_bytes=max_bytes)
    return archive
