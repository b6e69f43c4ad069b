"""The diagonal layer family: same numbers, one state_dict, clear errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from audiodiag.layers import (
    IMPLEMENTATIONS,
    DiagonalLinear,
    band_valid,
    bands_to_dense,
    convert,
    dense_to_bands,
    make_diagonal,
)

BANDED = ("mask", "sparse", "diag")


def _implementations(bandwidth: int) -> tuple[str, ...]:
    return IMPLEMENTATIONS if bandwidth == 0 else BANDED


def _random_state(features: int, bandwidth: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    layer = make_diagonal("diag", features, init="normal", bandwidth=bandwidth)
    with torch.no_grad():
        layer.bias.normal_()
    return layer.state_dict()


def _run(layer: DiagonalLinear, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Output and gradients w.r.t. input, weight (as bands) and bias for a fixed upstream grad."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    upstream = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    (y * upstream).sum().backward()
    if layer.implementation == "mask":
        weight_grad = dense_to_bands(layer.weight.grad, layer.bandwidth)
    else:
        weight_grad = layer.weight.grad.reshape(2 * layer.bandwidth + 1, layer.features)
    # Gradients at positions outside the matrix do not exist for the dense forms.
    weight_grad = weight_grad * band_valid(layer.features, layer.bandwidth)
    return y.detach(), x.grad, weight_grad, layer.bias.grad


SHAPES = [(1,), (4,), (3, 1), (2, 5, 7), (2, 3, 4, 33)]


@pytest.mark.parametrize("bandwidth", [0, 1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_all_implementations_give_same_output_and_gradients(shape, bandwidth):
    features = shape[-1]
    state = _random_state(features, bandwidth, seed=sum(shape) + bandwidth)
    x = torch.randn(shape)
    results = {}
    for name in _implementations(bandwidth):
        layer = make_diagonal(name, features, bandwidth=bandwidth)
        layer.load_state_dict(state)
        results[name] = _run(layer, x)
    reference = results["diag"]
    for name, result in results.items():
        for got, want, what in zip(
            result, reference, ("output", "dx", "dweight", "dbias"), strict=True
        ):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, msg=f"{name} {what}")


def test_banded_output_matches_explicit_dense_matrix():
    features, bandwidth = 6, 2
    state = _random_state(features, bandwidth, seed=1)
    dense = bands_to_dense(state["weight"], bandwidth)
    # The band entries sit where the layout says: W[i, i + o] = weight[o + k, i].
    assert dense[1, 3] == state["weight"][4, 1]
    assert dense[3, 1] == state["weight"][0, 3]
    x = torch.randn(5, features)
    expected = x @ dense.T + state["bias"]
    for name in BANDED:
        layer = make_diagonal(name, features, bandwidth=bandwidth)
        layer.load_state_dict(state)
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("source,target", list(itertools.product(IMPLEMENTATIONS, repeat=2)))
def test_state_dict_loads_across_implementations(source, target):
    torch.manual_seed(0)
    a = make_diagonal(source, 9, init="normal")
    with torch.no_grad():
        a.bias.normal_()
    b = make_diagonal(target, 9)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"weight", "bias"}
    assert a.state_dict()["weight"].shape == (9,)
    x = torch.randn(4, 9)
    torch.testing.assert_close(b(x), a(x))


def test_dense_weight_with_off_diagonal_entries_is_refused():
    linear = nn.Linear(4, 4)
    for name in IMPLEMENTATIONS:
        layer = make_diagonal(name, 4)
        with pytest.raises(ValueError, match="off the diagonal band"):
            layer.load_state_dict(linear.state_dict())


def test_dense_diagonal_weight_is_accepted():
    linear = nn.Linear(4, 4)
    with torch.no_grad():
        linear.weight.copy_(torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])))
    x = torch.randn(3, 4)
    for name in IMPLEMENTATIONS:
        layer = make_diagonal(name, 4)
        layer.load_state_dict(linear.state_dict())
        torch.testing.assert_close(layer(x), linear(x))


def test_wrong_weight_shape_names_key_and_accepted_shapes():
    layer = make_diagonal("sparse", 4)
    with pytest.raises(ValueError, match=r"weight: expected shape \(4,\)"):
        layer.load_state_dict({"weight": torch.ones(5), "bias": torch.zeros(4)})


def test_band_entries_outside_matrix_are_refused():
    state = make_diagonal("diag", 4, bandwidth=1).state_dict()
    state["weight"][0, 0] = 1.0  # W[0, -1] does not exist
    with pytest.raises(ValueError, match="outside"):
        make_diagonal("mask", 4, bandwidth=1).load_state_dict(state)


def test_masks_and_indices_are_non_persistent_buffers_that_move():
    mask = make_diagonal("mask", 5, bandwidth=1)
    sparse = make_diagonal("sparse", 5, bandwidth=1)
    assert "mask" in dict(mask.named_buffers())
    assert {"crow", "col", "crow_t", "col_t", "perm_t", "value_index"} <= set(
        dict(sparse.named_buffers())
    )
    for layer in (mask, sparse):
        assert set(layer.state_dict()) == {"weight", "bias"}
        doubled = layer.to(torch.float64)
        assert doubled(torch.randn(2, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_mask_off_diagonal_stays_exactly_zero_through_training(optimizer):
    torch.manual_seed(0)
    layer = make_diagonal("mask", 6, bandwidth=1, init="normal")
    if optimizer == "sgd":
        opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    else:
        opt = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    before = layer.weight.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        loss = (layer(torch.randn(8, 6)) - torch.randn(8, 6)).pow(2).mean()
        loss.backward()
        opt.step()
    off_band = layer.mask == 0
    assert torch.count_nonzero(layer.weight[off_band]) == 0
    assert not torch.equal(layer.weight[~off_band], before[~off_band])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_add_argument_is_a_sum_with_the_same_gradients(name, bias):
    # layer(x, add=a) == a + layer(x), forward and backward, a full-size or broadcast addend.
    torch.manual_seed(1)
    layer = make_diagonal(name, 7, bias=bias, init="normal")
    for add_shape in [(3, 5, 7), (7,)]:
        x = torch.randn(3, 5, 7, requires_grad=True)
        add = torch.randn(add_shape, requires_grad=True)
        upstream = torch.randn(3, 5, 7)
        layer.zero_grad()
        fused = layer(x, add=add)
        grads = torch.autograd.grad((fused * upstream).sum(), [x, add, layer.weight])
        separate = add + layer(x)
        expected = torch.autograd.grad((separate * upstream).sum(), [x, add, layer.weight])
        torch.testing.assert_close(fused, separate)
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got, want)


def test_elementwise_fused_backward_passes_gradcheck():
    layer = make_diagonal("elementwise", 4, init="normal").double()
    x = torch.randn(2, 3, 4, dtype=torch.double, requires_grad=True)
    add = torch.randn(2, 3, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a: layer(x, add=a), (x, add))
    assert torch.autograd.gradcheck(
        lambda w: torch.func.functional_call(layer, {"weight": w, "bias": layer.bias}, (x,)),
        (layer.weight.detach().requires_grad_(),),
    )


def test_sparse_passes_gradient_to_diagonal_values():
    layer = make_diagonal("sparse", 5, bias=False)
    x = torch.randn(3, 5)
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, x.sum(0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sparse_runs_half_precision_through_float32(dtype):
    layer = make_diagonal("sparse", 8, init="normal").to(dtype)
    x = torch.randn(2, 8, dtype=dtype)
    y = layer(x)
    assert y.dtype == dtype
    reference = x.float() * layer.weight.float() + layer.bias.float()
    torch.testing.assert_close(y.float(), reference, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_every_form_works_under_cpu_autocast(name):
    torch.manual_seed(0)
    layer = make_diagonal(name, 16, init="normal")
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        y.float().sum().backward()
    torch.testing.assert_close(
        y.float(), x * layer.weight_vector() + layer.bias, rtol=2e-2, atol=2e-2
    )
    assert layer.bias.grad is not None


def test_rectangular_weight_is_refused_with_reason():
    with pytest.raises(ValueError, match="out_features .* must equal features"):
        make_diagonal("mask", 4, out_features=5)
    assert make_diagonal("mask", 4, out_features=4).features == 4


def test_unknown_implementation_lists_valid_ones():
    with pytest.raises(ValueError, match="elementwise, mask, sparse, diag"):
        make_diagonal("foo", 4)
    with pytest.raises(ValueError, match="valid"):
        convert(nn.Sequential(), "foo")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"features": 0}, "features must be an integer >= 1"),
        ({"features": 4, "init": "xavier"}, "unknown init 'xavier'; valid: identity"),
        ({"features": 4, "bandwidth": -1}, "bandwidth must be an integer >= 0"),
    ],
)
def test_bad_construction_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_diagonal("diag", **kwargs)


def test_elementwise_refuses_bandwidth():
    with pytest.raises(ValueError, match="use mask, sparse or diag"):
        make_diagonal("elementwise", 4, bandwidth=1)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_bad_inputs_get_clear_errors(name):
    layer = make_diagonal(name, 4)
    with pytest.raises(ValueError, match=r"expects input \(\.\.\., 4\), got shape \[2, 3\]"):
        layer(torch.randn(2, 3))
    with pytest.raises(TypeError, match="floating-point input, got torch.int64"):
        layer(torch.ones(2, 4, dtype=torch.int64))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_inits_and_reset(name):
    layer = make_diagonal(name, 6, init="identity")
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), x)
    for init in ("normal", "uniform"):
        layer = make_diagonal(name, 6, init=init)
        first = layer.state_dict()["weight"].clone()
        layer.reset_parameters()
        assert not torch.equal(first, layer.state_dict()["weight"])
    text = repr(make_diagonal(name, 6, bias=False))
    assert f"implementation={name}, features=6, bandwidth=0, bias=False" in text


def test_elementwise_scripts_and_exports_with_dynamic_shapes():
    torch.manual_seed(0)
    layer = make_diagonal("elementwise", 8, init="normal")
    x = torch.randn(2, 3, 8)
    scripted = torch.jit.script(layer)
    torch.testing.assert_close(scripted(x), layer(x))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("time")}
    program = torch.export.export(layer, (x,), dynamic_shapes={"x": dims})
    other = torch.randn(5, 11, 8)
    torch.testing.assert_close(program.module()(other), layer(other))


@pytest.mark.slow
def test_elementwise_compiles():
    layer = make_diagonal("elementwise", 8, init="normal")
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(torch.compile(layer)(x), layer(x))


class _TwoLayerNet(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.first = make_diagonal(name, 7, init="normal")
        self.inner = nn.Sequential(nn.Tanh(), make_diagonal(name, 7, init="normal"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.first(x))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_convert_whole_model_keeps_outputs(name):
    torch.manual_seed(0)
    model = _TwoLayerNet(name)
    converted = convert(model, "elementwise")
    x = torch.randn(4, 7)
    torch.testing.assert_close(converted(x), model(x))
    assert all(
        m.implementation == "elementwise"
        for m in converted.modules()
        if isinstance(m, DiagonalLinear)
    )
    assert model.first.implementation == name  # the original is left untouched
    assert isinstance(convert(model.first, "sparse"), DiagonalLinear)


@pytest.mark.gpu
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_cuda_matches_cpu_and_runs_under_bf16_autocast(name):
    torch.manual_seed(0)
    layer = make_diagonal(name, 257, init="normal")
    x = torch.randn(4, 10, 257)
    expected = layer(x)
    layer_cuda = layer.to("cuda")
    torch.testing.assert_close(layer_cuda(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = layer_cuda(x.cuda())
        y.float().sum().backward()
    torch.testing.assert_close(y.float().cpu(), expected, rtol=3e-2, atol=3e-2)


def test_parameter_count_is_the_shared_layout_for_every_form():
    from audiodiag.layers import count_parameters

    counts = {name: count_parameters(_TwoLayerNet(name)) for name in IMPLEMENTATIONS}
    assert set(counts.values()) == {2 * (7 + 7)}
    assert count_parameters(make_diagonal("mask", 5, bandwidth=1)) == 3 * 5 + 5


def test_elementwise_works_under_torch_func_and_forward_mode():
    from torch.func import functional_call, grad, jvp, vmap

    torch.manual_seed(2)
    layer = make_diagonal("elementwise", 5, init="normal")
    params = {name: p.detach() for name, p in layer.named_parameters()}
    x, add = torch.randn(3, 5), torch.randn(3, 5)

    def reference(p, x, add):
        return add + x * p["weight"] + p["bias"]

    def fused(p, x, add):
        return functional_call(layer, p, (x,), {"add": add})

    torch.testing.assert_close(
        vmap(fused, in_dims=(None, 0, 0))(params, x, add), reference(params, x, add)
    )
    per_sample = vmap(grad(lambda p, x, a: fused(p, x, a).pow(2).sum()), in_dims=(None, 0, 0))
    expected = vmap(grad(lambda p, x, a: reference(p, x, a).pow(2).sum()), in_dims=(None, 0, 0))
    for key, value in per_sample(params, x, add).items():
        torch.testing.assert_close(value, expected(params, x, add)[key])
    tangents = (torch.randn(3, 5), torch.randn(3, 5))
    _, got = jvp(lambda x, a: fused(params, x, a), (x, add), tangents)
    _, want = jvp(lambda x, a: reference(params, x, a), (x, add), tangents)
    torch.testing.assert_close(got, want)


# -- diagonal plus low rank: W = band + U V^T ----------------------------------------------------
def _low_rank_state(features: int, bandwidth: int, rank: int, seed: int) -> dict[str, torch.Tensor]:
    state = _random_state(features, bandwidth, seed)
    generator = torch.Generator().manual_seed(seed + 100)
    state["lowrank_u"] = torch.randn(features, rank, generator=generator)
    state["lowrank_v"] = torch.randn(features, rank, generator=generator)
    return state


@pytest.mark.parametrize("bandwidth", [0, 2])
@pytest.mark.parametrize("rank", [1, 3])
def test_low_rank_equals_the_explicit_dense_product_for_every_form(bandwidth, rank):
    features = 9
    state = _low_rank_state(features, bandwidth, rank, seed=rank + bandwidth)
    x = torch.randn(2, 4, features)
    upstream = torch.randn(2, 4, features)
    # Reference: the dense W = band + U V^T, formed explicitly, and autograd through it.
    ref = {k: v.clone().requires_grad_(True) for k, v in state.items()}
    xr = x.clone().requires_grad_(True)
    dense = bands_to_dense(ref["weight"].reshape(2 * bandwidth + 1, features), bandwidth)
    dense = dense + ref["lowrank_u"] @ ref["lowrank_v"].T
    expected = xr @ dense.T + ref["bias"]
    (expected * upstream).sum().backward()
    for name in _implementations(bandwidth):
        layer = make_diagonal(name, features, bandwidth=bandwidth, rank=rank)
        layer.load_state_dict(state)
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        (y * upstream).sum().backward()
        torch.testing.assert_close(y, expected.detach(), msg=f"{name} output")
        torch.testing.assert_close(xi.grad, xr.grad, msg=f"{name} dx")
        for key in ("lowrank_u", "lowrank_v", "bias"):
            got = getattr(layer, key).grad
            torch.testing.assert_close(got, ref[key].grad, msg=f"{name} d{key}")
        if name == "mask":
            weight_grad = dense_to_bands(layer.weight.grad, bandwidth)
        else:
            weight_grad = layer.weight.grad.reshape(2 * bandwidth + 1, features)
        weight_grad = weight_grad * band_valid(features, bandwidth)
        band_grad = ref["weight"].grad.reshape(2 * bandwidth + 1, features)
        torch.testing.assert_close(
            weight_grad, band_grad * band_valid(features, bandwidth), msg=f"{name} dweight"
        )


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_low_rank_add_argument_and_state_dict_layout(name):
    torch.manual_seed(3)
    layer = make_diagonal(name, 7, rank=2, init="normal")
    with torch.no_grad():
        layer.lowrank_u.normal_()
    state = layer.state_dict()
    assert set(state) == {"weight", "bias", "lowrank_u", "lowrank_v"}
    assert state["weight"].shape == (7,) and state["lowrank_u"].shape == (7, 2)
    x, add = torch.randn(3, 7), torch.randn(3, 7)
    torch.testing.assert_close(layer(x, add=add), add + layer(x))
    for target in IMPLEMENTATIONS:  # one layout: every form loads every other's state
        other = make_diagonal(target, 7, rank=2)
        other.load_state_dict(state)
        torch.testing.assert_close(other(x), layer(x))
        torch.testing.assert_close(convert(layer, target)(x), layer(x))
    assert convert(layer, "diag").rank == 2


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_rank_zero_is_todays_layer_and_low_rank_starts_silent(name):
    torch.manual_seed(0)
    plain = make_diagonal(name, 6, init="normal")
    assert set(plain.state_dict()) == {"weight", "bias"}
    assert plain.lowrank_u is None and "rank" not in repr(plain)
    low = make_diagonal(name, 6, rank=4)
    low.load_state_dict(
        {
            **plain.state_dict(),
            **{k: v for k, v in low.state_dict().items() if k.startswith("lowrank")},
        }
    )
    assert torch.count_nonzero(low.lowrank_u) == 0 and torch.count_nonzero(low.lowrank_v) > 0
    x = torch.randn(5, 6)
    torch.testing.assert_close(low(x), plain(x))
    low(x).sum().backward()  # U's gradient is not zero, so training can grow the low-rank part
    assert low.lowrank_u.grad.abs().sum() > 0
    assert "rank=4" in repr(low)


def test_low_rank_moves_with_to_and_counts_its_parameters():
    from audiodiag.layers import count_parameters

    for name in IMPLEMENTATIONS:
        layer = make_diagonal(name, 5, rank=2).to(torch.float64)
        assert layer.lowrank_u.dtype == torch.float64
        assert layer(torch.randn(3, 5, dtype=torch.float64)).dtype == torch.float64
        assert count_parameters(layer) == 5 + 5 + 2 * 5 * 2
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, features=4\]"):
        make_diagonal("diag", 4, rank=5)


def test_low_rank_elementwise_scripts():
    torch.manual_seed(0)
    layer = make_diagonal("elementwise", 8, rank=3)
    with torch.no_grad():
        layer.lowrank_u.normal_()
    scripted = torch.jit.script(layer)
    x, add = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    torch.testing.assert_close(scripted(x), layer(x))
    torch.testing.assert_close(scripted(x, add), layer(x, add=add))


def test_layer_benchmark_runs_the_low_rank_and_recurrence_rows():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_layers.py"
    spec = importlib.util.spec_from_file_location("bench_layers", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x = torch.randn(2, 9, 5)
    recurrence, _ = bench._forward_fn("recurrence", 5, "cpu")
    loop, _ = bench._forward_fn("recurrence_loop", 5, "cpu")
    torch.testing.assert_close(recurrence(x), loop(x), rtol=1e-5, atol=1e-6)
    for form in ("rank4", "rank16", "recurrence"):
        result = bench.measure_one(form, 17, "cpu", batch=2, frames=5, repeats=1)
        assert result["ms"] > 0
