"""The examples in the trace-gas drivers' docstrings run (parsers of the wire formats)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["li78x0", "lgr", "picarro", "mqtt_link", "stale"])
def test_docstring_examples(name):
    module = importlib.import_module(f"chamberd.controller.hardware.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
