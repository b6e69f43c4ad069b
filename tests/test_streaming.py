"""StreamingEnhancer: block-by-block output equals the offline causal GainNet."""

from __future__ import annotations

import pytest
import torch

from audiodiag.model import GainNet
from audiodiag.streaming import StreamingEnhancer, align


@pytest.fixture(scope="module")
def net() -> GainNet:
    torch.manual_seed(0)
    model = GainNet(depth=2, context=3, norm_window_s=0.3, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def signal() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12001, generator=g) * 0.1
    x[4000:6000] *= 5.0  # a level change, so the running statistics matter
    return x


@pytest.mark.parametrize("block", [1, 37, 160, 256, 800, 1600])
def test_ready_stream_equals_offline(net: GainNet, signal: torch.Tensor, block: int) -> None:
    if block == 1:
        signal = signal[:2500]  # one call per sample: keep it short
    stream = StreamingEnhancer(net)
    pieces = [stream.process_ready(signal[i : i + block]) for i in range(0, signal.numel(), block)]
    out = torch.cat(pieces + [stream.flush()])
    with torch.no_grad():
        reference = net(signal)
    assert out.shape == signal.shape
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("block", [128, 160, 1600])
def test_fixed_latency_stream(net: GainNet, signal: torch.Tensor, block: int) -> None:
    stream = StreamingEnhancer(net, block_size=block)
    expected_latency = 512 - 128 if block % 128 == 0 else 511
    assert stream.latency_samples == expected_latency
    assert stream.algorithmic_latency_samples == 384
    whole = signal.numel() // block * block
    outs = []
    for i in range(0, whole, block):
        out = stream.process(signal[i : i + block])
        assert out.shape == (block,)
        outs.append(out)
    outs.append(stream.flush(signal[whole:]))
    stream_out = torch.cat(outs)
    assert stream_out.numel() == signal.numel() + stream.latency_samples
    # The first latency_samples samples are silence: the delay.
    assert stream_out[: stream.latency_samples].abs().max() == 0
    with torch.no_grad():
        reference = net(signal)
    aligned = align(stream_out, stream.latency_samples, signal.numel())
    torch.testing.assert_close(aligned, reference, atol=1e-4, rtol=0)


def test_multichannel_and_reset(net: GainNet) -> None:
    x = torch.randn(2, 5000) * 0.1
    stream = StreamingEnhancer(net)
    for _ in range(2):  # the second pass checks that reset() forgets everything
        out = torch.cat(
            [stream.process_ready(x[:, i : i + 300]) for i in range(0, 5000, 300)]
            + [stream.flush()],
            dim=-1,
        )
        with torch.no_grad():
            torch.testing.assert_close(out, net(x), atol=1e-4, rtol=0)
        stream.reset()


def test_misuse_is_refused(net: GainNet) -> None:
    with pytest.raises(ValueError, match="causal"):
        StreamingEnhancer(GainNet(causal=False, depth=1, context=1))
    stream = StreamingEnhancer(net)
    stream.process_ready(torch.zeros(100))
    with pytest.raises(ValueError, match="channels"):
        stream.process_ready(torch.zeros(2, 100))
    with pytest.raises(RuntimeError, match="process"):
        stream.process(torch.zeros(100))
    stream.flush()
    with pytest.raises(RuntimeError, match="flush"):
        stream.flush()
    aligned_stream = StreamingEnhancer(net, block_size=256)
    aligned_stream.process(torch.zeros(256))
    aligned_stream.process(torch.zeros(100))  # still covered by the queued delay
    with pytest.raises(RuntimeError, match="multiple of 128"):
        aligned_stream.process(torch.zeros(256))


def test_silence_and_tiny_stream(net: GainNet) -> None:
    stream = StreamingEnhancer(net)
    out = torch.cat([stream.process_ready(torch.zeros(3)), stream.flush()])
    assert out.shape == (3,) and torch.isfinite(out).all() and out.abs().max() == 0
    empty = StreamingEnhancer(net)
    assert empty.flush().numel() == 0


def test_exported_and_eager_streaming_are_one_recursion(models: dict) -> None:
    # The exported file's stream_* methods and StreamingEnhancer run the same StreamCore: the
    # same blocks give the same samples (TorchScript may only reorder float operations).
    import warnings

    from audiodiag.export import ExportedEnhancer, exportable_net
    from audiodiag.loading import STREAM_METHODS, load_checkpoint

    net = exportable_net(load_checkpoint(models["ckpt"])[0])  # the layer form the file holds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(models["exported"]))
    assert isinstance(ExportedEnhancer(net), StreamingEnhancer(net).core.__class__)
    assert all(hasattr(scripted, name) for name in STREAM_METHODS)  # what the loader looks for
    x = torch.randn(2, 7001, generator=torch.Generator().manual_seed(5)) * 0.1
    eager = StreamingEnhancer(net)
    state = scripted.stream_init(2)
    ours, theirs = [], []
    for start in range(0, x.shape[1], 333):
        block = x[:, start : start + 333]
        ours.append(eager.process_ready(block))
        out, state = scripted.stream_process(block, state)
        theirs.append(out)
    ours.append(eager.flush())
    theirs.append(scripted.stream_flush(state))
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    torch.testing.assert_close(torch.cat(ours, 1), torch.cat(theirs, 1), atol=1e-6, rtol=0)
