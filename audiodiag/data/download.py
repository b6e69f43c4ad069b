"""Dataset download and archive extraction that never writes outside the target folder.

torchaudio's own ``_extract_tar``/``_extract_zip`` call ``extract`` on every member without
checking names, so a crafted archive (``../../etc/x``, absolute paths, symlinks pointing out)
could write anywhere. :func:`safe_extract` checks every member *before* writing anything and
refuses the whole archive, naming the first offending member.
"""

from __future__ import annotations

import logging
import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from torchaudio._internal import download_url_to_file

__all__ = ["UnsafeArchiveError", "download_and_extract", "safe_extract"]

log = logging.getLogger(__name__)


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (or is a device/fifo)."""


def _inside(root: Path, name: str) -> bool:
    """True when ``name`` (an archive member path) resolves to a location inside ``root``."""
    if not name or name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute():
        return False
    if len(name) > 1 and name[1] == ":":  # Windows drive letter
        return False
    target = (root / name).resolve()
    return target == root or root in target.parents


def _check_tar(archive: Path, tar: tarfile.TarFile, root: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        if not _inside(root, member.name):
            raise UnsafeArchiveError(
                f"refusing to extract '{archive}': member '{member.name}' leaves '{root}'"
            )
        if member.issym() or member.islnk():
            # A link target is relative to the link's folder (symlink) or the archive root (hard).
            base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
            link = member.linkname
            if link.startswith("/") or not _inside(root, str(base / link)):
                raise UnsafeArchiveError(
                    f"refusing to extract '{archive}': link '{member.name}' -> '{link}' "
                    f"points outside '{root}'"
                )
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                f"refusing to extract '{archive}': member '{member.name}' is a device or fifo"
            )
    return members


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike) -> list[Path]:
    """Extract a ``.tar``/``.tar.gz``/``.tgz``/``.zip`` archive into ``destination``.

    Every member is checked first; one whose path (or link target) leaves ``destination``
    raises :class:`UnsafeArchiveError` and nothing is written. Returns the extracted file paths.
    """
    archive = Path(archive)
    root = Path(destination).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zfile:
            names = zfile.namelist()
            for name in names:
                if not _inside(root, name):
                    raise UnsafeArchiveError(
                        f"refusing to extract '{archive}': member '{name}' leaves '{root}'"
                    )
            zfile.extractall(root)
        return [root / name for name in names if not name.endswith("/")]
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as error:
        raise ValueError(
            f"'{archive}' is neither a tar nor a zip archive ({error}); accepted: .tar, .tar.gz, "
            ".tgz, .zip"
        ) from error
    with tar:
        members = _check_tar(archive, tar, root)
        if hasattr(tarfile, "data_filter"):
            # Belt and braces: Python's own "data" filter also strips odd permissions.
            tar.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(root, members=members)
    return [root / m.name for m in members if m.isfile()]


def download_and_extract(
    url: str,
    download_dir: str | os.PathLike,
    extract_to: str | os.PathLike | None = None,
    checksum: str | None = None,
) -> Path:
    """Download ``url`` into ``download_dir`` (skipped when the archive is already there), then
    :func:`safe_extract` it into ``extract_to`` (default ``download_dir``).

    Uses torchaudio's downloader (``torch.hub.download_url_to_file``), which also accepts
    ``file://`` URLs and checks a SHA-256 prefix when ``checksum`` is given.
    """
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    archive = download_dir / os.path.basename(url.rstrip("/"))
    if not archive.is_file():
        log.info("downloading %s -> %s", url, archive)
        download_url_to_file(url, str(archive), hash_prefix=checksum)
    target = Path(extract_to) if extract_to is not None else download_dir
    log.info("extracting %s -> %s", archive, target)
    safe_extract(archive, target)
    return archive
