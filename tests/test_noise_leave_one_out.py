"""scripts/leave_one_out.py: the overrides each run gets, the table, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "leave_one_out.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("leave_one_out", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_held_out_family_is_off_in_training_and_alone_in_scoring():
    loo = _load()
    weights = loo.noise_weights(["noise.weights.hum=0", "trainer.max_epochs=3"])
    assert weights["hum"] == 0.0 and weights["glide"] == 1.0 and "folder" not in weights
    assert loo.without("white+pink+brown") == [
        "noise.weights.white=0",
        "noise.weights.pink=0",
        "noise.weights.brown=0",
    ]
    scoring = dict(o.split("=") for o in loo.only("white+pink+brown", weights))
    assert {k for k, v in scoring.items() if float(v) > 0} == {
        "noise.weights.white",
        "noise.weights.pink",
        "noise.weights.brown",
    }
    assert len(scoring) == len(weights)  # every other type explicitly off
    # Only what shapes the test mixtures reaches the evaluate command.
    assert loo.evaluate_passthrough(
        ["trainer.max_epochs=3", "data.segment_seconds=1", "noise.room_probability=0", "seed=3",
         "noise.weights.glide=0", "model.depth=2"]
    ) == ["data.segment_seconds=1", "noise.room_probability=0", "seed=3"]  # fmt: skip
    with pytest.raises(SystemExit, match="'hum' has no positive weight"):
        loo.check_families(["glide", "hum"], weights)


def test_table_has_ratio_and_pesq():
    loo = _load()
    rows = loo.table_rows(
        {
            "glide": {
                "in_training": {"si_sdri": 8.0, "pesq": 1.9, "n": 128},
                "held_out": {"si_sdri": 5.0, "pesq": 1.6, "n": 128},
            },
            "hum": {
                "in_training": {"si_sdri": -0.5, "pesq": None, "n": 128},
                "held_out": {"si_sdri": -1.0, "pesq": None, "n": 128},
            },
        }
    )
    assert rows[0]["ratio"] == pytest.approx(5.0 / 8.0) and rows[1]["ratio"] is None
    text = loo.markdown(rows, ["trainer.max_epochs=20"])
    assert "`trainer.max_epochs=20`" in text
    assert "| glide | 128 | 8.00 | 5.00 | 62 % | 1.90 | 1.60 |" in text
    assert "| hum | 128 | -0.50 | -1.00 | – | – | – |" in text


@pytest.mark.slow
def test_tiny_protocol_end_to_end(tmp_path):
    loo = _load()
    out = tmp_path / "loo"
    budget = [
        "trainer.max_epochs=1",
        "data.segment_seconds=0.5",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.train_mixtures_per_epoch=8",
        "data.val_mixtures=4",
        "data.test_mixtures=4",
        "model.depth=1",
        "model.context=2",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    argv = [
        "--out",
        str(out),
        "--families",
        "glide",
        "transient",
        "--no-pesq",
        "--overrides",
        *budget,
    ]
    assert loo.main(argv) == 0
    result = json.loads((out / "leave_one_out.json").read_text())
    assert [r["family"] for r in result["rows"]] == ["glide", "transient"]
    assert all(r["held_out"]["n"] == 4 for r in result["rows"])
    # The held-out run really trained without the family; the scoring used it alone.
    resolved = (out / "without_glide" / ".hydra" / "config.yaml").read_text()
    assert "glide: 0" in resolved
    report = json.loads((out / "without_glide_on_glide.json").read_text())
    assert {r["noise_type"] for r in report["records"]} == {"glide"}
    assert (out / "leave_one_out.md").read_text().count("\n| ") == 3
    # Finished runs are reused: a second call trains and scores nothing.
    log_size = (out / "leave_one_out.log").stat().st_size
    assert loo.main(argv) == 0
    assert (out / "leave_one_out.log").stat().st_size == log_size
