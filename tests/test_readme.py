"""The README runs as written and prints what it shows (issue 14).

Every ```python block is executed, in order, in a fresh namespace (a block
whose first line is ``# not run: <why>`` is skipped and says why in the
README). A plain ``` block right after a python block is that block's output;
one preceded by ``<!-- output of module.function() -->`` is the printed
report of that function. Each must match what the code prints, line by line:
timings are masked, integers must be equal and other numbers within 5 %. Listings that are not Python
(signatures, the folder layout) are fenced as ``text``.
"""
from __future__ import annotations

import importlib
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
FENCE = re.compile(r"^(?:<!-- output of (?P<source>[\w.]+)\(\) -->\n)?"
                   r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M)


def _blocks() -> list[dict]:
    blocks = []
    for m in FENCE.finditer(TEXT):
        blocks.append({"lang": m.group("lang"), "body": m.group("body"),
                       "source": m.group("source"),
                       "line": TEXT[:m.start("lang")].count("\n") + 1})
    return blocks


BLOCKS = _blocks()
PYTHON = [i for i, b in enumerate(BLOCKS) if b["lang"] == "python"]
OUTPUTS = [i for i, b in enumerate(BLOCKS) if b["lang"] == "" and
           (b["source"] or (i > 0 and BLOCKS[i - 1]["lang"] == "python"))]


#: Numbers shown in an output block may differ from the printed ones by this
#: much (relative): noise estimates of a loss that sums a million terms vary
#: with the summation order. Integers (counts, indices) must match exactly.
NUMBER_RTOL = 0.05
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*(?:e[-+]?\d+)?|\.\d+)")


def normalise(text: str) -> list[str]:
    r"""Lines with timings masked and runs of spaces collapsed.

    >>> normalise("check PASSED  (25 evaluations, 0.0126 s)\n\nw   2.06e-12")
    ['check PASSED (25 evaluations, <s> s)', 'w 2.06e-12']
    """
    out = []
    for line in text.splitlines():
        line = re.sub(r"\b\d+(\.\d+)?(e[-+]?\d+)? s\b", "<s> s", line)
        line = re.sub(r"\s+", " ", line).rstrip()
        if line:
            out.append(line)
    return out


def same_line(shown: str, printed: str) -> bool:
    """Equal words; equal integers; other numbers within ``NUMBER_RTOL``.

    >>> same_line("x 0.0009058 (9 entries)", "x 0.0009064 (9 entries)")
    True
    >>> same_line("err 2.06e-12", "err 5.215e-12"), same_line("9 entries", "8 entries")
    (False, False)
    """
    if NUMBER.sub("#", shown) != NUMBER.sub("#", printed):
        return False
    for a, b in zip(NUMBER.findall(shown), NUMBER.findall(printed)):
        if a == b:
            continue
        x, y = (float(v.replace(",", "")) for v in (a, b))
        if "." not in a + b and "e" not in a + b:
            return False  # integers: exact
        if abs(x - y) > NUMBER_RTOL * max(abs(x), abs(y)):
            return False
    return True


def test_the_readme_has_runnable_examples_and_outputs():
    assert len(PYTHON) >= 1 and len(OUTPUTS) >= 3  # the 30-second example and its outputs


def test_no_python_fence_holds_something_that_is_not_python():
    for i in PYTHON:
        compile(BLOCKS[i]["body"], f"README.md line {BLOCKS[i]['line']}", "exec")


def _run(index: int, capsys) -> str:
    body = BLOCKS[index]["body"]
    if body.startswith("# not run:"):
        pytest.skip(body.splitlines()[0])
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(body, f"README.md line {BLOCKS[index]['line']}", "exec"), namespace)
    return capsys.readouterr().out


@pytest.mark.parametrize("index", PYTHON, ids=[f"line{BLOCKS[i]['line']}" for i in PYTHON])
def test_readme_python_block_runs(index, capsys):
    out = _run(index, capsys)
    # every "print(...)   # expected" comment in the block is checked against the output
    for expected in re.findall(r"print\(.*\)\s+#\s*(.+)", BLOCKS[index]["body"]):
        assert expected.strip() in out, (expected, out)


@pytest.mark.parametrize("index", OUTPUTS, ids=[f"line{BLOCKS[i]['line']}" for i in OUTPUTS])
def test_readme_output_block_is_what_the_code_prints(index, capsys):
    block = BLOCKS[index]
    if block["source"]:
        module, function = block["source"].rsplit(".", 1)
        out = str(getattr(importlib.import_module(module), function)())
    else:
        out = _run(index - 1, capsys)
    printed = normalise(out)
    shown = normalise(block["body"])
    # the block shows consecutive printed lines (a fragment may start anywhere)
    fits = [k for k in range(len(printed) - len(shown) + 1)
            if all(same_line(a, b) for a, b in zip(shown, printed[k:k + len(shown)]))]
    assert fits, f"README line {block['line']} shows:\n{block['body']}\nthe code prints:\n{out}"
