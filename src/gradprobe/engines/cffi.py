"""The C engine: perturbed losses of a C loss function, in C threads.

A C loss has the ABI::

    double loss(const double *theta, size_t n, void *ctx);

``theta`` is the concatenation, in C order, of every parameter as float64
(in the order of ``params``: tuple/list order, or the dict's order), ``n``
its length and ``ctx`` an opaque pointer the user passes as ``args=(ctx,)``
(``args=()`` passes NULL). Pass the function to :func:`gradprobe.check` or
:func:`gradprobe.numerical_gradient` as a cffi function pointer: ``lib.loss``
of an ``ffi.dlopen``-ed library, ``lib.loss`` of an API-mode cffi module, or
``ffi.cast("double(*)(const double *, size_t, void *)", address)``; or as a
``numba.cfunc`` compiled with the signature :data:`NUMBA_CFUNC_SIGNATURE`
(its address is cast to that pointer type, and the cfunc object is kept
alive with it).

:class:`CFunctionLoss` makes that pointer callable from Python with the
usual conventions (the base point and the noise probe call ``f`` from
Python). :class:`CffiEngine` hands every perturbed point of one parameter to
the compiled kernel ``gradprobe._ckernel`` (``csrc/gp_kernel.c``), which
splits the entries into contiguous ranges, one per thread, each thread on its
own copy of ``theta`` (perturb, call, restore). Everything the kernel reads
is validated here first (shapes, dtypes, contiguity, sizes, entry range,
non-NULL function), so a mistake is a Python exception, never a segfault.

The kernel is optional (:mod:`.ckernel` loads it, per
``GRADPROBE_C_KERNEL``): without it, ``backend="auto"`` runs C losses on the
Python engine.
"""
from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from .. import config
from . import ckernel
from .base import Engine, batch_rows

try:
    import cffi as _cffi
except ImportError as _exc:  # pragma: no cover - cffi is a dependency
    _cffi = None
    _CFFI_ERROR: str | None = f"cffi is not installed ({_exc})"
else:
    _CFFI_ERROR = None

#: The C type of a loss, as cffi spells it (cffi drops ``const``).
LOSS_CTYPE = "double(*)(double *, size_t, void *)"
#: The ABI, as written in messages and docs.
LOSS_ABI = "double loss(const double *theta, size_t n, void *ctx)"
#: The ABI as a ``numba.cfunc`` signature (``uintp`` is Numba's ``size_t``).
NUMBA_CFUNC_SIGNATURE = "float64(CPointer(float64), uintp, voidptr)"



@functools.cache
def ffi() -> Any:
    """The ``cffi.FFI`` used for casts and buffers (made on first use: it costs ~60 ms).

    Examples
    --------
    >>> ffi().typeof(ffi().NULL).cname
    'void *'
    """
    if _cffi is None:  # pragma: no cover
        raise TypeError(f"C losses need cffi: {_CFFI_ERROR}")
    return _cffi.FFI()


#: The C kernel's state (old name; see :func:`gradprobe.engines.ckernel.status`).
kernel_available = ckernel.available


def __getattr__(name: str) -> Any:
    """Old names: ``KERNEL_STATUS`` (:func:`.ckernel.status`), ``_FFI`` (:func:`ffi`)."""
    if name == "KERNEL_STATUS":
        return ckernel.status()
    if name == "_FFI":
        return ffi()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the C function, callable from Python -----------------------------------
def _is_cdata(value: Any) -> bool:
    return type(value).__module__ == "_cffi_backend" and "CData" in type(value).__name__


def _lib_function_pointer(f: Any) -> Any:
    """The typed pointer of a built-in ``lib.fn`` of an API-mode cffi module, or None."""
    lib = getattr(f, "__self__", None)
    if type(lib).__module__ != "_cffi_backend" or type(lib).__name__ != "Lib":
        return None
    module = sys.modules.get(getattr(f, "__module__", "") or "")
    ffi = getattr(module, "ffi", None)
    if ffi is None:
        raise TypeError(f"cannot find the ffi object of the cffi module that defines "
                        f"{f.__name__!r}; pass ffi.addressof(lib, {f.__name__!r}) instead")
    return ffi.addressof(lib, f.__name__)


def is_numba_cfunc(f: Any) -> bool:
    """True when ``f`` is a ``numba.cfunc`` object (checked without importing Numba).

    Examples
    --------
    >>> is_numba_cfunc(abs)
    False
    """
    return type(f).__name__ == "CFunc" and type(f).__module__ == "numba.core.ccallback"


def _cfunc_pointer(f: Any) -> Any:
    """The address of a ``numba.cfunc`` as a cdata pointer of :data:`LOSS_CTYPE`.

    The signature is read from the cfunc's public ctypes prototype
    (``f.ctypes``): ``float64`` -> ``c_double``, ``CPointer(float64)`` ->
    ``POINTER(c_double)``, ``uintp`` -> ``c_size_t``, ``voidptr`` ->
    ``c_void_p``; anything else is a TypeError.
    """
    import ctypes

    expected = (ctypes.c_double, (ctypes.POINTER(ctypes.c_double), ctypes.c_size_t,
                                  ctypes.c_void_p))
    sig = getattr(f, "_sig", None)  # Numba's own record, for the message only
    try:
        prototype = f.ctypes
        got = (prototype.restype, tuple(prototype.argtypes))
    except Exception as exc:  # a type ctypes cannot express (records, arrays, ...)
        got, detail = None, f" ({exc})"
    else:
        detail = ""
    if got != expected:
        described = (f"{sig.return_type}({', '.join(str(a) for a in sig.args)})"
                     if sig is not None else "an unreadable signature")
        raise TypeError(f"a numba.cfunc C loss must be compiled with the signature "
                        f"{NUMBA_CFUNC_SIGNATURE!r}, the ABI {LOSS_ABI}; "
                        f"{getattr(f, '__name__', 'the cfunc')!r} has {described}{detail}")
    if not f.address:
        raise ValueError("the numba.cfunc C loss has no address (not compiled)")
    return ffi().cast(LOSS_CTYPE, f.address)


def is_c_function(f: Any) -> bool:
    """True when ``f`` is a cffi function pointer or ``lib`` function, or a ``numba.cfunc``.

    Examples
    --------
    >>> is_c_function(abs)
    False
    """
    return _is_cdata(f) or type(getattr(f, "__self__", None)).__module__ == "_cffi_backend" \
        or is_numba_cfunc(f)


def loss_pointer(f: Any) -> Any:
    """Validate a C loss and return it as a cdata function pointer.

    ``f`` is a cffi function pointer, a cffi ``lib`` function or a
    ``numba.cfunc`` of the signature :data:`NUMBA_CFUNC_SIGNATURE` (the
    caller keeps the cfunc alive: the pointer does not).

    Raises
    ------
    TypeError
        ``f`` is not a C function, or not of the type ``LOSS_ABI``.
    ValueError
        ``f`` is a NULL pointer.

    Examples
    --------
    >>> import cffi
    >>> loss_pointer(cffi.FFI().cast("double(*)(const double *, size_t, void *)", 0))
    Traceback (most recent call last):
    ...
    ValueError: the C loss is a NULL function pointer
    """
    if is_numba_cfunc(f):
        return _cfunc_pointer(f)
    pointer = _lib_function_pointer(f)
    if pointer is None:
        pointer = f
    if not _is_cdata(pointer):
        raise TypeError(f"a C loss must be a cffi function pointer of type {LOSS_ABI}, "
                        f"got {type(f).__name__}")
    ctype = ffi().typeof(pointer)
    if ctype.kind != "function" or ctype.cname != LOSS_CTYPE:
        raise TypeError(f"a C loss must have the type {LOSS_ABI}; got cdata "
                        f"{ctype.cname!r} (declare it with that signature in ffi.cdef, or "
                        f"ffi.cast({LOSS_CTYPE!r}, ...) if it has it)")
    if pointer == ffi().NULL:
        raise ValueError("the C loss is a NULL function pointer")
    return pointer


def ctx_pointer(args: tuple) -> Any:
    """The ``void *ctx`` of a C loss from ``args``: ``()`` or ``(ctx,)``.

    ``ctx`` is a cffi pointer (of any type) or None (NULL).

    Raises
    ------
    TypeError
        Anything else in ``args`` (a C loss reads its data through ``ctx``).

    Examples
    --------
    >>> ctx_pointer(()) == ctx_pointer((None,))
    True
    """
    if len(args) > 1:
        raise TypeError(f"a C loss ({LOSS_ABI}) takes one extra argument, the ctx pointer: "
                        f"pass args=(ctx,) or args=(), not {len(args)} arguments")
    ctx = args[0] if args else None
    if ctx is None:
        return ffi().NULL
    if not _is_cdata(ctx) or ffi().typeof(ctx).kind not in ("pointer", "array"):
        raise TypeError(f"args of a C loss must be (ctx,) with ctx a cffi pointer passed "
                        f"as its void *ctx, or None; got {type(ctx).__name__}"
                        + (f" {ffi().typeof(ctx).cname!r}" if _is_cdata(ctx) else "")
                        + " (put data behind ctx, e.g. ffi.new('struct data *'))")
    return ctx


class CFunctionLoss:
    """A C loss ``double loss(const double *theta, size_t n, void *ctx)``, callable from Python.

    Called like any loss (``f(*params, ctx)``, ``f(params, ctx)``, or
    ``f(ctx, **params)``, ``ctx`` optional): the float64 parameters are
    concatenated, in order, into a fresh buffer ``theta`` and the function is
    called on it. :func:`gradprobe.check` wraps a C function pointer in this
    class itself; wrap it explicitly only to call it yourself.

    Parameters
    ----------
    function : cffi function pointer, cffi ``lib`` function or ``numba.cfunc``
        Of the type :data:`LOSS_ABI` (a cfunc: of the signature
        :data:`NUMBA_CFUNC_SIGNATURE`; it is kept alive as ``self.function``).

    Raises
    ------
    TypeError, ValueError
        Not a C function of that type, or NULL; when called: a non-float64
        parameter, or an extra argument that is not a cffi pointer.

    Examples
    --------
    >>> import cffi, numpy as np
    >>> ffi = cffi.FFI()
    >>> @ffi.callback("double(const double *, size_t, void *)")
    ... def total(theta, n, ctx):
    ...     return sum(theta[i] for i in range(n))
    >>> loss = CFunctionLoss(total)
    >>> loss(np.array([1.0, 2.0]), np.array([[3.0]]))
    6.0
    """

    def __init__(self, function: Any):
        if isinstance(function, CFunctionLoss):
            function = function.function
        self.pointer = loss_pointer(function)
        #: What the pointer was made from: a cfunc's machine code lives as long as it does.
        self.function = function
        self.__name__ = getattr(function, "__name__", "c_loss")

    def __repr__(self) -> str:
        return f"<C loss {self.__name__} {LOSS_ABI}>"

    def theta(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The parameters concatenated into a fresh float64 buffer (validated)."""
        for a in arrays:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"a C loss takes float64 arrays, got {type(a).__name__}")
            if a.dtype != np.float64:
                hint = ("method='complex' cannot be used with a C loss: its ABI is double; "
                        "use 'central', 'forward' or 'richardson'") if a.dtype.kind == "c" \
                    else ("float32/float16 parameters are evaluated in float64 unless "
                          "upcast=False; a C loss needs upcast=True")
                raise TypeError(f"a C loss ({LOSS_ABI}) takes float64 parameters, got "
                                f"{a.dtype}: {hint}")
        return np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float64, copy=False) \
            if len(arrays) > 1 else np.array(arrays[0].reshape(-1), dtype=np.float64)

    def __call__(self, *values: Any, **named: Any) -> float:
        arrays = [v for v in values if isinstance(v, np.ndarray)] + list(named.values())
        extra = tuple(v for v in values if not isinstance(v, np.ndarray))
        ctx = ctx_pointer(extra)
        if not arrays:
            raise TypeError("a C loss needs at least one parameter array")
        theta = self.theta(arrays)
        return float(self.pointer(ffi().from_buffer("double[]", theta), theta.size, ctx))


def as_loss(f: Any, args: tuple) -> Any:
    """``f`` itself, or a C function pointer wrapped in :class:`CFunctionLoss`.

    Also validates ``args`` for a C loss (``()`` or ``(ctx,)``).

    Examples
    --------
    >>> as_loss(abs, ()) is abs
    True
    """
    if isinstance(f, CFunctionLoss):
        loss = f
    elif is_c_function(f):
        loss = CFunctionLoss(f)
    else:
        return f
    ctx_pointer(tuple(args) if isinstance(args, (tuple, list)) else (args,))
    return loss


# -- the engine ----------------------------------------------------------------
class CffiEngine(Engine):
    """Evaluate perturbed losses of a C loss in the compiled kernel, in C threads.

    Parameters
    ----------
    workers : int, optional
        Threads (pthreads); ``None`` uses every core this process may run
        on. Each thread perturbs its own copy of ``theta``, so a C loss must
        be thread-safe (no writes to shared state through ``ctx``) when
        ``workers`` is not 1.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> from gradprobe.engines import cffi as c_engine
    >>> @c_engine.ffi().callback("double(const double *, size_t, void *)")
    ... def cubes(theta, n, ctx):
    ...     return sum(theta[i] ** 3 for i in range(n))
    >>> w = np.array([1.0, -2.0])
    >>> backend = "cffi" if c_engine.kernel_available() else "python"
    >>> report = gp.check(cubes, w, 3 * w ** 2, backend=backend, workers=1)
    >>> report.passed, report.backend == backend
    (True, True)
    """

    name = "cffi"
    runs_groups = False  # a C loss returns one double: no array outputs

    @classmethod
    def claims(cls, f: object) -> bool:
        """``backend="auto"`` runs a C loss here when the kernel is built."""
        return isinstance(f, CFunctionLoss) and ckernel.available()

    @classmethod
    def accept(cls, f: object) -> None:
        if not isinstance(f, CFunctionLoss):
            raise TypeError(
                f"backend='cffi' needs a C loss ({LOSS_ABI}) given as a cffi function "
                f"pointer, got {type(f).__name__}; use backend='python' for a Python f")

    def __init__(self, workers: int | None = None):
        ckernel.require(self.name)
        self.threads = ckernel.threads(workers)

    def evaluate(self, problem: Any, param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        f = problem.f
        if not isinstance(f, CFunctionLoss):
            raise TypeError(f"backend='cffi' needs a C loss ({LOSS_ABI}) given as a cffi "
                            f"function pointer, got {type(f).__name__}")
        if problem.complex_step:
            raise TypeError("method='complex' cannot be used with a C loss: its ABI is "
                            "double; use 'central', 'forward' or 'richardson'")
        ctx = ctx_pointer(problem.args)
        theta = f.theta(list(problem.working))  # validates float64
        sizes = [int(a.size) for a in problem.working]
        if not 0 <= param < len(sizes):
            raise IndexError(f"parameter index {param} out of range ({len(sizes)} parameters)")
        offset, size = sum(sizes[:param]), sizes[param]
        entries = np.asarray(entries)
        if entries.ndim != 1 or (entries.size and entries.dtype.kind not in "iu"):
            raise TypeError(f"entries must be a 1-d integer array, got {entries.dtype} with "
                            f"shape {entries.shape}")
        entries = np.ascontiguousarray(entries, dtype=np.int64)
        k = entries.size
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[0] != k or \
                points.shape[1] not in config.C_KERNEL_POINTS_PER_ENTRY:
            raise ValueError(f"points must have shape ({k}, m) with m in "
                             f"{config.C_KERNEL_POINTS_PER_ENTRY}, got {points.shape}")
        if points.dtype != np.float64:
            raise TypeError(f"points must be float64 for a C loss, got {points.dtype}")
        points = np.ascontiguousarray(points)
        m = points.shape[1]
        out = np.empty((k, m), dtype=np.float64)
        if k == 0:
            return out
        if entries.min() < 0 or entries.max() >= size:
            bad = int(entries[(entries < 0) | (entries >= size)][0])
            raise IndexError(f"entry {bad} out of range for parameter "
                             f"{problem.names[param]!r} of size {size}")
        module = ckernel.require(self.name)
        ffi, lib = module.ffi, module.lib
        function = ffi.cast("gp_loss_fn", f.pointer)
        void_ctx = ffi.cast("void *", ctx)
        theta_c = ffi.from_buffer("double[]", theta)
        batch = batch_rows(m, problem.loss_seconds, self.threads,
                           config.C_KERNEL_BATCH_ROWS)
        for lo in range(0, k, batch):  # Ctrl-C is seen between batches
            hi = min(k, lo + batch)
            status = lib.gp_evaluate(
                function, void_ctx, theta_c, theta.size, offset, size,
                ffi.from_buffer("int64_t[]", entries[lo:hi]), hi - lo,
                ffi.from_buffer("double[]", points[lo:hi]), m,
                ffi.from_buffer("double[]", out[lo:hi], require_writable=True),
                int(min(self.threads, hi - lo)))
            if status == lib.GP_ENOMEM:
                raise MemoryError(f"the C kernel could not allocate a copy of the "
                                  f"{theta.size} parameters")
            if status != lib.GP_OK:  # pragma: no cover - validated above
                raise RuntimeError(f"the C kernel rejected its arguments (status {status})")
        problem.evaluations += points.size
        return out
