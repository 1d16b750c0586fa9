"""Sphinx configuration of the gradprobe documentation.

Pages are MyST Markdown; ``{code-cell}`` blocks are executed by myst-nb at every build
(``nb_execution_mode = "force"``), so each output shown is what the code printed then. The
build is run with ``-W --keep-going -n`` (see ``.ci/run``): a warning, a broken
cross-reference or an example that raises fails it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import gradprobe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))          # _ext: small build-time helpers of these docs

project = "gradprobe"
author = "gradprobe developers"
copyright = "2026, gradprobe developers"
release = version = gradprobe.__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autosummary",
]

# --- MyST and execution --------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("GRADPROBE_DOCS_EXECUTE", "force")  # "cache" while writing
nb_execution_raise_on_error = True     # an example that raises fails the build
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True                # stdout and stderr of a cell in one block, in order
nb_output_stderr = "show"
nb_render_markdown_format = "myst"   # Markdown outputs (the generated tables) as MyST: tables render
# every page runs from the repository root, so paths in examples read as in a shell there
nb_execution_in_temp = False
nb_kernel_rgx_aliases = {".*": "python3"}
# .rst first: autosummary writes its generated stubs with the first suffix
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# --- API reference from the docstrings -----------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"              # numpydoc writes the types from the docstrings

nitpicky = True
# Names that appear in numpydoc "Parameters" sections as plain types (not documented objects).
nitpick_ignore_regex = [
    (r"py:class", r"(numpy\.)?ndarray|array(-like|_like)?|callable|optional|default.*"),
    (r"py:class", r"(numpy|np|numba|cffi|distributed|dask|matplotlib)\..*"),
    (r"py:class", r"(int|float|str|bool|dict|list|tuple|None|object|Path|Any|Callable|Mapping|Sequence|Iterable).*"),
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
templates_path = ["_templates"]

# --- HTML ------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"gradprobe {release}"
html_static_path: list[str] = []
