"""build_net: a network from plain keyword arguments, with errors that name the key."""

from __future__ import annotations

import pytest

from audiodiag.nets import build_net

NET = {"kind": "gainnet", "layer": "elementwise", "depth": 1, "context": 2, "seed": 0}


def test_build_net_rejects_unknown_key_and_kind():
    with pytest.raises(ValueError, match=r"model\.dept is not an argument of GainNet.*depth"):
        build_net({**NET, "dept": 2})
    with pytest.raises(ValueError, match=r"model\.kind='rnn' is unknown; valid: gainnet, wiener"):
        build_net({"kind": "rnn"})
