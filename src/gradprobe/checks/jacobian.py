"""check_jacobian: a whole Jacobian, a pair of evaluations per input entry or group."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .. import config
from ..options import CheckOptions
from ..verdict.diagnosis import diagnose_all
from ..problem.point import format_entry
from ..report.reports import CheckReport, ParamReport
from ..differences.stencils import Estimate, step_size
from ..differences.vector import VectorFunction, line_estimate, one_sided_line
from ..verdict.compare import compare_param
from .grouped import jacobian_by_groups
from .vector_setup import (_callable, _vector_options, _single_input, _noise_notes,
                           forward_findings, noise_ulps)


def check_jacobian(f: Callable[..., Any], x: Any, jac: Any, *, args: tuple = (),
                   method: str = "central", eps: float | None = None,
                   rtol: float | None = None, atol: float | None = None, seed: int = 0,
                   upcast: bool = True, backend: str = "auto",
                   **options: Any) -> CheckReport:
    """Check a full Jacobian against differences of f, one column per input entry.

    Entry ``x[j]`` is perturbed by ``±h`` (the scalar check's step for it);
    the pair of outputs gives the whole column ``d f / d x[j]``, every output
    entry with its own error bar.

    Parameters
    ----------
    f : callable
        ``f(x, *args) -> array``.
    x : ndarray
        The point (one array of any shape). Never modified.
    jac : ndarray or callable
        The Jacobian, of shape ``f(x).shape + x.shape`` (``jac[i..., j...]`` is
        ``d f[i...] / d x[j...]``), or ``jac(x, *args)`` returning it.
    args, method, eps, rtol, atol, seed, upcast, backend, **options
        As in :func:`check_jvp` (``eps`` is the absolute step of every entry).

    Returns
    -------
    CheckReport
        One parameter, ``jacobian``, of shape ``f(x).shape + x.shape``. The
        diagnosis and a note spell failing entries as
        ``output[i...] / x[j...]``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_jacobian
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> A = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    >>> f = lambda x: A @ np.sin(x)
    >>> J = A * np.cos(x)
    >>> check_jacobian(f, x, J).passed
    True
    >>> bad = J.copy(); bad[1, 2] *= 1.01
    >>> report = check_jacobian(f, x, bad)
    >>> report.params["jacobian"].failed_indices
    [(1, 2)]
    >>> report.params["jacobian"].diagnosis
    'localized: 1 entry of 6 wrong: output[1] / x[2]'
    """
    start = time.perf_counter()
    opts = CheckOptions.build("check_jacobian", dict(method=method, eps=eps, rtol=rtol,
                                                     atol=atol, seed=seed, upcast=upcast,
                                                     backend=backend, **options))
    _callable("f", f)
    eps, rtol, atol, seed, upcast, args = _vector_options(opts, args)
    paramset = _single_input(x, f)
    xname = paramset.names[0]
    x_shape = paramset.arrays[0].shape
    vf = VectorFunction.prepare(f, paramset, args, upcast=upcast,
                                complex_step=method == "complex", seed=seed)
    full_shape = vf.out_shape + x_shape
    if callable(jac) and not isinstance(jac, np.ndarray):
        jac = jac(paramset.arrays[0].copy(), *args)
        what = "jac(x)"
    else:
        what = "jac"
    jac_array = _jacobian_array(jac, vf.out_shape, x_shape, what)

    m, n = vf.size, paramset.arrays[0].size
    flat = vf.working[0].reshape(-1)

    def line(j: int) -> tuple[Callable[[Any], np.ndarray], Any, float]:
        index = np.unravel_index(j, x_shape) if x_shape else ()
        origin = flat[j].real if vf.complex_step else flat[j]
        h = float(step_size(np.array([float(origin)]), method, vf.noise_rel, eps)[0])

        def evaluate(p: Any) -> np.ndarray:
            return vf.with_entry(0, j, p, context=f"with {format_entry(xname, index)} = {p!r}")
        return evaluate, origin, h

    estimate, strategy = jacobian_by_groups(vf, opts, "check_jacobian")
    if estimate is None:  # one column per entry of x
        value = np.empty((m, n))
        bar = np.empty((m, n))
        left = np.empty((m, n)) if method in ("central", "richardson") else None
        right = np.empty((m, n)) if left is not None else None
        for j in range(n):
            evaluate, origin, h = line(j)
            est = line_estimate(evaluate, origin, h, method, vf)
            value[:, j], bar[:, j] = est.value, est.error_bar
            if left is not None:
                left[:, j], right[:, j] = est.left, est.right
        estimate = Estimate(value.reshape(-1), bar.reshape(-1),
                            None if left is None else left.reshape(-1),
                            None if right is None else right.reshape(-1))

    def by_column(positions: np.ndarray, compute: Callable[[int], tuple]) -> list[np.ndarray]:
        rows, cols = np.divmod(positions, n)  # every entry is checked: position = flat index
        results: list[np.ndarray] | None = None
        for c in np.unique(cols):
            parts = compute(int(c))
            if results is None:
                results = [np.full(positions.size, np.nan) for _ in parts]
            sel = cols == c
            for out, part in zip(results, parts):
                out[sel] = part[rows[sel]]
        return results or []

    refine = kink_probe = None
    if method in ("central", "forward"):
        def refine(positions: np.ndarray) -> Estimate:
            def compute(j: int) -> tuple:
                evaluate, origin, h = line(j)
                est = line_estimate(evaluate, origin, h, "richardson", vf)
                return est.value, est.error_bar, est.left, est.right
            return Estimate(*by_column(positions, compute))
    if method != "complex":
        def kink_probe(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            def compute(j: int) -> tuple:
                evaluate, origin, _ = line(j)
                h = float(step_size(np.array([float(origin)]), "central", vf.noise_rel,
                                    eps)[0]) / config.KINK_STEP_DIVISOR
                return one_sided_line(evaluate, origin, h, vf)
            left_, right_ = by_column(positions, compute)
            return left_, right_

    report = compare_param("jacobian", full_shape, vf.out_dtype, None, jac_array, estimate,
                           rtol=rtol, atol=atol, refine=refine, kink_probe=kink_probe)
    notes = [f"Jacobian of shape {vf.out_shape} + {x_shape}: jacobian[i..., j...] = "
             f"d output[i...] / d {xname}[j...], from {method} differences of f, "
             + (f"one column per entry of {xname}" if strategy.startswith("entry")
                else "columns read from groups of entries with disjoint outputs")] \
        + _noise_notes(vf) + vf.notes
    report.strategy = strategy
    notes.append(f"{xname}: {strategy}")
    params = {"jacobian": report}
    findings = forward_findings(vf, opts.nondeterminism_tol, notes)
    diagnose_all(params, method=method, noise_ulps=noise_ulps(vf))
    split = len(vf.out_shape)
    if report.diagnosis and report.diagnosis.startswith("localized"):
        report.diagnosis = _localized_jacobian(report, split, xname)
    if not report.passed:
        pos = report._worst_position
        index = report.worst_index
        notes.insert(0, f"worst entry: {_pair(index, split, xname)}: analytic "
                        f"{report.analytic_flat[pos]:.6g}, numeric "
                        f"{report.numeric_flat[pos]:.6g} ± {report.error_bar_flat[pos]:.3g}")
    result = CheckReport(params=params, method=method, mode="full", backend="python",
                         evaluations=vf.evaluations, seconds=time.perf_counter() - start,
                         upcast=vf.upcast, noise=float(np.max(vf.noise)), loss=float("nan"),
                         notes=notes)
    result.add_findings(findings)
    return result


def _jacobian_array(jac: Any, out_shape: tuple[int, ...], x_shape: tuple[int, ...],
                    what: str) -> np.ndarray:
    """The user's Jacobian, validated against ``out_shape + x_shape``."""
    if isinstance(jac, (bool, np.bool_)) or jac is None:
        raise TypeError(f"{what} must be an array of shape {out_shape + x_shape}, got "
                        f"{type(jac).__name__}")
    try:
        array = np.asarray(jac)
    except Exception as exc:
        raise TypeError(f"{what} is not an array: {exc}") from exc
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} has dtype {array.dtype}; expected a real floating array")
    expected = out_shape + x_shape
    if array.shape != expected:
        hint = ""
        if array.shape == x_shape + out_shape and x_shape != out_shape:
            hint = (": it looks like d x / d output (input axes first); put f's output "
                    "axes first")
        elif array.size == int(np.prod(expected, dtype=np.int64)):
            hint = f": same size, reshape it to {expected}"
        raise ValueError(f"{what} has shape {array.shape}, but f's output shape "
                         f"{out_shape} + x's shape {x_shape} is {expected}{hint}")
    return array


def _pair(index: tuple[int, ...], split: int, xname: str) -> str:
    """``output[3, 2] / x[1, 4]`` for a Jacobian index."""
    return f"{format_entry('output', index[:split])} / {format_entry(xname, index[split:])}"


def _localized_jacobian(report: ParamReport, split: int, xname: str) -> str:
    """The 'localized' diagnosis in terms of output and input entries."""
    failed = report.failed_indices
    outs = {i[:split] for i in failed}
    ins = {i[split:] for i in failed}
    n_out = int(np.prod(report.shape[:split], dtype=np.int64))
    n_in = int(np.prod(report.shape[split:], dtype=np.int64))
    if len(failed) > 1 and len(outs) == 1 and report.full:
        (o,) = outs
        return (f"localized: {format_entry('output', o)}: {len(failed)} of its {n_in} "
                f"derivatives wrong (one row of the Jacobian)")
    if len(failed) > 1 and len(ins) == 1 and report.full:
        (i,) = ins
        return (f"localized: {format_entry(xname, i)}: {len(failed)} of {n_out} output "
                "derivatives wrong (one column of the Jacobian)")
    shown = ", ".join(_pair(i, split, xname) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    noun = "entry" if len(failed) == 1 else "entries"
    return f"localized: {len(failed)} {noun} of {report.checked} wrong: {shown}{more}"


# -- Hessian-vector products ---------------------------------------------------------
