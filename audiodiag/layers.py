"""The diagonal layer family: one linear map, four ways to compute it.

Each output feature ``i`` depends only on input feature ``i`` (or, with ``bandwidth=k``, on inputs
``i-k .. i+k``): for spectrogram features that means frequency bins never mix. The four
implementations give the same numbers and share one state_dict layout, so a model trained with any
of them can be rebuilt with another (``convert``), for example ``elementwise`` for export:

=============  ===========================================  ==========================================
name           parameter ``weight``                         forward
=============  ===========================================  ==========================================
elementwise    vector ``(features,)``                       ``x * weight + bias`` (the cost floor)
mask           dense ``(features, features)``, 0/1 buffer   ``linear(x, weight * mask, bias)``
sparse         vector (bands), CSR index buffers            CSR sparse product, never densified
diag           vector (bands)                               ``linear(x, sum of torch.diag(v, o))``
=============  ===========================================  ==========================================

State dict layout (all four): ``weight`` of shape ``(features,)`` for bandwidth 0, else
``(2k + 1, features)`` with row ``o + k`` holding the entries ``W[i, i + o]``; entries whose column
falls outside the matrix are zero. ``bias`` of shape ``(features,)`` when present. Loading also
accepts a dense ``(features, features)`` weight, and refuses one with non-zero entries off the band.

Rectangular weights (``in_features != out_features``) are refused: a diagonal map sends bin ``f``
to bin ``f``, so a different output size would invent or silently drop bins.

Diagonal plus low rank (``rank=r > 0``, any implementation): ``W = band + U V^T`` with ``U`` and
``V`` of shape ``(features, r)``, computed as ``band(x) + (x @ V) @ U^T`` in ``O(features * r)``,
never forming ``W``. It couples all bins through ``r`` shared directions (a glide, the spectrum's
overall shape) at ``2r`` multiply-adds per feature. ``U`` starts at zero, so a layer starts as its
diagonal part alone. State dict: ``lowrank_u`` and ``lowrank_v`` beside ``weight`` and ``bias``
(the same two keys for every implementation); ``rank=0`` has neither, exactly as before.
"""

import copy
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# CSR is "beta" in torch; the layer relies only on its stable core (mm, sampled_addmm).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

IMPLEMENTATIONS: tuple[str, ...] = ("elementwise", "mask", "sparse", "diag")
INITS: tuple[str, ...] = ("identity", "normal", "uniform")


def band_valid(features: int, bandwidth: int, device: torch.device | None = None) -> Tensor:
    """Boolean ``(2k+1, features)``: whether band entry ``[o + k, i]`` is inside the matrix."""
    offsets = torch.arange(-bandwidth, bandwidth + 1, device=device).unsqueeze(1)
    columns = torch.arange(features, device=device).unsqueeze(0) + offsets
    return (columns >= 0) & (columns < features)


def bands_to_dense(bands: Tensor, bandwidth: int) -> Tensor:
    """The dense ``(features, features)`` matrix with ``W[i, i + o] = bands[o + k, i]``."""
    features = bands.shape[-1]
    dense = torch.diag(bands[bandwidth])
    for offset in range(1, min(bandwidth, features - 1) + 1):
        dense = dense + torch.diag(bands[bandwidth + offset, : features - offset], offset)
        dense = dense + torch.diag(bands[bandwidth - offset, offset:], -offset)
    return dense


def dense_to_bands(dense: Tensor, bandwidth: int) -> Tensor:
    """Inverse of :func:`bands_to_dense` (entries off the band are ignored)."""
    features = dense.shape[-1]
    rows = [torch.diagonal(dense, 0)]
    zeros: Callable[[int], Tensor] = lambda n: dense.new_zeros(n)  # noqa: E731
    for offset in range(1, bandwidth + 1):
        n = max(features - offset, 0)
        pad = features - n
        above = torch.diagonal(dense, offset)[:n]
        below = torch.diagonal(dense, -offset)[:n]
        rows.append(torch.cat([above, zeros(pad)]))
        rows.insert(0, torch.cat([zeros(pad), below]))
    return torch.stack(rows)


class DiagonalLinear(nn.Module):
    """Base of the family: validation, init, state_dict layout. Subclasses implement ``forward``.

    ``layer(x, add=a)`` returns ``a + layer(x)``: a sum of diagonal layers (a block's taps)
    accumulates in the layer's own product where the implementation can fuse it (elementwise:
    one ``addcmul`` pass instead of a product and a sum).
    """

    implementation = ""
    lowrank_u: nn.Parameter | None
    lowrank_v: nn.Parameter | None

    def __init__(
        self,
        features: int,
        *,
        bias: bool = True,
        init: str = "identity",
        bandwidth: int = 0,
        rank: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(features, int) or isinstance(features, bool) or features < 1:
            raise ValueError(f"features must be an integer >= 1, got {features!r}")
        if not isinstance(bandwidth, int) or bandwidth < 0:
            raise ValueError(f"bandwidth must be an integer >= 0, got {bandwidth!r}")
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= features:
            raise ValueError(f"rank must be an integer in [0, features={features}], got {rank!r}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
        # An instance attribute as well, so TorchScript sees it in error messages.
        self.implementation = type(self).implementation
        self.features = features
        self.bandwidth = bandwidth
        self.rank = rank
        self.init = init
        factory_kwargs = {"device": device, "dtype": dtype}
        self._create_weight(factory_kwargs)
        if bias:
            self.bias = nn.Parameter(torch.empty(features, **factory_kwargs))  # type: ignore[arg-type]
        else:
            self.register_parameter("bias", None)
        # Registered as None at rank 0, so the state dict (and TorchScript) see today's layer.
        if rank > 0:
            self.lowrank_u = nn.Parameter(torch.empty(features, rank, **factory_kwargs))  # type: ignore[arg-type]
            self.lowrank_v = nn.Parameter(torch.empty(features, rank, **factory_kwargs))  # type: ignore[arg-type]
        else:
            self.register_parameter("lowrank_u", None)
            self.register_parameter("lowrank_v", None)
        self.reset_parameters()

    # -- the canonical form shared by all implementations -------------------------------------
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of ``weight`` in the shared state_dict layout."""
        if self.bandwidth == 0:
            return (self.features,)
        return (2 * self.bandwidth + 1, self.features)

    def _create_weight(self, factory_kwargs: dict) -> None:
        self.weight = nn.Parameter(torch.empty(self.weight_shape(), **factory_kwargs))

    def bands(self) -> Tensor:
        """The weight as ``(2k+1, features)`` bands (differentiable)."""
        return self.weight.reshape(2 * self.bandwidth + 1, self.features)

    def weight_vector(self) -> Tensor:
        """The main diagonal ``(features,)``: the per-bin gains, for logging and plots."""
        return self.bands()[self.bandwidth]

    def _bands_to_weight(self, bands: Tensor) -> Tensor:
        """Bands to this implementation's own parameter layout."""
        return bands.reshape(self.weight_shape())

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialise: ``identity`` (pass-through), ``normal`` or ``uniform`` (fan-in scaled)."""
        k, n = self.bandwidth, self.features
        fan_in = 2 * k + 1
        bands = torch.zeros(fan_in, n, device=self.weight.device, dtype=self.weight.dtype)
        if self.init == "identity":
            bands[k] = 1.0
        elif self.init == "normal":
            bands.normal_(0.0, 1.0 / math.sqrt(fan_in))
        else:
            bound = 1.0 / math.sqrt(fan_in)
            bands.uniform_(-bound, bound)
        bands *= band_valid(n, k, device=bands.device)
        self.weight.copy_(self._bands_to_weight(bands))
        if self.bias is not None:
            if self.init == "uniform":
                bound = 1.0 / math.sqrt(fan_in)
                self.bias.uniform_(-bound, bound)
            else:
                self.bias.zero_()
        if self.lowrank_u is not None and self.lowrank_v is not None:
            # U = 0: the low-rank part starts silent (the layer is its diagonal part) while U's
            # gradient, (x V)^T grad, is not zero, so training can grow it.
            self.lowrank_u.zero_()
            self.lowrank_v.normal_(0.0, 1.0 / math.sqrt(self.features))

    def extra_repr(self) -> str:
        text = (
            f"implementation={self.implementation}, features={self.features}, "
            f"bandwidth={self.bandwidth}, bias={self.bias is not None}"
        )
        return text + (f", rank={self.rank}" if self.rank > 0 else "")

    # -- the forward shared by all implementations ----------------------------------------------
    def forward(self, x: Tensor, add: Tensor | None = None) -> Tensor:
        """``add + x W^T + bias`` (``add`` optional) with ``W`` = band (+ ``U V^T``)."""
        self._check_input(x)
        u = self.lowrank_u
        v = self.lowrank_v
        if u is not None and v is not None:
            # (x V) U^T: two thin products, O(features * rank); W is never formed.
            low = torch.matmul(torch.matmul(x, v), u.t())
            add = low if add is None else add + low
        return self._forward_diagonal(x, add)

    def _forward_diagonal(self, x: Tensor, add: Tensor | None) -> Tensor:
        """The banded part, ``add + band(x) + bias``; each implementation computes it its way."""
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        if not x.is_floating_point():
            raise TypeError(
                f"{self.implementation} diagonal layer needs a floating-point input, got {x.dtype}"
            )
        if x.dim() == 0 or x.shape[-1] != self.features:
            raise ValueError(
                f"{self.implementation} diagonal layer expects input (..., {self.features}), "
                f"got shape {list(x.shape)}"
            )

    # -- one state_dict layout ------------------------------------------------------------------
    def _canonical_bands(self, weight: Tensor, key: str) -> Tensor:
        """Any accepted stored weight to ``(2k+1, features)`` bands, refusing off-band entries."""
        k, n = self.bandwidth, self.features
        valid = band_valid(n, k, device=weight.device)
        accepted = f"{self.weight_shape()} or dense {(n, n)}"
        if weight.dim() == 2 and tuple(weight.shape) == (n, n) and (n, n) != (2 * k + 1, n):
            bands = dense_to_bands(weight, k)
            if not torch.equal(bands_to_dense(bands, k), weight):
                raise ValueError(
                    f"{key}: the dense weight has non-zero entries off the diagonal band "
                    f"(bandwidth={k}); a diagonal layer cannot represent it"
                )
            return bands
        if tuple(weight.shape) != self.weight_shape():
            raise ValueError(
                f"{key}: expected shape {accepted} for features={n}, bandwidth={k}; "
                f"got {tuple(weight.shape)}"
            )
        bands = weight.reshape(2 * k + 1, n)
        if bool((bands[~valid] != 0).any()):
            raise ValueError(
                f"{key}: band entries that fall outside the {n}x{n} matrix must be zero"
            )
        return bands

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        super()._save_to_state_dict(destination, prefix, keep_vars)
        bands = self.bands() if keep_vars else self.bands().detach()
        destination[prefix + "weight"] = bands.reshape(
            (self.features,) if self.bandwidth == 0 else bands.shape
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        key = prefix + "weight"
        if key in state_dict:
            state_dict[key] = self._bands_to_weight(self._canonical_bands(state_dict[key], key))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _AddScaled(torch.autograd.Function):
    """``base + x * weight`` (``torch.addcmul``) with a leaner backward.

    ``addcmul``'s own derivative forms ``x * value`` (a full-size copy, value being 1) before the
    weight gradient; here each gradient is one product, reduced to its input's shape. In a
    training step that is about a quarter of an elementwise layer's memory traffic.
    """

    generate_vmap_rule = True  # torch.func transforms (vmap, grad, jacrev) work through it

    @staticmethod
    def forward(base, x, weight):  # type: ignore[no-untyped-def]
        return torch.addcmul(base, x, weight)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        base, x, weight = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.base_shape = base.shape

    @staticmethod
    def jvp(ctx, base_t, x_t, weight_t):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        tangent = base_t + x_t * weight
        return torch.addcmul(tangent, x, weight_t)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        grad_base = grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_base = grad.sum_to_size(ctx.base_shape)
        if ctx.needs_input_grad[1]:
            grad_x = (grad * weight).sum_to_size(x.shape)
        if ctx.needs_input_grad[2]:
            grad_weight = (grad * x).sum_to_size(weight.shape)
        return grad_base, grad_x, grad_weight


class ElementwiseDiagonal(DiagonalLinear):
    """``x * weight + bias``: the cost floor, and the form that scripts, exports and compiles."""

    implementation = "elementwise"

    def __init__(self, features: int, *, bandwidth: int = 0, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if bandwidth != 0:
            raise ValueError(
                f"elementwise supports only bandwidth=0 (got {bandwidth}); "
                "use mask, sparse or diag for a banded weight"
            )
        super().__init__(features, bandwidth=0, **kwargs)

    def _forward_diagonal(self, x: Tensor, add: Tensor | None) -> Tensor:
        base = self.bias if add is None else add if self.bias is None else add + self.bias
        if base is None:
            return x * self.weight
        # Plain addcmul where no backward is recorded here: scripted, no grad, or traced by
        # torch.compile (inductor fuses a whole sum into one loop, forward and backward).
        if torch.jit.is_scripting() or not torch.is_grad_enabled() or torch.compiler.is_compiling():
            return torch.addcmul(base, x, self.weight)
        return self._add_scaled(base, x)

    @torch.jit.unused
    def _add_scaled(self, base: Tensor, x: Tensor) -> Tensor:
        return _AddScaled.apply(base, x, self.weight)


class MaskDiagonal(DiagonalLinear):
    """A dense ``(features, features)`` weight times a fixed 0/1 band mask, then ``F.linear``.

    Off-band entries start at zero and receive zero gradient, so they stay exactly zero through
    any optimiser (weight decay of zero is zero). The mask is a non-persistent buffer: it moves
    with ``.to()`` and stays out of the shared state_dict.
    """

    implementation = "mask"
    mask: Tensor

    def _create_weight(self, factory_kwargs: dict) -> None:
        n = self.features
        self.weight = nn.Parameter(torch.empty(n, n, **factory_kwargs))
        mask = bands_to_dense(band_valid(n, self.bandwidth).to(self.weight.dtype), self.bandwidth)
        self.register_buffer("mask", mask.to(self.weight.device), persistent=False)

    def bands(self) -> Tensor:
        return dense_to_bands(self.weight, self.bandwidth)

    def _bands_to_weight(self, bands: Tensor) -> Tensor:
        return bands_to_dense(bands, self.bandwidth)

    def _forward_diagonal(self, x: Tensor, add: Tensor | None) -> Tensor:
        out = F.linear(x, self.weight * self.mask, self.bias)
        return out if add is None else add + out


class DiagDiagonal(DiagonalLinear):
    """``F.linear`` with the matrix built from ``torch.diag`` of each band (dense per call)."""

    implementation = "diag"

    def _forward_diagonal(self, x: Tensor, add: Tensor | None) -> Tensor:
        out = F.linear(x, bands_to_dense(self.bands(), self.bandwidth), self.bias)
        return out if add is None else add + out


class _CSRProduct(torch.autograd.Function):
    """``y = x @ W.T`` with ``W`` a CSR matrix; the backward stays sparse too.

    Autograd's own CSR backward forms a dense ``features x features`` gradient; here the weight
    gradient is a sampled product (SDDMM) on the pattern and the input gradient a CSR product with
    the transposed pattern, so memory stays linear in the number of non-zeros.
    """

    @staticmethod
    def forward(ctx, x, values, crow, col, crow_t, col_t, perm_t):  # type: ignore[no-untyped-def]
        n = x.shape[-1]
        matrix = torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)
        ctx.save_for_backward(x, values, crow, col, crow_t, col_t, perm_t)
        # W @ x.T is the CSR kernel's natural layout; its transpose is a free view.
        return torch.mm(matrix, x.t()).t()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[no-untyped-def]
        x, values, crow, col, crow_t, col_t, perm_t = ctx.saved_tensors
        n = x.shape[-1]
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            transposed = torch.sparse_csr_tensor(
                crow_t, col_t, values[perm_t], (n, n), check_invariants=False
            )
            grad_x = torch.mm(transposed, grad_out.t()).t()
        if ctx.needs_input_grad[1]:
            pattern = torch.sparse_csr_tensor(
                crow, col, values.detach(), (n, n), check_invariants=False
            )
            sampled = torch.sparse.sampled_addmm(pattern, grad_out.t(), x, beta=0.0)
            grad_values = sampled.values()
        return grad_x, grad_values, None, None, None, None, None


class SparseDiagonal(DiagonalLinear):
    """A real ``torch.sparse`` CSR product, never densified.

    torch has no CSR kernels for float16/bfloat16, so the product always runs in float32 (or
    float64) with autocast off, and the result is cast back to the input's dtype.
    """

    implementation = "sparse"
    value_index: Tensor
    crow: Tensor
    col: Tensor
    crow_t: Tensor
    col_t: Tensor
    perm_t: Tensor

    def __init__(self, features: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(features, **kwargs)
        k, n = self.bandwidth, features
        valid = band_valid(n, k)
        # CSR order is row-major; within a row, band index grows with the column.
        rows = torch.arange(n).unsqueeze(1).expand(n, 2 * k + 1)
        band = torch.arange(2 * k + 1).unsqueeze(0).expand(n, 2 * k + 1)
        keep = valid.t()
        rows, band = rows[keep], band[keep]
        cols = rows + band - k
        crow = torch.zeros(n + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        perm_t = torch.argsort(cols * n + rows)
        crow_t = torch.zeros(n + 1, dtype=torch.int64)
        crow_t[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
        device = self.weight.device
        for name, value in {
            "value_index": band * n + rows,  # position of each non-zero in the flat bands
            "crow": crow,
            "col": cols,
            "crow_t": crow_t,
            "col_t": rows[perm_t],
            "perm_t": perm_t,
        }.items():
            self.register_buffer(name, value.to(device), persistent=False)

    def _forward_diagonal(self, x: Tensor, add: Tensor | None) -> Tensor:
        values = self.weight if self.bandwidth == 0 else self.weight.reshape(-1)[self.value_index]
        compute_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        flat = x.reshape(-1, self.features).to(compute_dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = _CSRProduct.apply(
                flat,
                values.to(compute_dtype),
                self.crow,
                self.col,
                self.crow_t,
                self.col_t,
                self.perm_t,
            )
            if self.bias is not None:
                out = out + self.bias.to(compute_dtype)
        out = out.to(x.dtype).reshape(x.shape)
        return out if add is None else add + out


_REGISTRY: dict[str, type[DiagonalLinear]] = {
    cls.implementation: cls
    for cls in (ElementwiseDiagonal, MaskDiagonal, SparseDiagonal, DiagDiagonal)
}


def _check_implementation(name: str) -> type[DiagonalLinear]:
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown diagonal layer implementation {name!r}; valid: {', '.join(IMPLEMENTATIONS)}"
        )
    return _REGISTRY[name]


def make_diagonal(
    name: str,
    features: int,
    *,
    bias: bool = True,
    init: str = "identity",
    bandwidth: int = 0,
    rank: int = 0,
    out_features: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> DiagonalLinear:
    """Build the diagonal layer ``name`` (one of :data:`IMPLEMENTATIONS`) on ``features``.

    ``rank > 0`` adds a low-rank part ``U V^T`` (see the module docstring). ``out_features``
    exists only to refuse a rectangular layer with a clear message.
    """
    cls = _check_implementation(name)
    if out_features is not None and out_features != features:
        raise ValueError(
            f"a diagonal layer maps each feature to itself, so out_features ({out_features}) "
            f"must equal features ({features})"
        )
    return cls(
        features,
        bias=bias,
        init=init,
        bandwidth=bandwidth,
        rank=rank,
        device=device,
        dtype=dtype,
    )


def set_diagonal(layer: nn.Module, weight: Tensor, bias: Tensor | None = None) -> None:
    """Load a main-diagonal weight ``(features,)`` (off-diagonals zero) and optionally a bias.

    Goes through the shared state_dict layout, so it works for every implementation; the
    low-rank factors, if any, are left as they are.
    """
    state = layer.state_dict()
    current = state["weight"]
    new_weight = torch.zeros_like(current)
    if current.dim() == 1:
        new_weight.copy_(weight)
    else:
        new_weight[current.shape[0] // 2] = weight.to(current)
    update = {"weight": new_weight}
    if bias is not None and "bias" in state:
        update["bias"] = bias.to(state["bias"])
    layer.load_state_dict(update, strict=False)


def count_parameters(module: nn.Module) -> int:
    """Trainable values of ``module``, diagonal layers counted in the shared state_dict layout.

    The ``mask`` form stores a dense matrix of which only the band is learned; counting the
    layout instead makes the four implementations report the same size.
    """
    total = 0
    for child in module.modules():
        own = [p for p in child.parameters(recurse=False) if p.requires_grad]
        if isinstance(child, DiagonalLinear) and own:
            total += math.prod(child.weight_shape())
            total += child.bias.numel() if child.bias is not None else 0
            total += 2 * child.features * child.rank
        else:
            total += sum(p.numel() for p in own)
    return total


def _converted_layer(layer: DiagonalLinear, implementation: str) -> DiagonalLinear:
    new = make_diagonal(
        implementation,
        layer.features,
        bias=layer.bias is not None,
        init=layer.init,
        bandwidth=layer.bandwidth,
        rank=layer.rank,
        device=layer.weight.device,
        dtype=layer.weight.dtype,
    )
    new.load_state_dict(layer.state_dict())
    new.train(layer.training)
    return new


def convert(module: nn.Module, implementation: str) -> nn.Module:
    """A copy of ``module`` with every diagonal layer rebuilt as ``implementation``.

    Weights carry over through the shared state_dict, so outputs stay equal; the original is left
    untouched. Typical use: ``convert(trained_model, "elementwise")`` before export.
    """
    _check_implementation(implementation)
    if isinstance(module, DiagonalLinear):
        return _converted_layer(module, implementation)
    module = copy.deepcopy(module)
    _replace_in_place(module, implementation)
    return module


def _replace_in_place(module: nn.Module, implementation: str) -> None:
    for name, child in module.named_children():
        if isinstance(child, DiagonalLinear):
            setattr(module, name, _converted_layer(child, implementation))
        else:
            _replace_in_place(child, implementation)
