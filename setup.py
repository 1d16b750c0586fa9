"""Build hooks that ``pyproject.toml`` cannot express.

Everything declarative lives in ``pyproject.toml``; this file only exists so
that compiled extras (the optional C kernel) can hook into the build later.
"""
from setuptools import setup

setup()
