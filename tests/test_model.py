"""GainNet: shapes, bounds, causality, per-bin independence, layer implementations, export."""

from __future__ import annotations

import warnings

import pytest
import torch

from audiodiag.layers import IMPLEMENTATIONS, convert
from audiodiag.model import GainNet


def _perturbed(net: GainNet, scale: float = 0.3, seed: int = 0) -> GainNet:
    """Random weights away from the initialisation, so equalities are not trivially met."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


@pytest.mark.parametrize("shape", [(1,), (100,), (2, 511), (3, 4000)])
def test_shapes_lengths_and_gain_bounds(shape: tuple[int, ...]) -> None:
    net = _perturbed(GainNet())
    x = torch.randn(shape) * 0.1
    y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    gains = net.gains(x)
    frames = -(-(512 - 128 + shape[-1]) // 128)
    assert gains.shape == (x.reshape(-1, shape[-1]).shape[0], 257, frames)
    floor = 10 ** (-25 / 20)
    assert gains.min() >= floor - 1e-6 and gains.max() <= 1.0


def test_silence_short_and_empty_input() -> None:
    net = _perturbed(GainNet())
    for x in (torch.zeros(16000), torch.zeros(2, 5), torch.full((300,), 1e-9)):
        y = net(x)
        assert torch.isfinite(y).all() and y.abs().max() <= 1e-8
    assert net(torch.zeros(2, 0)).shape == (2, 0)
    with pytest.raises(ValueError, match="waveform"):
        net(torch.zeros(1, 1, 100))


def test_untrained_net_roughly_passes_audio() -> None:
    net = GainNet(initial_gain=0.8)
    x = torch.randn(1, 8000) * 0.1
    gains = net.gains(x)
    assert 0.6 < gains.mean().item() < 0.95
    cos = torch.nn.functional.cosine_similarity(net(x), x).item()
    assert cos > 0.95


def test_causal_net_ignores_the_future() -> None:
    net = _perturbed(GainNet(causal=True))
    x = torch.randn(1, 8000) * 0.1
    y = x.clone()
    y[:, 5000:] = torch.randn(1, 3000)
    # Output sample n needs frames up to the one ending at or after n + n_fft - hop.
    safe = 5000 - 512
    torch.testing.assert_close(net(x)[:, :safe], net(y)[:, :safe], atol=1e-6, rtol=0)
    offline = _perturbed(GainNet(causal=False))
    assert not torch.allclose(offline(x)[:, :safe], offline(y)[:, :safe], atol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
def test_bins_do_not_mix_without_bandwidth(causal: bool) -> None:
    net = _perturbed(GainNet(causal=causal))
    spec = torch.randn(1, 257, 40, dtype=torch.complex64)
    other = spec.clone()
    other[:, 100] *= 10.0
    other[:, 100, 20:] += 1.0
    a, b = net.gains_from_spec(spec), net.gains_from_spec(other)
    changed = (a - b).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.nonzero().flatten().tolist() == [100]
    banded = _perturbed(GainNet(layer="mask", bandwidth=1, depth=2, context=2))
    a, b = banded.gains_from_spec(spec), banded.gains_from_spec(other)
    changed = ((a - b).abs().amax(dim=(0, 2)) > 1e-6).nonzero().flatten().tolist()
    assert 100 in changed and 101 in changed and 0 not in changed and 256 not in changed


def test_every_layer_implementation_gives_the_same_output() -> None:
    x = torch.randn(2, 3000) * 0.1
    nets = {name: GainNet(layer=name, depth=2, context=2, seed=7) for name in IMPLEMENTATIONS}
    state = _perturbed(nets["elementwise"]).state_dict()
    reference = nets["elementwise"](x)
    for net in nets.values():
        net.load_state_dict(state)
        torch.testing.assert_close(net(x), reference, atol=1e-5, rtol=0)
        torch.testing.assert_close(convert(net, "elementwise")(x), reference, atol=1e-5, rtol=0)


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="layer='foo'.*elementwise"):
        GainNet(layer="foo")
    with pytest.raises(ValueError, match="depth"):
        GainNet(depth=0)
    with pytest.raises(ValueError, match="gain_floor_db"):
        GainNet(gain_floor_db=3.0)
    with pytest.raises(ValueError, match="activation"):
        GainNet(activation="softmax")


def test_size_and_cost_report() -> None:
    net = GainNet()
    expected_layers = (2 * 2 * 2 + 2 * 2 * 2 * 2) + 2  # depth 3, context 2, channels 2
    assert net.num_diagonal_layers == sum(len(b.layers) for b in net.blocks) + 2
    # A weight per layer and a bias per sum: each block output and the head.
    assert net.num_parameters == (net.num_diagonal_layers + 3 * 2 + 1) * 257
    assert net.num_diagonal_layers == expected_layers
    macs = net.macs_per_second()
    assert macs["network"] == pytest.approx(expected_layers * 257 * 125)
    assert macs["total"] == pytest.approx(sum(v for k, v in macs.items() if k != "total"))


def test_training_steps_reduce_the_loss() -> None:
    from audiodiag.losses import neg_si_sdr_loss

    torch.manual_seed(0)
    t = torch.arange(8000) / 16000
    clean = torch.sin(2 * torch.pi * 440 * t) * (torch.sin(2 * torch.pi * 3 * t) > 0)
    clean = clean.repeat(4, 1) * torch.tensor([[0.1], [0.2], [0.3], [0.05]])
    noisy = clean + 0.05 * torch.randn(4, 8000)
    net = GainNet(depth=2, context=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = neg_si_sdr_loss(net(noisy), clean).item()
    for _ in range(50):
        loss = neg_si_sdr_loss(net(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 3.0


@pytest.mark.parametrize("causal", [True, False])
def test_converted_net_scripts_and_exports_with_dynamic_length(causal: bool) -> None:
    net = _perturbed(GainNet(layer="mask", causal=causal, depth=2, context=3))
    fast = convert(net, "elementwise").eval()
    inputs = [torch.randn(1, 3000) * 0.1, torch.randn(1, 16001) * 0.1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(fast)
        exported = torch.export.export(
            fast,
            (torch.randn(1, 4000),),
            dynamic_shapes={"waveform": {1: torch.export.Dim.DYNAMIC}},
        ).module()
    with torch.no_grad():
        for x in inputs:
            ref = net(x)
            torch.testing.assert_close(scripted(x), ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(exported(x), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", ["elementwise", "mask"])
def test_checkpoint_with_a_bias_on_every_layer_loads_as_the_same_function(layer: str) -> None:
    # Older checkpoints kept a bias on every layer of a sum; the sum of those biases goes to the
    # sum's first layer, so the network computes exactly what it did.
    net = _perturbed(GainNet(layer=layer, causal=False, depth=2, context=2, channels=2))
    old_style = dict(net.state_dict())
    g = torch.Generator().manual_seed(5)
    sums = [[f"blocks.{b}.layers.{j * 4 + n}" for n in range(4)] for b in (0, 1) for j in (0, 1)]
    sums.append(["head.0", "head.1"])
    for names in sums:
        for name in names[1:]:
            share = torch.randn(257, generator=g)
            old_style[f"{name}.bias"] = share
            old_style[f"{names[0]}.bias"] = old_style[f"{names[0]}.bias"] - share
    fresh = GainNet(layer=layer, causal=False, depth=2, context=2, channels=2, seed=9)
    fresh.load_state_dict(old_style)
    x = torch.randn(2, 4000) * 0.1
    torch.testing.assert_close(fresh(x), net(x), rtol=1e-5, atol=1e-6)
