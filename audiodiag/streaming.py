"""Block-by-block (real-time) processing with a causal :class:`audiodiag.model.GainNet`.

A causal GainNet is frame-recursive (see :meth:`GainNet.gains_chunk`): frame ``t`` covers input
samples ``[t*hop - (n_fft - hop), (t+1)*hop)``, the features use running statistics and the
blocks look back only. :class:`StreamingEnhancer` keeps that recursion's state, the input samples
not yet framed, and the overlap-add tail, so any sequence of blocks (any sizes, not necessarily
multiples of the hop) reproduces the offline ``net(waveform)`` to float rounding (~1e-6).

Two ways to read the output:

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

from __future__ import annotations

import torch
from torch import Tensor

from audiodiag.model import GainNet

__all__ = ["StreamingEnhancer", "align"]


def align(stream: Tensor, latency_samples: int, length: int) -> Tensor:
    """Cut the delayed stream of :meth:`StreamingEnhancer.process` (+ flush) back to the
    offline output: drop the first ``latency_samples`` samples and keep ``length``."""
    if stream.shape[-1] < latency_samples + length:
        raise ValueError(
            f"align: stream has {stream.shape[-1]} samples, fewer than latency_samples "
            f"({latency_samples}) + length ({length}); did you call flush()?"
        )
    return stream[..., latency_samples : latency_samples + length]


class StreamingEnhancer:
    """Stateful block processor around a causal GainNet.

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
        self._state: list[Tensor] | None = None
        self._pending = torch.zeros(0)
        self._tail = torch.zeros(0)
        self._position = 0  # padded-signal index of the next output sample to finish
        self._received = 0
        self._emitted = 0
        self._queue = torch.zeros(0)
        self._finished = False
        self._mode: str | None = None  # "fixed" (process) or "ready" (process_ready)
        self._one_channel = True

    def _start(self, block: Tensor) -> None:
        channels = block.shape[0]
        like = torch.zeros(channels, 1, dtype=block.dtype, device=block.device)
        self._channels = channels
        self._state = self.net.initial_state(channels, like)
        left = self.n_fft - self.hop_length
        self._pending = block.new_zeros(channels, left)
        self._tail = block.new_zeros(channels, left)
        # Fixed-latency output starts with latency_samples of silence; ready output queues nothing.
        delay = self.latency_samples if self._mode == "fixed" else 0
        self._queue = block.new_zeros(channels, delay)

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
    def _consume(self, samples: Tensor) -> Tensor:
        """Append input (C, n); run every complete frame; return the newly final output."""
        net = self.net
        hop, n_fft = self.hop_length, self.n_fft
        self._pending = torch.cat([self._pending, samples], dim=-1)
        available = self._pending.shape[-1]
        if available < n_fft:
            return samples.new_zeros(samples.shape[0], 0)
        count = (available - n_fft) // hop + 1
        used = (count - 1) * hop + n_fft
        assert self._state is not None
        spec = net.stft.frames_to_spec(self._pending[:, :used])
        gains, self._state = net.gains_chunk(spec, self._state)
        summed = net.stft.overlap_add(net.stft.synthesis_frames(spec * gains))
        overlap = n_fft - hop
        summed[:, :overlap] += self._tail
        final = summed[:, : count * hop]
        self._tail = summed[:, count * hop :]
        self._pending = self._pending[:, count * hop :]
        start = self._position
        self._position += count * hop
        final = final / net.stft.envelope_for(start, count * hop)
        # Positions before the left padding's end are not output samples.
        skip = max(0, overlap - start)
        return final[:, skip:]

    @staticmethod
    def _shape_like(out: Tensor, one_channel: bool) -> Tensor:
        return out[0] if one_channel else out

    def process_ready(self, block: Tensor) -> Tensor:
        """Feed a block; return every output sample that became final (possibly none)."""
        block2 = self._as_2d(block, "ready")
        self._received += block2.shape[-1]
        ready = self._consume(block2)
        self._emitted += ready.shape[-1]
        return self._shape_like(ready, self._one_channel)

    def process(self, block: Tensor) -> Tensor:
        """Feed a block; return exactly ``len(block)`` samples of the output delayed by
        :attr:`latency_samples`."""
        block2 = self._as_2d(block, "fixed")
        self._received += block2.shape[-1]
        ready = self._consume(block2)
        self._emitted += ready.shape[-1]
        self._queue = torch.cat([self._queue, ready], dim=-1)
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
        return self._shape_like(out, self._one_channel)

    def flush(self, block: Tensor | None = None) -> Tensor:
        """End the stream: take an optional last block of any size, run the last frames (zero
        padded like the offline model) and return the remaining output. After :meth:`process`
        this is the delayed tail (queued samples included); after :meth:`process_ready` the
        remaining final samples."""
        if self._finished:
            raise RuntimeError("StreamingEnhancer: flush() called twice; call reset() first")
        if block is not None:
            block2 = self._as_2d(block, self._mode or "ready")
            self._received += block2.shape[-1]
            ready = self._consume(block2)
            self._emitted += ready.shape[-1]
            self._queue = torch.cat([self._queue, ready], dim=-1)
        self._finished = True
        if self._channels is None:
            return torch.zeros(0)
        left = self.n_fft - self.hop_length
        frames = -(-(left + self._received) // self.hop_length)
        padded_total = (frames - 1) * self.hop_length + self.n_fft
        missing = padded_total - (left + self._received)
        ready = self._consume(self._pending.new_zeros(self._pending.shape[0], missing))
        ready = ready[:, : max(0, self._received - self._emitted)]
        self._emitted += ready.shape[-1]
        out = torch.cat([self._queue, ready], dim=-1)
        self._queue = out[:, :0]
        return self._shape_like(out, self._one_channel)
