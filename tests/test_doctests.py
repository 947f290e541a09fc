"""Every example in the fitting docstrings runs (pvlib style: examples are tests)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import chamberd.fitting

MODULES = [
    *sorted(f"chamberd.fitting.{m.name}" for m in pkgutil.iter_modules(chamberd.fitting.__path__)),
    "chamberd.calibration.stability",  # the stability rule's examples too
    "chamberd.controller.daemon",  # the start-up line's chamber list
    "chamberd.controller.output",  # a flux below detection, for people
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
