"""Where data goes: $AUDIODIAG_DATA, else the per-user folder; the demo corpus from a checkout or
a wheel; downloads never land inside the installed package or site-packages."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from audiodiag import paths
from audiodiag.data.speech import LibriSpeech
from audiodiag.paths import (
    UnsafeDataRootError,
    check_data_root,
    data_dir,
    demo_corpus_dir,
    user_data_dir,
)

HOME = Path("/home/someone")


def test_audiodiag_data_wins_over_every_default():
    env = {"AUDIODIAG_DATA": "/srv/corpora", "XDG_DATA_HOME": "/xdg"}
    assert data_dir(env) == Path("/srv/corpora")


def test_audiodiag_data_expands_the_home_folder():
    assert data_dir({"AUDIODIAG_DATA": "~/corpora"}) == Path("~/corpora").expanduser()


def test_empty_audiodiag_data_falls_back_to_the_user_folder(monkeypatch):
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: HOME))
    monkeypatch.setattr(paths.sys, "platform", "linux")
    assert data_dir({"AUDIODIAG_DATA": ""}) == HOME / ".local/share/audiodiag"


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"XDG_DATA_HOME": "/xdg/data"}, "linux", "/xdg/data/audiodiag"),
        ({}, "linux", "/home/someone/.local/share/audiodiag"),
        # The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
        ({"XDG_DATA_HOME": "relative/data"}, "linux", "/home/someone/.local/share/audiodiag"),
        ({}, "darwin", "/home/someone/Library/Application Support/audiodiag"),
        (
            {"LOCALAPPDATA": "C:/Users/s/AppData/Local"},
            "win32",
            "C:/Users/s/AppData/Local/audiodiag",
        ),
    ],
)
def test_per_user_data_folder_follows_the_platform(env, platform, expected):
    assert user_data_dir(env, platform=platform, home=HOME) == Path(expected)


def test_default_data_folder_is_outside_the_package_the_checkout_and_site_packages(monkeypatch):
    monkeypatch.delenv("AUDIODIAG_DATA", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    folder = data_dir()
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for forbidden in (paths.PACKAGE_DIR, paths.REPO_ROOT, site):
        assert forbidden not in folder.resolve().parents
    assert check_data_root(folder) == folder.resolve()


def test_demo_corpus_is_bundled_in_a_checkout(monkeypatch):
    monkeypatch.delenv("AUDIODIAG_DATA", raising=False)
    assert demo_corpus_dir() == paths.CHECKOUT_DEMO_DIR
    assert (demo_corpus_dir() / "metadata.csv").is_file()


def test_demo_corpus_inside_an_installed_wheel_is_preferred(monkeypatch, tmp_path):
    wheel_copy = tmp_path / "site-packages" / "audiodiag" / "demo_corpus"
    wheel_copy.mkdir(parents=True)
    monkeypatch.setattr(paths, "WHEEL_DEMO_DIR", wheel_copy)
    assert demo_corpus_dir({}) == wheel_copy


def test_audiodiag_data_overrides_the_demo_corpus_only_when_it_holds_one(tmp_path):
    env = {"AUDIODIAG_DATA": str(tmp_path)}
    assert demo_corpus_dir(env) == paths.CHECKOUT_DEMO_DIR  # a data folder without demo/
    (tmp_path / "demo").mkdir()
    assert demo_corpus_dir(env) == tmp_path / "demo"


@pytest.mark.parametrize("where", ["package", "site-packages"])
def test_downloads_into_the_installed_package_or_site_packages_are_refused(where):
    base = paths.PACKAGE_DIR if where == "package" else Path(sysconfig.get_paths()["purelib"])
    with pytest.raises(UnsafeDataRootError, match="site-packages"):
        check_data_root(base / "librispeech")


def test_speech_download_stops_before_writing_into_site_packages(monkeypatch):
    target = Path(sysconfig.get_paths()["purelib"]) / "librispeech-test-never-written"
    source = LibriSpeech(root=target, download=True)
    monkeypatch.setattr(source, "_download", lambda: pytest.fail("download was attempted"))
    with pytest.raises(UnsafeDataRootError, match="AUDIODIAG_DATA"):
        source.prepare()
    assert not target.exists()


def test_bundled_corpus_and_installed_package_are_read_only_data(tmp_path):
    assert paths.is_read_only_data(paths.CHECKOUT_DEMO_DIR)
    assert paths.is_read_only_data(paths.CHECKOUT_DEMO_DIR / "spk01")
    assert paths.is_read_only_data(paths.PACKAGE_DIR / "demo_corpus")
    assert paths.is_read_only_data(Path(sysconfig.get_paths()["purelib"]) / "corpus")
    assert not paths.is_read_only_data(tmp_path)
    assert not paths.is_read_only_data(paths.REPO_ROOT / "data")  # beside demo/, not in it


def test_the_demo_corpus_manifest_goes_to_the_user_cache(tmp_path, monkeypatch):
    from audiodiag.data.manifest import manifest_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    location = manifest_path(paths.CHECKOUT_DEMO_DIR)
    assert tmp_path / "cache" in location.parents
    assert manifest_path(tmp_path) == tmp_path / ".audiodiag-manifest.json"
