"""One home for each constant (issue 15, item 4).

Every tunable number, Numba flag and seed tag is defined in gradprobe.config;
the C kernel's copies of the shared codes and tiles agree with it; and the
defaults that docstrings show are the ones config holds. These tests read the
source (AST, the C header), so they hold on a machine without a C compiler.
"""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gradprobe"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "config.py")


def _defines(header: Path) -> dict[str, int]:
    """``#define GP_NN_NAME <integer>`` lines of a C header."""
    found = re.findall(r"^\s*#define\s+GP_NN_(\w+)\s+(-?\d+)\s*$", header.read_text(), re.M)
    return {name: int(value) for name, value in found}


#: C name (without GP_NN_) -> its value on the Python side (written here by hand).
C_TWINS = {
    "IDENTITY": config.IDENTITY, "RELU": config.RELU, "TANH": config.TANH,
    "SIGMOID": config.SIGMOID, "LOSS_MSE": config.LOSS_MSE,
    "LOSS_SOFTMAX_CE": config.LOSS_SOFTMAX_CE, "STAGE_ACTIVATION": config.STAGE_ACTIVATION,
    "STAGE_DENSE": config.STAGE_DENSE, "METHOD_CENTRAL": config.METHOD_CODES["central"],
    "METHOD_FORWARD": config.METHOD_CODES["forward"],
    "MATMUL_ROWS": config.MATMUL_ROWS, "MATMUL_COLS": config.MATMUL_COLS,
    "CONTRACT_ROWS": config.CONTRACT_ROWS, "CONTRACT_COLS": config.CONTRACT_COLS,
    "ENTRY_CHUNK": config.ENTRY_CHUNK,
}
#: Defines of gp_nn.h with no Python twin, and why.
C_ONLY = {
    "OK": "a status code, read from the compiled library by name",
    "EINVAL": "a status code, read from the compiled library by name",
    "ENOMEM": "a status code, read from the compiled library by name",
    "PARALLEL_MIN": "when the C elementwise kernels start threads (Numba decides its own)",
}


def test_the_c_kernel_and_config_share_codes_and_tiles():
    defines = _defines(ROOT / "csrc" / "gp_nn.h")
    assert len(defines) >= len(C_TWINS) + len(C_ONLY) - 1, defines  # the parser read them
    unknown = set(defines) - set(C_TWINS) - set(C_ONLY)
    assert not unknown, f"gp_nn.h defines {sorted(unknown)}: add them to C_TWINS or C_ONLY"
    differ = {name: (defines[name], value) for name, value in C_TWINS.items()
              if defines.get(name) != value}
    assert not differ, f"C value != config value: {differ}"


def test_the_header_parser_sees_a_changed_tile(tmp_path):
    text = (ROOT / "csrc" / "gp_nn.h").read_text()
    planted = tmp_path / "gp_nn.h"
    planted.write_text(text.replace("#define GP_NN_CONTRACT_COLS 256",
                                    "#define GP_NN_CONTRACT_COLS 128"))
    assert _defines(planted)["CONTRACT_COLS"] == 128 != config.CONTRACT_COLS


#: Keywords that are Numba compiler flags (per-kernel choices such as
#: ``parallel``, ``inline`` or an explicit signature are not).
NUMBA_FLAG_NAMES = {"fastmath", "cache", "nogil", "error_model", "boundscheck", "jit_options",
                    "nopython", "forceobj", "looplift"}
NUMBA_DECORATORS = {"njit", "jit", "vectorize", "guvectorize", "cfunc", "overload",
                    "overload_method", "overload_attribute", "register_jitable", "stencil",
                    "generated_jit"}


def _flag_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Hard-coded Numba flags: flag keywords of a Numba decorator, or flag keys of a dict."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in NUMBA_DECORATORS:
                for kw in node.keywords:
                    if kw.arg in NUMBA_FLAG_NAMES and not _from_config(kw.value):
                        found.append((node.lineno, f"{name}({kw.arg}=...)"))
            if name == "dict":
                found += [(node.lineno, f"dict({kw.arg}=...)") for kw in node.keywords
                          if kw.arg in NUMBA_FLAG_NAMES - {"cache"}]
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value in NUMBA_FLAG_NAMES - {"cache"}:
                    found.append((node.lineno, f"{{{key.value!r}: ...}}"))
    return found


def _from_config(value: ast.AST) -> bool:
    """``config.NAME`` (or ``config.NAME[...]``): a value read from config."""
    while isinstance(value, ast.Subscript):
        value = value.value
    return isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) \
        and value.value.id == "config"


def test_numba_flags_are_written_only_in_config():
    offenders = {str(path.relative_to(PACKAGE)): uses for path in SOURCES
                 if (uses := _flag_uses(ast.parse(path.read_text())))}
    assert not offenders, ("Numba flags written outside gradprobe/config.py (use "
                           f"config.NUMBA_FLAGS and its variants): {offenders}")


@pytest.mark.parametrize("source", [
    "@numba.njit(fastmath=True)\ndef f(x): return x",
    "@njit(parallel=True, cache=False)\ndef f(x): return x",
    "@overload(g, jit_options={'fastmath': False})\ndef f(x): return x",
    "OPTIONS = {'fastmath': False, 'nogil': True}",
    "found = numba.njit(**dict(error_model='numpy'))(f)",
])
def test_the_numba_flag_lint_catches_a_hard_coded_flag(source):
    assert _flag_uses(ast.parse(source))


def test_the_numba_flag_lint_accepts_flags_from_config():
    assert not _flag_uses(ast.parse(
        "@njit(parallel=True, inline='always', **config.NUMBA_FLAGS)\ndef f(x): return x\n"
        "@overload(g, jit_options=config.NUMBA_OVERLOAD_FLAGS)\ndef h(x): return x"))


def test_every_numba_flag_set_keeps_fastmath_off():
    for flags in (config.NUMBA_FLAGS, config.NUMBA_UNCACHED_FLAGS, config.NUMBA_OVERLOAD_FLAGS):
        assert flags["fastmath"] is False
    assert config.NUMBA_FLAGS["cache"] is True and config.NUMBA_UNCACHED_FLAGS["cache"] is False


def test_seed_tags_are_distinct_and_defined_only_in_config():
    tags = [getattr(config, n) for n in dir(config)
            if n.startswith("SEED_TAG_") and isinstance(getattr(config, n), int)]
    tags += list(config.SEED_TAG_VECTORS.values())
    assert len(tags) >= 7 and len(set(tags)) == len(tags), tags
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "default_rng":
                for arg in node.args:
                    if isinstance(arg, (ast.List, ast.Tuple)):
                        offenders += [(str(path.relative_to(PACKAGE)), node.lineno)
                                      for e in arg.elts if isinstance(e, ast.Constant)]
    assert not offenders, f"seed tags written as literals (put them in config): {offenders}"


#: Module-level numeric constants allowed outside config, and why.
NOT_TUNABLE = {
    "differences/stencils.py": "OFFSETS are the difference formulas themselves",
    "differences/compression.py": "the rounding of each formula per step, part of its analysis",
    "examples/": "the seed problems' data, written as a user writes them",
    "report/metrics_kernel.py": "a timing record, not a setting",
}


def _numeric_literal(value: ast.AST) -> bool:
    try:
        literal = ast.literal_eval(value)
    except ValueError:
        return False

    def numeric(v: object) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float)):
            return True
        if isinstance(v, (tuple, list, set)):
            return any(numeric(x) for x in v)
        if isinstance(v, dict):
            return any(numeric(x) for x in v.values())
        return False
    return numeric(literal)


def test_tunable_numbers_live_in_config():
    offenders = []
    for path in SOURCES:
        rel = str(path.relative_to(PACKAGE))
        if any(rel.startswith(prefix) for prefix in NOT_TUNABLE):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if any(n.lstrip("_").isupper() for n in names) and _numeric_literal(node.value):
                    offenders.append((rel, node.lineno, names))
    assert not offenders, f"numbers defined outside gradprobe/config.py: {offenders}"


# -- defaults shown in docstrings are config's ------------------------------------------

def _public_callables():
    import gradprobe.nn as nn

    seen = {}
    for module in (gp, nn):
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__doc__ \
                    and obj.__module__.startswith("gradprobe"):
                seen[f"{module.__name__}.{name}"] = obj
    return seen


#: Where a docstring shows a default as a number: (public name, parameter) ->
#: the config value it must equal. Any other literal default is an error.
SHOWN_DEFAULTS = {
    ("check", "samples"): config.DEFAULT_SAMPLES,
    ("check", "directions"): config.DEFAULT_DIRECTIONS,
    ("check", "budget_s"): config.DEFAULT_BUDGET_S,
    ("check", "progress"): config.PROGRESS_MIN_SECONDS,
    ("check_model", "samples"): config.DEFAULT_SAMPLES,
    ("GradientMonitor", "every"): config.MONITOR_EVERY,
    ("GradientMonitor", "budget_s"): config.MONITOR_BUDGET_S,
}
#: Defaults given per dtype: (public name, parameter) -> {number shown: config value}.
SHOWN_TOLERANCES = {
    ("check", "rtol, atol"): [config.DEFAULT_RTOL[np.dtype(np.float64)],
                              config.DEFAULT_RTOL[np.dtype(np.float32)],
                              config.DEFAULT_ATOL_FRACTION[np.dtype(np.float64)],
                              config.DEFAULT_ATOL_FRACTION[np.dtype(np.float32)]],
}
_NUMBER = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
_DEFAULT_PHRASES = [rf"\(default:? {_NUMBER}", rf"[Dd]efault: on when .*? more than {_NUMBER} s",
                    rf"[Dd]efaults?: [^.]*?{_NUMBER}"]


def _parameter_sections(doc: str) -> dict[str, str]:
    """numpydoc ``Parameters`` entries: name line -> its description."""
    doc = inspect.cleandoc(doc)
    match = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    if not match:
        return {}
    sections, name = {}, None
    for line in match.group(1).splitlines():
        if line and not line.startswith(" "):
            name = line.split(" : ")[0].strip()
            sections[name] = ""
        elif name is not None:
            sections[name] += " " + line.strip()
    return sections


def test_defaults_shown_in_docstrings_are_configs():
    checked = 0
    for qualname, obj in _public_callables().items():
        short = qualname.rsplit(".", 1)[1]
        for param, text in _parameter_sections(obj.__doc__).items():
            shown = [float(n) for phrase in _DEFAULT_PHRASES
                     for n in re.findall(phrase, text, re.S)]
            if not shown:
                continue
            if (short, param) in SHOWN_TOLERANCES:
                expected = SHOWN_TOLERANCES[short, param]
                numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?e-\d+", text)]
                assert numbers == expected, (qualname, param, numbers, expected)
                checked += 1
                continue
            assert (short, param) in SHOWN_DEFAULTS, (
                f"{qualname}: the docstring of {param!r} shows the default {shown[0]:g}; "
                "show it from gradprobe.config or add it to SHOWN_DEFAULTS")
            assert shown[0] == SHOWN_DEFAULTS[short, param], (qualname, param, shown)
            checked += 1
    assert checked >= len(SHOWN_DEFAULTS) + len(SHOWN_TOLERANCES) - 1, checked


def test_the_readme_and_the_docs_do_not_retype_defaults():
    """Prose shows defaults from gradprobe.config (docs) or not at all (README)."""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md",
             *sorted((ROOT / "docs").rglob("*.md"))]
    pattern = re.compile(r"\(default:? \d|[Dd]efaults? (?:is|are|to) \d")
    offenders = [(str(p.relative_to(ROOT)), n) for p in pages
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert len(pages) > 5 and not offenders, offenders
