"""Diagonal linear recurrence: seconds of per-bin memory that train in parallel and stream.

Per frequency bin ``f`` and memory channel ``m`` (nothing mixes bins or channels here)::

    s[t] = a * s[t-1] + (1 - a) * u[t],      a = exp(-exp(nu)) in (0, 1),  s[-1] = state (0)

``(1 - a)`` gives every decay a unit DC gain, so slow and fast channels have the same scale and
the time constant ``tau = -1 / ln(a)`` frames can be learned freely: ``a`` stays in (0, 1) for any
``nu`` (no stability constraint to enforce). Channels start with time constants spread
log-uniformly between ``min_s`` and ``max_s`` seconds (the same for every bin); training then
moves each bin's own.

Parallel over time (never a loop over frames): a Hillis-Steele doubling scan,
``y[t] += a^d y[t - d]`` for ``d = 1, 2, 4, ...``, ``ceil(log2 n)`` whole-tensor multiply-adds,
run inside 16-frame chunks and then over the chunks (4 full-size steps and one carry pass
instead of 11 for a 10-s clip at the 8-ms hop), with the adjoint scan (backwards in time) as a
hand-written backward, so training stores two tensors instead of a graph per step. It is stable
for ``a`` close to 1 and any length: every factor is a power ``a^d = exp(d ln a)`` in [0, 1]
(never a division by ``a^t``), and each term is added once. ONNX export traces an equivalent
FFT convolution with the impulse response ``(1 - a) a^k`` (a loop whose length depends on the
number of frames cannot be exported with a dynamic frame axis). Any state continues exactly, so
chunk-by-chunk equals whole-clip to float rounding; :meth:`DiagonalDecay.step` is the plain
one-frame recursion that streaming can use.

:class:`RecurrentBlock` wraps the recurrence in diagonal layers of :mod:`audiodiag.layers` (so
``layer=`` still chooses how they are computed, and bins mix only through ``bandwidth`` or
``rank``): ``u_m = sum_i B_mi(h_i)`` (times ``sigmoid(sum_i G_mi(h_i))`` with ``gate=True``),
``s_m`` as above, and ``h_j + act(sum_m C_jm(s_m))`` out. ``C`` starts at zero, so a network with
the block starts as the same function as without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from audiodiag.layers import set_diagonal

__all__ = ["DiagonalDecay", "DiagonalSums", "RecurrentBlock", "decay_scan", "time_constants"]


def time_constants(channels: int, min_s: float, max_s: float) -> list[float]:
    """``channels`` time constants in seconds, log-uniformly spaced from ``min_s`` to ``max_s``
    (one channel: their geometric mean)."""
    if channels == 1:
        return [math.sqrt(min_s * max_s)]
    ratio = math.log(max_s / min_s) / (channels - 1)
    return [min_s * math.exp(ratio * m) for m in range(channels)]


def _doubling(y: Tensor, log_a: Tensor, dim: int, reverse: bool) -> Tensor:
    """``y[t] <- sum_k a^k y[t - k]`` along ``dim`` (``reverse``: ``y[t + k]``); overwrites ``y``.

    Hillis-Steele doubling: after the step with shift ``d``, ``y[t]`` holds the terms ``k < 2d``,
    so ``ceil(log2 n)`` steps of one multiply-add over the whole tensor finish it (the loop is
    over those steps, not over frames). Two buffers take turns, so a step reads the previous
    one whole. Every factor ``a^d = exp(d ln a)`` lies in [0, 1] and every term is added once:
    rounding stays at ``log2(n)`` ulps for any length and any ``a``. ``log_a`` broadcasts
    against ``y``.
    """
    n = y.shape[dim]
    if torch.is_grad_enabled() and (y.requires_grad or log_a.requires_grad):
        # Differentiated through (TorchScript with autograd on): out-of-place steps.
        d = 1
        while d < n:
            factor = torch.exp(log_a * float(d))
            if reverse:
                moved = torch.addcmul(y.narrow(dim, 0, n - d), y.narrow(dim, d, n - d), factor)
                y = torch.cat([moved, y.narrow(dim, n - d, d)], dim)
            else:
                moved = torch.addcmul(y.narrow(dim, d, n - d), y.narrow(dim, 0, n - d), factor)
                y = torch.cat([y.narrow(dim, 0, d), moved], dim)
            d *= 2
        return y
    spare = torch.empty_like(y)
    d = 1
    while d < n:
        factor = torch.exp(log_a * float(d))
        if reverse:
            spare.narrow(dim, n - d, d).copy_(y.narrow(dim, n - d, d))
            torch.addcmul(
                y.narrow(dim, 0, n - d),
                y.narrow(dim, d, n - d),
                factor,
                out=spare.narrow(dim, 0, n - d),
            )
        else:
            spare.narrow(dim, 0, d).copy_(y.narrow(dim, 0, d))
            torch.addcmul(
                y.narrow(dim, d, n - d),
                y.narrow(dim, 0, n - d),
                factor,
                out=spare.narrow(dim, d, n - d),
            )
        y, spare = spare, y
        d *= 2
    return y


def _linear_scan(x: Tensor, log_a: Tensor, reverse: bool, chunk: int = 16) -> Tensor:
    """``y[t] = sum_k a^k x[t - k]`` over frames (dim 2 of (B, M, n, F); ``reverse``:
    ``x[t + k]``, the adjoint). ``x`` is overwritten.

    Two levels, so most doubling steps run on chunks of ``chunk`` frames: doubling inside every
    chunk at once, doubling over the chunks' end values with the decay ``a^chunk`` (a tensor
    ``chunk`` times smaller), then one pass adds ``a^(t+1)`` times the previous chunk's true end
    (reverse: ``a^(chunk - t)`` times the next chunk's true start).
    """
    batch, channels, n, features = x.shape
    if n <= chunk:
        return _doubling(x, log_a.unsqueeze(1), 2, reverse)
    count = (n + chunk - 1) // chunk
    padded = torch.nn.functional.pad(x, (0, 0, 0, count * chunk - n))
    y = _doubling(
        padded.view(batch, channels, count, chunk, features),
        log_a.view(channels, 1, 1, features),
        3,
        reverse,
    )
    ends = y[:, :, :, 0] if reverse else y[:, :, :, chunk - 1]
    carried = _doubling(ends.contiguous(), log_a.unsqueeze(1) * float(chunk), 2, reverse)
    t = torch.arange(chunk, dtype=x.dtype, device=x.device).view(1, chunk, 1)
    if reverse:
        powers = torch.exp((chunk - t) * log_a.unsqueeze(1)).unsqueeze(1)  # (M, 1, C, F)
        y[:, :, :-1] += powers * carried[:, :, 1:].unsqueeze(3)
    else:
        powers = torch.exp((t + 1) * log_a.unsqueeze(1)).unsqueeze(1)
        y[:, :, 1:] += powers * carried[:, :, :-1].unsqueeze(3)
    return y.view(batch, channels, count * chunk, features)[:, :, :n]


def _scan_forward(u: Tensor, log_a: Tensor, state: Tensor) -> Tensor:
    """``s[t] = a s[t-1] + (1 - a) u[t]`` from ``s[-1] = state`` (no autograd graph of its own)."""
    y = -torch.expm1(log_a).unsqueeze(1) * u  # (1 - a) u, accurate for a near 1
    y[:, :, 0] += torch.exp(log_a) * state
    return _linear_scan(y, log_a, reverse=False)


class _DecayScan(torch.autograd.Function):
    """The scan with its adjoint as backward: one reverse scan instead of a graph of log2(n)
    steps. With ``lam[t] = g[t] + a lam[t+1]`` (``g`` the output gradient):
    ``du = (1 - a) lam``, ``d ln a = a * sum_t lam[t] (s[t-1] - u[t])``, ``dstate = a lam[0]``.
    """

    @staticmethod
    def forward(ctx, u, log_a, state):  # type: ignore[no-untyped-def]
        y = _scan_forward(u, log_a, state)
        ctx.save_for_backward(u, log_a, state, y)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        u, log_a, state, y = ctx.saved_tensors
        lam = _linear_scan(grad.clone(memory_format=torch.contiguous_format), log_a, True)
        a = torch.exp(log_a)
        grad_u = grad_log_a = grad_state = None
        if ctx.needs_input_grad[0]:
            grad_u = -torch.expm1(log_a).unsqueeze(1) * lam
        if ctx.needs_input_grad[1]:
            previous = torch.cat([state.unsqueeze(2), y[:, :, :-1]], dim=2)  # s[t-1], a copy
            grad_log_a = a * previous.sub_(u).mul_(lam).sum(dim=(0, 2))
        if ctx.needs_input_grad[2]:
            grad_state = a * lam[:, :, 0]
        return grad_u, grad_log_a, grad_state


def _fft_scan(u: Tensor, log_a: Tensor, state: Tensor) -> Tensor:
    """The same scan as a causal convolution with ``(1 - a) a^k`` by FFT (length 2n, no
    wrap-around), loop-free: what ONNX export traces, since the doubling loop's step count
    depends on the (symbolic) number of frames."""
    n = u.shape[2]
    steps = torch.arange(n + 1, device=u.device, dtype=u.dtype).reshape(1, n + 1, 1)
    powers = torch.exp(steps * log_a.unsqueeze(1))  # a^0 .. a^n: (M, n+1, F), all in [0, 1]
    kernel = -torch.expm1(log_a).unsqueeze(1) * powers[:, :n]
    product = torch.fft.rfft(u, n=2 * n, dim=2) * torch.fft.rfft(kernel, n=2 * n, dim=1)
    y = torch.fft.irfft(product, n=2 * n, dim=2)[:, :, :n]
    return y + powers[:, 1:] * state.unsqueeze(2)  # + a^(t+1) s[-1]


@torch.jit.unused
def _scan_eager(u: Tensor, log_a: Tensor, state: Tensor) -> Tensor:
    if torch.compiler.is_exporting():
        return _fft_scan(u, log_a, state)
    return _DecayScan.apply(u, log_a, state)


def decay_scan(u: Tensor, log_a: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """All frames of ``s[t] = a s[t-1] + (1 - a) u[t]`` at once, without a loop over frames.

    Args:
        u: input (B, M, n, F): batch, channels, frames, bins.
        log_a: ``ln a`` (M, F), every entry < 0.
        state: ``s[-1]`` (B, M, F); None means zeros.

    Returns:
        (s (B, M, n, F), the last frame s[n-1] (B, M, F): the state to continue from).
        Computed in float32 (float64 stays float64), also for half-precision input.
    """
    dtype = u.dtype
    compute = dtype if dtype == torch.float64 else torch.float32
    x = u.to(compute)
    log_a = log_a.to(compute)
    start = x.new_zeros(x.shape[0], x.shape[1], x.shape[3]) if state is None else state.to(compute)
    if x.shape[2] == 0:
        return u, start.to(dtype)
    if torch.jit.is_scripting():  # noqa: SIM108 - TorchScript drops the other branch only here
        y = _scan_forward(x, log_a, start)
    else:
        y = _scan_eager(x, log_a, start)
    return y.to(dtype), y[:, :, -1].to(dtype)


class DiagonalDecay(nn.Module):
    """Learnable per-(channel, bin) decays and the recurrence over them (module docstring).

    Args:
        channels: memory channels ``M``.
        features: bins ``F``.
        frame_rate: frames per second, to turn ``min_s``/``max_s`` into frames.
        min_s, max_s: initial time constants, log-uniform over the channels (seconds).
    """

    def __init__(
        self,
        channels: int,
        features: int,
        frame_rate: float,
        min_s: float = 0.02,
        max_s: float = 2.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"memory channels must be an integer >= 1, got {channels!r}")
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an integer >= 1, got {features!r}")
        if not frame_rate > 0:
            raise ValueError(f"frame_rate={frame_rate} must be > 0")
        if not 0 < min_s <= max_s:
            raise ValueError(
                f"memory time constants need 0 < min_s <= max_s, got min_s={min_s}, max_s={max_s}"
            )
        self.channels = channels
        self.features = features
        self.frame_rate = float(frame_rate)
        self.min_s = float(min_s)
        self.max_s = float(max_s)
        self.nu = nn.Parameter(torch.empty(channels, features, device=device, dtype=dtype))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Time constants log-uniform in [min_s, max_s] over the channels, equal across bins."""
        frames = [
            tau * self.frame_rate for tau in time_constants(self.channels, self.min_s, self.max_s)
        ]
        # a = exp(-1 / tau)  <=>  exp(nu) = 1 / tau  <=>  nu = -ln(tau)
        nu = torch.tensor([-math.log(tau) for tau in frames], dtype=torch.float64)
        self.nu.copy_(nu.unsqueeze(1).expand(self.channels, self.features))

    def log_decay(self) -> Tensor:
        """``ln a`` (M, F), strictly negative."""
        # nu in [-20, 20] (time constants e^-20 .. e^20 frames) keeps exp(nu) finite, so that
        # t * ln(a) never meets 0 * inf.
        return -torch.exp(self.nu.clamp(-20.0, 20.0))

    def time_constants_s(self) -> Tensor:
        """Current time constants ``-1 / (ln a * frame_rate)`` in seconds, (M, F)."""
        return -1.0 / (self.log_decay().detach() * self.frame_rate)

    def forward(self, u: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Frames (B, M, n, F) from ``state`` (B, M, F) (None: zeros) -> (s, new state)."""
        if u.dim() != 4 or u.shape[1] != self.channels or u.shape[3] != self.features:
            raise ValueError(
                f"DiagonalDecay expects input (batch, {self.channels}, frames, {self.features}), "
                f"got shape {list(u.shape)}"
            )
        return decay_scan(u, self.log_decay(), state)

    def step(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame (B, M, F) of the recursion: ``s = a * state + (1 - a) * u``; returns (s, s)."""
        log_a = self.log_decay()
        s = torch.exp(log_a) * state - torch.expm1(log_a) * u
        return s, s

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, features={self.features}, "
            f"time_constants_s=[{self.min_s:g} .. {self.max_s:g}]"
        )


class DiagonalSums(nn.Module):
    """``out_o = sum_i D_oi(x_i)`` for ``outputs`` outputs of ``inputs`` inputs, each ``D`` a
    diagonal layer (``layers[o * inputs + i]``; only each sum's first layer has a bias)."""

    def __init__(self, make_layer: Callable[[bool], nn.Module], inputs: int, outputs: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.outputs = outputs
        self.layers = nn.ModuleList(make_layer(n % inputs == 0) for n in range(inputs * outputs))

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        """``inputs`` tensors (..., F) -> ``outputs`` tensors (..., F)."""
        sums: list[Tensor] = []
        for n, layer in enumerate(self.layers):
            if n % self.inputs == 0:
                sums.append(layer(x[0]))
            else:
                sums[-1] = layer(x[n % self.inputs], add=sums[-1])
        return sums

    def extra_repr(self) -> str:
        return f"inputs={self.inputs}, outputs={self.outputs}"


class RecurrentBlock(nn.Module):
    """Residual diagonal memory: ``h_j + act(sum_m C_jm(s_m))`` with ``s_m`` the decaying
    recurrence of ``u_m = sum_i B_mi(h_i)`` (gated: times ``sigmoid(sum_i G_mi(h_i))``).

    Every map is a :class:`DiagonalSums` of layers from ``make_layer(bias)``, acting on the
    frequency axis; hidden signals travel as lists of (B, n, F) tensors as in
    :class:`audiodiag.model.DiagonalBlock`.

    Args:
        make_layer: builds one diagonal layer; its argument says whether it has a bias.
        channels: hidden signals in and out (``C``).
        memory_channels: recurrent states per bin (``M``).
        features: bins.
        frame_rate: frames per second.
        min_s, max_s: initial time constants (seconds), log-uniform over the memory channels.
        gate: multiply the input by an input-dependent sigmoid gate (GLU-style).
        activation: applied to the output map's sums before the residual addition.
    """

    def __init__(
        self,
        make_layer: Callable[[bool], nn.Module],
        channels: int,
        memory_channels: int,
        features: int,
        frame_rate: float,
        min_s: float = 0.02,
        max_s: float = 2.0,
        gate: bool = False,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
        self.channels = channels
        self.memory_channels = memory_channels
        self.gated = bool(gate)
        self.decay = DiagonalDecay(memory_channels, features, frame_rate, min_s, max_s)
        self.in_map = DiagonalSums(make_layer, channels, memory_channels)
        self.gate_map = DiagonalSums(make_layer, channels, memory_channels if gate else 0)
        self.out_map = DiagonalSums(make_layer, memory_channels, channels)
        self.activation = activation if activation is not None else nn.SiLU()
        self.reset_parameters()

    def diagonal_layers(self) -> list[nn.Module]:
        """Every diagonal layer of the block (input, gate and output maps)."""
        return [*self.in_map.layers, *self.gate_map.layers, *self.out_map.layers]

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Input and gate maps uniform in +-1/sqrt(C) per bin (like ``nn.Linear``), output map
        zero (the block starts as the identity), decays back to their log-uniform spread."""
        features = self.decay.features
        bound = 1.0 / math.sqrt(self.channels)
        for layer in [*self.in_map.layers, *self.gate_map.layers]:
            weight = (torch.rand(features, generator=generator) * 2 - 1) * bound
            set_diagonal(layer, weight, torch.zeros(features))
        for layer in self.out_map.layers:
            set_diagonal(layer, torch.zeros(features), torch.zeros(features))
        self.decay.reset_parameters()

    def initial_state(self, batch: int, like: Tensor) -> Tensor:
        """Zero memory (B, M, F) before the first frame, on ``like``'s device and dtype."""
        return like.new_zeros(batch, self.memory_channels, self.decay.features)

    def _memory_input(self, h: list[Tensor]) -> Tensor:
        """``u_m`` (gated) for every memory channel, stacked at dim 1: (B, M, ...)."""
        u = self.in_map(h)
        if self.gated:
            gates = self.gate_map(h)
            u = [u[m] * torch.sigmoid(gates[m]) for m in range(self.memory_channels)]
        return torch.stack(u, dim=1)

    def _output(self, h: list[Tensor], memory: Tensor) -> list[Tensor]:
        """``h_j + act(sum_m C_jm(s_m))`` from the memory stacked at dim 1."""
        sums = self.out_map(list(memory.unbind(1)))
        return [h[j] + self.activation(sums[j]) for j in range(self.channels)]

    def chunk(self, h: list[Tensor], state: Tensor | None) -> tuple[list[Tensor], Tensor]:
        """Consecutive frames ``h`` (C tensors (B, n, F)) continuing from ``state`` (None: zero
        memory). Returns (C outputs (B, n, F), new state (B, M, F)); chunks fed in order equal
        one call on all frames."""
        memory, new_state = self.decay(self._memory_input(h), state)
        return self._output(h, memory), new_state

    def forward(self, h: list[Tensor]) -> list[Tensor]:
        """Whole-clip outputs from zero memory."""
        return self.chunk(h, None)[0]

    def step(self, h: list[Tensor], state: Tensor) -> tuple[list[Tensor], Tensor]:
        """One frame by the plain recursion (no FFT): ``h`` as C tensors (B, F) -> (C outputs
        (B, F), new state (B, M, F))."""
        memory, new_state = self.decay.step(self._memory_input(h), state)
        return self._output(h, memory), new_state

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, memory_channels={self.memory_channels}, gate={self.gated}"
        )
