"""pytest plugin: a ``gradcheck`` fixture with session-wide defaults.

Registered through the ``pytest11`` entry point, so installing gradprobe is
enough: every test can ask for the ``gradcheck`` fixture, which calls
:func:`gradprobe.assert_gradients` with the defaults given on the command
line (``--gradprobe-mode``, ``--gradprobe-backend``, ``--gradprobe-seed``).
A failing check fails the test with the readable report (table, worst
entries, diagnosis) as its message.

This module imports nothing heavy at start-up: importing it imports the
``gradprobe`` package (NumPy, about 0.2 s) but not Numba, matplotlib or tqdm;
pytest loads it in every session of an environment where gradprobe is installed.

Examples
--------
In a test file (no import needed)::

    def test_my_backprop(gradcheck):
        gradcheck(loss, (W, b), backprop, args=(X, y))

Run ``pytest --gradprobe-mode=auto --gradprobe-seed=3`` to change every
check of the session; options written in a test win over the command line.
A project can also set defaults by overriding the ``gradprobe_options``
fixture in its ``conftest.py``.

>>> check = GradCheck({"mode": "sample", "samples": 2})
>>> import numpy as np
>>> check(lambda w: np.sum(w ** 2), np.arange(4.0), 2 * np.arange(4.0)).params["w"].checked
2
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

from .. import config

if TYPE_CHECKING:
    from ..report.reports import CheckReport

#: Command-line options of the plugin: option name -> (``check`` keyword, help).
OPTIONS = {
    "--gradprobe-mode": ("mode", "default mode of the gradcheck fixture: "
                                 + ", ".join(config.MODES)),
    "--gradprobe-backend": ("backend", "default backend of the gradcheck fixture: "
                                       + ", ".join(config.BACKENDS)),
    "--gradprobe-seed": ("seed", "default seed of the gradcheck fixture (samples, "
                                 "directions, noise probe)"),
}


class GradCheck:
    """The ``gradcheck`` fixture: :func:`gradprobe.assert_gradients` with defaults.

    Parameters
    ----------
    defaults : dict
        Keyword options passed to every call (``mode``, ``backend``, ``seed``,
        ...); keywords given in the call win.

    Examples
    --------
    >>> import numpy as np
    >>> check = GradCheck({"seed": 1})
    >>> check(lambda w: np.sum(w ** 3), np.ones(3), 3 * np.ones(3)).passed
    True
    >>> check.defaults
    {'seed': 1}
    """

    def __init__(self, defaults: dict[str, Any] | None = None):
        self.defaults = dict(defaults or {})

    def __call__(self, f: Callable[..., Any], params: Any, grads: Any,
                 **options: Any) -> "CheckReport":
        """Check ``grads`` against ``f``; raise :class:`gradprobe.GradientCheckError` on failure.

        Returns the report when the check passes.
        """
        __tracebackhide__ = True  # the failure points at the test, not at this wrapper
        from ..checks.scalar import run_check
        from ..errors import GradientCheckError
        from ..options import CheckOptions

        merged = dict(self.defaults)
        if "mode" in options and "mode" in merged and options["mode"] != merged["mode"]:
            # options that belong to the session's mode do not carry over to another
            for key in ("samples", "directions", "budget_s"):
                merged.pop(key, None)
        merged.update(options)
        args = merged.pop("args", ())
        report = run_check(f, params, grads, args, CheckOptions.build("gradcheck", merged))
        if not report.passed:
            raise GradientCheckError(report)  # raised here: the traceback ends in the test
        return report

    def __repr__(self) -> str:
        return f"GradCheck({self.defaults!r})"


def session_options(pytestconfig: Any) -> dict[str, Any]:
    """The ``check`` keywords given on pytest's command line (only those given).

    Examples
    --------
    >>> class Config:
    ...     def getoption(self, name):
    ...         return {"--gradprobe-mode": "auto", "--gradprobe-seed": 7}.get(name)
    >>> session_options(Config())
    {'mode': 'auto', 'seed': 7}
    """
    out: dict[str, Any] = {}
    for option, (keyword, _) in OPTIONS.items():
        value = pytestconfig.getoption(option)
        if value is not None:
            out[keyword] = value
    return out


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def pytest_addoption(parser: Any) -> None:
    """Add ``--gradprobe-mode``, ``--gradprobe-backend`` and ``--gradprobe-seed``."""
    group = parser.getgroup("gradprobe", "gradient checks (gradprobe)")
    group.addoption("--gradprobe-mode", default=None,
                    choices=config.MODES,
                    help=OPTIONS["--gradprobe-mode"][1])
    group.addoption("--gradprobe-backend", default=None,
                    choices=config.BACKENDS,
                    help=OPTIONS["--gradprobe-backend"][1])
    group.addoption("--gradprobe-seed", default=None, type=_non_negative_int,
                    help=OPTIONS["--gradprobe-seed"][1])


def pytest_report_header(config: Any) -> str | None:
    """Say which gradprobe defaults the session uses (only when some were given)."""
    options = session_options(config)
    if not options:
        return None
    return "gradprobe: " + ", ".join(f"{k}={v!r}" for k, v in options.items())


@pytest.fixture(scope="session")
def gradprobe_options(pytestconfig: Any) -> dict[str, Any]:
    """Session-wide keyword options of the ``gradcheck`` fixture.

    From the command line; override this fixture in a ``conftest.py`` to set
    project defaults (for example ``{"mode": "auto", "budget_s": 0.5}``).
    """
    return session_options(pytestconfig)


@pytest.fixture
def gradcheck(gradprobe_options: dict[str, Any]) -> GradCheck:
    """Call ``gradcheck(f, params, grads, **options)`` to assert a gradient is right.

    It runs :func:`gradprobe.assert_gradients` with the session's defaults
    (``--gradprobe-mode``, ``--gradprobe-backend``, ``--gradprobe-seed``, or
    the ``gradprobe_options`` fixture) and returns the report; a failure
    fails the test with the readable report as its message.
    """
    return GradCheck(gradprobe_options)
