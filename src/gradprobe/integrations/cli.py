"""Command line: ``python -m gradprobe demo | info | bench | warmup``.

Also installed as the ``gradprobe`` script.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from .. import config
from ..examples import DEMO_CASES, SEEDS
from .info import format_info, info


def _demo(args: argparse.Namespace) -> int:
    """Run the three seed examples and print their reports."""
    for name in SEEDS:
        module = importlib.import_module(f"gradprobe.examples.{name}")
        title = (module.__doc__ or name).strip().splitlines()[0]
        print(f"\n{'=' * 78}\n{name}: {title}\n{'=' * 78}")
        module.main()
    if args.plot:
        try:
            _demo_plots(args.plot)
        except ImportError as err:  # matplotlib is optional
            print(f"gradprobe demo --plot: {err}", file=sys.stderr)
            return 1
    return _demo_summary()


def _demo_summary() -> int:
    """Say which planted mistakes were caught; 1 if one was not, or a correct one failed."""
    rows, wrong = [], 0
    for name, function, what, must_pass in DEMO_CASES:
        report = getattr(importlib.import_module(f"gradprobe.examples.{name}"), function)()
        if must_pass:
            verdict = "passed, as a correct gradient should" if report.passed else \
                "FAILED, but the gradient is correct"
        else:
            verdict = "FAILED: mistake caught" if not report.passed else \
                "passed: mistake NOT caught"
        wrong += report.passed != must_pass
        rows.append((f"{name}: {what}", verdict))
    width = max(len(label) for label, _ in rows)
    mistakes = sum(not case[3] for case in DEMO_CASES)
    print(f"\n{'=' * 78}\nsummary\n{'=' * 78}")
    for label, verdict in rows:
        print(f"  {label.ljust(width)}  {verdict}")
    if wrong:
        print(f"demo: {wrong} of {len(rows)} checks did not come out as intended")
        return 1
    print(f"demo: all {mistakes} planted mistakes caught, all {len(rows) - mistakes} correct "
          "gradients PASSED")
    return 0


def _demo_plots(directory: str) -> None:
    """Write relative-error heatmaps of two failing checks under ``directory``."""
    from pathlib import Path

    from ..examples import two_layer_net
    from ..examples.monitor_training import wrong_column_report

    reports = {"two_layer_net": two_layer_net.check_forgotten_derivative(),
               "dense_wrong_column": wrong_column_report()}
    print(f"\n{'=' * 78}\npictures: per-entry relative error, failures crossed\n{'=' * 78}")
    for name, report in reports.items():
        for param, path in report.plot(Path(directory) / name).items():
            print(f"{name}: {param} -> {path}")


def _bench(args: argparse.Namespace) -> int:
    from .bench import ROUNDS, run

    def say(line: str) -> None:  # progress lines on stderr: the table stays parseable
        print(line, file=sys.stderr, flush=True)

    print(run(size=args.size, njit=not args.no_njit, say=say,
              rounds=args.rounds or ROUNDS))
    return 0


def _warmup(args: argparse.Namespace) -> int:
    """Compile (or load from Numba's cache) every kernel, printing each one's time."""
    import time

    from .warmup import warmup

    start = time.perf_counter()
    times = warmup(stream=sys.stdout)
    print(f"{'total':<36s} {time.perf_counter() - start:7.2f} s ({len(times)} kernels; "
          "later runs load them from Numba's cache)")
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
    demo.add_argument("--plot", metavar="DIR", default=None,
                      help="also write relative-error heatmaps (PNG, needs matplotlib) to DIR")
    demo.set_defaults(run=_demo)
    bench = sub.add_parser("bench", help="a quick W1/W2-style speed comparison (seconds)")
    bench.add_argument("--size", type=int, default=config.BENCH_SIZE,
                       help="n of the Dense(n, n) layer of the W1 case (default %(default)s)")
    bench.add_argument("--no-njit", action="store_true",
                       help="skip the Numba (W2) case")
    bench.add_argument("--rounds", type=int, default=None,
                       help="rounds of every workload, its cases alternating (default "
                       f"{config.BENCH_ROUNDS})")
    bench.set_defaults(run=_bench)
    warm = sub.add_parser("warmup", help="compile and cache every Numba kernel ahead of time "
                          "(a CI step, a Docker build), printing the time of each")
    warm.set_defaults(run=_warmup)
    info_cmd = sub.add_parser("info", help="print the version and the available engines")
    info_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    info_cmd.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
