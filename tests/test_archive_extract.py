"""safe_extract on well-formed archives: layout, links kept inside, hard links copied, merging
into an existing folder, the temporary folder, and the policy edges (link to a link, conflicts)."""

from __future__ import annotations

import os
import tempfile
import zipfile

import pytest
from test_archive_attacks import _dir, _file, _hard, _link, _snapshot, _tar

import audiodiag.data.download as download
from audiodiag.data import UnsafeArchiveError, safe_extract


def _exe(name, data=b"#!/bin/sh\n"):
    info, data = _file(name, data)
    info.mode = 0o755
    return info, data


def _nested(path):
    return _tar(
        path,
        [
            _dir("LibriSpeech"),
            _dir("LibriSpeech/dev-clean/1/11"),
            _file("LibriSpeech/dev-clean/1/11/1-11-0000.flac", b"flac-bytes"),
            _file("LibriSpeech/dev-clean/1/11/1-11.trans.txt", b"1-11-0000 HELLO\n"),
            _dir("LibriSpeech/empty"),
            _exe("LibriSpeech/tool.sh"),
            _link("LibriSpeech/latest", "dev-clean/1/11"),
            _link("LibriSpeech/dev-clean/readme", "../../README"),
            _file("README", b"read me"),
        ],
        "w:gz",
    )


def test_nested_archive_extracts_into_a_new_folder(tmp_path):
    archive = _nested(tmp_path / "a.tar.gz")
    dest = tmp_path / "new" / "dest"
    files = safe_extract(archive, dest)
    base = dest.resolve()
    assert files == [
        base / "LibriSpeech/dev-clean/1/11/1-11-0000.flac",
        base / "LibriSpeech/dev-clean/1/11/1-11.trans.txt",
        base / "LibriSpeech/tool.sh",
        base / "README",
    ]
    assert (dest / "LibriSpeech/dev-clean/1/11/1-11-0000.flac").read_bytes() == b"flac-bytes"
    assert (dest / "LibriSpeech/empty").is_dir()
    assert os.access(dest / "LibriSpeech/tool.sh", os.X_OK)
    assert not os.access(dest / "README", os.X_OK)
    # Internal links are kept as links and resolve inside the root.
    assert os.readlink(dest / "LibriSpeech/latest") == "dev-clean/1/11"
    assert (dest / "LibriSpeech/latest/1-11.trans.txt").read_bytes() == b"1-11-0000 HELLO\n"
    assert (dest / "LibriSpeech/dev-clean/readme").read_bytes() == b"read me"
    assert sorted(os.listdir(tmp_path / "new")) == ["dest"]  # no temporary folder left


def test_hard_link_is_copied_not_linked(tmp_path):
    archive = _tar(tmp_path / "h.tar", [_file("a/x.bin", b"data"), _hard("b/y.bin", "a/x.bin")])
    files = safe_extract(archive, tmp_path / "out")
    x, y = tmp_path / "out/a/x.bin", tmp_path / "out/b/y.bin"
    assert files == [x.resolve(), y.resolve()]
    assert y.read_bytes() == b"data"
    assert os.stat(x).st_ino != os.stat(y).st_ino and os.stat(x).st_nlink == 1


def test_re_extract_over_an_existing_folder_merges(tmp_path):
    archive = _nested(tmp_path / "a.tar.gz")
    dest = tmp_path / "dest"
    (dest / "LibriSpeech" / "test-clean").mkdir(parents=True)
    (dest / "LibriSpeech" / "test-clean" / "mine.txt").write_text("mine")
    (dest / "dev-clean.tar.gz").write_text("the archive itself")
    safe_extract(archive, dest)
    (dest / "README").write_text("edited")
    safe_extract(archive, dest)  # again: files and links replaced, the rest kept
    assert (dest / "README").read_bytes() == b"read me"
    assert (dest / "LibriSpeech" / "test-clean" / "mine.txt").read_text() == "mine"
    assert (dest / "dev-clean.tar.gz").read_text() == "the archive itself"
    assert os.readlink(dest / "LibriSpeech/latest") == "dev-clean/1/11"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".dest.partial-")]


def test_dot_rooted_archive_like_speech_commands(tmp_path):
    archive = _tar(tmp_path / "sc.tar", [_dir("."), _dir("./yes"), _file("./yes/a.wav", b"w")])
    assert safe_extract(archive, tmp_path / "sc") == [(tmp_path / "sc/yes/a.wav").resolve()]


def test_zip_with_folders(tmp_path):
    with zipfile.ZipFile(tmp_path / "v.zip", "w") as zfile:
        zfile.writestr("wav48/", "")
        zfile.writestr("wav48/p225/p225_001_mic1.flac", b"f")
        zfile.writestr("speaker-info.txt", "ID")
    files = safe_extract(tmp_path / "v.zip", tmp_path / "vctk")
    assert [f.name for f in files] == ["p225_001_mic1.flac", "speaker-info.txt"]
    assert (tmp_path / "vctk/wav48/p225/p225_001_mic1.flac").read_bytes() == b"f"


def test_read_only_parent_uses_a_temporary_folder_inside_the_root(tmp_path, monkeypatch):
    """A mount point: the parent cannot hold the temporary folder, the existing root can."""
    dest = tmp_path / "mnt"
    dest.mkdir()
    real_mkdtemp, used = tempfile.mkdtemp, []

    def mkdtemp(prefix="", dir=None):
        used.append(os.path.realpath(dir))
        if os.path.samefile(dir, tmp_path):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(prefix=prefix, dir=dir)

    monkeypatch.setattr(download.tempfile, "mkdtemp", mkdtemp)
    safe_extract(_nested(tmp_path / "a.tar.gz"), dest)
    assert (dest / "README").read_bytes() == b"read me"
    assert sorted(os.listdir(dest)) == ["LibriSpeech", "README"]
    assert used == [str(tmp_path.resolve()), str(dest.resolve())]


def test_link_to_a_link_is_refused(tmp_path):
    """Policy: a link may not name another link, even one that stays inside."""
    archive = _tar(tmp_path / "l.tar", [_dir("sub"), _link("a", "sub"), _link("b", "a")])
    with pytest.raises(UnsafeArchiveError, match="member 'b' is a link to 'a', through the link"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_file("sub"), "would replace the folder"),
        (_file("keep.txt/inner"), "needs a folder where"),
        (_dir("keep.txt"), "would replace the file"),
    ],
    ids=["file-over-folder", "through-a-file", "folder-over-file"],
)
def test_conflicts_with_the_destination_change_nothing(tmp_path, member, why):
    dest = tmp_path / "dest"
    (dest / "sub").mkdir(parents=True)
    (dest / "keep.txt").write_text("kept")
    archive = _tar(tmp_path / "c.tar", [_file("first.txt"), member])
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=why):
        safe_extract(archive, dest)
    assert _snapshot(tmp_path) == before


def test_destination_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        safe_extract(_tar(tmp_path / "a.tar", [_file("x")]), tmp_path / "f")
