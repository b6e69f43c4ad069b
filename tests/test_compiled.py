"""compile=true: the compiled network computes what the eager one does, and training falls back
to eager, saying why, where it cannot compile."""

from __future__ import annotations

import logging

import pytest
import torch
from model_helpers import quiet_trainer
from torch.utils.data import DataLoader

from audiodiag import module as module_lib
from audiodiag.compiled import compile_blocker, compile_network
from audiodiag.model import GainNet
from audiodiag.module import GainLearner
from audiodiag.wiener import WienerEnhancer

CPU = torch.device("cpu")
NET = {"kind": "gainnet", "layer": "elementwise", "depth": 1, "context": 3, "seed": 0}


def _eager_and_compiled(net: GainNet) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gains and every parameter gradient, eager then compiled, for one random input."""
    features = torch.randn(2, 40, 2, net.num_bins, generator=torch.Generator().manual_seed(0))
    weights = torch.rand(2, net.num_bins, 40, generator=torch.Generator().manual_seed(1))
    results = []
    for network in (net.gains_from_features, compile_network(net)):
        net.zero_grad(set_to_none=True)
        gains = network(features)
        (gains * weights).sum().backward()
        results.append([gains.detach(), *(p.grad for p in net.parameters())])
    return results[0], results[1]


@pytest.mark.parametrize(
    "layer, settings",
    [
        ("elementwise", {"rank": 4, "causal": False}),
        pytest.param("mask", {"bandwidth": 1}, marks=pytest.mark.slow),
        pytest.param("diag", {"rank": 2, "depth": 2}, marks=pytest.mark.slow),
        pytest.param("elementwise", {"memory": "recurrent"}, marks=pytest.mark.slow),
    ],
)
def test_compiled_network_matches_eager(layer, settings):
    if compile_blocker(GainNet(layer=layer), CPU):
        pytest.skip(compile_blocker(GainNet(layer=layer), CPU))
    net = GainNet(layer=layer, context=3, **settings)
    with torch.no_grad():  # non-zero low-rank parts, so their gradients are tested too
        for name, parameter in net.named_parameters():
            if "lowrank_u" in name:
                parameter.normal_(0.0, 0.1)
    eager, compiled = _eager_and_compiled(net)
    assert len(eager) == len(compiled) > 1
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_blockers_name_what_is_missing(monkeypatch):
    assert "sparse" in compile_blocker(GainNet(layer="sparse"), CPU)
    assert "no learned network" in compile_blocker(WienerEnhancer(), CPU)
    assert "'mps'" in compile_blocker(GainNet(), torch.device("mps"))
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compile_blocker(GainNet(), CPU)


def _loss_of_one_step(learner: GainLearner) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(2, 4000, generator=generator)
    noisy = clean + 0.05 * torch.randn(2, 4000, generator=generator)
    learner.train()
    enhanced, masked = learner.enhance(noisy)
    return learner.compute_loss(enhanced, clean, None, masked)[0]


class _BackwardFails(torch.autograd.Function):
    """The identity, whose backward fails the way a compiler error at the first backward does."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        raise RuntimeError("inductor: the C++ compiler crashed\nlong details")


def _fails_in_forward(net):
    def network(features):
        raise RuntimeError("inductor: the C++ compiler crashed\nlong details")

    return network


def _fails_in_backward(net):
    return lambda features: _BackwardFails.apply(net.gains_from_features(features))


@pytest.mark.parametrize("broken", [_fails_in_forward, _fails_in_backward])
def test_training_falls_back_to_eager_when_compiling_fails(monkeypatch, caplog, broken):
    monkeypatch.setattr(module_lib, "compile_blocker", lambda net, device: None)
    monkeypatch.setattr(module_lib, "compile_network", broken)
    learner = GainLearner(net=NET, compile_network=True)
    with caplog.at_level(logging.WARNING, logger="audiodiag.module"):
        loss = _loss_of_one_step(learner)
    assert "compile=true failed, training eager: RuntimeError: inductor: the C++ compiler" in (
        caplog.text
    )
    assert learner._compiled == ()  # decided once: eager from now on
    expected = _loss_of_one_step(GainLearner(net=NET, compile_network=False))
    torch.testing.assert_close(loss, expected)


def test_a_blocked_network_trains_eager_and_says_why(monkeypatch):
    messages = []
    monkeypatch.setattr(module_lib, "rank_zero_info", messages.append)
    learner = GainLearner(net={**NET, "layer": "sparse"}, compile_network=True)
    _loss_of_one_step(learner)
    assert learner._compiled == ()
    assert messages == [
        "compile=true: training eager (layer=sparse: torch.compile cannot trace torch.sparse "
        "products)"
    ]


def test_evaluation_and_no_compile_never_compile(monkeypatch):
    calls = []
    monkeypatch.setattr(module_lib, "compile_network", lambda net: calls.append(net))
    learner = GainLearner(net=NET, compile_network=True)
    learner.eval()
    learner.enhance(torch.randn(1, 4000))
    _loss_of_one_step(GainLearner(net=NET, compile_network=False))
    assert calls == [] and learner._compiled is None


def test_a_compiled_training_step_updates_the_weights_as_an_eager_one():
    """Through Lightning: the one-time proof of the compiled backward leaves no gradient behind,
    so the optimiser step is the eager one's (to float32 rounding)."""
    if compile_blocker(GainNet(), CPU):
        pytest.skip(compile_blocker(GainNet(), CPU))
    generator = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(2, 4000, generator=generator)
    batch = {"noisy": clean + 0.05 * torch.randn(2, 4000, generator=generator), "clean": clean}
    weights = []
    for compiled in (False, True):
        learner = GainLearner(net=NET, compile_network=compiled, scheduler={"name": "none"})
        quiet_trainer(max_steps=2).fit(
            learner, train_dataloaders=DataLoader([batch, batch], batch_size=None)
        )
        assert bool(learner._compiled) == compiled
        weights.append(torch.cat([p.detach().flatten() for p in learner.net.parameters()]))
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-5)
