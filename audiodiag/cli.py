"""Command lines of the entry points: ``key=value`` arguments in Hydra override style.

``python -m audiodiag.export/enhance/evaluate`` share this small kit (no Hydra needed to parse
them, so a command that only loads a model stays light). A bad argument raises
:class:`CliError` with one line naming it and what is accepted.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence

import torch

__all__ = ["CliError", "parse_bool", "parse_cli", "parse_float", "resolve_device"]


class CliError(ValueError):
    """A bad command-line argument; the message names it and what is accepted."""


def parse_cli(
    argv: Sequence[str] | None,
    allowed: Iterable[str],
    usage: str,
    required: Sequence[str] = (),
    prefixes: Sequence[str] = (),
) -> dict[str, str] | None:
    """Parse ``key=value`` arguments (also ``--key=value`` and ``--key value``).

    Returns None after printing ``usage`` for ``-h``/``--help``. Keys must be in ``allowed`` or
    start with one of ``prefixes`` (e.g. ``data.`` overrides passed on to Hydra).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    allowed = set(allowed)
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage)
        return None
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        key_value = arg[2:] if arg.startswith("--") else arg
        if "=" in key_value:
            key, value = key_value.split("=", 1)
        elif arg.startswith("--") and index < len(args):
            key, value = key_value, args[index]
            index += 1
        else:
            raise CliError(f"argument {arg!r} is not key=value; see --help\n\n{usage}")
        key = key.strip().lstrip("+")
        if key not in allowed and not any(key.startswith(p) for p in prefixes):
            accepted = ", ".join(sorted(allowed) + [p + "*" for p in prefixes])
            raise CliError(f"unknown argument {key!r}; accepted: {accepted}")
        values[key] = value
    missing = [k for k in required if not values.get(k)]
    if missing:
        raise CliError(f"missing {', '.join(k + '=...' for k in missing)}\n\n{usage}")
    return values


def parse_bool(key: str, value: str) -> bool:
    """``true/false/1/0/yes/no`` -> bool, else :class:`CliError` naming ``key``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise CliError(f"{key}={value!r} is not a boolean; use true or false")


def parse_float(key: str, value: str, minimum: float | None = None) -> float:
    """A float argument, optionally > ``minimum``."""
    try:
        number = float(value)
    except ValueError:
        raise CliError(f"{key}={value!r} is not a number") from None
    if not math.isfinite(number) or (minimum is not None and number <= minimum):
        raise CliError(f"{key}={value!r} must be a finite number > {minimum}")
    return number


def resolve_device(value: str | None) -> torch.device:
    """``cpu``/``cuda``/``cuda:N``/``auto`` -> device, refusing CUDA when there is none."""
    name = (value or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CliError(f"device={value} asked for, but CUDA is not available; use device=cpu")
        return torch.device(name)
    if name != "cpu":
        raise CliError(f"device={value!r} is unknown; accepted: cpu, cuda, cuda:N, auto")
    return torch.device("cpu")
