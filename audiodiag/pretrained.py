"""Models that ship inside the package, so a user enhances audio right after ``pip install``.

Each model is a file written by ``python -m audiodiag.export`` (TorchScript, with the streaming
methods for causal models) under ``audiodiag/models/``, and its card (training command and
commit, data, size, cost, scores, sha256) in ``audiodiag/models/cards.json``::

    from audiodiag import pretrained
    module = pretrained.load("causal")        # what torch.jit.load of the exported file returns
    clean = module(noisy)                     # (batch, time) at module.sample_rate

The inference commands take ``model=pretrained:NAME`` (and use ``pretrained:causal`` when
``model=`` is omitted). ``scripts/make_pretrained.py`` trains, exports and writes the cards.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from audiodiag.loading import ModelLoadError, load_torchscript

__all__ = ["DEFAULT", "MODELS_DIR", "PREFIX", "card", "load", "names", "path", "sha256"]

MODELS_DIR = Path(__file__).resolve().parent / "models"
CARDS_FILE = MODELS_DIR / "cards.json"
#: ``model=`` values that name a shipped model start with this prefix.
PREFIX = "pretrained:"
#: The model the inference commands use when ``model=`` is omitted.
DEFAULT = "causal"


def _cards() -> dict[str, dict[str, Any]]:
    if not CARDS_FILE.is_file():
        return {}
    return json.loads(CARDS_FILE.read_text())


def names() -> list[str]:
    """Names of the shipped models (those with a card and a file)."""
    return sorted(
        name for name, entry in _cards().items() if (MODELS_DIR / entry["file"]).is_file()
    )


def card(name: str) -> dict[str, Any]:
    """The model card of ``name`` (see ``audiodiag/models/cards.json``)."""
    cards = _cards()
    if name not in cards:
        accepted = ", ".join(PREFIX + n for n in names()) or "none are installed"
        raise ModelLoadError(PREFIX + name, f"no shipped model of that name; accepted: {accepted}")
    return cards[name]


def path(name: str) -> Path:
    """The file of the shipped model ``name`` (``pretrained:`` prefix allowed)."""
    name = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    file = MODELS_DIR / card(name)["file"]
    if not file.is_file():
        raise ModelLoadError(file, f"the shipped model '{name}' is missing from the installation")
    return file


def sha256(file: Path) -> str:
    """Hex sha256 of a file (what the cards record)."""
    return hashlib.sha256(file.read_bytes()).hexdigest()


def load(name: str = DEFAULT) -> Any:
    """Load the shipped model ``name`` as ``torch.jit.load`` returns it (eval mode, on the CPU)."""
    module, _metadata = load_torchscript(path(name))
    return module
