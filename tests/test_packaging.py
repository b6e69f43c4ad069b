"""The wheel's package list covers every subpackage, and the configs resolve from the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

from audiodiag.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "audiodiag").rglob("__init__.py")
    }
    assert found | {"audiodiag.conf"} == listed


def test_configs_resolve_to_the_top_level_conf_folder():
    assert (CONF_DIR / "train.yaml").is_file()
    assert CONF_DIR.name == "conf"
