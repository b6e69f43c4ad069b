"""The diagonal recurrence: parallel scan == plain loop, chunked == whole, stable and per-bin."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from audiodiag.layers import IMPLEMENTATIONS, convert, make_diagonal
from audiodiag.recurrence import DiagonalDecay, RecurrentBlock, decay_scan, time_constants


def loop_reference(
    u: torch.Tensor, log_a: torch.Tensor, state: torch.Tensor | None = None
) -> torch.Tensor:
    """s[t] = a s[t-1] + (1 - a) u[t], one frame at a time (the definition; tests only)."""
    a = torch.exp(log_a)
    s = torch.zeros_like(u[:, :, 0]) if state is None else state
    out = []
    for t in range(u.shape[2]):
        s = a * s + (1 - a) * u[:, :, t]
        out.append(s)
    return torch.stack(out, dim=2)


def _log_a(taus_frames: list[float], features: int, dtype=torch.float64) -> torch.Tensor:
    taus = torch.tensor(taus_frames, dtype=dtype).unsqueeze(1).expand(-1, features)
    return -1.0 / taus


def _block(name: str = "elementwise", features: int = 6, gate: bool = False, **kwargs):
    torch.manual_seed(0)
    block = RecurrentBlock(
        lambda bias: make_diagonal(name, features, bias=bias, **kwargs),
        channels=2,
        memory_channels=3,
        features=features,
        frame_rate=125.0,
        gate=gate,
    )
    with torch.no_grad():  # away from the zero output map, so the memory shows in the output
        for p in block.parameters():
            if p is not block.decay.nu:
                p.add_(0.5 * torch.randn(p.shape))
    return block


# Time constants from half a frame (a = 0.14) to 10^5 frames (a = 0.99999).
TAUS = [0.5, 3.0, 250.0, 1e5]


@pytest.mark.parametrize("frames", [1, 16, 17, 57])  # around the 16-frame chunks
@pytest.mark.parametrize("with_state", [False, True])
def test_scan_equals_the_plain_loop(with_state: bool, frames: int) -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, len(TAUS), frames, 5, generator=g, dtype=torch.float64)
    log_a = _log_a(TAUS, 5)
    state = torch.randn(2, len(TAUS), 5, generator=g, dtype=torch.float64) if with_state else None
    got, last = decay_scan(u, log_a, state)
    want = loop_reference(u, log_a, state)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, want[:, :, -1])
    # float32: the FFT's rounding stays at the 1e-6 level of the signal
    got32, _ = decay_scan(u.float(), log_a.float(), None if state is None else state.float())
    torch.testing.assert_close(got32, want.float(), rtol=0, atol=2e-6)


def test_export_and_script_paths_compute_the_same_scan() -> None:
    from audiodiag.recurrence import _fft_scan

    g = torch.Generator().manual_seed(4)
    u = torch.randn(2, len(TAUS), 300, 3, generator=g)
    state = torch.randn(2, len(TAUS), 3, generator=g)
    log_a = _log_a(TAUS, 3, torch.float32)
    want = loop_reference(u.double(), log_a.double(), state.double()).float()
    # the FFT form that ONNX export traces
    torch.testing.assert_close(_fft_scan(u, log_a, state), want, rtol=0, atol=2e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(decay_scan)
    torch.testing.assert_close(scripted(u, log_a, state)[0], want, rtol=0, atol=2e-6)
    # with autograd on, the scripted scan differentiates like the eager one
    x = u.clone().requires_grad_(True)
    la = log_a.clone().requires_grad_(True)
    upstream = torch.randn(u.shape, generator=g)
    got = torch.autograd.grad((scripted(x, la, state)[0] * upstream).sum(), [x, la])
    expected = torch.autograd.grad((decay_scan(x, la, state)[0] * upstream).sum(), [x, la])
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frames", [1250, 5000])
def test_long_clips_stay_stable_and_exact_for_decays_near_one(frames: int) -> None:
    # 10 s and 40 s at 8 ms frames; a step input shows a slow channel's whole rise.
    u = torch.ones(1, len(TAUS), frames, 3)
    u[:, :, : frames // 2] = -1.0
    log_a = _log_a(TAUS, 3, torch.float32)
    got, _ = decay_scan(u, log_a)
    want = loop_reference(u.double(), log_a.double())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=0, atol=3e-6)
    # the slowest channel (tau = 1e5 frames) has barely moved: (1 - a) * (sum) ~ frames / 1e5
    assert got[0, -1].abs().max() < 2 * frames / 1e5


def test_gradients_match_the_loop_and_pass_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    decay = DiagonalDecay(3, 4, frame_rate=125.0, min_s=0.01, max_s=5.0).double()
    u = torch.randn(2, 3, 40, 4, generator=g, dtype=torch.float64, requires_grad=True)
    state = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 40, 4, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((decay(u, state)[0] * upstream).sum(), [u, state, decay.nu])
    reference = loop_reference(u, decay.log_decay(), state)
    want = torch.autograd.grad((reference * upstream).sum(), [u, state, decay.nu])
    for a, b, what in zip(got, want, ("du", "dstate", "dnu"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=what)
    small_u = u[:1, :2, :9, :2].detach().requires_grad_(True)
    log_a = decay.log_decay()[:2, :2].detach().requires_grad_(True)
    small_state = state[:1, :2, :2].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, la, s: decay_scan(x, la, s)[0], (small_u, log_a, small_state), fast_mode=True
    )


def test_long_clip_gradient_is_finite_and_matches_the_loop() -> None:
    decay = DiagonalDecay(4, 2, frame_rate=125.0, min_s=0.02, max_s=20.0)
    u = torch.randn(1, 4, 1250, 2, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(decay(u)[0].pow(2).mean(), [decay.nu])
    nu = decay.nu.detach().double().requires_grad_(True)
    reference = loop_reference(u.double(), -torch.exp(nu))
    (want,) = torch.autograd.grad(reference.pow(2).mean(), [nu])
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad.double(), want, rtol=1e-3, atol=1e-7)


def test_decays_start_log_uniform_and_stay_in_the_unit_interval() -> None:
    decay = DiagonalDecay(4, 3, frame_rate=125.0, min_s=0.02, max_s=2.0)
    taus = decay.time_constants_s()
    torch.testing.assert_close(
        taus[:, 0], torch.tensor([0.02, 0.02 * 100 ** (1 / 3), 0.02 * 100 ** (2 / 3), 2.0])
    )
    assert torch.equal(taus[:, 0:1].expand(-1, 3), taus)  # the same spread for every bin
    assert time_constants(1, 0.01, 1.0) == [pytest.approx(0.1)]
    with torch.no_grad():
        decay.nu.copy_(torch.tensor([-1e4, -30.0, 30.0, 1e4]).unsqueeze(1).expand(-1, 3))
    # ln a < 0 and finite: 0 <= a < 1 exactly (float32 may round a to 1.0 for tau = e^20
    # frames, harmless: the scan uses 1 - a = -expm1(ln a) > 0 and never divides by a^t)
    log_a = decay.log_decay()
    assert bool(((log_a < 0) & torch.isfinite(log_a)).all())
    assert bool((-torch.expm1(log_a) > 0).all())
    y, _ = decay(torch.randn(1, 4, 300, 3))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("gate", [False, True])
def test_block_chunk_by_chunk_equals_whole_clip_for_any_chunking(gate: bool) -> None:
    block = _block(gate=gate)
    g = torch.Generator().manual_seed(3)
    frames = 37
    h = [torch.randn(2, frames, 6, generator=g) for _ in range(2)]
    whole = block(h)
    chunkings = [[1] * frames, [7, 1, 20, 3, 6], [frames], [2, 35]]
    for sizes in chunkings:
        state = block.initial_state(2, h[0])
        pieces, start = [], 0
        for size in sizes:
            out, state = block.chunk([x[:, start : start + size] for x in h], state)
            pieces.append(out)
            start += size
        for j in range(2):
            got = torch.cat([p[j] for p in pieces], dim=1)
            torch.testing.assert_close(got, whole[j], rtol=0, atol=2e-6, msg=str(sizes))
    # the explicit one-frame recursion (no FFT) gives the same outputs
    state = block.initial_state(2, h[0])
    steps = []
    for t in range(frames):
        out, state = block.step([x[:, t] for x in h], state)
        steps.append(out[0])
    torch.testing.assert_close(torch.stack(steps, dim=1), whole[0], rtol=0, atol=2e-6)


def test_block_starts_as_the_identity_and_remembers_after_training_starts() -> None:
    block = RecurrentBlock(
        lambda bias: make_diagonal("elementwise", 4, bias=bias), 2, 3, 4, frame_rate=125.0
    )
    h = [torch.randn(1, 30, 4) for _ in range(2)]
    for got, x in zip(block(h), h, strict=True):
        torch.testing.assert_close(got, x)
    block(h)[0].sum().backward()  # the output map gets a gradient, so memory can be learned
    assert block.out_map.layers[0].weight.grad.abs().sum() > 0


def test_bins_mix_only_with_bandwidth_or_rank() -> None:
    h = [torch.randn(1, 40, 6) for _ in range(2)]
    other = [x.clone() for x in h]
    other[1][:, 5:, 2] += 3.0
    for kwargs, expected in (({}, [2]), ({"bandwidth": 1}, [0, 1, 2, 3, 4]), ({"rank": 1}, None)):
        block = _block("diag", **kwargs)
        changed = (block(h)[0] - block(other)[0]).abs().amax(dim=(0, 1)) > 1e-6
        if expected is None:
            assert int(changed.sum()) == 6
        else:
            assert changed.nonzero().flatten().tolist() == expected, kwargs


def test_every_layer_form_gives_the_same_block() -> None:
    block = _block("elementwise", rank=2)
    h = [torch.randn(2, 25, 6, requires_grad=True) for _ in range(2)]
    reference = block(h)[1]
    (ref_grad,) = torch.autograd.grad(reference.sum(), [h[0]])
    for name in IMPLEMENTATIONS:
        other = convert(block, name)
        out = other(h)[1]
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6, msg=name)
        (grad,) = torch.autograd.grad(out.sum(), [h[0]])
        torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6, msg=name)


def test_block_scripts_and_keeps_its_outputs() -> None:
    block = _block(gate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(block)
    h = [torch.randn(2, 33, 6) for _ in range(2)]
    for got, want in zip(scripted(h), block(h), strict=True):
        torch.testing.assert_close(got, want)
    state = block.initial_state(2, h[0])
    got, got_state = scripted.chunk([x[:, :5] for x in h], state)
    want, want_state = block.chunk([x[:, :5] for x in h], state)
    torch.testing.assert_close(got_state, want_state)


def test_half_precision_input_runs_the_scan_in_float32() -> None:
    u = torch.randn(1, 2, 20, 3).to(torch.bfloat16)
    log_a = _log_a([2.0, 50.0], 3, torch.float32)
    y, last = decay_scan(u, log_a)
    assert y.dtype == torch.bfloat16 and last.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), loop_reference(u.float(), log_a), rtol=2e-2, atol=2e-2)


def test_bad_arguments_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="0 < min_s <= max_s"):
        DiagonalDecay(2, 3, frame_rate=125.0, min_s=1.0, max_s=0.5)
    with pytest.raises(ValueError, match="memory channels must be an integer >= 1"):
        DiagonalDecay(0, 3, frame_rate=125.0)
    with pytest.raises(ValueError, match=r"expects input \(batch, 2, frames, 3\)"):
        DiagonalDecay(2, 3, frame_rate=125.0)(torch.zeros(1, 3, 4, 3))


def test_time_constants_cover_tens_of_ms_to_seconds() -> None:
    taus = time_constants(4, 0.02, 2.0)
    assert taus[0] == pytest.approx(0.02) and taus[-1] == pytest.approx(2.0)
    ratios = [b / a for a, b in zip(taus, taus[1:], strict=False)]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)
    assert ratios[0] == pytest.approx(math.pow(100, 1 / 3))
