"""Output files that appear whole or not at all, and never replace a file nobody asked to replace.

Every command writes through :func:`atomic_write`: the bytes go to a temporary file beside the
target (same folder, so the final rename is atomic on one file system) that is renamed into place
only when writing succeeded; on failure the temporary file is removed and whatever sat at the
target before is left untouched. :func:`check_output` is the preflight a command runs *before*
the work (an evaluation, an export) so that a bad output path costs nothing: it refuses a folder,
a path under a file, an unwritable place, a wrong extension, an output equal to one of the
inputs, and an existing file unless overwriting was asked for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "OutputError",
    "atomic_write",
    "check_output",
    "check_output_folder",
    "same_path",
    "temporary_path",
]

PathLike = str | os.PathLike

# Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class OutputError(ValueError):
    """An output path that cannot or must not be written; the message names the argument."""


def same_path(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (resolved, or the same inode via links)."""
    first, second = Path(a), Path(b)
    if first.resolve() == second.resolve():
        return True
    with contextlib.suppress(OSError):
        return first.exists() and second.exists() and first.samefile(second)
    return False


def _nearest_existing(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (the folder a mkdir -p would start from)."""
    current = path.parent
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _probe_writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else the OS's reason. A real create (then
    removed) rather than ``os.access``, which says yes to root on read-only mounts and sysfs."""
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".audiodiag-probe-")
    except OSError as error:
        return error.strerror or str(error)
    os.close(handle)
    os.unlink(name)
    return None


def check_output(
    path: PathLike,
    key: str,
    *,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = False,
    suffixes: Iterable[str] | None = None,
    overwrite_hint: str = "overwrite=true",
) -> Path:
    """Refuse, with one line naming ``key``, an output file that cannot or must not be written.

    Checked: an existing folder, an extension outside ``suffixes``, a path equal to one of
    ``inputs``, a parent that is a file, a place where no file can be created, and an existing
    file when ``overwrite`` is false. Returns the path; raises :class:`OutputError`.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{key}={target} is a folder; give a file path inside it")
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        if target.suffix.lower() not in allowed:
            raise OutputError(
                f"{key}={target} has extension {target.suffix or '(none)'!r}; accepted: "
                f"{', '.join(allowed)}"
            )
    for source in inputs:
        if same_path(target, source):
            raise OutputError(
                f"{key}={target} is also an input ({source}); writing it would destroy the input: "
                "choose another path"
            )
    folder = _nearest_existing(target)
    if not folder.is_dir():
        raise OutputError(f"{key}={target} lies under {folder}, which is a file, not a folder")
    reason = _probe_writable(folder)
    if reason is not None:
        raise OutputError(f"{key}={target}: cannot create files in {folder} ({reason})")
    if target.exists() and not overwrite:
        raise OutputError(f"{key}={target} exists; pass {overwrite_hint} to replace it")
    return target


def check_output_folder(path: PathLike, key: str) -> Path:
    """Refuse, naming ``key``, an output folder that is a file, lies under a file, or where no
    file can be created. Returns the path; raises :class:`OutputError`."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{key}={folder} is a file; give a folder")
    existing = folder if folder.is_dir() else _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{key}={folder} lies under {existing}, which is a file, not a folder")
    reason = _probe_writable(existing)
    if reason is not None:
        raise OutputError(f"{key}={folder}: cannot create files in {existing} ({reason})")
    return folder


def temporary_path(target: PathLike) -> Path:
    """A fresh, unused path beside ``target`` with the same extension (some writers pick the
    format from it), hidden and marked as temporary."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}"
    )
    os.close(handle)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


@contextlib.contextmanager
def atomic_write(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block ends
    without an error, remove it otherwise. Nothing else is ever deleted.

    Example::

        with atomic_write("report.json") as tmp:
            tmp.write_text(text)
    """
    target = Path(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        if target.is_dir():
            raise OutputError(f"{target} is a folder; it was not replaced")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
