"""Command line: ``python -m gradprobe demo | info`` (also the ``gradprobe`` script)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from .examples import SEEDS
from .info import format_info, info


def _demo(args: argparse.Namespace) -> int:
    """Run the three seed examples and print their reports."""
    for name in SEEDS:
        module = importlib.import_module(f"gradprobe.examples.{name}")
        title = (module.__doc__ or name).strip().splitlines()[0]
        print(f"\n{'=' * 78}\n{name}: {title}\n{'=' * 78}")
        module.main()
    return 0


def _info(args: argparse.Namespace) -> int:
    data = info()
    print(json.dumps(data, indent=2) if args.json else format_info(data))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gradprobe``."""
    parser = argparse.ArgumentParser(
        prog="gradprobe",
        description="Check hand-written gradients against numerical derivatives.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the three seed problems and print their reports")
    demo.set_defaults(run=_demo)
    info_cmd = sub.add_parser("info", help="print the version and the available engines")
    info_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    info_cmd.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
