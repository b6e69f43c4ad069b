"""Command lines of the entry points: ``key=value`` arguments in Hydra override style.

``python -m audiodiag.export/enhance/evaluate`` share this small kit (no Hydra needed to parse
them, so a command that only loads a model stays light). A bad argument raises
:class:`CliError` with one line naming it and what is accepted.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence

import torch

__all__ = [
    "CliError",
    "error_line",
    "parse_bool",
    "parse_cli",
    "parse_float",
    "resolve_device",
    "run_entry",
]


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


#: Environment switches that let an unexpected error show its full traceback.
DEBUG_ENV = ("AUDIODIAG_DEBUG", "HYDRA_FULL_ERROR")
DEBUG_HINT = "--debug or AUDIODIAG_DEBUG=1 shows the traceback"


def error_line(error: BaseException) -> str:
    """``Type: first line`` of an error and of up to two causes (``a <- b``), for one-line reports.

    An error re-raised from a DataLoader worker keeps the worker's real exception only in its
    text ("Caught X in DataLoader worker process 0 ... Original Traceback ... X: reason"): the
    last line of that text is the reason, so it is the one reported.
    """
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 3:
        lines = [line.strip() for line in str(current).strip().splitlines() if line.strip()]
        if lines and "Original Traceback" in str(current):
            parts.append(lines[-1])
        else:
            parts.append(f"{type(current).__name__}: {lines[0] if lines else ''}".strip())
        current = current.__cause__
    return " <- ".join(parts)


def run_entry(body: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Run an entry point's ``body(args)``: an unexpected error ends in one line and exit code 1,
    unless ``--debug`` is among the arguments or one of :data:`DEBUG_ENV` is ``1``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or any(os.environ.get(name) == "1" for name in DEBUG_ENV)
    args = [a for a in args if a != "--debug"]
    try:
        return body(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        print(f"error: {error_line(error)} ({DEBUG_HINT})", file=sys.stderr)
        return 1
