"""Build a waveform-to-waveform network from plain keyword arguments.

A checkpoint stores the network as ``hyper_parameters["net"]``: a dict of plain values with a
``kind`` (one of :data:`NET_KINDS`) and that class's keyword arguments. :func:`build_net` turns
it back into the ``nn.Module``; training, export, evaluate and model loading all call it, so a
checkpoint rebuilds without Lightning or Hydra.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from audiodiag.model import GainNet
from audiodiag.wiener import WienerEnhancer

__all__ = ["NET_KINDS", "build_net", "plain_values"]

#: Network classes by ``kind``; every other key of a net description is one of its arguments.
_CLASSES: dict[str, type[nn.Module]] = {"gainnet": GainNet, "wiener": WienerEnhancer}
NET_KINDS: tuple[str, ...] = tuple(_CLASSES)


def plain_values(value: Any) -> Any:
    """Turn OmegaConf containers (or any mapping/sequence) into plain dicts and lists.

    Hyperparameters are stored in checkpoints, which must load with ``weights_only=True``.
    """
    try:  # OmegaConf comes with Hydra; only convert when it is around.
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    return value


def build_net(net: Mapping[str, Any]) -> nn.Module:
    """Build the network described by plain keyword arguments.

    ``net["kind"]`` is one of :data:`NET_KINDS` (default ``"gainnet"``); every other key is
    passed to :class:`audiodiag.model.GainNet` or :class:`audiodiag.wiener.WienerEnhancer`.
    An unknown kind or key raises ``ValueError`` naming it and what is accepted.
    """
    kwargs = dict(plain_values(net))
    kind = kwargs.pop("kind", "gainnet")
    if kind not in _CLASSES:
        raise ValueError(f"model.kind={kind!r} is unknown; valid: {', '.join(NET_KINDS)}")
    cls = _CLASSES[kind]
    params = inspect.signature(cls.__init__).parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in kwargs if k not in params) if not takes_var_kw else []
    if unknown:
        accepted = ", ".join(k for k in params if k != "self")
        raise ValueError(
            f"model.{unknown[0]} is not an argument of {cls.__name__} (model.kind={kind!r}); "
            f"accepted: {accepted}"
        )
    return cls(**kwargs)
