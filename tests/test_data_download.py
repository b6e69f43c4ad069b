"""Download path against local archives (URL monkeypatched) and safe archive extraction."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from test_data_sources import make_librispeech, make_speechcommands

import audiodiag.data.speech as speech_module
from audiodiag.data import (
    DemoSpeech,
    LibriSpeech,
    NoiseSource,
    NoisySpeechDataModule,
    SpeechCommands,
    UnsafeArchiveError,
    safe_extract,
)


def _tar_dir(source_dir, archive, arcname):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source_dir, arcname=arcname)
    return archive


def test_librispeech_download_from_local_archive(tmp_path, monkeypatch):
    build = make_librispeech(tmp_path / "build", {"dev-clean": [1, 2, 3, 4, 5]})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _tar_dir(build / "LibriSpeech", mirror / "dev-clean.tar.gz", "LibriSpeech")
    monkeypatch.setattr(speech_module, "LIBRISPEECH_BASE_URL", mirror.as_uri() + "/")

    root = tmp_path / "root"
    source = LibriSpeech(root, subsets=["dev-clean"], download=True)
    datamodule = NoisySpeechDataModule(
        source, NoiseSource({"white": 1}), val_mixtures=4, test_mixtures=4
    )
    datamodule.prepare_data()
    assert (root / "dev-clean.tar.gz").is_file()
    assert (root / "LibriSpeech" / "dev-clean" / "1" / "11" / "1-11-0000.flac").is_file()
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["noisy"].shape == (4, 32000)
    # A second prepare finds the data and downloads nothing.
    (root / "dev-clean.tar.gz").unlink()
    LibriSpeech(root, subsets=["dev-clean"], download=True).prepare()
    assert not (root / "dev-clean.tar.gz").exists()


def test_speechcommands_download_from_local_archive(tmp_path, monkeypatch):
    build = make_speechcommands(tmp_path / "build", ["aaaa", "bbbb", "cccc"])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # The real archive holds the label folders at its top level.
    _tar_dir(
        build / "SpeechCommands" / "speech_commands_v0.02",
        mirror / "speech_commands_v0.02.tar.gz",
        ".",
    )
    monkeypatch.setattr(speech_module, "SPEECHCOMMANDS_BASE_URL", mirror.as_uri() + "/")
    source = SpeechCommands(tmp_path / "root", download=True)
    assert {u.speaker for u in source.utterances("train")} == {"cccc"}


def test_download_refuses_archive_that_escapes(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-clean.tar.gz", "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("LibriSpeech/../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(speech_module, "LIBRISPEECH_BASE_URL", mirror.as_uri() + "/")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        LibriSpeech(tmp_path / "a" / "root", subsets=["dev-clean"], download=True).prepare()
    assert not (tmp_path / "a" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def _tar_with(path, *members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "bad",
    [
        _file("../outside.txt"),
        _file("/abs/outside.txt"),
        _file("ok/../../outside.txt"),
        _link("ok/link", "../../outside"),
        _link("ok/link", "/etc/passwd"),
        _link("ok/hard", "../outside.txt", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-abs", "hardlink-out"],
)
def test_safe_extract_refuses_members_leaving_root(tmp_path, bad):
    archive = _tar_with(tmp_path / "evil.tar", _file("ok/first.txt"), bad)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(archive, dest)
    assert bad[0].name in str(info.value)
    assert not (dest / "ok" / "first.txt").exists()  # nothing written before the check
    assert not dest.exists()  # not even the destination folder
    assert not (tmp_path / "outside.txt").exists()


def test_safe_extract_allows_inner_links_and_zip(tmp_path):
    archive = _tar_with(
        tmp_path / "good.tar", _file("d/a.txt", b"hello"), _link("d/b.txt", "a.txt")
    )
    files = safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "a.txt").read_bytes() == b"hello"
    assert files == [(tmp_path / "out" / "d" / "a.txt").resolve()]

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zfile:
        zfile.writestr("fine.txt", "ok")
        zfile.writestr("../zip_out.txt", "bad")
    with pytest.raises(UnsafeArchiveError, match="zip_out.txt"):
        safe_extract(tmp_path / "evil.zip", tmp_path / "zout")
    assert not (tmp_path / "zip_out.txt").exists()
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zfile:
        zfile.writestr("sub/fine.txt", "ok")
    safe_extract(tmp_path / "good.zip", tmp_path / "zgood")
    assert (tmp_path / "zgood" / "sub" / "fine.txt").read_text() == "ok"


def test_download_uses_torch_hub_and_passes_the_size_cap(tmp_path):
    import torch

    from audiodiag.data import download

    assert download.download_url_to_file is torch.hub.download_url_to_file  # no private import
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _tar_with(mirror / "big.tar", _file("a.bin", bytes(5000)))
    with pytest.raises(UnsafeArchiveError, match="'a.bin' takes the archive past max_bytes=4096"):
        download.download_and_extract((mirror / "big.tar").as_uri(), tmp_path / "d", max_bytes=4096)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["big.tar"]
    download.download_and_extract((mirror / "big.tar").as_uri(), tmp_path / "d", max_bytes=5000)
    assert (tmp_path / "d" / "a.bin").stat().st_size == 5000


def test_safe_extract_rejects_non_archives(tmp_path):
    (tmp_path / "plain.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        safe_extract(tmp_path / "plain.tar.gz", tmp_path / "x")


def test_demo_source_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError, match="demo corpus not found"):
        DemoSpeech(tmp_path / "nothing").utterances("train")
