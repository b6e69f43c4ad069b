"""Export: a self-contained TorchScript file equal to the eager model, ONNX, loud failures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from model_helpers import BLOCK_AUDIODIAG, run_standalone

from audiodiag.export import ExportError, export_onnx, export_program, export_torchscript, main
from audiodiag.loading import load_checkpoint
from audiodiag.model import GainNet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(models: dict[str, Path]) -> Path:
    return models["ckpt"]


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.pt"
    assert main([f"ckpt={ckpt}", f"out={out}"]) == 0
    return out


# Runs with audiodiag, Lightning, Hydra and OmegaConf made unimportable.
_STANDALONE = BLOCK_AUDIODIAG + textwrap.dedent(
    """
    import json, torch
    model_path, input_path, output_path = sys.argv[1:4]
    extra = {"audiodiag.json": ""}
    model = torch.jit.load(model_path, _extra_files=extra)
    meta = json.loads(extra["audiodiag.json"])
    inputs = torch.load(input_path, weights_only=True)
    outputs = {name: model(x) for name, x in inputs.items()}
    state = model.stream_init(1)
    x = inputs["mono"].unsqueeze(0)
    pieces = []
    for start in range(0, x.shape[1], 160):
        out, state = model.stream_process(x[:, start:start + 160], state)
        pieces.append(out)
    pieces.append(model.stream_flush(state))
    outputs["stream"] = torch.cat(pieces, dim=1)[0]
    torch.save(outputs, output_path)
    print(json.dumps({"sample_rate": model.sample_rate, "meta_rate": meta["sample_rate"],
                      "latency": model.latency_samples, "has_config": "hyper_parameters" in meta,
                      "layer": meta["hyper_parameters"]["net"]["layer"],
                      "exported_layer": meta["exported_layer"]}))
    """
)


def test_exported_file_runs_without_audiodiag(ckpt: Path, exported: Path, tmp_path: Path) -> None:
    net, _ = load_checkpoint(ckpt)
    generator = torch.Generator().manual_seed(3)
    inputs = {
        "mono": 0.1 * torch.randn(12345, generator=generator),
        "batch": 0.1 * torch.randn(2, 4567, generator=generator),
        "short": 0.1 * torch.randn(1, 100, generator=generator),  # shorter than one frame
        "one": torch.full((1,), 0.5),
        "silent": torch.zeros(3000),
        "clipped": torch.sign(torch.randn(3000, generator=generator)),
    }
    info, outputs = run_standalone(_STANDALONE, exported, inputs, tmp_path)
    assert info == {
        "sample_rate": 16000,
        "meta_rate": 16000,
        "latency": 384,
        "has_config": True,
        "layer": "sparse",
        "exported_layer": "elementwise",
    }
    with torch.no_grad():
        for name, x in inputs.items():
            expected = net(x)
            assert outputs[name].shape == x.shape, name
            assert bool(torch.isfinite(outputs[name]).all()), name
            assert float((outputs[name] - expected).abs().max()) <= 1e-4, name
        assert float((outputs["stream"] - net(inputs["mono"])).abs().max()) <= 1e-4


def test_export_metadata_holds_config_and_metrics(ckpt: Path, exported: Path) -> None:
    extra = {"audiodiag.json": ""}
    torch.jit.load(str(exported), _extra_files=extra)
    meta = json.loads(extra["audiodiag.json"])
    assert meta["sample_rate"] == 16000 and meta["causal"] is True
    assert meta["hyper_parameters"]["net"]["depth"] == 2
    assert meta["hyper_parameters"]["optimizer"]["name"] == "adamw"
    assert meta["global_step"] == 1 and "metrics" in meta
    assert meta["source_checkpoint"] == str(ckpt)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layer": "mask", "bandwidth": 1, "depth": 1, "context": 2},
        {"layer": "diag", "causal": False, "depth": 1, "context": 3},
    ],
)
def test_other_layers_and_modes_export_equal(kwargs: dict, tmp_path: Path) -> None:
    net = GainNet(**kwargs).eval()
    result = export_torchscript(net, tmp_path / "m.pt")
    assert max(result["max_abs_diff"].values()) <= 1e-4
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = 0.1 * torch.randn(2, 3001)
    with torch.no_grad():
        assert float((loaded(x) - net(x)).abs().max()) <= 1e-4


@pytest.mark.parametrize("exporter, suffix", [(export_torchscript, "pt"), (export_program, "pt2")])
def test_export_is_byte_reproducible(exporter, suffix: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same model exports to the same bytes (the shipped files' sha256 can be reproduced)."""
    net = GainNet(depth=1, context=2).eval()
    exporter(net, tmp_path / f"a.{suffix}")
    exporter(net, tmp_path / f"b.{suffix}")
    assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes()


def test_banded_net_exports_to_onnx_for_any_batch(tmp_path: Path) -> None:
    # A banded net computes with dense products; traced on one clip, their contiguous time
    # slices pinned the ONNX batch dimension to 1 (the export's batch-2 check caught it).
    net = GainNet(layer="mask", bandwidth=1, causal=False, depth=2, context=2, channels=3)
    result = export_onnx(net.eval(), tmp_path / "gains.onnx", {})
    assert max(result["max_abs_diff"].values()) <= 1e-4


def test_export_refuses_a_model_that_differs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import audiodiag.export as export_module

    real = export_module.exportable_net

    def perturbed(net: torch.nn.Module) -> torch.nn.Module:
        converted = real(net)
        with torch.no_grad():
            converted.head[0].bias.add_(1.0)  # a wrong conversion: outputs change
        return converted

    monkeypatch.setattr(export_module, "exportable_net", perturbed)
    with pytest.raises(ExportError, match="differs from the eager model"):
        export_torchscript(GainNet(depth=1, context=2).eval(), tmp_path / "bad.pt")
    assert not list(tmp_path.iterdir())


def test_export_cli_errors_name_the_file(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    half = tmp_path / "half.ckpt"
    data = ckpt.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    assert main([f"ckpt={half}", f"out={tmp_path / 'x.pt'}"]) == 2
    err = capsys.readouterr().err
    assert str(half) in err and "truncated" in err
    assert not (tmp_path / "x.pt").exists()
    assert main([f"ckpt={ckpt}"]) == 2
    assert "missing out=" in capsys.readouterr().err
    assert main(["ckpt", "out=x"]) == 2
    assert main(["--help"]) == 0
    assert "ckpt=PATH" in capsys.readouterr().out


def test_onnx_gain_network_matches_eager(ckpt: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from audiodiag.export import onnx_chain_enhance

    net, _ = load_checkpoint(ckpt)
    result = export_onnx(net, tmp_path / "gains.onnx", {"note": "test"})
    assert max(result["max_abs_diff"].values()) <= 1e-4
    model = onnx.load(str(tmp_path / "gains.onnx"))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["audiodiag.json"])
    assert meta["format"] == "audiodiag-onnx-gains" and meta["n_fft"] == 512
    session = ort.InferenceSession(str(tmp_path / "gains.onnx"), providers=["CPUExecutionProvider"])
    x = 0.1 * torch.randn(1, 7777)  # a length the export did not see
    with torch.no_grad():
        assert float((onnx_chain_enhance(net, session, x) - net(x)).abs().max()) <= 1e-4
        feats = net.features(net.stft.analysis(x))
    assert tuple(feats.shape[2:]) == (2, 257)
