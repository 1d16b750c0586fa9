"""Every docstring example in the package runs and prints what it says."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gradprobe

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(gradprobe.__path__, "gradprobe.")
    if not name.endswith("__main__"))


#: Modules whose examples need an optional library.
OPTIONAL = {
    "torch": {"gradprobe.torch", "gradprobe.checks.torch_checks",
              "gradprobe.examples.torch_functions"},
    "jax": {"gradprobe.jax", "gradprobe.checks.jax_checks"},
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "gradprobe.engines.dask":
        pytest.importorskip("distributed")  # the optional extra gradprobe[dask]
    for extra, modules in OPTIONAL.items():
        if name in modules:
            pytest.importorskip(extra)  # the optional extras gradprobe[torch], [jax]
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_public_name_has_a_docstring_with_an_example():
    for name in gradprobe.__all__:
        obj = getattr(gradprobe, name)
        if isinstance(obj, str):
            continue
        assert obj.__doc__ and ">>>" in obj.__doc__, name
