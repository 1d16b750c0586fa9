"""The Numba engine: every perturbed loss of a ``numba.njit`` loss in one parallel kernel.

``f`` keeps its natural signature: the kernel calls it with the parameters
and ``args`` exactly as the Python engine does, by the one binding rule of
:func:`gradprobe.problem.params.bind_call` (dict parameters go to ``f``'s
arguments of those names, positionally, since compiled code has no
``**kwargs``). Entries are split into chunks; each chunk copies the
parameters once, then perturbs one entry at a time, calls ``f`` and restores
the entry (:mod:`.numba_kernel`). ``f`` runs as the same compiled code the
Python engine reaches through the dispatcher, so the losses are bit-identical
to ``backend="python"`` whatever the thread count.

Compile cost: the kernel takes ``f`` as a first-class function value, so it
is compiled once per layout of argument types (not per ``f``, never per
shape) and cached on disk. When ``f`` needs its omitted default arguments the
kernel is typed on ``f`` itself instead: compiled for each ``f``, not cached.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .. import config
from ..problem.params import loss_value
from .base import batch_rows

if TYPE_CHECKING:
    from ..problem.point import Problem

#: Serialises kernel launches under Numba's ``workqueue`` threading layer,
#: which aborts the process when two parallel regions run at once.
_WORKQUEUE_LOCK = threading.Lock()


def is_numba_function(f: object) -> bool:
    """True when ``f`` is a CPU ``numba.njit`` dispatcher (without importing Numba)."""
    numba = sys.modules.get("numba")
    if numba is None or not hasattr(f, "py_func"):
        return False
    from numba.core.registry import CPUDispatcher

    return isinstance(f, CPUDispatcher)


@dataclass
class _Plan:
    """How one problem is laid out for the kernel (built on the first evaluation)."""

    slots: tuple                  # f's positional arguments, 0-d arrays as shape (1,)
    roles: tuple                  # numba_kernel.ROLES zeros, one per slot
    param_slot: list[int]         # slot of every parameter
    out_dtype: np.dtype           # float64, or complex128 when f returns complex
    point_dtype: np.dtype         # float64 or complex128 (exact for every working dtype)
    kernel: Any                   # compiled numba_kernel.evaluate_chunks (None: not yet)
    parallel: bool
    f: Any = None                 # what the kernel calls: f, or f's size-1 result's entry
    notes: list[str] = field(default_factory=list)
    attempts: list = field(default_factory=list)   # (parallel, as_pointer, argsig) to try
    described: str = ""           # f's argument types, for messages


class NumbaEngine:
    """Evaluate perturbed losses of a ``numba.njit`` ``f`` in one parallel kernel.

    Parameters
    ----------
    workers : int, optional
        Numba threads for the call (``numba.set_num_threads``; the previous
        value is restored afterwards). ``None`` uses the current Numba thread
        count. Numba can only lower the count below its start-up maximum
        ``NUMBA_NUM_THREADS`` (by default the number of cores); a larger
        value is clamped to it, with a note in the report.

    Examples
    --------
    >>> import numba, numpy as np, gradprobe as gp
    >>> @numba.njit
    ... def loss(w, x):
    ...     return np.sum((w * x) ** 2)
    >>> w, x = np.array([1.0, 2.0]), np.array([3.0, 0.5])
    >>> report = gp.check(loss, w, 2 * w * x ** 2, args=(x,), workers=1)
    >>> report.backend, report.passed
    ('numba', True)
    """

    name = "numba"

    def __init__(self, workers: int | None = None):
        import numba

        self.requested = workers
        self.max_threads = int(numba.config.NUMBA_NUM_THREADS)
        self.threads = min(workers, self.max_threads) if workers else None
        self._plan: tuple[Any, _Plan] | None = None

    # -- the contract ---------------------------------------------------
    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        plan = self._plan_for(problem)
        k, m = points.shape
        out = np.empty((k, m), dtype=plan.out_dtype)
        if k == 0 or m == 0:
            return out.astype(_result_dtype(problem))
        if plan.kernel is None and not _worth_compiling(problem, plan, k * m):
            return _evaluate_in_python(problem, param, entries, points)
        if plan.kernel is None:
            _compile(plan, problem)
        entries = np.ascontiguousarray(entries, dtype=np.int64)
        wide = np.ascontiguousarray(points, dtype=plan.point_dtype)  # exact widening
        with self._thread_count() as threads:
            batch = batch_rows(m, problem.loss_seconds, threads if plan.parallel else 1)
            for lo in range(0, k, batch):  # Ctrl-C is seen between launches
                hi = min(k, lo + batch)
                rows = hi - lo
                chunks = min(rows, threads * config.NUMBA_CHUNKS_PER_THREAD) \
                    if plan.parallel else 1
                bounds = (np.arange(chunks + 1, dtype=np.int64) * rows) // chunks
                failed = np.zeros(chunks, dtype=np.int64)
                with _launch_guard():
                    plan.kernel(plan.f, plan.param_slot[param], entries[lo:hi],
                                wide[lo:hi], out[lo:hi], failed, bounds, plan.slots,
                                plan.roles)
                problem.evaluations += rows * m
                if failed.any():
                    _reraise(problem, param, entries, points,  # code: row * m + col
                             lo * m + int(failed[failed > 0].min()) - 1)
        if out.dtype.kind == "c" and not problem.complex_step:
            out = _real_losses(problem, param, entries, points, out)
        return out

    # -- threads ----------------------------------------------------------
    @contextlib.contextmanager
    def _thread_count(self) -> Iterator[int]:
        """Set Numba's thread count for the call; restore it in ``finally``."""
        import numba

        previous = numba.get_num_threads()
        threads = self.threads or previous
        chunksize = numba.get_parallel_chunksize()
        try:
            numba.set_num_threads(threads)
            numba.set_parallel_chunksize(1)  # threads take chunks dynamically
            yield threads
        finally:
            numba.set_parallel_chunksize(chunksize)
            numba.set_num_threads(previous)

    # -- layout and compilation ----------------------------------------------
    def _plan_for(self, problem: "Problem") -> _Plan:
        if self._plan is not None and self._plan[0] is problem:
            return self._plan[1]
        plan = _make_plan(problem)
        if self.requested and self.requested > self.max_threads:
            plan.notes.append(
                f"workers={self.requested} clamped to {self.max_threads}: Numba's thread "
                f"pool was started with NUMBA_NUM_THREADS={self.max_threads} (set that "
                "environment variable before importing numba to raise it)")
        for note in plan.notes:
            if note not in problem.notes:
                problem.notes.append(note)
        self._plan = (problem, plan)
        return plan


def _result_dtype(problem: "Problem") -> np.dtype:
    return np.dtype(np.complex128 if problem.complex_step else np.float64)


@contextlib.contextmanager
def _launch_guard() -> Iterator[None]:
    """One parallel launch at a time under the workqueue layer (it cannot nest)."""
    if _threading_layer() == "workqueue":
        with _WORKQUEUE_LOCK:
            yield
    else:
        yield


def _threading_layer() -> str:
    import numba

    numba.get_num_threads()  # starts the thread pool, which fixes the layer
    try:
        return numba.threading_layer()
    except ValueError:  # pragma: no cover - pool not started
        return "unknown"


def call_layout(problem: "Problem") -> list[tuple[str, int]]:
    """``f``'s positional arguments in call order: ``("param", i)`` or ``("arg", j)``.

    The binding every engine uses (:func:`gradprobe.problem.params.bind_call`): dict
    parameters by ``f``'s argument names, ``args`` in the remaining positional
    arguments in order.

    Raises
    ------
    TypeError
        When the binding passes a parameter by keyword (compiled code calls
        ``f`` positionally), or ``f`` cannot take the call at all.
    """
    binding = problem.paramset.binding(problem.f, len(problem.args))
    if binding.keywords:
        name = binding.keywords[0][0]
        raise TypeError(
            f"parameter {name!r} is not a positional parameter of f "
            f"{inspect.signature(problem.f.py_func)} before the arguments it leaves to "
            "their defaults, so it would be passed by keyword; backend='numba' calls f "
            "positionally (compiled code has no **kwargs): give every dict key a "
            "positional argument of f in a run without gaps, or use backend='python'")
    return list(binding.positional)


def _make_plan(problem: "Problem") -> _Plan:
    """Lay the problem out, type ``f`` for it, and compile (or load) the kernel."""
    import numba
    from numba.core import errors, types

    from . import numba_kernel

    f = problem.f
    if not is_numba_function(f):
        raise TypeError(
            f"backend='numba' needs a numba.njit function, got {type(f).__name__}; "
            "decorate f with @numba.njit, or use backend='python'")
    layout = call_layout(problem)
    values = [problem.working[i] if kind == "param" else problem.args[i]
              for kind, i in layout]
    labels = [repr(problem.names[i]) if kind == "param" else f"args[{i}]"
              for kind, i in layout]
    try:
        argtypes = tuple(numba.typeof(v) for v in values)
    except ValueError as exc:
        raise TypeError(f"backend='numba': an argument of f has no Numba type: {exc}") from exc
    described = ", ".join(f"{lab}: {t}" for lab, t in zip(labels, argtypes))
    params = ", ".join(repr(n) for n in problem.names)

    typing = numba.core.registry.cpu_target.typing_context
    try:
        typing.refresh()
        signature = typing.resolve_function_type(types.Dispatcher(f), argtypes, {})
    except errors.NumbaError as exc:
        raise TypeError(
            f"backend='numba': f cannot be compiled for parameters {params} with argument "
            f"types ({described}): {_first_lines(exc)}") from exc
    if signature is None:
        raise TypeError(f"backend='numba': f has no compiled version for parameters "
                        f"{params} with argument types ({described})")
    out_dtype = _check_return_type(signature.return_type, problem, params)
    kernel_f = f
    if isinstance(signature.return_type, types.Array):
        # a size-1 array is a scalar loss on every engine (params.loss_value's rule;
        # the base point has checked the size): the kernel reads its one entry
        kernel_f = _entry_of_size_one(f)
        signature = typing.resolve_function_type(types.Dispatcher(kernel_f), argtypes, {})

    notes: list[str] = []
    slots, roles = [], []
    for (kind, _), value in zip(layout, values):
        zero_d = isinstance(value, np.ndarray) and value.ndim == 0
        slots.append(value.reshape(1) if zero_d else value)
        roles.append(numba_kernel.ROLES[kind + ("_0d" if zero_d else "")](0))
    param_slot = [0] * len(problem.names)
    for s, (kind, i) in enumerate(layout):
        if kind == "param":
            param_slot[i] = s
    slots_t, roles_t = tuple(slots), tuple(roles)
    point_dtype = np.dtype(np.complex128 if problem.complex_step else np.float64)

    # An f that runs parallel regions itself gets the threads, as it does when
    # the Python engine calls it: nesting would change its reductions' order
    # (and abort under the workqueue threading layer).
    parallel = not _launches_parallel(f, None if kernel_f is not f else signature)
    if not parallel:
        notes.append("entries evaluated one after another: f runs Numba parallel regions "
                     "itself, and each evaluation uses the threads")
    pointer_ok = kernel_f is f and signature.is_precise() and not any(
        isinstance(t, types.Omitted) for t in signature.args)
    fixed = tuple(numba.typeof(v) for v in (
        np.empty(1, np.int64), np.empty((1, 1), point_dtype), np.empty((1, 1), out_dtype),
        np.empty(1, np.int64), np.empty(1, np.int64), slots_t, roles_t))
    # f as a function pointer first (cached, shared), then typed as itself; a
    # parallel kernel first, then a serial one (some argument types, such as
    # nested tuples, cannot enter a parallel region).
    attempts = []
    for as_pointer in ((True, False) if pointer_ok else (False,)):
        ftype = types.FunctionType(signature) if as_pointer else types.Dispatcher(kernel_f)
        for run_parallel in ((True, False) if parallel else (False,)):
            attempts.append((run_parallel, as_pointer, (ftype, types.int64) + fixed))
    plan = _Plan(slots_t, roles_t, param_slot, out_dtype, point_dtype, None, parallel,
                 f=kernel_f, notes=notes, attempts=attempts, described=described)
    if config.NUMBA_COMPILE_PAYOFF_SECONDS <= 0:
        _compile(plan, problem)
    else:  # the kernel from Numba's cache when it is there (milliseconds), else later
        run_parallel, as_pointer, argsig = attempts[0]
        if as_pointer:
            plan.kernel = numba_kernel.kernel(run_parallel, argsig, compile=False)
            plan.parallel = run_parallel
    return plan


def compile_kernel(f: Any, params: Any, args: tuple = ()) -> None:
    """Compile (or load from Numba's cache) the kernel for ``f`` at ``params``
    whatever the size of the check (``python -m gradprobe warmup``)."""
    from ..problem.params import ParamSet
    from ..problem.point import prepare

    problem = prepare(f, ParamSet.from_user(params, f), args, upcast=True,
                      complex_step=False, seed=0)
    _compile(_make_plan(problem), problem)


def _worth_compiling(problem: "Problem", plan: _Plan, evaluations: int) -> bool:
    """Compile the kernel now? Yes once the evaluations run in the Python loop for
    this layout of argument types (in this process so far, plus these) are
    predicted to take longer than compiling it would.

    A kernel that is not in Numba's cache costs 1.5-5 s to compile
    (``config.NUMBA_COMPILE_PAYOFF_SECONDS`` is that cost); until the work is
    predicted to exceed it, evaluations go through ``f``'s dispatcher from
    Python (the same compiled ``f``, so the same losses). The time is counted
    per layout across checks, so repeated small checks (a training loop's
    monitor) compile it once they have paid for it. An unmeasured loss
    compiles at once.
    """
    seconds = evaluations * problem.loss_seconds
    if not np.isfinite(seconds):
        return True
    key = plan.attempts[0][2] if plan.attempts else None
    spent = _LOOP_SECONDS.get(key, 0.0)
    if spent + seconds > config.NUMBA_COMPILE_PAYOFF_SECONDS:
        return True
    _LOOP_SECONDS[key] = spent + seconds
    return False


#: Predicted seconds spent in the Python loop, per layout (kernel signature).
_LOOP_SECONDS: dict[Any, float] = {}


def _evaluate_in_python(problem: "Problem", param: int, entries: np.ndarray,
                        points: np.ndarray) -> np.ndarray:
    """The losses through ``f``'s dispatcher in a Python loop (the Python engine's loop)."""
    from .python import PythonEngine

    if LOOP_NOTE not in problem.notes:
        problem.notes.append(LOOP_NOTE)
    return PythonEngine().evaluate(problem, param, entries, points)


#: Note of a check whose evaluations ran through f's dispatcher.
LOOP_NOTE = ("f evaluated through its dispatcher from Python: the Numba engine's kernel for "
             "these argument types is not in Numba's cache, and compiling it would take "
             "longer than these evaluations (the same compiled f, so the same losses)")


def _compile(plan: _Plan, problem: "Problem") -> None:
    """Compile (or load) the kernel, trying the plan's attempts in order."""
    from numba.core import errors

    from . import numba_kernel

    first_error: Exception | None = None
    for run_parallel, as_pointer, argsig in plan.attempts:
        try:
            kernel = numba_kernel.kernel(run_parallel, argsig if as_pointer else None)
            if not as_pointer:
                kernel.compile(argsig)
        except (errors.NumbaError, TypeError, NotImplementedError) as exc:
            first_error = first_error or exc
            continue
        if plan.parallel and not run_parallel:
            note = ("entries evaluated on one thread: Numba could not pass f's "
                    f"arguments ({plan.described}) into a parallel region")
            plan.notes.append(note)
            if note not in problem.notes:
                problem.notes.append(note)
        plan.kernel, plan.parallel = kernel, run_parallel
        return
    params = ", ".join(repr(n) for n in problem.names)
    raise TypeError(
        f"backend='numba' could not compile the evaluation kernel for parameters {params} "
        f"with argument types ({plan.described}): {_first_lines(first_error)}; "
        "use backend='python'") from first_error


def _check_return_type(rtype: Any, problem: "Problem", params: str) -> np.dtype:
    """The dtype to collect losses in, or a clear error for a non-scalar loss."""
    from numba.core import types

    if isinstance(rtype, types.Boolean):
        raise TypeError(f"f returns a bool for parameters {params}; it must return a "
                        "scalar loss")
    if isinstance(rtype, types.Complex):
        return np.dtype(np.complex128)
    if isinstance(rtype, (types.Float, types.Integer)):
        return _result_dtype(problem)
    if isinstance(rtype, types.Array) and isinstance(rtype.dtype, (types.Float, types.Integer,
                                                                  types.Complex)):
        # a size-1 array (checked at the base point, as on every engine)
        return _check_return_type(rtype.dtype, problem, params)
    raise TypeError(f"f returns {rtype} for parameters {params}; it must return a "
                    "scalar loss (a float)")


def _entry_of_size_one(f: Any) -> Any:
    """An njit function returning the one entry of ``f``'s size-1 array result.

    Compiled per ``f`` (a closure cannot be cached). A result of another size
    raises, and the engine then re-evaluates the point from Python, where
    :func:`gradprobe.problem.params.loss_value` names it.
    """
    import numba

    @numba.njit(**config.NUMBA_UNCACHED_FLAGS)
    def entry(*arguments):  # pragma: no cover - compiled
        value = f(*arguments)
        if value.size != 1:
            raise ValueError("f returned an array of more than one entry")
        return value.ravel()[0]

    return entry


def _launches_parallel(f: Any, signature: Any) -> bool:
    """True when ``f`` (or a function it calls) runs a Numba parallel region."""
    if f.targetoptions.get("parallel"):
        return True
    compiled = f.overloads.get(tuple(signature.args)) if signature is not None else None
    candidates = [compiled] if compiled is not None else list(f.overloads.values())
    try:
        return any("numba_parallel_for" in c.library.get_llvm_str() for c in candidates)
    except AttributeError:  # pragma: no cover - a Numba without these internals
        return False


def _first_lines(exc: BaseException | None, count: int = 6) -> str:
    """The head of a (long) Numba error message."""
    text = str(exc).strip().splitlines()
    head = [line for line in text if line.strip()][:count]
    return " ".join(line.strip() for line in head)


def _reraise(problem: "Problem", param: int, entries: np.ndarray, points: np.ndarray,
             code: int) -> None:
    """Re-raise, from Python, the exception ``f`` raised inside the kernel.

    Numba cannot carry an exception out of a parallel region, so the kernel
    records the first point where ``f`` raised and ``f`` is called there
    again through its dispatcher: its own exception propagates unchanged.
    """
    row, col = divmod(code, points.shape[1])
    arrays = [a.copy() for a in problem.working]
    arrays[param].reshape(-1)[entries[row]] = points[row, col]
    context = problem.describe_point(param, int(entries[row]), points[row, col])
    loss_value(problem.paramset.call(problem.f, arrays, problem.args), context=context,
               allow_complex=True)  # a result that is no scalar loss is named here
    raise RuntimeError(
        f"f raised an exception inside the Numba kernel "
        f"{problem.describe_point(param, int(entries[row]), points[row, col])}, but not when "
        "called again there from Python; is f deterministic?")


def _real_losses(problem: "Problem", param: int, entries: np.ndarray, points: np.ndarray,
                 out: np.ndarray) -> np.ndarray:
    """Real parts of complex losses, rejecting a non-zero imaginary part like the Python engine."""
    bad = np.argwhere(out.imag != 0)
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise TypeError(
            f"f returned a complex value "
            f"{problem.describe_point(param, int(entries[row]), points[row, col])}; the loss "
            "must be real")
    return np.ascontiguousarray(out.real)
