"""``compile=true``: the training step's network through ``torch.compile``.

A diagonal network is a chain of small elementwise products, sums and activations over whole
(batch, frames, bins) tensors: memory-bound, one pass over memory per op in eager PyTorch.
Inductor fuses each sum of diagonal layers into one loop, forward and backward, so the network
of the default model trains twice as fast on CPU (README, "Where a training step's time
goes"). Only the network is compiled: the STFT, features and loss stay eager (inductor does not
generate code for complex tensors), and evaluation, export and streaming never see the compiled
function, so checkpoints and exported files are the same as an eager run's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["compile_blocker", "compile_network"]

#: C++ compilers inductor can use on CPU ($CXX first).
_CXX = ("g++", "c++", "clang++")


def compile_blocker(net: nn.Module, device: torch.device) -> str | None:
    """Why ``net``'s network cannot be compiled on ``device`` (None: it can)."""
    if not callable(getattr(net, "gains_from_features", None)):
        return f"{type(net).__name__} has no learned network to compile"
    if getattr(net, "layer", None) == "sparse":
        return "layer=sparse: torch.compile cannot trace torch.sparse products"
    if device.type == "cpu":
        compilers = [os.environ.get("CXX", ""), *_CXX]
        if not any(name and shutil.which(name) for name in compilers):
            return f"no C++ compiler on PATH ({', '.join(_CXX)} or $CXX); inductor needs one on CPU"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed for this GPU"
    return f"torch.compile is not set up for device {device.type!r} here"


def compile_network(net: nn.Module) -> Callable[[Tensor], Tensor]:
    """``net.gains_from_features`` compiled (lazily: the first call compiles)."""
    gains_from_features: Callable[[Tensor], Tensor] = net.gains_from_features  # type: ignore[assignment]
    return torch.compile(gains_from_features)
