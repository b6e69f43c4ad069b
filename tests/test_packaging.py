"""What the wheel carries (every subpackage, the configs, the demo corpus, never conf/local) and
how users add configs (a search path named by $AUDIODIAG_CONFIG_DIR, or --config-dir).

scripts/wheel_smoke.sh builds and installs the real wheel; these tests check the rules fast.
"""

from __future__ import annotations

import csv
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from audiodiag.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(SETUPTOOLS["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "audiodiag").rglob("__init__.py")
    }
    assert found | set(SETUPTOOLS["package-dir"]) == listed


def test_configs_resolve_to_the_top_level_conf_folder():
    assert (CONF_DIR / "train.yaml").is_file()
    assert CONF_DIR == REPO / "conf"
    assert (REPO / SETUPTOOLS["package-dir"]["audiodiag.conf"]) == CONF_DIR


def _shipped(package: str, folder: Path) -> tuple[set[str], set[str]]:
    """(files under folder that the package-data globs ship, files they leave out)."""
    patterns = SETUPTOOLS["package-data"][package]
    excluded = SETUPTOOLS.get("exclude-package-data", {}).get(package, [])
    shipped, left = set(), set()
    for path in folder.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".py":
            continue
        rel = path.relative_to(folder).as_posix()
        # setuptools globs: '*' does not cross '/', '**/' matches any depth (also none).
        hit = any(
            fnmatch.fnmatch(rel, p) or (p.startswith("**/") and fnmatch.fnmatch(rel, p[3:]))
            for p in patterns
        )
        out = any(fnmatch.fnmatch(rel, p) for p in excluded)
        (shipped if hit and not out else left).add(rel)
    return shipped, left


def test_the_whole_demo_corpus_ships_in_the_wheel():
    demo = REPO / SETUPTOOLS["package-dir"]["audiodiag.demo_corpus"]
    assert demo == REPO / "data" / "demo"
    shipped, left = _shipped("audiodiag.demo_corpus", demo)
    with open(demo / "metadata.csv", newline="") as handle:
        listed = {row["path"] for row in csv.DictReader(handle)}
    assert len(listed) == 360
    assert listed | {"metadata.csv"} <= shipped
    # Only caches may stay behind (a manifest written before they moved to the user cache).
    assert {name for name in left if not name.startswith(".")} == set()


def test_every_config_ships_and_conf_local_never_does(tmp_path):
    shipped, left = _shipped("audiodiag.conf", CONF_DIR)
    assert "train.yaml" in shipped and "experiment/demo_quick.yaml" in shipped
    assert {name for name in left if not name.startswith("local/")} == set()
    excluded = SETUPTOOLS["exclude-package-data"]["audiodiag.conf"]
    assert any(fnmatch.fnmatch("local/default.yaml", p) for p in excluded)
    assert any(fnmatch.fnmatch("local/gpu/box.yaml", p) for p in excluded)


def test_conf_local_is_git_ignored():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=REPO, check=False
    )
    assert result.returncode == 0, "conf/local/ must be listed in .gitignore"


@pytest.fixture
def user_configs(tmp_path):
    """A user config folder with experiment/mine.yaml and local/default.yaml."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntask_name: mine\nseed: 7\n"
    )
    return tmp_path


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_an_experiment_in_the_user_config_folder_is_found(monkeypatch, user_configs):
    monkeypatch.setenv("AUDIODIAG_CONFIG_DIR", str(user_configs))
    cfg = _compose(["experiment=mine"])
    assert (cfg.task_name, cfg.seed) == ("mine", 7)


def test_without_a_user_config_folder_an_unknown_experiment_fails(monkeypatch):
    monkeypatch.delenv("AUDIODIAG_CONFIG_DIR", raising=False)
    with pytest.raises(Exception, match="mine"):
        _compose(["experiment=mine"])


def test_local_settings_override_the_defaults(monkeypatch, user_configs):
    (user_configs / "local").mkdir()
    (user_configs / "local" / "default.yaml").write_text("# @package _global_\nnum_threads: 3\n")
    monkeypatch.setenv("AUDIODIAG_CONFIG_DIR", str(user_configs))
    assert _compose([]).num_threads == 3
    monkeypatch.delenv("AUDIODIAG_CONFIG_DIR")
    if not (CONF_DIR / "local" / "default.yaml").exists():  # a developer's own is allowed
        assert _compose([]).num_threads is None


def _train_cli(args: list[str], monkeypatch, capsys) -> str:
    """Run ``python -m audiodiag.train ARGS`` in-process (Hydra's --info/--cfg never train)."""
    from audiodiag.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["audiodiag.train", *args])
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
    return capsys.readouterr().out


def test_info_searchpath_lists_the_package_configs_and_the_user_folder(
    monkeypatch, capsys, user_configs
):
    monkeypatch.setenv("AUDIODIAG_CONFIG_DIR", str(user_configs))
    out = _train_cli(["--info", "searchpath"], monkeypatch, capsys)
    assert f"file://{CONF_DIR}" in out
    assert f"file://{user_configs}" in out


def test_config_dir_flag_adds_a_folder_for_one_run(monkeypatch, capsys, user_configs):
    monkeypatch.delenv("AUDIODIAG_CONFIG_DIR", raising=False)
    out = _train_cli(
        ["--config-dir", str(user_configs), "experiment=mine", "--cfg", "job"], monkeypatch, capsys
    )
    assert "task_name: mine" in out
