"""Read model files: training checkpoints and files written by ``python -m audiodiag.export``.

Checkpoints load with ``torch.load(weights_only=True)`` (a checkpoint cannot run code) and the
network is rebuilt from ``hyper_parameters["net"]`` with :func:`audiodiag.nets.build_net`;
exported files load with ``torch.export.load`` (``.pt2`` programs) or ``torch.jit.load``
(TorchScript) and carry their metadata as the JSON extra file :data:`METADATA_FILE`. None imports Lightning or torchmetrics. Anything else raises
:class:`ModelLoadError` with one line naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiodiag.nets import build_net

__all__ = [
    "METADATA_FILE",
    "STREAM_METHODS",
    "ModelLoadError",
    "archive_names",
    "check_model_file",
    "ProgramModule",
    "is_program_archive",
    "is_torchscript_archive",
    "load_checkpoint",
    "load_program",
    "load_torchscript",
]

PathLike = str | os.PathLike

#: Name of the JSON metadata entry an exported file stores beside its TorchScript code.
METADATA_FILE = "audiodiag.json"
#: The block API an exported causal model carries (``audiodiag.export.ExportedEnhancer``).
STREAM_METHODS = ("stream_init", "stream_process", "stream_flush")


class ModelLoadError(ValueError):
    """A model file that cannot be used (missing, truncated, not a checkpoint or export)."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load model '{self.path}': {reason}")


def archive_names(path: Path) -> list[str]:
    """Member names of a PyTorch zip archive; :class:`ModelLoadError` for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except zipfile.BadZipFile as error:
        raise ModelLoadError(
            path,
            f"not a PyTorch archive ({error}); the file is truncated or is not a checkpoint "
            "(.ckpt from audiodiag.train) nor an exported model (.pt from audiodiag.export)",
        ) from error
    except OSError as error:
        raise ModelLoadError(path, str(error)) from error
    if bad is not None:
        raise ModelLoadError(path, f"archive member {bad!r} is corrupt (truncated download?)")
    return names


def check_model_file(path: Path) -> None:
    """:class:`ModelLoadError` unless ``path`` is a non-empty file."""
    if not path.exists():
        raise ModelLoadError(path, "no such file")
    if path.is_dir():
        raise ModelLoadError(path, "is a directory; give a .ckpt or an exported .pt file")
    if path.stat().st_size == 0:
        raise ModelLoadError(path, "file is empty")


def load_checkpoint(
    path: PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the network of a GainLearner checkpoint; returns ``(net in eval mode, checkpoint)``.

    Loads with ``weights_only=True``; raises :class:`ModelLoadError` naming the file when it is
    missing, truncated, or not a checkpoint of :class:`audiodiag.module.GainLearner`.
    """
    path = Path(path)
    check_model_file(path)
    archive_names(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError/UnpicklingError/...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(path, f"torch.load(weights_only=True) failed: {first}") from error
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ModelLoadError(path, "not a Lightning checkpoint (no 'state_dict' entry)")
    hparams = checkpoint.get("hyper_parameters") or {}
    if "net" not in hparams:
        raise ModelLoadError(
            path, "checkpoint has no hyper_parameters['net'] (not written by audiodiag.train)"
        )
    try:
        net = build_net(hparams["net"])
    except (TypeError, ValueError) as error:
        raise ModelLoadError(path, f"cannot rebuild the network: {error}") from error
    prefix = "net."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as error:
        raise ModelLoadError(path, f"weights do not fit the network: {error}") from error
    return net.eval(), dict(checkpoint)


def _load_with_metadata(
    path: Path, loader: str, load: Callable[[dict[str, str]], Any]
) -> tuple[Any, dict[str, Any]]:
    """``load(extra_files)`` an exported file and parse its JSON metadata; any failure is one
    :class:`ModelLoadError` naming the file and the ``loader`` that refused it."""
    extra = {METADATA_FILE: ""}
    try:
        loaded = load(extra)
    except Exception as error:  # noqa: BLE001
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(path, f"{loader} failed: {first}") from error
    try:
        metadata = json.loads(extra[METADATA_FILE] or "{}")
    except ValueError as error:
        raise ModelLoadError(path, f"metadata {METADATA_FILE} is not JSON: {error}") from error
    return loaded, metadata


def load_torchscript(path: PathLike) -> tuple[Any, dict[str, Any]]:
    """Load a file written by ``python -m audiodiag.export``: ``(module in eval mode, metadata)``.

    Raises :class:`ModelLoadError` naming the file when it is not such a file.
    """
    path = Path(path)

    def jit_load(extra: dict[str, str]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra)

    module, metadata = _load_with_metadata(path, "torch.jit.load", jit_load)
    if "sample_rate" not in metadata and not hasattr(module, "sample_rate"):
        raise ModelLoadError(
            path, "TorchScript file has no sample rate (not from audiodiag.export)"
        )
    return module.eval(), metadata


def is_torchscript_archive(names: list[str]) -> bool:
    """True when archive member ``names`` are those of a TorchScript file (not a checkpoint)."""
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def is_program_archive(names: list[str]) -> bool:
    """True when archive member ``names`` are those of a ``torch.export`` program (``.pt2``)."""
    return any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names)


class ProgramModule(nn.Module):
    """A loaded ``.pt2`` program as a module that also takes ``(time,)`` input.

    The program was traced in eval mode and the module ``torch.export`` returns refuses
    ``train()``/``eval()``, so both are no-ops here.
    """

    def __init__(self, program: nn.Module, sample_rate: int) -> None:
        super().__init__()
        self.program = program
        self.sample_rate = sample_rate

    def train(self, mode: bool = True) -> ProgramModule:
        return self

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Enhance ``(time,)`` or ``(batch, time)`` at ``sample_rate``; same shape out."""
        if waveform.dim() == 1:
            return self.program(waveform.unsqueeze(0)).squeeze(0)
        return self.program(waveform)


def load_program(path: PathLike) -> tuple[ProgramModule, dict[str, Any]]:
    """Load a ``.pt2`` file written by ``python -m audiodiag.export``: ``(module, metadata)``.

    Raises :class:`ModelLoadError` naming the file when it is not such a file.
    """
    path = Path(path)
    program, metadata = _load_with_metadata(
        path, "torch.export.load", lambda extra: torch.export.load(str(path), extra_files=extra)
    )
    if "sample_rate" not in metadata:
        raise ModelLoadError(path, ".pt2 file has no sample rate (not from audiodiag.export)")
    return ProgramModule(program.module(), int(metadata["sample_rate"])), metadata
