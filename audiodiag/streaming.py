"""Block-by-block (real-time) processing with a causal :class:`audiodiag.model.GainNet`.

A causal GainNet is frame-recursive (see :meth:`GainNet.gains_chunk`): frame ``t`` covers input
samples ``[t*hop - (n_fft - hop), (t+1)*hop)``, the features use running statistics and the
blocks look back only. :class:`StreamCore` is that recursion for waveforms, written once as pure
functions of an explicit ``List[Tensor]`` state (the net's state, the input samples not yet
framed, the overlap-add tail, and counters): TorchScript compiles it, so the exported file
(:class:`audiodiag.export.ExportedEnhancer` is a StreamCore) and the eager
:class:`StreamingEnhancer` run the same code. Any sequence of blocks (any sizes, not necessarily
multiples of the hop) reproduces the offline ``net(waveform)`` to float rounding (~1e-6).

Two ways to read the eager output:

* :meth:`StreamingEnhancer.process` returns exactly ``len(block)`` samples, the offline output
  delayed by :attr:`StreamingEnhancer.latency_samples` (zeros first); what an audio callback needs.
  Use :func:`align` to line the concatenated stream up with the offline output.
* :meth:`StreamingEnhancer.process_ready` returns every sample that became final (any count,
  possibly none); concatenated with :meth:`flush` it *is* the offline output, no delay to remove.

Latency: a sample can be output once every frame overlapping it has been seen, i.e.
``n_fft - hop_length`` samples after it arrives when blocks are whole hops (24 ms at 16 kHz with
512/128), up to ``n_fft - 1`` samples (32 ms) for arbitrary block sizes; the block size itself
adds its own buffering on top, as in any block processor.
"""

# GainNet's attributes are read through nn.Module.__getattr__, typed "Tensor | Module" for mypy.
# mypy: disable-error-code="union-attr,operator,arg-type"
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiodiag.model import GainNet

__all__ = ["StreamCore", "StreamingEnhancer", "align"]


def align(stream: Tensor, latency_samples: int, length: int) -> Tensor:
    """Cut the delayed stream of :meth:`StreamingEnhancer.process` (+ flush) back to the
    offline output: drop the first ``latency_samples`` samples and keep ``length``."""
    if stream.shape[-1] < latency_samples + length:
        raise ValueError(
            f"align: stream has {stream.shape[-1]} samples, fewer than latency_samples "
            f"({latency_samples}) + length ({length}); did you call flush()?"
        )
    return stream[..., latency_samples : latency_samples + length]


class StreamCore(nn.Module):
    """The streaming recursion of a causal GainNet as pure functions of a ``List[Tensor]``.

    State (from :meth:`initial_state`): the net's state (:meth:`GainNet.initial_state`), input
    samples not yet framed (B, m), the overlap-add tail (B, n_fft - hop), and the counters
    ``[samples in, frames done, samples out]``. :meth:`consume` feeds samples, :meth:`finish`
    ends the stream; concatenated, their outputs equal ``net(waveform)``. A non-causal net can
    be wrapped (the exported file carries one) but refuses :meth:`initial_state`.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.n_fft = int(net.n_fft)
        self.hop_length = int(net.hop_length)
        self.left_pad = self.n_fft - self.hop_length
        self.causal = bool(net.causal)
        # Measured from the net, so new state in the net (recurrences) needs no change here.
        self.net_state_size = len(net.initial_state(1, torch.zeros(1))) if self.causal else 0

    def initial_state(self, like: Tensor) -> list[Tensor]:
        """A fresh state for ``like.shape[0]`` channels, on ``like``'s device and dtype."""
        if not self.causal:
            raise RuntimeError("block processing needs a causal model (causal=True)")
        batch = like.shape[0]
        state = self.net.initial_state(batch, like)
        state.append(like.new_zeros(batch, self.left_pad))
        state.append(like.new_zeros(batch, self.left_pad))
        state.append(torch.zeros(3, dtype=torch.long))
        return state

    def consume(self, samples: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Append input (B, n); run every complete frame; return (newly final output, state)."""
        size = self.net_state_size
        pending = torch.cat([state[size], samples.to(state[size].dtype)], dim=1)
        tail = state[size + 1]
        counters = state[size + 2].clone()
        counters[0] = int(counters[0]) + samples.shape[1]
        available = pending.shape[1]
        if available < self.n_fft:
            return pending.new_zeros(pending.shape[0], 0), state[:size] + [pending, tail, counters]
        hop = self.hop_length
        count = (available - self.n_fft) // hop + 1
        used = (count - 1) * hop + self.n_fft
        stft = self.net.stft
        spec = stft.frames_to_spec(pending[:, :used])
        gains, net_state = self.net.gains_chunk(spec, state[:size])
        summed = stft.overlap_add(stft.synthesis_frames(spec * gains))
        summed = torch.cat([summed[:, : self.left_pad] + tail, summed[:, self.left_pad :]], dim=1)
        start = int(counters[1]) * hop
        final = summed[:, : count * hop] / stft.envelope_for(start, count * hop)
        # Positions before the left padding's end are not output samples.
        final = final[:, max(0, self.left_pad - start) :]
        counters[1] = int(counters[1]) + count
        counters[2] = int(counters[2]) + final.shape[1]
        new_state = net_state + [pending[:, count * hop :], summed[:, count * hop :], counters]
        return final, new_state

    def finish(self, state: list[Tensor]) -> Tensor:
        """End of input: run the last frames (zero padded like ``forward``), return the rest."""
        size = self.net_state_size
        counters = state[size + 2]
        received = int(counters[0])
        if received == 0:
            return state[size].new_zeros(state[size].shape[0], 0)
        hop = self.hop_length
        frames = (self.left_pad + received + hop - 1) // hop
        missing = (frames - 1) * hop + self.n_fft - (self.left_pad + received)
        zeros = state[size].new_zeros(state[size].shape[0], missing)
        final, new_state = self.consume(zeros, state)
        emitted = int(counters[2])
        return final[:, : max(0, received - emitted)]


class StreamingEnhancer:
    """Stateful block processor around a causal GainNet (a :class:`StreamCore` and its state).

    Args:
        net: a GainNet built with ``causal=True`` (it is put in eval mode; weights are shared,
            not copied).
        block_size: the block size you will use, if fixed; when it is a multiple of the hop the
            fixed latency is ``n_fft - hop_length`` instead of ``n_fft - 1``.

    Blocks are (T_block,) for one channel or (channels, T_block) with the same channel count on
    every call. Call :meth:`flush` at the end of the stream, then :meth:`reset` to start another.
    """

    def __init__(self, net: GainNet, block_size: int | None = None) -> None:
        if not isinstance(net, GainNet):
            raise TypeError(f"StreamingEnhancer needs a GainNet, got {type(net).__name__}")
        if not net.causal:
            raise ValueError(
                "StreamingEnhancer needs a causal GainNet (causal=True); a non-causal net uses "
                "whole-clip statistics and look-ahead, which cannot be streamed"
            )
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size={block_size} must be >= 1")
        self.net = net.eval()
        self.core = StreamCore(self.net)
        self.n_fft = net.n_fft
        self.hop_length = net.hop_length
        self.block_size = block_size
        aligned = block_size is not None and block_size % net.hop_length == 0
        self.latency_samples = net.n_fft - net.hop_length if aligned else net.n_fft - 1
        self.reset()

    @property
    def algorithmic_latency_samples(self) -> int:
        """Look-ahead of the framing for hop-aligned blocks: n_fft - hop_length samples."""
        return self.n_fft - self.hop_length

    def reset(self) -> None:
        """Forget the stream: the next block starts a new one."""
        self._channels: int | None = None
        self._state: list[Tensor] = []
        self._queue = torch.zeros(0)
        self._finished = False
        self._mode: str | None = None  # "fixed" (process) or "ready" (process_ready)
        self._one_channel = True

    def _start(self, block: Tensor) -> None:
        self._channels = block.shape[0]
        self._state = self.core.initial_state(block.new_zeros(self._channels, 1))
        # Fixed-latency output starts with latency_samples of silence; ready output queues nothing.
        delay = self.latency_samples if self._mode == "fixed" else 0
        self._queue = block.new_zeros(self._channels, delay)

    def _as_2d(self, block: Tensor, mode: str) -> Tensor:
        if not isinstance(block, Tensor) or not block.is_floating_point():
            raise TypeError("StreamingEnhancer: a block must be a floating-point torch.Tensor")
        if self._mode is None:
            self._mode = mode
            self._one_channel = block.dim() == 1
        elif self._mode != mode:
            raise RuntimeError(
                "StreamingEnhancer: use either process() or process_ready() within one stream"
            )
        if block.dim() == 1:
            block = block.unsqueeze(0)
        elif block.dim() != 2:
            raise ValueError(
                f"StreamingEnhancer: a block must be (T_block,) or (channels, T_block), "
                f"got {tuple(block.shape)}"
            )
        if self._finished:
            raise RuntimeError("StreamingEnhancer: stream already flushed; call reset() first")
        if self._channels is None:
            self._start(block)
        elif block.shape[0] != self._channels:
            raise ValueError(
                f"StreamingEnhancer: block has {block.shape[0]} channels, the stream has "
                f"{self._channels}"
            )
        return block

    @torch.no_grad()
    def _consume(self, block: Tensor) -> Tensor:
        ready, self._state = self.core.consume(block, self._state)
        return ready

    def _shaped(self, out: Tensor) -> Tensor:
        return out[0] if self._one_channel else out

    def process_ready(self, block: Tensor) -> Tensor:
        """Feed a block; return every output sample that became final (possibly none)."""
        return self._shaped(self._consume(self._as_2d(block, "ready")))

    def process(self, block: Tensor) -> Tensor:
        """Feed a block; return exactly ``len(block)`` samples of the output delayed by
        :attr:`latency_samples`."""
        block2 = self._as_2d(block, "fixed")
        self._queue = torch.cat([self._queue, self._consume(block2)], dim=-1)
        size = block2.shape[-1]
        if self._queue.shape[-1] < size:
            raise RuntimeError(
                f"StreamingEnhancer: latency_samples={self.latency_samples} is too small for "
                f"a block of {size} samples: with a hop-aligned block_size every block must be a "
                f"multiple of {self.hop_length} (give a short last block to flush()), or "
                "construct it with block_size=None"
            )
        out = self._queue[:, :size]
        self._queue = self._queue[:, size:]
        return self._shaped(out)

    def flush(self, block: Tensor | None = None) -> Tensor:
        """End the stream: take an optional last block of any size, run the last frames (zero
        padded like the offline model) and return the remaining output. After :meth:`process`
        this is the delayed tail (queued samples included); after :meth:`process_ready` the
        remaining final samples."""
        if self._finished:
            raise RuntimeError("StreamingEnhancer: flush() called twice; call reset() first")
        if block is not None:
            block2 = self._as_2d(block, self._mode or "ready")
            self._queue = torch.cat([self._queue, self._consume(block2)], dim=-1)
        self._finished = True
        if self._channels is None:
            return torch.zeros(0)
        with torch.no_grad():
            rest = self.core.finish(self._state)
        out = torch.cat([self._queue, rest], dim=-1)
        self._queue = out[:, :0]
        return self._shaped(out)
