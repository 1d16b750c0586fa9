"""The function must be a function: one rule for every check.

A finite difference compares two evaluations of ``f``. If ``f`` changes
between calls at the same point (a dropout mask redrawn on every call, an
unseeded sampler, weights drawn when a layer is first used, a layer still in
training mode), the differences measure the randomness, not the derivative,
and no verdict means anything: a correct gradient fails, a wrong one passes.

So before any verdict stands, the output at the unperturbed point is
evaluated again: by a second call, and by every private copy a check uses
(the centre points of the noise probe are such calls, at no extra cost;
:func:`gradprobe.check_layer` adds each copy of the layer). The outputs must
agree bit for bit, or within ``config.NOISE_SAFETY`` times the measured noise
(threaded reductions round differently from call to call) and the measured
noise must stay below ``config.NONDETERMINISM_ULPS`` units of rounding. If
not, the check gets the finding ``nondeterministic-forward`` and its status
is ``"inconclusive"``: neither passed nor failed.

:func:`reproducibility` is the rule; :func:`problem_determinism` and
:func:`vector_determinism` apply it to the scalar and the array-valued
checks' prepared functions.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import config
from ..differences.vector import VectorFunction
from ..problem.point import Problem
from ..report.findings import Finding

#: How to make a forward pass deterministic (the finding's advice).
ADVICE = ("fix the random seed inside it (or pass a seeded generator), put the model in "
          "evaluation mode (no dropout, no batch statistics), and initialize lazily "
          "created weights before checking (call forward once)")


def reproducibility(base: Any, repeats: Sequence[tuple[str, Any]], *, eval_dtype: Any,
                    noise: float = 0.0, tolerance: float | None = None,
                    what: str = "f", scale: float = 0.0) -> tuple[Finding | None, str | None]:
    """Judge whether ``repeats`` reproduce ``base``: a finding, or a note, or neither.

    Parameters
    ----------
    base : array_like
        The output at the unperturbed point (the first call).
    repeats : sequence of (str, array_like)
        Other evaluations at the same point, each with where it came from
        (``"a second call"``, ``"copy 2 of the layer"``).
    eval_dtype : numpy.dtype
        The precision the outputs are computed in (its epsilon is the
        rounding level).
    noise : float
        The largest measured noise of one output entry (absolute; 0 when
        unknown).
    tolerance : float, optional
        The user's ``nondeterminism_tol``: an allowed difference relative to
        the largest output entry (default ``config.NONDETERMINISM_TOL``).
    what : str
        How to call the function in the message.
    scale : float
        The output's scale when it is larger than its largest entry (a loss
        whose terms cancel to about 0 still rounds on the scale of its terms).

    Returns
    -------
    finding : Finding or None
        ``nondeterministic-forward`` (status ``"inconclusive"``) when the
        output changed by more than is allowed.
    note : str or None
        A remark when the outputs differ within the allowance.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([1.0, 2.0])
    >>> reproducibility(y, [("a second call", y.copy())], eval_dtype=np.float64)
    (None, None)
    >>> finding, _ = reproducibility(y, [("a second call", np.array([1.0, 2.5]))],
    ...                              eval_dtype=np.float64)
    >>> finding.kind, finding.status
    ('nondeterministic-forward', 'inconclusive')
    """
    tol = config.NONDETERMINISM_TOL if tolerance is None else float(tolerance)
    base64 = _float(base)
    eps = float(np.finfo(np.dtype(eval_dtype)).eps) if np.dtype(eval_dtype).kind in "fc" \
        else float(np.finfo(np.float64).eps)
    worst: tuple[float, str, tuple[int, ...]] | None = None
    for label, value in repeats:
        other = _float(value)
        if other.shape != base64.shape:
            return (Finding("nondeterministic-forward", "inconclusive",
                            f"nondeterministic-forward: {what} returned an output of shape "
                            f"{other.shape} at the unperturbed point on {label}, but "
                            f"{base64.shape} on the first call; {ADVICE}"), None)
        if np.array_equal(base64, other, equal_nan=True):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(base64 - other)
        diff = np.where(np.isnan(diff), np.inf, diff)
        flat = int(np.argmax(diff.reshape(-1)))
        value_ = float(diff.reshape(-1)[flat])
        if worst is None or value_ > worst[0]:
            index = tuple(int(i) for i in np.unravel_index(flat, base64.shape)) \
                if base64.shape else ()
            worst = (value_, label, index)
    if worst is None:
        return None, None
    difference, label, index = worst
    scale = max(float(np.max(np.abs(base64), initial=0.0)), float(scale),
                np.finfo(np.float64).tiny / eps)
    ulps = difference / (eps * scale)
    noise_ulps = noise / (eps * scale)
    where = f" (output{list(index)})" if index else ""
    if tol > 0 and difference <= tol * scale:
        return None, (f"{what} gave a different output at the same point on {label} "
                      f"(by {difference:.3g}{where}), within nondeterminism_tol={tol:g}")
    if difference > config.NOISE_SAFETY * noise or \
            max(ulps, noise_ulps) > config.NONDETERMINISM_ULPS:
        return (Finding(
            "nondeterministic-forward", "inconclusive",
            f"nondeterministic-forward: {what} is not a function of its inputs: at the "
            f"unperturbed point, {label} gave an output that differs from the first call by "
            f"{difference:.3g}{where}, {ulps:.3g} x its rounding level (measured noise "
            f"{noise_ulps:.3g} x); finite differences then measure the randomness, not the "
            f"derivative, and the entries' verdict is set aside; {ADVICE}"), None)
    return None, (f"{what} is not bit-reproducible: {label} differs from the first call by "
                  f"{difference:.3g}{where} ({ulps:.3g} x its rounding level), within its "
                  "measured noise")


def problem_determinism(problem: Problem, tolerance: float | None = None,
                        what: str = "f") -> tuple[Finding | None, str | None]:
    """:func:`reproducibility` of a scalar check's prepared loss (its base value
    against the centre points of its noise probe)."""
    base, repeats = _comparable(problem.f0, problem.repeats, problem.complex_step)
    return reproducibility(np.asarray(base), repeats,
                           eval_dtype=problem.eval_dtype, noise=problem.noise.level,
                           tolerance=tolerance, what=what, scale=problem.noise.slope)


def vector_determinism(vf: VectorFunction, tolerance: float | None = None
                       ) -> tuple[Finding | None, str | None]:
    """:func:`reproducibility` of an array-valued check's prepared function."""
    noise = float(np.max(vf.noise)) if vf.noise.size else 0.0
    if vf.noise_measured == 0:
        noise = 0.0  # the floor only: no measurement to allow for
    base, repeats = _comparable(vf.y0, vf.repeats, vf.complex_step)
    return reproducibility(base, repeats, eval_dtype=vf.eval_dtype, noise=noise,
                           tolerance=tolerance, what=vf.what)


def _comparable(base: Any, repeats: Sequence[tuple[str, Any]], complex_step: bool
                ) -> tuple[Any, Sequence[tuple[str, Any]]]:
    """With the complex step the repeats are the real parts of complex evaluations,
    which round differently from the real base call: compare them with each other."""
    if complex_step and repeats:
        return repeats[0][1], repeats[1:]
    return base, repeats


def _float(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "c":
        array = array.real
    return array.astype(np.float64)
