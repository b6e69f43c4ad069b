"""A tiny trained checkpoint and its export, shared by the inference, export, enhance and
evaluate tests (built once per session by the ``models`` fixture in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import torch

TINY_NET = {
    "kind": "gainnet",
    "layer": "sparse",
    "depth": 2,
    "context": 3,
    "channels": 2,
    "seed": 0,
}


def make_checkpoint(path: Path, net: dict | None = None) -> Path:
    """A real GainLearner checkpoint: one optimisation step with Lightning, then save_checkpoint."""
    from torch.utils.data import DataLoader

    from audiodiag.module import GainLearner

    model = GainLearner(net=net or TINY_NET, scheduler={"name": "none"}, test_pesq_stoi=False)
    generator = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(2, 4000, generator=generator)
    noisy = clean + 0.05 * torch.randn(2, 4000, generator=generator)
    batch = {"noisy": noisy, "clean": clean, "length": torch.full((2,), 4000)}
    trainer = quiet_trainer(max_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, train_dataloaders=DataLoader([batch], batch_size=None))
    trainer.save_checkpoint(path)
    return path


def quiet_trainer(max_steps: int):
    """A CPU Lightning Trainer for a few steps: no logger, checkpoints, progress or validation."""
    import lightning.pytorch as pl

    return pl.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
    )


def export_file(ckpt: Path, out: Path) -> Path:
    """Export ``ckpt`` to a TorchScript file with the library call the CLI uses."""
    from audiodiag.export import export_checkpoint

    export_checkpoint(ckpt, out)
    return out


#: Prepended to a script run in a subprocess: makes audiodiag, Lightning, Hydra and OmegaConf
#: unimportable (and fails when audiodiag still imports, since the test would prove nothing).
BLOCK_AUDIODIAG = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("audiodiag", "lightning", "pytorch_lightning", "hydra", "omegaconf")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    try:
        import audiodiag  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("audiodiag is importable: the test proves nothing")

    """
)


def run_standalone(script: str, model: Path, inputs: dict, folder: Path) -> tuple[dict, dict]:
    """Run ``script`` (``BLOCK_AUDIODIAG`` + checks) in a fresh Python on ``model`` and
    ``inputs``; returns (the JSON its last line prints, the tensors it saved)."""
    torch.save(inputs, folder / "inputs.pt")
    path = folder / "standalone.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, str(path), str(model), str(folder / "inputs.pt"), str(folder / "out.pt")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    return info, torch.load(folder / "out.pt", weights_only=True)
