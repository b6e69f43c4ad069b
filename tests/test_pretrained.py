"""Shipped models: found by name, refused with the accepted names otherwise."""

from __future__ import annotations

import pytest

from audiodiag import pretrained
from audiodiag.inference import load_enhancer
from audiodiag.loading import ModelLoadError


def test_unknown_pretrained_name_lists_the_accepted_ones():
    with pytest.raises(ModelLoadError, match=r"pretrained:nope.*accepted"):
        load_enhancer("pretrained:nope")


def test_prefix_is_optional_for_path():
    with pytest.raises(ModelLoadError, match="pretrained:nope"):
        pretrained.path("nope")
