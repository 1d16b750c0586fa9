"""The numerical problem: ``f``, private working copies, and the base point.

:func:`prepare` does everything that happens once per call before any entry
is perturbed: it evaluates ``f`` at the unperturbed point (so a broken ``f``
fails early, with its own exception), decides the evaluation dtype (float64
for narrow parameters when upcasting works), probes complex-step support,
and measures the noise of ``f``. Engines then perturb the working copies in
:class:`Problem`, never the user's arrays.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from .noise import NoiseEstimate, estimate_noise, noise_direction
from .params import ParamSet, loss_value, upcast_args, working_dtype


@dataclass
class Problem:
    """Everything an engine needs to evaluate perturbed losses.

    Attributes
    ----------
    f : callable
        The user's loss.
    paramset : ParamSet
        Names, structure and the user's (read-only to us) arrays.
    args : tuple
        Extra positional arguments for ``f`` (upcast when the parameters are).
    working : list of ndarray
        Private C-contiguous copies of the parameters in the evaluation dtype
        (complex for the complex step). Engines perturb these or copies of them.
    f0 : float
        The loss at the unperturbed point (real part for the complex step).
    eval_dtype : numpy.dtype
        Precision the loss is computed in.
    upcast : bool
        True when narrow parameters are evaluated in float64.
    noise : NoiseEstimate
        Noise of one evaluation of ``f``.
    notes : list of str
        Remarks for the report (e.g. why upcasting was not possible).
    evaluations : int
        Loss evaluations spent so far (base point, probes, entries).
    loss_seconds : float
        Measured wall time of one evaluation of ``f`` (from the noise probe,
        or the base point when the probe made no evaluation); ``mode="auto"``
        uses it to estimate what a full check would cost.
    repeats : list of (str, float)
        Further evaluations at the unperturbed point (the centre points of the
        noise probe), to compare with ``f0``: the function must be a function
        (:mod:`gradprobe.verdict.determinism`).
    """

    f: Callable[..., Any]
    paramset: ParamSet
    args: tuple
    working: list[np.ndarray]
    f0: float
    eval_dtype: np.dtype
    upcast: bool
    noise: NoiseEstimate
    complex_step: bool = False
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0
    loss_seconds: float = float("nan")
    repeats: list[tuple[str, float]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Parameter names, in order."""
        return self.paramset.names

    def loss(self, arrays: Sequence[np.ndarray], context: str) -> float | complex:
        """Evaluate ``f`` at ``arrays`` and validate the result."""
        self.evaluations += 1
        return loss_value(self.paramset.call(self.f, arrays, self.args),
                          context=context, allow_complex=self.complex_step)

    @property
    def noise_rel(self) -> float:
        """Relative noise of one evaluation, at least the evaluation epsilon.

        Relative to the loss's scale: ``|f(x)|``, or the slope the noise probe
        saw when that is larger (a loss whose terms cancel to about 0 at the
        point still varies on the scale of its gradient entries).
        """
        eps = float(np.finfo(self.eval_dtype).eps)
        scale = max(abs(self.f0), self.noise.slope, np.finfo(np.float64).tiny)
        rel = self.noise.level / scale
        return float(min(max(rel, eps), config.MAX_NOISE_REL))

    def describe_point(self, param: int, flat_index: int, value: Any) -> str:
        """Human-readable 'with W[1, 2] = 0.5' for error messages."""
        shape = self.paramset.arrays[param].shape
        index = np.unravel_index(flat_index, shape) if shape else ()
        if isinstance(value, np.generic):
            value = value.item()
        return f"with {format_entry(self.names[param], index)} = {value!r}"


def format_entry(name: str, index: Sequence[int]) -> str:
    """``W[1, 2]`` for a parameter name and an index tuple (``b`` for 0-d)."""
    if len(index) == 0:
        return name
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


def upcast_note(case: str, narrow: str, *, what: str = "f", noun: str = "parameter",
                detail: str = "") -> str:
    """The report's note on how narrow arrays (``narrow``: their names) were evaluated:
    one wording for the scalar and the vector checks.

    ``case`` is ``"upcast"`` (in float64), ``"narrow result"`` (upcast, but ``what``
    returned ``detail``, a narrow dtype), ``"refused"`` (``what`` raised ``detail``
    for float64 input), ``"not finite"`` (it returned ``detail`` for float64
    input) or ``"float64 only"`` (it raised ``detail`` in their own dtype).

    Examples
    --------
    >>> upcast_note("refused", "x", detail="TypeError")
    'x evaluated in their own dtype: f raised TypeError for float64 input'
    """
    if case == "upcast":
        return (f"{narrow} evaluated in float64 (upcast); pass upcast=False to evaluate "
                f"in the {noun}s' dtype")
    if case == "narrow result":
        return (f"{narrow} upcast to float64, but {what} returned {detail}: the error bars "
                f"use {detail} noise")
    if case == "refused":
        return f"{narrow} evaluated in their own dtype: {what} raised {detail} for float64 input"
    if case == "not finite":
        return f"{narrow} evaluated in their own dtype: {what} returned {detail} for float64 input"
    if case == "float64 only":
        return (f"{what} raised {detail} for {narrow} in their own dtype; the check "
                "evaluates it in float64 only")
    raise ValueError(f"unknown upcast note {case!r}")


def _result_dtype(raw: Any, fallback: np.dtype) -> np.dtype:
    """Precision of what ``f`` returned (Python floats count as float64)."""
    if isinstance(raw, (np.ndarray, np.generic)) and raw.dtype.kind in "fc":
        return np.finfo(raw.dtype).dtype
    if isinstance(raw, float):
        return np.dtype(np.float64)
    return fallback


def prepare(f: Callable[..., Any], paramset: ParamSet, args: tuple, *,
            upcast: bool, complex_step: bool, seed: int) -> Problem:
    """Evaluate the base point, pick the evaluation dtype, and measure noise.

    Exceptions raised by ``f`` at the unperturbed point propagate unchanged.
    """
    native = [np.array(a, order="C", copy=True) for a in paramset.arrays]
    narrow = ", ".join(n for n, a in zip(paramset.names, native)
                       if a.dtype.itemsize < config.UPCAST_DTYPE.itemsize)
    wants_upcast = upcast and bool(narrow)
    notes: list[str] = []
    evaluations = 0
    started = time.perf_counter()
    native_ran = True
    try:
        raw = _call_base(f, paramset, native, args)
        evaluations += 1
    except Exception as native_error:
        if not wants_upcast:
            raise
        native_ran = False
        # f may not run in the narrow dtype at all (Numba has no float16
        # arithmetic): if it runs upcast, that is the evaluation we want anyway.
        wide_ok = True
        try:
            raw = _call_base(f, paramset, [a.astype(working_dtype(a.dtype, True))
                                           for a in native], upcast_args(args))
            evaluations += 1
        except Exception:
            wide_ok = False
        if not wide_ok:
            raise native_error
        notes.append(upcast_note("float64 only", narrow, detail=type(native_error).__name__))
    base_seconds = time.perf_counter() - started
    f0 = loss_value(raw, context="at the unperturbed point")
    if not np.isfinite(f0):
        raise ValueError(f"f returned {f0!r} at the unperturbed point; the loss must be finite")
    native_dtype = min((a.dtype for a in native), key=lambda d: d.itemsize)
    eval_dtype = np.dtype(np.float64) if native_dtype.itemsize >= 8 else \
        _result_dtype(raw, native_dtype)
    working, used_args, did_upcast = native, args, False

    if wants_upcast:
        wide = [a.astype(working_dtype(a.dtype, True)) for a in native]
        wide_args = upcast_args(args)
        try:
            raw_wide = paramset.call(f, wide, wide_args)
            evaluations += 1
            f0_wide = loss_value(raw_wide, context="at the unperturbed point (upcast)")
        except Exception as exc:  # f refused float64 input: evaluate natively
            notes.append(upcast_note("refused", narrow, detail=type(exc).__name__))
        else:
            if np.isfinite(f0_wide):
                working, used_args, f0, did_upcast = wide, wide_args, f0_wide, True
                eval_dtype = _result_dtype(raw_wide, config.UPCAST_DTYPE)
                if eval_dtype.itemsize < 8:
                    notes.append(upcast_note("narrow result", narrow, detail=str(eval_dtype)))
                elif native_ran:  # otherwise upcast=False cannot work (noted above)
                    notes.append(upcast_note("upcast", narrow))
            else:
                notes.append(upcast_note("not finite", narrow, detail=repr(f0_wide)))

    if complex_step:
        working = [a.astype(np.result_type(a.dtype, np.complex64)) for a in working]
        probe_complex(lambda arrays: paramset.call(f, arrays, used_args), working,
                      paramset.names[0])
        evaluations += 1

    problem = Problem(f, paramset, used_args, [np.require(a, requirements="C") for a in working],
                      float(f0), eval_dtype, did_upcast,
                      NoiseEstimate(0.0, False, 0), complex_step, notes, evaluations)
    started = time.perf_counter()
    problem.noise = _measure_noise(problem, seed)
    problem.evaluations += problem.noise.evaluations
    probe_seconds = time.perf_counter() - started
    problem.loss_seconds = probe_seconds / problem.noise.evaluations \
        if problem.noise.evaluations else base_seconds
    if not problem.noise.measured:
        notes.append("noise of f could not be measured; error bars assume "
                     f"{config.NOISE_FLOOR_ULPS:g} ulp of |f|")
    return problem


def _call_base(f: Callable[..., Any], paramset: ParamSet, arrays: list[np.ndarray],
               args: tuple) -> Any:
    """Call ``f`` at the base point; a Numba function that does not compile for
    these argument types gets a TypeError naming them, not Numba's own error."""
    try:
        return paramset.call(f, arrays, args)
    except Exception as exc:
        if hasattr(f, "py_func") and type(exc).__name__ == "TypingError" and \
                "numba" in type(exc).__module__:
            given = ", ".join(f"{n}: {a.dtype}{list(a.shape)}"
                              for n, a in zip(paramset.names, arrays))
            extra = ", ".join(type(a).__name__ for a in args)
            raise TypeError(
                f"the numba function {getattr(f, '__name__', 'f')!r} does not compile for "
                f"the parameters ({given})" + (f" and args ({extra})" if extra else "") +
                f"; Numba said: {str(exc).strip().splitlines()[0]}") from exc
        raise


def probe_complex(call: Callable[[list[np.ndarray]], Any], working: list[np.ndarray],
                  name: str, *, needs: str = "an f", what: str = "f",
                  noun: str = "parameter") -> None:
    """Check that a function carries an imaginary perturbation through to its result:
    ``call`` (``f`` bound to its arguments) at the complex ``working`` copies with an
    imaginary step in the first entry of the first array (``name``). The one probe
    of the scalar and the vector checks; ``needs``, ``what`` and ``noun`` word the
    message (``"an f"``, ``"f"``, ``"parameter"``)."""
    probe = [a.copy() for a in working]
    flat = probe[0].reshape(-1)
    flat[0] = flat[0] + 1j * config.COMPLEX_STEP * max(1.0, abs(flat[0].real))
    hint = (f"method='complex' needs {needs} written for complex input (no abs(), "
            f"np.real, comparisons or real-typed buffers on the path of the {noun}s)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            raw = call(probe)
    except Exception as exc:
        raise TypeError(f"{hint}; calling {what} with complex {name!r} raised "
                        f"{type(exc).__name__}: {exc}") from exc
    value = np.asarray(raw)
    if value.dtype.kind != "c":
        raise TypeError(f"{hint}; {what} returned a real {value.dtype} for complex {name!r}, "
                        "so the imaginary part of the step was dropped")


def _measure_noise(problem: Problem, seed: int) -> NoiseEstimate:
    """Noise of ``f`` along a random direction through all parameters."""
    base, direction = noise_direction(problem.working, seed)
    real_dtypes = [a.real.dtype for a in problem.working]
    eps = float(np.finfo(problem.eval_dtype).eps)
    floor = config.NOISE_FLOOR_ULPS * eps * max(abs(problem.f0), np.finfo(np.float64).tiny)

    def loss_along(t: float) -> float:
        arrays = [(b + t * d).astype(dt) for b, d, dt in zip(base, direction, real_dtypes)]
        if problem.complex_step:
            arrays = [a.astype(w.dtype) for a, w in zip(arrays, problem.working)]
        value = loss_value(problem.paramset.call(problem.f, arrays, problem.args),
                           context="while measuring the noise of f",
                           allow_complex=problem.complex_step)
        if t == 0.0:  # the unperturbed point again: f must give f0 again
            problem.repeats.append((f"call {len(problem.repeats) + 2}", float(np.real(value))))
        return float(np.real(value))

    return estimate_noise(loss_along, eps ** config.NOISE_SPACING_POWER, floor)
