"""check_hvp: Hessian-vector products of a scalar function."""
from __future__ import annotations

import numbers
import time
from typing import Any, Callable

import numpy as np

from .. import config
from .scalar import check
from ..options import CheckOptions
from ..problem.params import loss_value, match_structure
from ..report.reports import CheckReport
from ..differences.vector import VectorFunction
from .vector_setup import (_callable, _vector_options, _single_input,
                           _directions, merge_runs, _finish, _how_many, _noise_notes, _line_runs,
                           forward_findings, noise_ulps)


def check_hvp(f: Callable[..., Any] | None, x: Any, hvp: Callable[..., Any], *,
              grad: Callable[..., Any] | None = None, vectors: Any = None, args: tuple = (),
              method: str = "central", eps: float | None = None, rtol: float | None = None,
              atol: float | None = None, seed: int = 0, upcast: bool = True,
              backend: str = "auto",
              **options: Any) -> CheckReport:
    """Check Hessian-vector products of a scalar function (Newton, trust-region, CG).

    With ``grad``, ``hvp(v, x)`` is compared with ``(grad(x + h v) - grad(x - h v)) / 2h``,
    entry by entry (the :func:`check_jvp` machinery applied to ``grad``).
    Without it, with the gradient of the second difference
    ``phi(x) = (f(x + k v) - f(x - k v)) / 2k`` (``k ~ eps**(1/4)``), checked
    by :func:`gradprobe.check`: four evaluations of ``f`` per entry.

    Parameters
    ----------
    f : callable or None
        The scalar function ``f(x, *args)``; may be None when ``grad`` is given.
    x : ndarray
        The point. Never modified.
    hvp : callable
        ``hvp(v, x, *args)`` returns ``H(x) @ v`` in ``x``'s shape.
    grad : callable, optional
        ``grad(x, *args)``, the gradient of ``f`` (check it first with
        :func:`gradprobe.check`: this check trusts it).
    vectors : ndarray, list of ndarray, or int, optional
        The vectors ``v``: one array of ``x``'s shape, several, or how many
        to draw. Default: ``config.DEFAULT_VECTOR_DIRECTIONS`` standard-normal draws (seeded).
    args, method, eps, rtol, atol, seed, upcast, backend, **options
        As in :func:`check_jvp`.

    Returns
    -------
    CheckReport
        One parameter, ``hvp``, of ``x``'s shape: an entry fails when it
        fails for any vector.

    Notes
    -----
    Without ``grad`` the numerical value differs from ``H v`` by a systematic
    ``O(k**2)`` term (fourth derivatives of ``f``; about ``1e-8`` relative in
    float64), which the error bar does not include: far below the default
    ``rtol`` for smooth functions of moderate curvature.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_hvp
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]]); x = np.array([0.5, -1.0])
    >>> f = lambda x: 0.5 * x @ A @ x + np.sum(x ** 4)
    >>> hvp = lambda v, x: A @ v + 12 * x ** 2 * v
    >>> check_hvp(f, x, hvp).passed
    True
    >>> check_hvp(f, x, hvp, grad=lambda x: A @ x + 4 * x ** 3).passed
    True
    >>> check_hvp(f, x, lambda v, x: A @ v + 4 * x ** 2 * v).passed   # 4 instead of 12
    False
    """
    start = time.perf_counter()
    opts = CheckOptions.build("check_hvp", dict(method=method, eps=eps, rtol=rtol, atol=atol,
                              seed=seed, upcast=upcast, backend=backend, **options))
    if f is None and grad is None:
        raise TypeError("f must be callable (it may be None only when grad is given)")
    if f is not None:
        _callable("f", f)
    _callable("hvp", hvp)
    if grad is not None:
        _callable("grad", grad)
    eps, rtol, atol, seed, upcast, args = _vector_options(opts, args)
    paramset = _single_input(x, f if f is not None else grad)
    x0 = paramset.arrays[0]
    loss = float("nan")
    evaluations = 0
    if f is not None:
        loss = float(np.real(loss_value(f(x0.copy(), *args),
                                        context="at the unperturbed point")))
        evaluations += 1
        if not np.isfinite(loss):
            raise ValueError(f"f returned {loss!r} at the unperturbed point; it must be finite")
    vs = _directions(vectors, "single", ["x"], [x0.shape], [x0.dtype], arg="vectors", seed=seed)
    analytic = [match_structure(hvp(v.copy(), x0.copy(), *args), "single", ["hvp"],
                                [x0.shape], what=f"hvp(vectors[{k}], x)", noun="output",
                                like="x")[0]
                for k, (v,) in enumerate(vs)]
    given = vectors is not None and not isinstance(vectors, numbers.Integral)
    how = _how_many(len(vs), "vector", given, seed)
    if grad is not None:
        vf = VectorFunction.prepare(grad, paramset, args, upcast=upcast,
                                    complex_step=method == "complex", seed=seed, what="grad")
        if vf.out_shape != x0.shape:
            raise ValueError(f"grad returned an array of shape {vf.out_shape}, but x has "
                             f"shape {x0.shape}")
        runs = _line_runs(vf, vs, analytic, opts, name="hvp", dtype=x0.dtype,
                          label="vectors")
        notes = [f"Hessian-vector products along {how}, against {method} differences of "
                 "grad; an entry fails if it fails for any vector"] + _noise_notes(vf) \
            + vf.notes
        findings = forward_findings(vf, opts.nondeterminism_tol, notes)
        return _finish(merge_runs(runs), method=method, mode="full", backend="python",
                       evaluations=evaluations + vf.evaluations, start=start,
                       upcast=vf.upcast, noise=float(np.max(vf.noise)), loss=loss,
                       notes=notes, noise_ulps=noise_ulps(vf), findings=findings)
    reports = []
    for k, ((v,), a) in enumerate(zip(vs, analytic)):
        phi = _second_difference(f, x0, v, f"vectors[{k}]")
        reports.append(check(phi, {"hvp": x0}, {"hvp": a}, args=args, method=method,
                             eps=eps, rtol=rtol, atol=atol, seed=seed, upcast=upcast,
                             backend="python", nondeterminism_tol=opts.nondeterminism_tol))
    notes = [f"Hessian-vector products along {how}, against the gradient of the second "
             "difference (f(x + k v) - f(x - k v)) / 2k (no grad given); an entry fails if "
             "it fails for any vector"] + [n for r in reports for n in r.notes]
    return _finish(merge_runs([r.params for r in reports]), method=method, mode=reports[0].mode,
                   backend=reports[0].backend,
                   evaluations=evaluations + sum(r.evaluations for r in reports),
                   start=start, upcast=any(r.upcast for r in reports),
                   noise=max(r.noise for r in reports), loss=loss, notes=notes,
                   findings=[f for r in reports for f in r.findings])


def _second_difference(f: Callable[..., Any], x0: np.ndarray, v: np.ndarray,
                       label: str) -> Callable[..., Any]:
    """``phi(x) = (f(x + k v) - f(x - k v)) / 2k``, whose gradient is ``H v + O(k**2)``."""
    v64 = np.asarray(v, dtype=np.float64)
    tau = float(np.max(np.abs(v64) / np.maximum(1.0, np.abs(x0.astype(np.float64)))))
    steps: dict[np.dtype, float] = {}

    def phi(*args: Any, hvp: np.ndarray) -> Any:
        hvp = hvp.reshape(x0.shape)  # the core hands 0-d parameters over as shape (1,)
        real = np.finfo(hvp.dtype).dtype
        if real not in steps:
            ideal = float(np.finfo(real).eps) ** config.HVP_INNER_STEP_POWER
            steps[real] = float(np.exp2(np.floor(np.log2(ideal)))) / tau
        k = steps[real]
        shift = (k * v64).astype(hvp.dtype)
        raw_plus = f(hvp + shift, *args)
        raw_minus = f(hvp - shift, *args)
        plus = loss_value(raw_plus, context=f"at x + {k:.3g} * {label}", allow_complex=True)
        minus = loss_value(raw_minus, context=f"at x - {k:.3g} * {label}", allow_complex=True)
        value = (plus - minus) / (2.0 * k)
        dtype = getattr(raw_plus, "dtype", None)
        if isinstance(value, float) and dtype is not None and dtype.kind == "f" \
                and dtype.itemsize < 8:
            return dtype.type(value)  # as precise as f's result
        return value

    return phi
