"""Kept for ``gradprobe.cli:main`` (the console script): the CLI lives in :mod:`gradprobe.integrations.cli`."""
from .integrations.cli import main

__all__ = ["main"]
