"""CUDA checks beyond the layers (tests/test_layers.py): the recurrence's scan, a whole causal
net with its low-rank and recurrent parts, and the shipped models, each against the CPU.
Run with ``pytest -m gpu`` on a CUDA machine (scripts/gpu_check.sh); skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from audiodiag.inference import load_enhancer
from audiodiag.nets import build_net
from audiodiag.recurrence import decay_scan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_decay_scan_and_its_gradients_match_the_cpu():
    torch.manual_seed(0)
    u = torch.randn(2, 3, 400, 257, requires_grad=True)
    log_a = (-torch.rand(3, 257) * 0.5 - 1e-3).requires_grad_()
    state = torch.randn(2, 3, 257)
    y, last = decay_scan(u, log_a, state)
    grads = torch.autograd.grad(y.square().sum(), [u, log_a])

    u_cuda, log_a_cuda = (t.detach().cuda().requires_grad_() for t in (u, log_a))
    y_cuda, last_cuda = decay_scan(u_cuda, log_a_cuda, state.cuda())
    grads_cuda = torch.autograd.grad(y_cuda.square().sum(), [u_cuda, log_a_cuda])
    torch.testing.assert_close(y_cuda.cpu(), y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last_cuda.cpu(), last, rtol=1e-4, atol=1e-4)
    for got, expected in zip(grads_cuda, grads, strict=True):
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("layer", ["elementwise", "mask", "sparse", "diag"])
def test_causal_recurrent_low_rank_net_matches_the_cpu_and_trains_under_bf16(layer):
    net = build_net(
        {"layer": layer, "causal": True, "memory": "recurrent", "rank": 16, "seed": 0}
    ).eval()
    noisy = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(noisy)
        got = net.cuda()(noisy.cuda()).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    net.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net(noisy.cuda())
    out.float().square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ["causal", "offline"])
def test_shipped_models_enhance_the_same_on_cuda(name):
    noisy = 0.1 * torch.randn(1, 32000, generator=torch.Generator().manual_seed(2))
    expected = load_enhancer(f"pretrained:{name}")(noisy)
    got = load_enhancer(f"pretrained:{name}", device="cuda")(noisy)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)


def test_the_compiled_network_matches_eager_on_cuda():
    """compile=true on a GPU (Triton kernels): gains and gradients as eager CUDA computes them."""
    from audiodiag.compiled import compile_blocker, compile_network

    net = build_net({"causal": False, "depth": 1, "context": 3, "rank": 16, "seed": 0}).cuda()
    blocker = compile_blocker(net, torch.device("cuda"))
    if blocker:
        pytest.skip(blocker)
    features = torch.randn(4, 120, 2, net.num_bins, device="cuda")
    results = []
    for network in (net.gains_from_features, compile_network(net)):
        gains = network(features)
        grads = torch.autograd.grad(gains.square().sum(), list(net.parameters()))
        results.append([gains, *grads])
    for compiled, eager in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)
