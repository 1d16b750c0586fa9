"""The C twin of :mod:`gradprobe.nn`'s Numba kernels, behind the same signatures.

:class:`CKernels` calls ``csrc/gp_nn.c`` (compiled into the optional module
``gradprobe._ckernel``): the dense forward/backward kernels of
:mod:`.kernels` in float32 and float64, and the float64 kernels of the
structured check, :func:`.contraction.contract` and
:func:`.entry_kernel.entry_differences`. Each C kernel sums in the same order
as its Numba twin and is compiled without fused multiply-add, so the two give
the same bits wherever they call the same libm functions (the tests compare
them); each implementation checks the other.

Every argument is validated here before a pointer reaches C: types, dtypes,
C-contiguity, writability of outputs, shapes, and every index the kernel
will form (stage tables, entries). A mistake is a Python exception, never a
segfault. The C kernels release the GIL and run on ``threads`` pthreads.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import config
from ..engines import ckernel
from . import constants

#: The C type name and function suffix of each supported dtype.
_CTYPES = {np.dtype(np.float64): ("double", "_d"), np.dtype(np.float32): ("float", "_f")}


def available() -> bool:
    """True when the compiled C kernel is loaded.

    Examples
    --------
    >>> from gradprobe.engines import ckernel
    >>> available() == ckernel.available()
    True
    """
    return ckernel.available()


def _real(name: str, a: Any, dtype: np.dtype | None = None, ndim: int | None = None,
          writable: bool = False) -> np.ndarray:
    """``a`` checked as a C-contiguous float32/float64 array (of ``dtype``, if given)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype not in _CTYPES or (dtype is not None and a.dtype != dtype):
        want = dtype if dtype is not None else "float32 or float64"
        raise TypeError(f"{name} must be {want}, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not a.flags.aligned:
        raise ValueError(f"{name} must be aligned to its dtype ({a.dtype.alignment} bytes)")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is an output and must be writable")
    return a


def _ints(name: str, a: Any, ndim: int = 1) -> np.ndarray:
    """``a`` checked as a C-contiguous int64 array."""
    if not isinstance(a, np.ndarray) or a.dtype != np.int64 or a.ndim != ndim or \
            not a.flags.c_contiguous or not a.flags.aligned:
        got = (f"{a.dtype} {a.shape}{'' if a.flags.aligned else ' unaligned'}"
               if isinstance(a, np.ndarray) else type(a).__name__)
        raise TypeError(f"{name} must be an aligned C-contiguous {ndim}-d int64 array, "
                        f"got {got}")
    return a


def _apart(output: tuple[str, np.ndarray], *inputs: tuple[str, np.ndarray]) -> None:
    """An output must not share memory with an input the kernel reads while it writes."""
    name, out = output
    for other, a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError(f"{name} shares memory with {other}: the kernel reads {other} "
                             f"while it writes {name}; pass a separate output array")


def _shape(name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")


def _code(name: str, code: Any, codes: tuple[int, ...]) -> int:
    if isinstance(code, (bool, np.bool_)) or not isinstance(code, (int, np.integer)) or \
            int(code) not in codes:
        raise ValueError(f"{name} must be one of {codes}, got {code!r}")
    return int(code)


_ACTIVATIONS = (constants.IDENTITY, constants.RELU, constants.TANH, constants.SIGMOID)
_LOSSES = (constants.LOSS_MSE, constants.LOSS_SOFTMAX_CE)


class CKernels:
    """The C kernels of :mod:`gradprobe.nn`, with the Numba kernels' signatures.

    Parameters
    ----------
    threads : int, optional
        pthreads per kernel call (default: every core this process may run on).

    Raises
    ------
    ValueError
        The C kernel is not available (not built, or ``GRADPROBE_C_KERNEL=off``).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import c_kernels, kernels
    >>> if c_kernels.available():
    ...     A, B = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    ...     C_c, C_numba = np.empty((2, 2)), np.empty((2, 2))
    ...     c_kernels.CKernels().matmul(A, B, C_c)
    ...     kernels.matmul(A, B, C_numba)
    ...     assert np.array_equal(C_c, C_numba)
    """

    name = "cffi"
    #: The ``backend`` a report of a check on these kernels names.
    report_backend = "nn-structured-cffi"
    #: What the report's first note adds about the kernels.
    note = "; C kernels"
    #: Compiled at install: nothing compiles on a first check.
    compiles_on_first_use = False
    #: pthreads of their own (``threads``), not Numba's.
    numba_threads = False

    def __init__(self, threads: int | None = None):
        module = ckernel.require("cffi")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self._ffi, self._lib = module.ffi, module.lib
        self.threads = ckernel.threads(threads)

    # -- plumbing ------------------------------------------------------------
    def _ptr(self, a: np.ndarray, writable: bool = False) -> Any:
        ctype = _CTYPES[a.dtype][0] if a.dtype in _CTYPES else {
            np.dtype(np.int64): "int64_t", np.dtype(np.uint8): "uint8_t"}[a.dtype]
        return self._ffi.from_buffer(f"{ctype}[]", a, require_writable=writable)

    def _fn(self, base: str, dtype: np.dtype) -> Any:
        return getattr(self._lib, base + _CTYPES[dtype][1])

    def _status(self, status: int, what: str) -> None:
        if status == self._lib.GP_NN_ENOMEM:
            raise MemoryError(f"the C kernel could not allocate scratch memory for {what}")
        if status != self._lib.GP_NN_OK:  # pragma: no cover - validated before the call
            raise RuntimeError(f"the C kernel rejected the arguments of {what} "
                               f"(status {status})")

    # -- dense forward/backward ----------------------------------------------
    def matmul(self, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> None:
        """``C = A @ B`` (:func:`gradprobe.nn.kernels.matmul`)."""
        A = _real("A", A, ndim=2)
        B = _real("B", B, A.dtype, ndim=2)
        C = _real("C", C, A.dtype, ndim=2, writable=True)
        (M, K), N = A.shape, B.shape[1]
        _shape("B", B, (K, N))
        _shape("C", C, (M, N))
        _apart(("C", C), ("A", A), ("B", B))
        self._status(self._fn("gp_nn_matmul", A.dtype)(
            self._ptr(A), self._ptr(B), self._ptr(C, True), M, K, N, self.threads), "matmul")

    def dense_forward(self, X: np.ndarray, W: np.ndarray, b: np.ndarray,
                      Z: np.ndarray) -> None:
        """``Z = X @ W + b`` (:func:`gradprobe.nn.kernels.dense_forward`)."""
        X = _real("X", X, ndim=2)
        W = _real("W", W, X.dtype, ndim=2)
        b = _real("b", b, X.dtype, ndim=1)
        Z = _real("Z", Z, X.dtype, ndim=2, writable=True)
        (M, K), N = X.shape, W.shape[1]
        _shape("W", W, (K, N))
        _shape("b", b, (N,))
        _shape("Z", Z, (M, N))
        _apart(("Z", Z), ("X", X), ("W", W), ("b", b))
        self._status(self._fn("gp_nn_dense_forward", X.dtype)(
            self._ptr(X), self._ptr(W), self._ptr(b), self._ptr(Z, True), M, K, N,
            self.threads), "dense_forward")

    def transpose(self, A: np.ndarray, out: np.ndarray) -> None:
        """``out = A.T``."""
        A = _real("A", A, ndim=2)
        out = _real("out", out, A.dtype, ndim=2, writable=True)
        _shape("out", out, A.shape[::-1])
        _apart(("out", out), ("A", A))
        self._fn("gp_nn_transpose", A.dtype)(self._ptr(A), self._ptr(out, True), *A.shape)

    def column_sums(self, A: np.ndarray, out: np.ndarray) -> None:
        """``out = A.sum(axis=0)`` accumulated row by row."""
        A = _real("A", A, ndim=2)
        out = _real("out", out, A.dtype, ndim=1, writable=True)
        _shape("out", out, (A.shape[1],))
        _apart(("out", out), ("A", A))
        self._fn("gp_nn_column_sums", A.dtype)(self._ptr(A), self._ptr(out, True), *A.shape)

    def activation_forward(self, code: int, Z: np.ndarray, A: np.ndarray) -> None:
        """``A = act(Z)``."""
        code = _code("code", code, _ACTIVATIONS)
        Z = _real("Z", Z)
        A = _real("A", A, Z.dtype, writable=True)
        _shape("A", A, Z.shape)
        self._status(self._fn("gp_nn_activation_forward", Z.dtype)(
            code, self._ptr(Z), self._ptr(A, True), Z.size, self.threads),
            "activation_forward")

    def activation_backward(self, code: int, Z: np.ndarray, A: np.ndarray, dA: np.ndarray,
                            dZ: np.ndarray) -> None:
        """``dZ = dA * act'(Z)``."""
        code = _code("code", code, _ACTIVATIONS)
        Z = _real("Z", Z)
        arrays = {"A": A, "dA": dA}
        for key, value in arrays.items():
            arrays[key] = _real(key, value, Z.dtype)
            _shape(key, arrays[key], Z.shape)
        dZ = _real("dZ", dZ, Z.dtype, writable=True)
        _shape("dZ", dZ, Z.shape)
        self._status(self._fn("gp_nn_activation_backward", Z.dtype)(
            code, self._ptr(Z), self._ptr(arrays["A"]), self._ptr(arrays["dA"]),
            self._ptr(dZ, True), Z.size, self.threads), "activation_backward")

    def _loss_args(self, A: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        A = _real("A", A, ndim=2)
        T = _real("T", T, A.dtype, ndim=2)
        _shape("T", T, A.shape)
        return A, T

    def mse_loss(self, A: np.ndarray, T: np.ndarray, scale: float) -> float:
        """``scale / 2 * sum((A - T) ** 2)`` in float64."""
        A, T = self._loss_args(A, T)
        return float(self._fn("gp_nn_mse_loss", A.dtype)(self._ptr(A), self._ptr(T),
                                                          *A.shape, float(scale)))

    def mse_backward(self, A: np.ndarray, T: np.ndarray, scale: float, dA: np.ndarray) -> None:
        """``dA = scale * (A - T)``."""
        A, T = self._loss_args(A, T)
        dA = _real("dA", dA, A.dtype, writable=True)
        _shape("dA", dA, A.shape)
        self._fn("gp_nn_mse_backward", A.dtype)(self._ptr(A), self._ptr(T), float(scale),
                                                 self._ptr(dA, True), A.size)

    def softmax_ce_loss(self, Z: np.ndarray, T: np.ndarray, scale: float) -> float:
        """Cross-entropy of ``softmax(Z)`` against ``T`` (float64)."""
        Z, T = self._loss_args(Z, T)
        return float(self._fn("gp_nn_softmax_ce_loss", Z.dtype)(self._ptr(Z), self._ptr(T),
                                                                 *Z.shape, float(scale)))

    def softmax_ce_backward(self, Z: np.ndarray, T: np.ndarray, scale: float,
                            dZ: np.ndarray) -> None:
        """``dZ = scale * (sum(T_row) * softmax(Z) - T)``."""
        Z, T = self._loss_args(Z, T)
        dZ = _real("dZ", dZ, Z.dtype, writable=True)
        _shape("dZ", dZ, Z.shape)
        self._fn("gp_nn_softmax_ce_backward", Z.dtype)(self._ptr(Z), self._ptr(T),
                                                        float(scale), self._ptr(dZ, True),
                                                        *Z.shape)

    # -- the structured check ------------------------------------------------
    def contract(self, L: np.ndarray, R: np.ndarray, out: np.ndarray) -> None:
        """``out[i, j] = sum_r L[r, i] * R[r, j]`` (:func:`.contraction.contract`)."""
        f64 = np.dtype(np.float64)
        L = _real("L", L, f64, ndim=2)
        R = _real("R", R, f64, ndim=2)
        out = _real("out", out, f64, ndim=2, writable=True)
        if R.shape[0] != L.shape[0]:
            raise ValueError(f"L and R must have the same number of rows, got {L.shape} "
                             f"and {R.shape}")
        _shape("out", out, (L.shape[1], R.shape[1]))
        _apart(("out", out), ("L", L), ("R", R))
        self._status(self._lib.gp_nn_contract(self._ptr(L), self._ptr(R), self._ptr(out, True),
                                              L.shape[0], L.shape[1], R.shape[1],
                                              self.threads), "contract")

    def finish_mse(self, S, Q, xn, rn, rhon, steps, h0, use_steps, method, scale, eps,
                   sum_factor, safety, floor_ulps, value, bar) -> None:
        """Value and error bar of every entry of the MSE fast path
        (:func:`.head_kernels.finish_mse`, same arguments; ``value`` may be ``S``)."""
        f64 = np.dtype(np.float64)
        S = _real("S", S, f64, ndim=2)
        n_i, n_j = S.shape
        vectors = {}
        for name, a, size in (("Q", Q, n_i), ("xn", xn, n_i), ("rn", rn, n_j),
                              ("rhon", rhon, n_j)):
            vectors[name] = _real(name, a, f64, ndim=1)
            _shape(name, vectors[name], (size,))
        use = bool(use_steps)
        steps = _real("steps", steps, f64, ndim=2)
        if use:
            _shape("steps", steps, (n_i, n_j))
        code = _code("method", method, tuple(constants.METHOD_CODES.values()))
        value, bar = self._finish_outputs(value, bar, (n_i, n_j), ("S", S), vectors, steps)
        self._status(self._lib.gp_nn_finish_mse(
            self._ptr(S), *(self._ptr(vectors[k]) for k in ("Q", "xn", "rn", "rhon")),
            self._ptr(steps), float(h0), int(use), code, float(scale), float(eps),
            float(sum_factor), float(safety), float(floor_ulps), self._ptr(value, True),
            self._ptr(bar, True), n_i, n_j, self.threads), "finish_mse")

    def finish_softmax(self, V, ln, rn, dn, rhon, trunc, tail, h0, scale, eps, method,
                       sum_factor, safety, floor_ulps, value, bar) -> None:
        """Value and error bar of every entry of the softmax cross-entropy fast path
        (:func:`.head_kernels.finish_softmax`, same arguments; ``value`` may be ``V``)."""
        f64 = np.dtype(np.float64)
        V = _real("V", V, f64, ndim=2)
        n_i, n_j = V.shape
        ln = _real("ln", ln, f64, ndim=2)
        groups = ln.shape[0]
        tables = {"ln": ln, "rn": _real("rn", rn, f64, ndim=2)}
        _shape("ln", ln, (groups, n_i))
        _shape("rn", tables["rn"], (groups, n_j))
        for name, a, size in (("dn", dn, n_i), ("rhon", rhon, n_j), ("trunc", trunc, n_i),
                              ("tail", tail, n_i)):
            tables[name] = _real(name, a, f64, ndim=1)
            _shape(name, tables[name], (size,))
        code = _code("method", method, tuple(constants.METHOD_CODES.values()))
        value, bar = self._finish_outputs(value, bar, (n_i, n_j), ("V", V), tables)
        self._status(self._lib.gp_nn_finish_softmax(
            self._ptr(V), *(self._ptr(tables[k]) for k in ("ln", "rn", "dn", "rhon", "trunc",
                                                           "tail")),
            float(h0), float(scale), float(eps), code, float(sum_factor), float(safety),
            float(floor_ulps), self._ptr(value, True), self._ptr(bar, True), n_i, n_j,
            groups, self.threads), "finish_softmax")

    @staticmethod
    def _finish_outputs(value: Any, bar: Any, shape: tuple[int, int],
                        source: tuple[str, np.ndarray], tables: dict[str, np.ndarray],
                        *others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The outputs of a finishing pass: ``value`` may be the source array itself
        (each entry is read before it is written), nothing else may overlap."""
        f64 = np.dtype(np.float64)
        value = _real("value", value, f64, ndim=2, writable=True)
        bar = _real("bar", bar, f64, ndim=2, writable=True)
        _shape("value", value, shape)
        _shape("bar", bar, shape)
        inputs = list(tables.items()) + [(f"input {n}", a) for n, a in enumerate(others)]
        if value is not source[1]:
            inputs.append(source)
        _apart(("value", value), *inputs)
        _apart(("bar", bar), ("value", value), source, *inputs)
        return value, bar

    def max_abs(self, values: np.ndarray) -> float:
        """``max(|values|)`` (0 for an empty array; :func:`gradprobe.nn.kernels.max_abs`)."""
        values = _real("values", values, ndim=1)
        return float(self._fn("gp_nn_max_abs", values.dtype)(self._ptr(values), values.size))

    def entry_differences(self, xin, rows, cols, steps, offsets,
                          kinds, codes, widths_in, widths_out, offs, w_offs,
                          base_in, base_out, deriv, weights, sens,
                          loss_code, scale, resid, prob, mass, targets, rho,
                          max_width, dl, noise, crossed) -> None:
        """Loss differences of every entry and offset
        (:func:`.entry_kernel.entry_differences`, same arguments)."""
        f64 = np.dtype(np.float64)
        xin = _real("xin", xin, f64, ndim=2)
        batch, n_in = xin.shape
        rows, cols = _ints("rows", rows), _ints("cols", cols)
        k = rows.size
        _shape("cols", cols, (k,))
        steps = _real("steps", steps, f64, ndim=1)
        _shape("steps", steps, (k,))
        offsets = _real("offsets", offsets, f64, ndim=1)
        m = offsets.size
        if m == 0:
            raise ValueError("offsets is empty")
        ints = {name: _ints(name, value) for name, value in (
            ("kinds", kinds), ("codes", codes), ("widths_in", widths_in),
            ("widths_out", widths_out), ("offs", offs), ("w_offs", w_offs))}
        stages = ints["kinds"].size
        for name, value in ints.items():
            _shape(name, value, (stages,))
        tables = {name: _real(name, value, f64, ndim=1) for name, value in (
            ("base_in", base_in), ("base_out", base_out), ("deriv", deriv), ("sens", sens))}
        table_size = min(t.size for t in tables.values())
        weights = _real("weights", weights, f64, ndim=1)
        loss_code = _code("loss_code", loss_code, _LOSSES)
        resid = _real("resid", resid, f64, ndim=2)
        width = resid.shape[1]
        if resid.shape[0] != batch:
            raise ValueError(f"resid has {resid.shape[0]} rows, xin has {batch}")
        loss_tables = {"prob": prob, "targets": targets, "rho": rho}
        for name, value in loss_tables.items():
            loss_tables[name] = _real(name, value, f64, ndim=2)
            _shape(name, loss_tables[name], resid.shape)
        mass = _real("mass", mass, f64, ndim=1)
        _shape("mass", mass, (batch,))
        dl = _real("dl", dl, f64, ndim=2, writable=True)
        noise = _real("noise", noise, f64, ndim=2, writable=True)
        _shape("dl", dl, (k, m))
        _shape("noise", noise, (k, m))
        if not isinstance(crossed, np.ndarray) or crossed.dtype != np.uint8 or \
                crossed.shape != (k,) or not crossed.flags.c_contiguous or \
                not crossed.flags.writeable:
            raise TypeError(f"crossed must be a writable C-contiguous uint8 array of shape "
                            f"({k},)")
        read = [("xin", xin), ("steps", steps), ("offsets", offsets), ("weights", weights),
                ("resid", resid), ("mass", mass), *tables.items(), *loss_tables.items()]
        outputs = [("dl", dl), ("noise", noise), ("crossed", crossed)]
        for i, output in enumerate(outputs):
            _apart(output, *outputs[i + 1:], *read)
        max_width = int(max_width)
        n_out = self._check_stages(ints, table_size, weights.size, batch, width, max_width)
        if k and (rows.min() < 0 or rows.max() > n_in or cols.min() < 0 or
                  cols.max() >= n_out):
            raise IndexError(f"entries out of range: rows must be in [0, {n_in}] and cols in "
                             f"[0, {n_out})")
        ffi = self._ffi
        keep = [ffi.from_buffer("int64_t[]", a) for a in ints.values()] + \
            [self._ptr(t) for t in tables.values()] + [self._ptr(weights)]
        st = ffi.new("gp_nn_stages *", {
            "count": stages, "kinds": keep[0], "codes": keep[1], "widths_in": keep[2],
            "widths_out": keep[3], "offs": keep[4], "w_offs": keep[5], "base_in": keep[6],
            "base_out": keep[7], "deriv": keep[8], "sens": keep[9], "weights": keep[10],
            "table_size": table_size, "weight_size": weights.size, "max_width": max_width})
        loss_keep = [self._ptr(resid), self._ptr(loss_tables["prob"]), self._ptr(mass),
                     self._ptr(loss_tables["targets"]), self._ptr(loss_tables["rho"])]
        lt = ffi.new("gp_nn_loss *", {
            "code": loss_code, "scale": float(scale), "resid": loss_keep[0],
            "prob": loss_keep[1], "mass": loss_keep[2], "targets": loss_keep[3],
            "rho": loss_keep[4], "width": width, "base_ulps": constants.BASE_POINT_ULPS})
        xin_c = self._ptr(xin)
        for lo in range(0, k, config.NN_C_ENTRY_BATCH):  # Ctrl-C is seen between batches
            hi = min(k, lo + config.NN_C_ENTRY_BATCH)
            status = self._lib.gp_nn_entry_differences(
                xin_c, batch, n_in, n_out, self._ptr(rows[lo:hi]), self._ptr(cols[lo:hi]),
                self._ptr(steps[lo:hi]), hi - lo, self._ptr(offsets), m, st, lt,
                self._ptr(dl[lo:hi], True), self._ptr(noise[lo:hi], True),
                self._ptr(crossed[lo:hi], True), self.threads)
            self._status(status, "entry_differences")

    @staticmethod
    def _check_stages(ints: dict[str, np.ndarray], table_size: int, weight_size: int,
                      batch: int, width: int, max_width: int) -> int:
        """Validate the stage tables; return the width of the perturbed layer's output."""
        count = ints["kinds"].size
        if count == 0:
            n_out = width
        else:
            n_out = int(ints["widths_in"][0])
        if n_out > max_width or n_out < 1:
            raise ValueError(f"max_width={max_width} is less than the perturbed layer's "
                             f"width {n_out}")
        current = n_out
        for s in range(count):
            kind = int(ints["kinds"][s])
            w_in, w_out = int(ints["widths_in"][s]), int(ints["widths_out"][s])
            off, wo = int(ints["offs"][s]), int(ints["w_offs"][s])
            if w_in != current or w_out < 1 or w_out > max_width:
                raise ValueError(f"stage {s}: widths {w_in} -> {w_out} do not chain from "
                                 f"{current} (max_width {max_width})")
            if off < 0 or off + batch * w_in > table_size:
                raise ValueError(f"stage {s}: table offset {off} + {batch} x {w_in} is beyond "
                                 f"the tables' {table_size} elements")
            if kind == constants.STAGE_ACTIVATION:
                _code(f"codes[{s}]", int(ints["codes"][s]), _ACTIVATIONS)
                if w_in != w_out:
                    raise ValueError(f"stage {s}: an activation must keep its width")
            elif kind == constants.STAGE_DENSE:
                if wo < 0 or wo + w_in * w_out > weight_size:
                    raise ValueError(f"stage {s}: weights offset {wo} + {w_in} x {w_out} is "
                                     f"beyond the {weight_size} weights")
            else:
                raise ValueError(f"stage {s}: unknown kind {kind}")
            current = w_out
        if current != width:
            raise ValueError(f"the last stage's width {current} is not the loss tables' "
                             f"width {width}")
        widest = max([n_out] + [int(w) for w in ints["widths_out"]])
        if max_width != widest:  # it sizes each thread's scratch: batch x max_width
            raise ValueError(f"max_width={max_width} must be the widest layer's width, "
                             f"{widest}")
        return n_out
