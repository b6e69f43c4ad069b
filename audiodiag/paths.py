"""Where the package finds its configs, the bundled demo corpus and the data folder.

Rules (the same from an editable checkout and from an installed wheel, from any folder):

- configs: ``conf/`` at the repository top level, installed as the package ``audiodiag.conf``;
- data folder (downloaded datasets, generated corpora): ``$AUDIODIAG_DATA``, else the per-user
  data folder (``$XDG_DATA_HOME/audiodiag`` or ``~/.local/share/audiodiag`` on Linux,
  ``~/Library/Application Support/audiodiag`` on macOS, ``%LOCALAPPDATA%\\audiodiag`` on
  Windows) -- never inside the installed package or the repository;
- demo corpus: ``$AUDIODIAG_DATA/demo`` when that folder exists, else the bundled copy: inside
  the wheel (``audiodiag/demo_corpus``, mapped from the repository's ``data/demo``) or, from a
  checkout, ``data/demo`` itself.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import audiodiag.conf

__all__ = [
    "CONF_DIR",
    "DATA_DIR",
    "DEMO_CORPUS_DIR",
    "PACKAGE_DIR",
    "REPO_ROOT",
    "UnsafeDataRootError",
    "check_data_root",
    "data_dir",
    "demo_corpus_dir",
    "is_read_only_data",
    "user_data_dir",
]

PACKAGE_DIR = Path(__file__).resolve().parent
# conf/ (top level in the repository) installs as the package audiodiag.conf: found from any cwd,
# from an editable checkout and from a wheel alike.
CONF_DIR = Path(audiodiag.conf.__file__).resolve().parent
# The checkout's root in an editable install; in a wheel install this is site-packages.
REPO_ROOT = PACKAGE_DIR.parent
# Where the demo corpus sits inside an installed wheel (pyproject: package-dir mapping
# audiodiag.demo_corpus -> data/demo) and in a checkout.
WHEEL_DEMO_DIR = PACKAGE_DIR / "demo_corpus"
CHECKOUT_DEMO_DIR = REPO_ROOT / "data" / "demo"

APP_NAME = "audiodiag"


class UnsafeDataRootError(ValueError):
    """A dataset folder that would put downloads inside the installed package or site-packages."""


def user_data_dir(
    env: Mapping[str, str] | None = None, platform: str | None = None, home: Path | None = None
) -> Path:
    """The per-user data folder of the platform (XDG on Linux), without ``$AUDIODIAG_DATA``."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / APP_NAME
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME
    # XDG base directories: a relative XDG_DATA_HOME is invalid and must be ignored.
    xdg = env.get("XDG_DATA_HOME", "")
    base_path = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base_path / APP_NAME


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where datasets are downloaded and corpora generated: ``$AUDIODIAG_DATA``, else
    :func:`user_data_dir`."""
    env = os.environ if env is None else env
    override = env.get("AUDIODIAG_DATA", "")
    if override:
        return Path(override).expanduser()
    return user_data_dir(env)


def demo_corpus_dir(env: Mapping[str, str] | None = None) -> Path:
    """The demo corpus: ``$AUDIODIAG_DATA/demo`` when it exists, else the bundled copy (inside
    the wheel, or ``data/demo`` of a checkout)."""
    env = os.environ if env is None else env
    override = env.get("AUDIODIAG_DATA", "")
    if override and (Path(override).expanduser() / "demo").is_dir():
        return Path(override).expanduser() / "demo"
    if WHEEL_DEMO_DIR.is_dir():
        return WHEEL_DEMO_DIR
    return CHECKOUT_DEMO_DIR


def _install_dirs() -> list[Path]:
    """The installed package and every site-packages folder of this interpreter."""
    dirs = {PACKAGE_DIR}
    for key in ("purelib", "platlib"):
        site = sysconfig.get_paths().get(key)
        if site:
            dirs.add(Path(site).resolve())
    return sorted(dirs)


def _enclosing_install_dir(path: Path) -> Path | None:
    resolved = path.expanduser().resolve()
    for install_dir in _install_dirs():
        if resolved == install_dir or install_dir in resolved.parents:
            return install_dir
    return None


def is_read_only_data(path: str | os.PathLike) -> bool:
    """True for folders the package must never write into (caches and manifests go to the user
    cache instead): the installed package, site-packages and the bundled demo corpus."""
    resolved = Path(path).expanduser().resolve()
    demo = CHECKOUT_DEMO_DIR.resolve()
    return (
        _enclosing_install_dir(resolved) is not None or resolved == demo or demo in resolved.parents
    )


def check_data_root(root: str | os.PathLike) -> Path:
    """Refuse a download folder inside the installed package or site-packages (returns it).

    A download writes gigabytes; inside ``site-packages`` it would be lost on the next upgrade
    and could break the environment.
    """
    resolved = Path(root).expanduser().resolve()
    forbidden = _enclosing_install_dir(resolved)
    if forbidden is not None:
        raise UnsafeDataRootError(
            f"dataset folder '{resolved}' is inside '{forbidden}' (the installed package or "
            "site-packages); set AUDIODIAG_DATA or data.speech.root=PATH to a data folder"
        )
    return resolved


# Resolved once at import; the functions above re-read the environment when called.
DATA_DIR = data_dir()
DEMO_CORPUS_DIR = demo_corpus_dir()
