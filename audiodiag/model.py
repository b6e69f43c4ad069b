"""GainNet: a waveform-to-waveform speech enhancer that learns one gain per time-frequency bin
from that bin's own recent history, using only diagonal (per-frequency-bin) layers.

::

    waveform ─STFT─> X (B, F, N) ─> per-bin features (B, N, 2, F)
        ─> depth x [ h_j <- act( sum_{i<C_in, k<context} D_{j,i,k}(h_i[t - k]) ) (+ h_j) ]
        ─> (memory="recurrent") h_j <- h_j + act( sum_m C_jm(s_m) ),
               s_m[t] = a_m s_m[t-1] + (1 - a_m) sum_i B_mi(h_i[t])   (per bin, learned a_m)
        ─> z = sum_j D_j(h_j) ─> gain = floor + (1 - floor) * sigmoid(z)   (B, F, N)
        ─> gain * X ─iSTFT─> enhanced waveform (same length as the input)

Every ``D`` is one diagonal layer from :mod:`audiodiag.layers` acting on the frequency axis, so
the gain of bin ``f`` depends on bin ``f`` only (neighbours too when ``bandwidth > 0``). The
``channels`` hidden signals per bin are separate tensors combined by sums of diagonal layers, i.e.
a per-bin temporal convolution with untied weights across bins, never a dense layer over bins.
Two measured options widen that: ``rank > 0`` adds a low-rank ``U V^T`` to diagonal layers (all
bins share ``rank`` directions), and ``memory="recurrent"`` adds a diagonal linear recurrence
(:mod:`audiodiag.recurrence`) with time constants from tens of ms to seconds, trained in parallel
over time and streamed with its state. The recurrence is causal in both modes.

In causal mode (the default) everything is causal and frame-recursive: analysis frames end at
the current hop, features use running statistics, and the temporal context looks back only.
:meth:`GainNet.gains_chunk` exposes that recursion with an explicit state (what
:mod:`audiodiag.streaming` runs); the whole-clip forward computes the same thing with zero
history, and the tests hold the two equal for any chunking.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from audiodiag.features import PerBinFeatures, SpectralGainEnhancer, StftFrontEnd
from audiodiag.layers import (
    IMPLEMENTATIONS,
    DiagonalLinear,
    count_parameters,
    make_diagonal,
    set_diagonal,
)
from audiodiag.recurrence import RecurrentBlock

__all__ = ["GainNet", "ACTIVATIONS", "MEMORIES", "RANK_SCOPES"]

ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}
#: ``memory`` values: no recurrence, or one :class:`audiodiag.recurrence.RecurrentBlock`.
MEMORIES = ("none", "recurrent")
#: ``rank_scope`` values: which diagonal layers get the low-rank part.
RANK_SCOPES = ("sum", "all")


def _fold_biases(state_dict: dict, prefix: str, groups: list[list[int]]) -> None:
    """Fold a bias stored on every layer of a sum into the sum's first layer (in place).

    Checkpoints written before each sum had a single bias carry one per layer; their sum is the
    same function, so they load unchanged. ``groups`` lists the layer indices of each sum.
    """
    for group in groups:
        first = f"{prefix}{group[0]}.bias"
        for index in group[1:]:
            key = f"{prefix}{index}.bias"
            if key in state_dict and first in state_dict:
                state_dict[first] = state_dict[first] + state_dict.pop(key)


class DiagonalBlock(nn.Module):
    """One block: ``out_j = act(sum_{i, k} D_{j,i,k}(h_i[t - k]))`` (+ ``h_j`` when residual).

    ``layers[j * in_channels * context + i * context + k]`` is ``D_{j,i,k}``, a diagonal layer on
    the frequency axis; only ``D_{j,0,0}`` has a bias (one per output: the others would add up to
    the same thing). Each output's sum accumulates through the layers' ``add=`` argument, and the
    hidden signals travel as one (B, n, F) tensor per channel, so bins stay contiguous and no
    stack/unbind copies are made, forward or backward.
    """

    def __init__(
        self,
        make_layer: Callable[[bool], nn.Module],
        in_channels: int,
        out_channels: int,
        context: int,
        activation: nn.Module,
        residual: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.context = context
        self.residual = residual and in_channels == out_channels
        self.activation = activation
        per_output = in_channels * context
        self.layers = nn.ModuleList(
            make_layer(n % per_output == 0) for n in range(out_channels * per_output)
        )

    def forward(self, padded: list[Tensor], start: int) -> list[Tensor]:
        """``padded[i]``: channel ``i`` (B, n + context - 1, F) with its context frames around
        it; frame ``t`` of the block's own input is ``padded[i][:, start + t]``. Returns the
        ``out_channels`` outputs, each (B, n, F)."""
        count = padded[0].shape[1] - (self.context - 1)
        taps: list[Tensor] = []
        for i in range(self.in_channels):
            for k in range(self.context):
                # Lag k reads padded[t + context-1-k]; slices are views, no copies.
                first = self.context - 1 - k
                taps.append(padded[i][:, first : first + count])
        per_output = self.in_channels * self.context
        sums: list[Tensor] = []
        for n, layer in enumerate(self.layers):
            if n % per_output == 0:
                sums.append(layer(taps[0]))
            else:
                sums[-1] = layer(taps[n % per_output], add=sums[-1])
        outs: list[Tensor] = []
        for j in range(self.out_channels):
            out = self.activation(sums[j])
            if self.residual:
                out = out + padded[j][:, start : start + count]
            outs.append(out)
        return outs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        per_output = self.in_channels * self.context
        groups = [
            list(range(j * per_output, (j + 1) * per_output)) for j in range(self.out_channels)
        ]
        _fold_biases(state_dict, prefix + "layers.", groups)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"context={self.context}, residual={self.residual}"
        )


class GainNet(SpectralGainEnhancer):
    """Per-bin temporal gain network (see the module docstring).

    Args:
        layer: diagonal layer implementation, one of :data:`audiodiag.layers.IMPLEMENTATIONS`.
        sample_rate: sample rate in Hz the model works at (stored; input is not resampled).
        n_fft: FFT size; the network has ``n_fft // 2 + 1`` bins.
        hop_length: STFT hop in samples.
        window: analysis/synthesis window name (see :class:`StftFrontEnd`).
        depth: number of blocks (>= 1).
        context: frames of history each block mixes per bin (>= 1).
        channels: hidden signals per bin (>= 1).
        causal: causal framing, running-statistics features and look-back context (True), or
            whole-clip features and centred context (False).
        gain_floor_db: lowest gain in dB (< 0), e.g. -25.
        bandwidth: off-diagonals of every diagonal layer (0: bins never mix).
        activation: ``tanh``, ``gelu``, ``silu`` or ``relu``.
        residual: add each block's input to its output when the channel counts match.
        norm_window_s, floor_rise_db_per_s, smoothing_frames: feature settings,
            see :class:`audiodiag.features.PerBinFeatures`.
        initial_gain: gain of the untrained net (in (floor, 1)); near 1 passes audio through.
        seed: seed of the weight initialisation (None: the global RNG).
        rank: low-rank part ``U V^T`` of rank ``rank`` on diagonal layers (0: none; see
            :mod:`audiodiag.layers`). It starts at zero, so the untrained net is unchanged.
        rank_scope: ``sum``: on the first layer of every sum (one per block output, memory map
            output and the head: cheap); ``all``: on every diagonal layer.
        memory: ``none``, or ``recurrent``: a residual diagonal recurrence after the blocks
            (:class:`audiodiag.recurrence.RecurrentBlock`); its output map starts at zero, so the
            untrained net is the same function as without it. Streams with its state.
        memory_channels: recurrent states per bin and frame.
        memory_min_s, memory_max_s: initial time constants of the states in seconds,
            log-uniform from the shortest to the longest (learned per bin afterwards).
        memory_gate: gate the recurrence's input by a sigmoid of the hidden signals.
    """

    # Python-only conveniences that TorchScript should not try to compile.
    __jit_unused_properties__ = ["num_parameters", "num_diagonal_layers", "frame_rate"]

    def __init__(
        self,
        layer: str = "elementwise",
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int = 128,
        window: str = "hann",
        depth: int = 3,
        context: int = 2,
        channels: int = 2,
        causal: bool = True,
        gain_floor_db: float = -25.0,
        bandwidth: int = 0,
        activation: str = "silu",
        residual: bool = True,
        norm_window_s: float = 2.0,
        floor_rise_db_per_s: float = 3.0,
        smoothing_frames: int = 4,
        initial_gain: float = 0.8,
        seed: int | None = 0,
        rank: int = 0,
        rank_scope: str = "sum",
        memory: str = "none",
        memory_channels: int = 4,
        memory_min_s: float = 0.02,
        memory_max_s: float = 2.0,
        memory_gate: bool = False,
    ) -> None:
        super().__init__()
        if layer not in IMPLEMENTATIONS:
            raise ValueError(f"layer={layer!r} is not one of {', '.join(IMPLEMENTATIONS)}")
        for name, value in (("depth", depth), ("context", context), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate={sample_rate} must be > 0")
        if not gain_floor_db < 0:
            raise ValueError(f"gain_floor_db={gain_floor_db} must be < 0 (a gain below 1)")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}")
        if bandwidth < 0:
            raise ValueError(f"bandwidth={bandwidth} must be >= 0")
        if not isinstance(rank, int) or rank < 0:
            raise ValueError(f"rank={rank!r} must be an integer >= 0")
        if rank_scope not in RANK_SCOPES:
            raise ValueError(f"rank_scope={rank_scope!r} is not one of {', '.join(RANK_SCOPES)}")
        if memory not in MEMORIES:
            raise ValueError(f"memory={memory!r} is not one of {', '.join(MEMORIES)}")
        if not isinstance(memory_channels, int) or memory_channels < 1:
            raise ValueError(f"memory_channels={memory_channels!r} must be an integer >= 1")
        if not 0 < memory_min_s <= memory_max_s:
            raise ValueError(
                f"memory time constants need 0 < memory_min_s <= memory_max_s, got "
                f"{memory_min_s} and {memory_max_s}"
            )
        gain_floor = 10.0 ** (gain_floor_db / 20.0)
        if not gain_floor < initial_gain < 1.0:
            raise ValueError(f"initial_gain={initial_gain} must lie in ({gain_floor:.4f}, 1)")

        self.layer = layer
        self.sample_rate = int(sample_rate)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.depth = depth
        self.context = context
        self.channels = channels
        self.causal = causal
        self.gain_floor_db = float(gain_floor_db)
        self.gain_floor = gain_floor
        self.bandwidth = bandwidth
        self.rank = rank
        self.rank_scope = rank_scope
        self.memory = memory
        self.memory_channels = memory_channels

        self.stft = StftFrontEnd(n_fft, hop_length, window)
        self.num_bins = self.stft.num_bins
        self.features = PerBinFeatures(
            frame_rate=sample_rate / hop_length,
            causal=causal,
            norm_window_s=norm_window_s,
            floor_rise_db_per_s=floor_rise_db_per_s,
            smoothing_frames=smoothing_frames,
            skip_frames=max(0, -(-n_fft // hop_length) - 1),
        )
        self.activation = ACTIVATIONS[activation]()
        # Frames of look-back (causal) or look-back / look-ahead (centred) of each block.
        self.left_context = context - 1 if causal else (context - 1) // 2
        self.right_context = context - 1 - self.left_context

        def diagonal(bias: bool) -> nn.Module:
            # The first layer of each sum is the one with the bias.
            layer_rank = rank if rank_scope == "all" or bias else 0
            return make_diagonal(
                layer, self.num_bins, bias=bias, bandwidth=bandwidth, rank=layer_rank
            )

        in_channels = [PerBinFeatures.num_features] + [channels] * (depth - 1)
        self.blocks = nn.ModuleList(
            DiagonalBlock(diagonal, c_in, channels, context, self.activation, residual)
            for c_in in in_channels
        )
        # A list of zero or one block: TorchScript iterates it, and has no optional submodule.
        self.memory_blocks = nn.ModuleList(
            RecurrentBlock(
                diagonal,
                channels,
                memory_channels,
                self.num_bins,
                frame_rate=sample_rate / hop_length,
                min_s=memory_min_s,
                max_s=memory_max_s,
                gate=memory_gate,
                activation=self.activation,
            )
            for _ in range(1 if memory == "recurrent" else 0)
        )
        self.head = nn.ModuleList(diagonal(j == 0) for j in range(channels))
        self.in_channels = in_channels
        self._initialise(initial_gain, seed)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        _fold_biases(state_dict, prefix + "head.", [list(range(self.channels))])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ initialisation
    def _initialise(self, initial_gain: float, seed: int | None) -> None:
        generator = torch.Generator()
        generator.manual_seed(torch.seed() if seed is None else seed)
        bins = self.num_bins
        with torch.no_grad():
            for block in self._diagonal_blocks():
                # Uniform like nn.Linear (fan-in = c_in * context), per bin and per path, so that
                # channels differ from the start.
                bound = 1.0 / math.sqrt(block.in_channels * self.context)
                for layer in block.layers:
                    weight = (torch.rand(bins, generator=generator) * 2 - 1) * bound
                    set_diagonal(layer, weight, torch.zeros(bins))
            # Start near `initial_gain` everywhere: small head weights, bias at the logit.
            target = (initial_gain - self.gain_floor) / (1.0 - self.gain_floor)
            logit = math.log(target / (1.0 - target))
            for layer in self.head:
                weight = (torch.rand(bins, generator=generator) * 2 - 1) * 0.1
                set_diagonal(layer, weight, torch.full((bins,), logit))
            # New parts draw last, so the parts above start the same with or without them.
            for memory in self.memory_blocks:
                memory.reset_parameters(generator)  # type: ignore[operator]
            for module in self.modules():
                if isinstance(module, DiagonalLinear) and module.lowrank_v is not None:
                    scale = 1.0 / math.sqrt(bins)
                    module.lowrank_v.copy_(
                        torch.randn(module.lowrank_v.shape, generator=generator) * scale
                    )

    # ------------------------------------------------------------------ core recursion
    def initial_state(self, batch: int, like: Tensor) -> list[Tensor]:
        """State before the first frame for :meth:`gains_chunk` (causal mode only).

        Feature state, one (B, context - 1, C_in, F) history per block, then the recurrent
        memory (B, memory_channels, F) when ``memory="recurrent"``.
        """
        state = self.features.initial_state(batch, self.num_bins, like)
        for c_in in self.in_channels:
            state.append(like.new_zeros(batch, self.context - 1, c_in, self.num_bins))
        for memory in self.memory_blocks:
            state.append(memory.initial_state(batch, like))  # type: ignore[operator]
        return state

    def _head(self, h: list[Tensor]) -> Tensor:
        """Channels, each (B, n, F) -> gains (B, F, n) in [floor, 1]."""
        z = self.head[0](h[0])
        for j, layer in enumerate(self.head):
            if j > 0:
                z = layer(h[j], add=z)
        gain = self.gain_floor + (1.0 - self.gain_floor) * torch.sigmoid(z)
        return gain.transpose(1, 2)

    def gains_chunk(self, spec: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Causal gains for consecutive frames (B, F, n) continuing from ``state``.

        Feeding a spectrogram chunk by chunk gives the same gains as one call on all of it;
        returns (gains (B, F, n), new state).
        """
        if not self.causal:
            raise RuntimeError("gains_chunk needs a causal GainNet (causal=True)")
        size = self.features.state_size
        features, feature_state = self.features.causal_chunk(spec, state[:size])
        new_state = feature_state
        h = list(features.unbind(2))
        history = self.context - 1
        for index, block in enumerate(self.blocks):
            past = state[size + index].unbind(2)
            padded = [torch.cat([past[i], h[i]], dim=1) for i in range(len(h))]
            tail = padded[0].shape[1] - history
            new_state.append(torch.stack([p[:, tail:] for p in padded], dim=2))
            h = block(padded, history)
        for index, memory in enumerate(self.memory_blocks):
            h, memory_state = memory.chunk(  # type: ignore[operator]
                h, state[size + len(self.blocks) + index]
            )
            new_state.append(memory_state)
        return self._head(h), new_state

    def gains_from_features(self, features: Tensor) -> Tensor:
        """Whole-clip gains (B, F, N) from features (B, N, 2, F): zero history before the first
        frame (causal) or the centred context with zero padding (offline)."""
        h = list(features.unbind(2))
        pad = (0, 0, self.left_context, self.right_context)
        for block in self.blocks:
            padded = [torch.nn.functional.pad(x, pad) if self.context > 1 else x for x in h]
            h = block(padded, self.left_context)
        for memory in self.memory_blocks:
            h = memory(h)
        return self._head(h)

    def gains_from_spec(self, spec: Tensor) -> Tensor:
        """Gains (B, F, N) for a whole complex spectrogram (B, F, N)."""
        return self.gains_from_features(self.features(spec))

    # ------------------------------------------------------------------ cost
    @property
    def num_parameters(self) -> int:
        """Trainable values, diagonal layers in their shared layout (same for all four forms)."""
        return count_parameters(self)

    @property
    def num_diagonal_layers(self) -> int:
        """Diagonal layers in the network (each costs about one multiply-add per bin and band)."""
        return sum(1 for module in self.modules() if isinstance(module, DiagonalLinear))

    def _diagonal_blocks(self) -> list[DiagonalBlock]:
        return [block for block in self.blocks if isinstance(block, DiagonalBlock)]

    @property
    def frame_rate(self) -> float:
        """STFT frames per second of audio."""
        return self.sample_rate / self.hop_length

    def macs_per_second(self) -> dict[str, float]:
        """Analytic multiply-adds per second of audio, split into transforms and network.

        ``transforms``: analysis window + real FFT, inverse real FFT + window, overlap-add,
        counting a length-n real FFT as n*log2(n) multiply-adds. ``features``: about 12 per bin
        and frame (power, log, two running means, floor track). ``network``: one per bin and band
        for every diagonal layer, plus the accumulation, activation-free count, ``2 * rank`` per
        bin for a low-rank part, and 3 per bin and memory state for the recurrence in its
        streaming form (training's parallel scan does ``log2(frames)`` times that). ``gain``: 2
        per bin (a real gain times a complex value).
        """
        n = self.n_fft
        bins = self.num_bins
        fft = n * math.log2(n)
        transforms = 2 * fft + 2 * n + n
        features = 12.0 * bins
        network = 0.0
        for module in self.modules():
            if isinstance(module, DiagonalLinear):
                network += module.features * (2 * module.bandwidth + 1 + 2 * module.rank)
        network += 3.0 * bins * len(self.memory_blocks) * self.memory_channels
        gain = 2.0 * bins + 3.0 * bins  # gain application + sigmoid/floor affine
        rate = self.frame_rate
        result = {
            "transforms": transforms * rate,
            "features": features * rate,
            "network": network * rate,
            "gain": gain * rate,
        }
        result["total"] = sum(result.values())
        return result

    def latency_samples(self) -> int:
        """Algorithmic latency of causal block processing: n_fft - hop_length samples."""
        return self.n_fft - self.hop_length

    def extra_repr(self) -> str:
        return (
            f"layer={self.layer!r}, sample_rate={self.sample_rate}, depth={self.depth}, "
            f"context={self.context}, channels={self.channels}, causal={self.causal}, "
            f"gain_floor_db={self.gain_floor_db}, bandwidth={self.bandwidth}"
            + (f", rank={self.rank}, rank_scope={self.rank_scope!r}" if self.rank else "")
            + (f", memory={self.memory!r}" if self.memory != "none" else "")
        )
