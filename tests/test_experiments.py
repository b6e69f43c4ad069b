"""Every shipped experiment preset composes, resolves and builds its net and data module (no
data is read): a preset that rots is found here, not by the user who runs it."""

from __future__ import annotations

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from audiodiag.paths import CONF_DIR
from audiodiag.train import _build_module

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.fixture
def hydra_config():
    """Hydra's run config set for ${hydra:...} interpolations, and unset after the test (other
    tests read whether it is set)."""
    yield HydraConfig.instance()
    HydraConfig.instance().cfg = None


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_builds(name, monkeypatch, tmp_path, hydra_config):
    monkeypatch.setenv("AUDIODIAG_DATA", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={name}", f"hydra.run.dir={tmp_path}"],
            return_hydra_config=True,
        )
    hydra_config.set_config(cfg)  # for ${hydra:...} (the run directory)
    # Every interpolation of the run's own config resolves (Hydra's node is Hydra's business).
    for key in cfg:
        if key != "hydra" and OmegaConf.is_config(node := cfg[key]):
            OmegaConf.to_container(node, resolve=True)
    metrics: dict = {}
    module = _build_module(cfg, metrics)
    assert metrics["param_count"] > 0 and module.net is not None
    datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.batch_size == cfg.data.batch_size


def test_the_glob_finds_the_shipped_presets():
    assert {"demo_quick", "librispeech_gpu", "pretrain_causal", "pretrain_offline"} <= set(
        EXPERIMENTS
    )
