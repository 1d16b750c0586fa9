"""The README's runnable examples run, and say what the README says they say."""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
          if b.startswith("import")]


def test_the_readme_has_runnable_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    out = capsys.readouterr().out
    # every "print(...)   # expected" comment in the block is checked against the output
    for expected in re.findall(r"print\(.*\)\s+#\s*(.+)", BLOCKS[index]):
        assert expected.strip() in out, (expected, out)
