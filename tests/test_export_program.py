"""torch.export programs (.pt2): the whole offline waveform model in a file that needs only
PyTorch, equal to the checkpoint, loaded by enhance; no deprecation warnings on the way."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from model_helpers import BLOCK_AUDIODIAG, run_standalone

from audiodiag.export import ExportError, export_program, main
from audiodiag.inference import load_enhancer
from audiodiag.loading import ModelLoadError, load_checkpoint, load_program

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def program(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("program") / "model.pt2"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([f"ckpt={models['ckpt']}", f"out={out}"]) == 0
    _assert_no_deprecations(caught)
    return out


def _assert_no_deprecations(caught: list[warnings.WarningMessage]) -> None:
    kinds = (DeprecationWarning, FutureWarning, PendingDeprecationWarning)
    found = [
        f"{w.category.__name__}: {w.message} ({w.filename})"
        for w in caught
        if issubclass(w.category, kinds)
    ]
    assert found == []


# Runs with audiodiag, Lightning, Hydra and OmegaConf made unimportable.
_STANDALONE = BLOCK_AUDIODIAG + textwrap.dedent(
    """
    import warnings
    import json, torch
    warnings.simplefilter("error")  # any warning while loading or running fails the test
    model_path, input_path, output_path = sys.argv[1:4]
    extra = {"audiodiag.json": ""}
    model = torch.export.load(model_path, extra_files=extra).module()
    meta = json.loads(extra["audiodiag.json"])
    inputs = torch.load(input_path, weights_only=True)
    with torch.no_grad():
        outputs = {name: model(x) for name, x in inputs.items()}
    torch.save(outputs, output_path)
    print(json.dumps({"format": meta["format"], "sample_rate": meta["sample_rate"],
                      "layer": meta["hyper_parameters"]["net"]["layer"]}))
    """
)


def test_program_runs_without_audiodiag_and_equals_the_checkpoint(
    models: dict[str, Path], program: Path, tmp_path: Path
) -> None:
    net, _ = load_checkpoint(models["ckpt"])
    generator = torch.Generator().manual_seed(5)
    inputs = {
        "long": 0.1 * torch.randn(2, 23457, generator=generator),
        "short": 0.1 * torch.randn(2, 3001, generator=generator),
        "one_clip": 0.1 * torch.randn(1, 8000, generator=generator),
        "sub_frame": 0.1 * torch.randn(1, 100, generator=generator),
    }
    info, outputs = run_standalone(_STANDALONE, program, inputs, tmp_path)
    assert info == {"format": "audiodiag-pt2", "sample_rate": 16000, "layer": "sparse"}
    with torch.no_grad():
        for name, x in inputs.items():
            assert outputs[name].shape == x.shape, name
            assert float((outputs[name] - net(x)).abs().max()) <= 1e-5, name


def test_enhance_loads_a_program_and_takes_mono_input(
    models: dict[str, Path], program: Path
) -> None:
    enhancer = load_enhancer(program)
    assert (enhancer.kind, enhancer.sample_rate) == ("program", 16000)
    net, _ = load_checkpoint(models["ckpt"])
    x = 0.1 * torch.randn(5000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float((enhancer(x) - net(x)).abs().max()) <= 1e-5


def test_loading_a_program_warns_nothing(program: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module, metadata = load_program(program)
        module(torch.zeros(1, 1000))
    assert metadata["format"] == "audiodiag-pt2"
    assert [str(w.message) for w in caught] == []


def test_program_needs_a_pt2_name(models: dict[str, Path], tmp_path: Path) -> None:
    net, _ = load_checkpoint(models["ckpt"])
    with pytest.raises(ExportError, match=r"\.pt2"):
        export_program(net, tmp_path / "model.bin")
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_program_is_refused_with_its_name(program: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(program.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="broken.pt2"):
        load_enhancer(broken)
