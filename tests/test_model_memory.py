"""GainNet's new options: low rank (``rank``) and the diagonal recurrence (``memory``)."""

from __future__ import annotations

import warnings

import pytest
import torch

from audiodiag.layers import IMPLEMENTATIONS, convert
from audiodiag.model import GainNet
from audiodiag.streaming import StreamingEnhancer

SMALL = {"depth": 1, "context": 2, "channels": 2, "memory_channels": 3}


def _perturbed(net: GainNet, scale: float = 0.3, seed: int = 0) -> GainNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if not name.endswith(".nu"):  # keep the time constants where they were put
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


def test_defaults_are_todays_model() -> None:
    net = GainNet()
    assert not any("lowrank" in k or "memory" in k for k in net.state_dict())
    # 26 diagonal layers, one bias per sum (3 blocks x 2 outputs + the head): 33 entries
    assert net.num_parameters == 8481 and len(net.state_dict()) == 26 + 7
    offline = GainNet(causal=False, depth=1, context=3)
    assert offline.num_parameters == 4369
    assert round(offline.macs_per_second()["total"] / 1e5) == 23


@pytest.mark.parametrize("causal", [True, False])
def test_new_parts_start_as_the_same_function(causal: bool) -> None:
    x = torch.randn(2, 3000) * 0.1
    plain = GainNet(causal=causal, **SMALL)
    grown = GainNet(causal=causal, memory="recurrent", rank=3, rank_scope="all", **SMALL)
    # The shared parameters start equal (new parts draw last) and the new parts start silent.
    shared = plain.state_dict()
    for key, value in grown.state_dict().items():
        if key in shared:
            assert torch.equal(value, shared[key]), key
    assert torch.equal(grown(x), plain(x))
    assert grown.num_parameters > plain.num_parameters
    assert grown.macs_per_second()["network"] > plain.macs_per_second()["network"]


def test_rank_scope_sum_puts_one_low_rank_part_on_each_sum() -> None:
    net = GainNet(rank=2, memory="recurrent", **SMALL)
    with_rank = [n for n, m in net.named_modules() if getattr(m, "rank", 0) and "." in n]
    # one block (2 outputs), memory input (3) and output (2) maps, the head (1)
    assert len(with_rank) == 2 + 3 + 2 + 1
    every = GainNet(rank=2, rank_scope="all", **SMALL)
    assert sum(1 for m in every.modules() if getattr(m, "lowrank_u", None) is not None) == (
        every.num_diagonal_layers
    )


@pytest.mark.parametrize(
    "options", [{"memory": "recurrent"}, {"memory": "recurrent", "rank": 2, "memory_gate": True}]
)
def test_causal_memory_streams_chunk_by_chunk(options: dict, one_thread: None) -> None:
    net = _perturbed(GainNet(**SMALL, **options)).eval()
    x = torch.randn(1, 4100, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        spec = net.stft.analysis(x)
        whole = net.gains_from_spec(spec)
        state = net.initial_state(1, spec.real)
        pieces, start = [], 0
        for size in [1, 5, 2, 9, 1, 100]:
            gains, state = net.gains_chunk(spec[..., start : start + size], state)
            pieces.append(gains)
            start += size
        torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, rtol=0, atol=1e-5)
        streamer = StreamingEnhancer(net)
        blocks = [streamer.process_ready(b) for b in x.split(700, dim=-1)]
        streamed = torch.cat([*blocks, streamer.flush()], dim=-1)
        torch.testing.assert_close(streamed, net(x), rtol=0, atol=1e-5)


def test_memory_sees_seconds_back_and_stays_causal() -> None:
    net = _perturbed(GainNet(memory="recurrent", **SMALL))
    plain = _perturbed(GainNet(**SMALL))
    features = torch.randn(1, 200, 2, 257, generator=torch.Generator().manual_seed(2))
    other = features.clone()
    other[:, :30] += 2.0  # the first 0.24 s differ
    late = slice(90, 200)  # from 0.5 s on: far beyond the blocks' 2-frame context
    with torch.no_grad():
        torch.testing.assert_close(
            plain.gains_from_features(features)[..., late],
            plain.gains_from_features(other)[..., late],
        )
        a, b = net.gains_from_features(features), net.gains_from_features(other)
        assert (a[..., late] - b[..., late]).abs().max() > 1e-3
        # causal: a change from frame 150 on leaves every earlier gain as it was
        later = features.clone()
        later[:, 150:] += 2.0
        torch.testing.assert_close(net.gains_from_features(later)[..., :150], a[..., :150])


def test_bins_mix_only_with_rank() -> None:
    spec = torch.randn(1, 257, 30, dtype=torch.complex64)
    other = spec.clone()
    other[:, 100, 12:] += 3.0  # (a pure scaling would not show: the features are level-invariant)
    net = _perturbed(GainNet(memory="recurrent", **SMALL))
    changed = (net.gains_from_spec(spec) - net.gains_from_spec(other)).abs().amax(dim=(0, 2))
    assert (changed > 1e-6).nonzero().flatten().tolist() == [100]
    mixed = _perturbed(GainNet(memory="recurrent", rank=1, **SMALL))
    changed = (mixed.gains_from_spec(spec) - mixed.gains_from_spec(other)).abs().amax(dim=(0, 2))
    assert int((changed > 1e-6).sum()) > 200


def test_every_layer_form_gives_the_same_grown_net() -> None:
    net = _perturbed(GainNet(layer="diag", memory="recurrent", rank=2, memory_gate=True, **SMALL))
    x = torch.randn(2, 2000) * 0.1
    reference = net(x)
    for name in IMPLEMENTATIONS:
        torch.testing.assert_close(convert(net, name)(x), reference, rtol=1e-5, atol=1e-6)


def test_grown_causal_net_exports_and_streams(tmp_path, one_thread: None) -> None:
    from audiodiag.export import export_torchscript

    net = _perturbed(GainNet(memory="recurrent", rank=2, **SMALL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # export_torchscript checks whole-clip and block-by-block output against the eager net
        info = export_torchscript(net, tmp_path / "grown.pt")
        loaded = torch.jit.load(info["path"])
    x = torch.randn(1, 3000) * 0.1
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-5)


def test_bad_options_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="memory='lstm' is not one of none, recurrent"):
        GainNet(memory="lstm")
    with pytest.raises(ValueError, match="rank_scope='some' is not one of sum, all"):
        GainNet(rank_scope="some")
    with pytest.raises(ValueError, match="rank=-1 must be an integer >= 0"):
        GainNet(rank=-1)
    with pytest.raises(ValueError, match="memory_min_s <= memory_max_s"):
        GainNet(memory="recurrent", memory_min_s=2.0, memory_max_s=1.0)


@pytest.mark.slow
def test_grown_net_exports_to_onnx(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from audiodiag.export import export_onnx

    net = _perturbed(GainNet(memory="recurrent", rank=2, **SMALL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the FFT form of the scan is what gets traced; checked against the eager net inside
        info = export_onnx(net, tmp_path / "grown.onnx")
    assert max(info["max_abs_diff"].values()) <= 1e-4
