"""The Examples sections of lmmkit.survival run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "cox",
    "cindex",
    "design",
    "metrics",
    "newton",
    "nonparametric",
    "partial_likelihood",
    "plots",
    "surv",
    "zph",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    import matplotlib

    matplotlib.use("Agg")
    module = importlib.import_module(f"lmmkit.survival.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
