"""Shipped models: found by name, refused with the accepted names otherwise."""

from __future__ import annotations

import pytest
import torch

from audiodiag import pretrained
from audiodiag.inference import load_enhancer
from audiodiag.loading import ModelLoadError


def test_unknown_pretrained_name_lists_the_accepted_ones():
    with pytest.raises(ModelLoadError, match=r"pretrained:nope.*accepted"):
        load_enhancer("pretrained:nope")


def test_prefix_is_optional_for_path():
    with pytest.raises(ModelLoadError, match="pretrained:nope"):
        pretrained.path("nope")


def test_the_package_ships_a_causal_and_an_offline_model():
    assert {"causal", "offline"} <= set(pretrained.names())


@pytest.mark.parametrize("name", pretrained.names())
def test_shipped_model_matches_its_card(name):
    """The file is the one the card describes (sha256, size) and still scores what it says on
    the first fixed demo test mixtures (the card's quick check)."""
    from audiodiag.evaluate import datamodule_clips, evaluate_clips

    card = pretrained.card(name)
    file = pretrained.path(name)
    assert pretrained.sha256(file) == card["sha256"]
    assert file.stat().st_size == card["bytes"] <= 1_000_000
    enhancer = load_enhancer(pretrained.PREFIX + name)
    assert enhancer.causal == card["causal"]
    clips = datamodule_clips(["data=demo"], limit=card["check"]["clips"])
    report = evaluate_clips(enhancer, clips, pesq_stoi=False, progress=False)
    measured = report["summary"]["groups"]["all"]["si_sdri"]["model"]
    assert measured == pytest.approx(card["check"]["si_sdri"], abs=0.05)


def test_load_returns_the_exported_module():
    module = pretrained.load(pretrained.DEFAULT)
    assert hasattr(module, "stream_process")
    noisy = torch.randn(1, 16000) * 0.1
    assert module(noisy).shape == noisy.shape


def test_readme_cards_are_rendered_from_cards_json():
    """README's model cards are exactly what scripts/render_cards.py makes of cards.json."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "render_cards.py"
    spec = importlib.util.spec_from_file_location("render_cards", script)
    assert spec is not None and spec.loader is not None
    render_cards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_cards)
    readme = (script.parents[1] / "README.md").read_text()
    block = readme.split(render_cards.BEGIN, 1)[1].split(render_cards.END, 1)[0]
    cards = {name: pretrained.card(name) for name in pretrained.names()}
    assert block.strip() == render_cards.render(cards).strip()
