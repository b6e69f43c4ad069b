"""Hostile archives against safe_extract: each is refused in one line, nothing outside the root
changes and the destination is left exactly as it was (no partial extraction, no temp folder).

The archives are built here; none is ever given to tarfile's own extraction.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from audiodiag.data import UnsafeArchiveError, safe_extract

SENTINEL = b"precious data that must survive"


def _file(name, data=b"pwned"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _hard(name, target):
    return _link(name, target, tarfile.LNKTYPE)


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def _tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zfile:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.create_system = 3  # unix: external_attr carries st_mode
                info.external_attr = mode << 16
            zfile.writestr(info, data)
    return path


def _cve_2025_4517(comp_len):
    """The CPython gh-135034 proof of concept, aimed at the parent of the root.

    Nested folders with long names and one-letter links to them make the real path of
    ``a/b/.../p/lll`` exceed PATH_MAX, where ``os.path.realpath`` (and so ``filter="data"`` on
    unpatched Pythons) stops resolving; ``escape`` then points above the root and a hard link
    through it overwrites the sentinel.
    """
    comp, steps, path, members = "d" * comp_len, "abcdefghijklmnop", "", []
    for step in steps:
        members += [_dir(posixpath.join(path, comp)), _link(posixpath.join(path, step), comp)]
        path = posixpath.join(path, comp)
    linkpath = posixpath.join(*steps, "l" * 254)
    members += [
        _link(linkpath, "../" * len(steps)),
        _link("escape", linkpath + "/.."),
        _hard("flaglink", "escape/sentinel.txt"),
        _file("flaglink", b"overwritten"),
    ]
    return members, linkpath


def _bomb_tar_gz(path):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 8 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return path


# (id, builder(tmp_path) -> (archive, member named in the message or None), extra kwargs)
def _attacks():
    def tar(members, expected, **kwargs):
        return lambda t: (_tar(t / "archives" / "evil.tar", members(t)), expected), kwargs

    def sentinel(t):
        return str(t / "sentinel.txt")

    cve_long, _ = _cve_2025_4517(247)
    cve_short, cve_short_link = _cve_2025_4517(20)
    return {
        "dotdot": tar(lambda t: [_file("ok.txt"), _file("../sentinel.txt")], "../sentinel.txt"),
        "nested-dotdot": tar(lambda t: [_file("ok/../../sentinel.txt")], "ok/../../sentinel.txt"),
        "absolute": tar(lambda t: [_file(sentinel(t))], None),
        "backslash": tar(lambda t: [_file("..\\sentinel.txt")], None),
        "symlink-out-then-write": tar(
            lambda t: [_link("ok/link", "../.."), _file("ok/link/sentinel.txt")], "ok/link"
        ),
        "symlink-absolute-then-write": tar(
            lambda t: [_link("link", str(t)), _file("link/sentinel.txt")], "link"
        ),
        "symlink-to-sentinel-then-file": tar(
            lambda t: [_link("s", "../sentinel.txt"), _file("s")], "s"
        ),
        "hardlink-overwrite": tar(
            lambda t: [_hard("h", "../sentinel.txt"), _file("h", b"overwritten")], "h"
        ),
        "hardlink-absolute": tar(lambda t: [_hard("h", sentinel(t)), _file("h")], "h"),
        "hardlink-through-symlink": tar(
            lambda t: [_dir("sub"), _file("sub/x"), _link("a", "sub"), _hard("h", "a/x")], "h"
        ),
        "chained-symlinks": tar(
            lambda t: [_link("a", "."), _link("b", "a/.."), _file("b/sentinel.txt")], "b"
        ),
        "chained-symlinks-declared-later": tar(
            lambda t: [_link("b", "a/.."), _link("a", "."), _file("b/sentinel.txt")], "b"
        ),
        "chained-symlinks-deep": tar(
            lambda t: [
                _link("x", "."),
                _link("y", "x/x/x"),
                _link("z", "y/.."),
                _file("z/sentinel.txt"),
            ],
            "y",
        ),
        # On a case-insensitive filesystem (macOS, Windows) 'a' is the link 'A'.
        "chained-symlinks-other-case": tar(
            lambda t: [_link("A", "."), _link("b", "a/.."), _file("b/sentinel.txt")], "b"
        ),
        "cve-2025-4517-long-names": tar(lambda t: cve_long, None),
        "cve-2025-4517-short-names": tar(lambda t: cve_short, cve_short_link),
        "fifo": tar(lambda t: [_special("pipe", tarfile.FIFOTYPE)], "pipe"),
        "char-device": tar(lambda t: [_special("null", tarfile.CHRTYPE)], "null"),
        "block-device": tar(lambda t: [_special("disk", tarfile.BLKTYPE)], "disk"),
        "duplicate-member": tar(lambda t: [_file("a.txt"), _file("a.txt", b"again")], "a.txt"),
        "too-many-members": tar(
            lambda t: [_file(f"f{i}.txt") for i in range(20)], "f10.txt", max_members=10
        ),
        "existing-link-in-destination": tar(lambda t: [_file("out/sentinel.txt")], None),
        "link-through-existing-link": tar(lambda t: [_link("p", "out/sentinel.txt")], "p"),
        "bomb-tar-gz": (
            lambda t: (_bomb_tar_gz(t / "archives" / "bomb.tar.gz"), "zeros.bin"),
            {"max_bytes": 1 << 20},
        ),
        "zip-dotdot": (
            lambda t: (_zip(t / "archives" / "e.zip", [("../sentinel.txt", b"x", None)]), None),
            {},
        ),
        "zip-absolute": (
            lambda t: (_zip(t / "archives" / "e.zip", [(sentinel(t), b"x", None)]), None),
            {},
        ),
        "zip-backslash": (
            lambda t: (_zip(t / "archives" / "e.zip", [("..\\sentinel.txt", b"x", None)]), None),
            {},
        ),
        "zip-symlink": (
            lambda t: (
                _zip(
                    t / "archives" / "e.zip",
                    [("s", b"../sentinel.txt", stat.S_IFLNK | 0o777), ("s/x", b"x", None)],
                ),
                "s",
            ),
            {},
        ),
        "zip-bomb": (
            lambda t: (_zip(t / "archives" / "e.zip", [("z.bin", bytes(8 << 20), None)]), "z.bin"),
            {"max_bytes": 1 << 20},
        ),
    }


ATTACKS = _attacks()


def _snapshot(base: Path) -> dict[str, tuple]:
    """Every path under ``base`` with its type, link target or content, inode and link count."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):  # never follows links
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, base)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", Path(path).read_bytes(), info.st_ino, info.st_nlink)
    return out


@pytest.fixture
def scene(tmp_path):
    """A sentinel beside the destination, a destination with content and a link out of it."""
    (tmp_path / "sentinel.txt").write_bytes(SENTINEL)
    (tmp_path / "archives").mkdir()
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "keep.txt").write_text("kept")
    (dest / "sub" / "old.txt").write_text("old")
    os.symlink(tmp_path, dest / "out")  # made by the user, pointing out of the root
    return tmp_path, dest


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_attack_is_refused_and_changes_nothing(scene, attack):
    tmp_path, dest = scene
    build, kwargs = ATTACKS[attack]
    archive, member = build(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(archive) in message and "member " in message
    if member is not None:
        assert repr(member) in message
    assert _snapshot(tmp_path) == before  # nothing outside, nothing in dest, no temp folder
    assert (tmp_path / "sentinel.txt").read_bytes() == SENTINEL


@pytest.mark.parametrize("attack", ["dotdot", "hardlink-overwrite", "chained-symlinks", "fifo"])
def test_attack_into_a_new_destination_creates_nothing(tmp_path, attack):
    (tmp_path / "sentinel.txt").write_bytes(SENTINEL)
    (tmp_path / "archives").mkdir()
    build, kwargs = ATTACKS[attack]
    archive, _ = build(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "new" / "deeper" / "dest", **kwargs)
    assert _snapshot(tmp_path) == before


def test_failure_while_writing_leaves_destination_as_before(scene):
    """A zip whose second member is corrupt fails after the first was written: all rolled back."""
    tmp_path, dest = scene
    archive = tmp_path / "archives" / "crc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zfile:
        zfile.writestr("keep.txt", "replaced")
        zfile.writestr("second.bin", b"A" * 64)
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"A" * 64)] = ord("B")  # data no longer matches its CRC
    archive.write_bytes(bytes(raw))
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        safe_extract(archive, dest)
    assert _snapshot(tmp_path) == before
    assert (dest / "keep.txt").read_text() == "kept"


def test_bomb_is_refused_by_the_default_cap(tmp_path, monkeypatch):
    """Without max_bytes the cap is 10x the archive (at least DEFAULT_MIN_BYTES)."""
    import audiodiag.data.download as download

    monkeypatch.setattr(download, "DEFAULT_MIN_BYTES", 1 << 20)
    archive = _bomb_tar_gz(tmp_path / "bomb.tar.gz")
    assert archive.stat().st_size * 10 < 8 << 20  # gzip squeezes zeros far past 10x
    with pytest.raises(UnsafeArchiveError, match="max_bytes"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_write_counts_real_bytes_even_if_the_check_missed(tmp_path, monkeypatch):
    """Defence in depth: with the up-front check disabled, the byte counter still stops it."""
    import audiodiag.data.download as download

    monkeypatch.setattr(download, "_check", lambda *args: None)
    archive = _bomb_tar_gz(tmp_path / "bomb.tar.gz")
    with pytest.raises(UnsafeArchiveError, match="zeros.bin.*max_bytes=1048576"):
        safe_extract(archive, tmp_path / "dest", max_bytes=1 << 20)
    assert sorted(os.listdir(tmp_path)) == ["bomb.tar.gz"]  # temp folder removed
