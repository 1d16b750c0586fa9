"""Finite differences of array-valued functions along lines through their inputs.

The scalar checks (:mod:`.problem`, :mod:`.estimation`) perturb one entry of
a scalar loss at a time. Jacobian-vector products, Jacobians and
Hessian-vector products need the derivative of *every output entry* along one
line ``s -> f(x + s d)``: one pair of evaluations gives a whole column.

This module

* prepares an array-valued ``f`` once (:meth:`VectorFunction.prepare`): the
  output at the unperturbed point, float64 evaluation of narrow inputs when
  ``f`` accepts it, the complex-step probe, and the noise of *every output
  entry* (the difference-table method of :mod:`.noise`, applied to all output
  entries at once by :func:`noise_by_output`);
* evaluates ``f`` along lines on private working copies (the user's arrays
  are never written);
* turns the outputs into estimates with error bars through the same
  :class:`~gradprobe.differences.stencils.Stencil` as the scalar checks, with one
  unperturbed value and one noise level per output entry
  (:func:`line_estimate`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..problem.params import ParamSet, upcast_args
from ..problem.tensors import as_host_array
from ..problem.noise import combine_readings, noise_by_output, noise_direction
from ..problem.point import format_entry, probe_complex, upcast_note
from .stencils import Estimate, Stencil, estimate_rows, one_sided_slope


def output_array(raw: Any, *, what: str, context: str, shape: tuple[int, ...] | None,
                 allow_complex: bool = False) -> np.ndarray:
    """What an array-valued function returned, as a validated ndarray.

    Parameters
    ----------
    raw : object
        The return value.
    what : str
        How to call the function in messages (``"f"``, ``"jvp"``, ``"grad"``).
    context : str
        Where it was evaluated (``"at the unperturbed point"``).
    shape : tuple of int or None
        The shape it must have (``None``: any non-empty shape).
    allow_complex : bool
        Accept a complex result (complex step).

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError
        A result that is not a real numeric array.
    ValueError
        A wrong shape, or an empty result.

    Examples
    --------
    >>> output_array([1.0, 2.0], what="f", context="here", shape=(2,))
    array([1., 2.])
    >>> output_array(np.ones(3), what="f", context="at x", shape=(2,))
    Traceback (most recent call last):
    ...
    ValueError: f returned an array of shape (3,) at x, expected shape (2,)
    """
    if isinstance(raw, (bool, np.bool_)):
        raise TypeError(f"{what} returned a bool {context}; it must return a numeric array")
    raw = as_host_array(raw)  # a torch tensor or JAX array: its values on the host
    if isinstance(raw, (tuple, list)) and raw and all(isinstance(v, np.ndarray) for v in raw):
        raise TypeError(f"{what} returned a {type(raw).__name__} of {len(raw)} arrays {context}; "
                        "this check takes one output array and never stacks several into "
                        "one: check_vjp and check_layer take several outputs, or return "
                        "np.concatenate([...]) yourself")
    try:
        array = np.asarray(raw)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what} returned {type(raw).__name__} {context}, which is not "
                        f"an array: {exc}") from exc
    kinds = "fiuc" if allow_complex else "fiu"
    if array.dtype.kind not in kinds:
        extra = " (complex)" if array.dtype.kind == "c" else ""
        raise TypeError(f"{what} returned {type(raw).__name__} of dtype {array.dtype}"
                        f"{extra} {context}; it must return a real floating array")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{what} returned an array of shape {array.shape} {context}, "
                         f"expected shape {tuple(shape)}")
    if array.size == 0:
        raise ValueError(f"{what} returned an empty array (shape {array.shape}) {context}")
    return array


def _precision(dtype: np.dtype) -> np.dtype:
    """The floating dtype whose epsilon describes values of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.finfo(dtype).dtype
    return np.dtype(np.float64)


@dataclass
class VectorFunction:
    """An array-valued function prepared for differences along lines.

    Attributes
    ----------
    f : callable
        The user's function.
    paramset : ParamSet
        The inputs (names, structure, the user's arrays: never written).
    args : tuple
        Extra positional arguments (upcast with the inputs).
    working : list of ndarray
        Private C-contiguous copies of the inputs in the evaluation dtype
        (complex for the complex step).
    out_shape : tuple of int
        Shape of ``f``'s output.
    out_dtype : numpy.dtype
        Dtype of the output at the user's own dtypes (for the report).
    eval_dtype : numpy.dtype
        Precision the outputs are computed in.
    y0 : ndarray
        The flat output at the unperturbed point (float64).
    noise : ndarray
        Noise of one evaluation of every output entry (flat).
    upcast : bool
        True when narrow inputs are evaluated in float64.
    complex_step : bool
        True when the working copies are complex.
    what : str
        How to call ``f`` in messages.
    notes : list of str
        Remarks for the report.
    evaluations : int
        Evaluations of ``f`` so far.
    repeats : list of (str, ndarray)
        Further outputs at the unperturbed point (the noise probe's centre
        points), to compare with ``y0`` (:mod:`gradprobe.verdict.determinism`).
    """

    f: Callable[..., Any]
    paramset: ParamSet
    args: tuple
    working: list[np.ndarray]
    out_shape: tuple[int, ...]
    out_dtype: np.dtype
    eval_dtype: np.dtype
    y0: np.ndarray
    upcast: bool
    complex_step: bool
    what: str = "f"
    noise: np.ndarray = field(default_factory=lambda: np.zeros(0))
    noise_measured: int = 0
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0
    repeats: list[tuple[str, np.ndarray]] = field(default_factory=list)

    # -- set-up -------------------------------------------------------------
    @classmethod
    def prepare(cls, f: Callable[..., Any], paramset: ParamSet, args: tuple, *,
                upcast: bool, complex_step: bool, seed: int,
                what: str = "f") -> "VectorFunction":
        """Evaluate the unperturbed point, pick the evaluation dtype, measure noise.

        Exceptions raised by ``f`` at the unperturbed point propagate unchanged.

        Examples
        --------
        >>> from gradprobe.problem.params import ParamSet
        >>> x = np.array([0.5, 1.0], dtype=np.float32)
        >>> vf = VectorFunction.prepare(np.tanh, ParamSet.from_user(x, np.tanh), (),
        ...                             upcast=True, complex_step=False, seed=0)
        >>> vf.out_shape, vf.upcast, vf.working[0].dtype, vf.out_dtype
        ((2,), True, dtype('float64'), dtype('float32'))
        """
        native = [np.array(a, order="C", copy=True) for a in paramset.arrays]  # keeps 0-d
        y = output_array(paramset.call(f, native, args), what=what,
                         context="at the unperturbed point", shape=None)
        out_shape, out_dtype = y.shape, y.dtype
        evaluations = 1
        notes: list[str] = []
        working, used_args, did_upcast = native, args, False
        eval_dtype = _precision(y.dtype)
        narrow = [n for n, a in zip(paramset.names, native)
                  if a.dtype.itemsize < config.UPCAST_DTYPE.itemsize]
        if upcast and narrow:
            wide = [a.astype(config.UPCAST_DTYPE) if n in narrow else a
                    for n, a in zip(paramset.names, native)]
            wide_args = upcast_args(args)
            try:
                evaluations += 1
                y_wide = output_array(paramset.call(f, wide, wide_args), what=what,
                                      context="at the unperturbed point (upcast)",
                                      shape=out_shape)
            except Exception as exc:  # f refused float64 input: evaluate natively
                notes.append(upcast_note("refused", ", ".join(narrow), what=what,
                                         detail=type(exc).__name__))
            else:
                if np.all(np.isfinite(y_wide)):
                    working, used_args, y, did_upcast = wide, wide_args, y_wide, True
                    eval_dtype = _precision(y_wide.dtype)
                    if eval_dtype.itemsize < 8:
                        notes.append(upcast_note("narrow result", ", ".join(narrow),
                                                 what=what, detail=str(eval_dtype)))
                    else:
                        notes.append(upcast_note("upcast", ", ".join(narrow), noun="input"))
                else:
                    notes.append(upcast_note("not finite", ", ".join(narrow), what=what,
                                             detail="non-finite values"))
        y0 = y.reshape(-1).astype(np.float64)
        if not np.all(np.isfinite(y0)):
            bad = int(np.flatnonzero(~np.isfinite(y0))[0])
            index = np.unravel_index(bad, out_shape) if out_shape else ()
            raise ValueError(f"{what} returned {y0[bad].item()!r} in "
                             f"{format_entry('output', index)} at the unperturbed point; "
                             "the output must be finite")
        if complex_step:
            working = [a.astype(np.result_type(a.dtype, np.complex64)) for a in working]
        vf = cls(f, paramset, used_args, [np.asarray(a, order="C") for a in working],
                 tuple(out_shape), np.dtype(out_dtype), eval_dtype, y0, did_upcast,
                 complex_step, what, notes=notes, evaluations=evaluations)
        if complex_step:
            vf._probe_complex()
        vf._measure_noise(seed)
        return vf

    def _probe_complex(self) -> None:
        """Check that ``f`` carries an imaginary perturbation through to its output."""
        self.evaluations += 1
        probe_complex(lambda arrays: self.paramset.call(self.f, arrays, self.args),
                      self.working, self.paramset.names[0], needs=f"a {self.what}",
                      what=self.what, noun="input")

    def _measure_noise(self, seed: int) -> None:
        """Noise of every output entry along one random direction through the inputs."""
        base, direction = noise_direction(self.working, seed)
        eps = float(np.finfo(self.eval_dtype).eps)
        offsets = np.arange(-config.NOISE_HALF_POINTS, config.NOISE_HALF_POINTS + 1)
        spacing = eps ** config.NOISE_SPACING_POWER
        readings = []
        for delta in (spacing, spacing / config.NOISE_SPACING_FACTOR):
            rows = []
            for k in offsets:
                arrays = [(b + (k * delta) * d).astype(w.dtype)
                          for b, d, w in zip(base, direction, self.working)]
                rows.append(np.real(self.output(arrays, "while measuring its noise",
                                                finite=False)))
                if k == 0:  # the unperturbed point again
                    self.repeats.append((f"call {len(self.repeats) + 2}", rows[-1]))
            readings.append(noise_by_output(np.stack(rows)))
        level = combine_readings(*readings)
        self.noise_measured = int(np.count_nonzero(level > 0))
        floor = config.NOISE_FLOOR_ULPS * eps * np.abs(self.y0)
        self.noise = np.maximum(level, floor)

    # -- evaluation ---------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of output entries."""
        return int(self.y0.size)

    @property
    def eps(self) -> float:
        """Machine epsilon of the evaluation dtype."""
        return float(np.finfo(self.eval_dtype).eps)

    @property
    def noise_rel(self) -> float:
        """Relative noise used to choose steps: the noisiest entry against the
        output's scale, at least the evaluation epsilon."""
        scale = max(float(np.max(np.abs(self.y0))), np.finfo(np.float64).tiny)
        rel = float(np.max(self.noise)) / scale
        return float(min(max(rel, self.eps), config.MAX_NOISE_REL))

    def output(self, arrays: Sequence[np.ndarray], context: str, *,
               finite: bool = True) -> np.ndarray:
        """The flat output at ``arrays`` (float64, or complex128 for the complex step)."""
        self.evaluations += 1
        raw = self.paramset.call(self.f, arrays, self.args)
        y = output_array(raw, what=self.what, context=context, shape=self.out_shape,
                         allow_complex=self.complex_step)
        flat = y.reshape(-1).astype(np.complex128 if self.complex_step else np.float64)
        # a finite sum needs finite entries: one pass without a temporary (the
        # full test only when the sum is not finite, which overflow also makes)
        if finite and not np.isfinite(flat.sum()) and not np.all(np.isfinite(flat)):
            bad = int(np.flatnonzero(~np.isfinite(flat))[0])
            index = np.unravel_index(bad, self.out_shape) if self.out_shape else ()
            raise ValueError(
                f"{self.what} returned {flat[bad].item()!r} in {format_entry('output', index)} "
                f"{context}; the output must be finite near the checked point: pass a "
                "smaller eps, or check a point further from the domain boundary")
        return flat

    def along(self, direction: Sequence[np.ndarray], s: float | complex,
              context: str) -> np.ndarray:
        """The output at ``x + s * direction`` (rounded to the working dtypes)."""
        arrays = [(w + s * d).astype(w.dtype, copy=False)
                  for w, d in zip(self.working, direction)]
        return self.output(arrays, context)

    def with_entry(self, param: int, flat_index: int, value: Any, context: str) -> np.ndarray:
        """The output with one entry of one working copy replaced by ``value``."""
        flat = self.working[param].reshape(-1)
        original = flat[flat_index]
        try:
            flat[flat_index] = value
            return self.output(self.working, context)
        finally:
            flat[flat_index] = original


def line_estimate(evaluate: Callable[[Any], np.ndarray], origin: Any, h: float, method: str,
                  vf: VectorFunction) -> Estimate:
    """Derivative of every output entry along one line, with error bars.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(s)`` returns the flat output at the point ``s`` of the line.
    origin : scalar
        The parameter of the unperturbed point (its dtype is the dtype the
        perturbed points are rounded to).
    h : float
        The step along the line.
    method : str
        ``"central"``, ``"forward"``, ``"richardson"`` or ``"complex"``.
    vf : VectorFunction
        Supplies the unperturbed output, the noise per entry and the epsilon.

    Returns
    -------
    Estimate
        One derivative per output entry, error bars from each entry's own
        noise (rounding) and curvature (truncation).

    Examples
    --------
    >>> from gradprobe.problem.params import ParamSet
    >>> x = np.array([0.3, -1.2])
    >>> vf = VectorFunction.prepare(np.sin, ParamSet.from_user(x, np.sin), (),
    ...                             upcast=True, complex_step=False, seed=0)
    >>> est = line_estimate(lambda s: vf.along([np.ones(2)], s, "test"), 0.0, 2.0 ** -17,
    ...                     "central", vf)
    >>> bool(np.all(np.abs(est.value - np.cos(x)) <= est.error_bar))
    True
    """
    points = line_points(origin, h, method)
    if method == "complex":
        y = evaluate(points[0])
        value = np.imag(y) / h
        bar = config.NOISE_SAFETY * vf.eps * np.abs(value)
        return Estimate(value, bar)
    stencil = Stencil(method)
    origin_array = np.asarray([np.real(origin)])
    if method == "central" and vf.size >= config.LINE_KERNEL_MIN_OUTPUTS and \
            origin_array.dtype == np.float64 and origin_array[0] == 0.0:
        from .line_kernel import central_line   # one fused pass (the same bits)

        yp, ym = (np.ascontiguousarray(np.real(evaluate(p)), dtype=np.float64) for p in points)
        value, bar, left, right, truncation = central_line(yp, ym, vf.y0, vf.noise,
                                                           float(points[0]), vf.eps)
        return Estimate(value, bar, left, right, truncation=truncation)
    # one output at a time into one (m, points) array; the stencil's temporaries
    # exist for config.ESTIMATE_CHUNK output entries at a time (estimate_rows)
    outputs = None
    for column, p in enumerate(points):
        y = np.real(evaluate(p))
        if outputs is None:
            outputs = np.empty((y.size, points.size))
        outputs[:, column] = y.reshape(-1)
        del y
    m = outputs.shape[0]
    x = np.broadcast_to(np.float64(origin_array[0]), (m,))
    return estimate_rows(stencil, outputs, x,
                         np.broadcast_to(points.astype(np.float64), outputs.shape),
                         f0=vf.y0, noise=vf.noise, eps=vf.eps)


def line_points(origin: Any, h: float, method: str) -> np.ndarray:
    """The points ``s`` of the line at which :func:`line_estimate` evaluates, in order.

    Examples
    --------
    >>> line_points(0.0, 0.5, "central").tolist(), line_points(0.0, 0.5, "complex").tolist()
    ([0.5, -0.5], [0.5j])
    """
    if method == "complex":
        return np.array([float(np.real(origin)) + 1j * h])
    return Stencil(method).points(np.asarray([np.real(origin)]), np.array([float(h)]))[0]


def one_sided_line(evaluate: Callable[[Any], np.ndarray], origin: Any, h: float,
                   vf: VectorFunction) -> tuple[np.ndarray, np.ndarray]:
    """Left and right one-sided derivatives of every output entry at step ``h``: the
    second-order :func:`~gradprobe.differences.stencils.one_sided_slope` through
    ``x``, ``x +- h`` and ``x +- 2h``, as for the scalar checks' kinks.

    Examples
    --------
    >>> from gradprobe.problem.params import ParamSet
    >>> x = np.array([0.0, 1.0])
    >>> vf = VectorFunction.prepare(np.abs, ParamSet.from_user(x, np.abs), (),
    ...                             upcast=True, complex_step=False, seed=0)
    >>> left, right = one_sided_line(lambda s: vf.along([np.ones(2)], s, "t"), 0.0,
    ...                              2.0 ** -20, vf)
    >>> left.tolist(), right.tolist()
    ([-1.0, 1.0], [1.0, 1.0])
    """
    origin_array = np.asarray([np.real(origin)])
    steps = np.array([h, -h, 2 * h, -2 * h])
    points = (origin_array[0] + steps).astype(origin_array.dtype)
    plus, minus, plus2, minus2 = (np.real(evaluate(p)) for p in points)
    x = np.float64(origin_array[0])
    p = points.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        right = one_sided_slope(vf.y0, x, p[0], plus, p[2], plus2)
        left = one_sided_slope(vf.y0, x, p[1], minus, p[3], minus2)
    return left, right


def scaled(estimate: Estimate, factor: float) -> Estimate:
    """An estimate of ``factor`` times the derivative (a rescaled line parameter).

    Examples
    --------
    >>> scaled(Estimate(np.array([1.0]), np.array([0.1])), 3.0).value
    array([3.])
    """
    def times(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a * factor

    return Estimate(estimate.value * factor, estimate.error_bar * abs(factor),
                    times(estimate.left), times(estimate.right))
