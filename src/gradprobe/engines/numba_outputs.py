"""The Numba engine's njit layer for array-valued functions: perturbation groups in one kernel.

:meth:`gradprobe.engines.base.Engine.evaluate_outputs` evaluates an
array-valued ``f`` (a layer) at points where a group of entries of one input
is displaced (a compressed Jacobian's lines). For a ``numba.njit`` ``f`` this
module runs those points in one ``parallel=True`` kernel: ``prange`` over
chunks of points, each chunk on its own copy of the inputs (write the group's
values, call ``f``, copy its output into its own row, restore the group).
``f`` is the same compiled code the reference loop reaches through the
dispatcher, and the points carry the same values, so the outputs are the
reference loop's bit for bit.

Anything the kernel cannot settle goes back to the reference loop, which then
says what happened exactly as it always does: an ``f`` that raises, returns
another shape or a non-finite value (the first such point is evaluated again
from Python), or that Numba cannot type for the kernel (a bool or complex
result where a real one is needed, arguments a parallel region cannot take).

The kernel is typed on ``f`` itself (compiled for each ``f``, not cached).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange, types
from numba.extending import overload

from .. import config
from .numba_kernel import ROLES, slot_layout, slot_views

__all__ = ["ROLES", "kernel", "output_chunks", "output_rows"]


def output_rows(f: Any, slot: int, offsets: np.ndarray, members: np.ndarray,
                values: np.ndarray, out: np.ndarray, shape: np.ndarray, lo: int, hi: int,
                slots: tuple, roles: tuple) -> int:
    """Rows ``lo:hi`` on private copies of the inputs (compiled only).

    Point ``row`` writes ``values[offsets[row]:offsets[row + 1]]`` into the
    flat entries ``members[...]`` of slot ``slot``, calls ``f`` and copies its
    output (of shape ``shape``) into ``out[row]``. Returns 0, or ``row + 1``
    for the first point where ``f`` raised or returned another shape.
    """
    raise NotImplementedError("output_rows only exists inside compiled code")


@overload(output_rows, jit_options=config.NUMBA_OVERLOAD_FLAGS)
def _overload_output_rows(f, slot, offsets, members, values, out, shape, lo, hi, slots, roles):
    """Generate the chunk loop for one layout of slots (as numba_kernel.evaluate_rows)."""
    layout = slot_layout(roles, slots)
    if layout is None:
        return None
    params = [i for i, role in enumerate(layout) if role.startswith("param")]
    lines = ["def output_rows(f, slot, offsets, members, values, out, shape, lo, hi, slots, "
             "roles):"]
    lines += slot_views(layout, params)

    def dispatch(indent: str, statement: str) -> list[str]:
        out = []
        for n, i in enumerate(params):
            out += [f"{indent}{'if' if n == 0 else 'elif'} slot == {i}:",
                    f"{indent}    for t in range(offsets[row], offsets[row + 1]):",
                    f"{indent}        {statement.format(i=i)}"]
        return out

    call = ", ".join(f"view{i}" for i in range(len(layout)))
    lines += ["    for row in range(lo, hi):"]
    lines += dispatch("        ", "flat{i}[members[t]] = values[t]")
    lines += ["        bad = False",
              "        try:",
              f"            y = f({call})",
              "            if y.ndim != shape.size:",
              "                bad = True",
              "            else:",
              "                for d in range(y.ndim):",
              "                    if y.shape[d] != shape[d]:",
              "                        bad = True",
              "            if not bad:",
              "                col = 0",
              "                for v in y.flat:",
              "                    out[row, col] = v",
              "                    col += 1",
              "        except Exception:",
              "            bad = True"]
    lines += dispatch("        ", "flat{i}[members[t]] = source{i}[members[t]]")
    lines += ["        if bad:",
              "            return row + 1",
              "    return 0"]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", f"<gradprobe output_rows {layout}>", "exec"),
         namespace)
    return namespace["output_rows"]


def output_chunks(f, slot, offsets, members, values, out, shape, failed, bounds, slots, roles):
    """Parallel kernel: chunk ``c`` evaluates the points ``bounds[c]:bounds[c + 1]``."""
    for chunk in prange(bounds.size - 1):
        failed[chunk] = output_rows(f, slot, offsets, members, values, out, shape,
                                    bounds[chunk], bounds[chunk + 1], slots, roles)


def output_chunks_serial(f, slot, offsets, members, values, out, shape, failed, bounds, slots,
                         roles):
    """:func:`output_chunks` on one thread (for an ``f`` with its own parallel regions)."""
    for chunk in range(bounds.size - 1):
        failed[chunk] = output_rows(f, slot, offsets, members, values, out, shape,
                                    bounds[chunk], bounds[chunk + 1], slots, roles)


_KERNELS: dict[bool, Any] = {}


def kernel(parallel: bool) -> Any:
    """The (lazily compiling, uncached) dispatcher of :func:`output_chunks`."""
    import numba

    found = _KERNELS.get(parallel)
    if found is None:
        options = dict(config.NUMBA_UNCACHED_FLAGS, parallel=parallel)
        found = numba.njit(**options)(output_chunks if parallel else output_chunks_serial)
        _KERNELS[parallel] = found
    return found


def returns_real_array(f: Any, argtypes: tuple, complex_ok: bool) -> bool:
    """Does ``f`` return a numeric array the kernel may copy as the reference loop would?"""
    import numba

    typing = numba.core.registry.cpu_target.typing_context
    try:
        typing.refresh()
        signature = typing.resolve_function_type(types.Dispatcher(f), argtypes, {})
    except numba.core.errors.NumbaError:
        return False
    if signature is None or not isinstance(signature.return_type, types.Array):
        return False
    kinds = (types.Float, types.Integer) + ((types.Complex,) if complex_ok else ())
    dtype = signature.return_type.dtype
    return isinstance(dtype, kinds) and not isinstance(dtype, types.Boolean)


class OutputsPlan:
    """How one ``VectorFunction`` is laid out for the kernel (see :func:`plan`)."""

    def __init__(self, slots: tuple, roles: tuple, param_slot: list[int], parallel: bool):
        self.slots, self.roles, self.param_slot = slots, roles, param_slot
        self.parallel = parallel


def plan(vf: Any, layout: list[tuple[str, int]], parallel: bool) -> OutputsPlan | None:
    """The kernel's layout of ``vf`` (``layout``: ``f``'s positional arguments in call
    order), or None when the kernel cannot run it (the reference loop does)."""
    import numba

    values = [vf.working[i] if kind == "param" else vf.args[i] for kind, i in layout]
    try:
        argtypes = tuple(numba.typeof(v) for v in values)
    except ValueError:
        return None
    if not returns_real_array(vf.f, argtypes, vf.complex_step):
        return None
    slots, roles = [], []
    for (kind, _), value in zip(layout, values):
        zero_d = isinstance(value, np.ndarray) and value.ndim == 0
        slots.append(value.reshape(1) if zero_d else value)
        roles.append(ROLES[kind + ("_0d" if zero_d else "")](0))
    param_slot = [0] * len(vf.working)
    for s, (kind, i) in enumerate(layout):
        if kind == "param":
            param_slot[i] = s
    return OutputsPlan(tuple(slots), tuple(roles), param_slot, parallel)


def launch(vf: Any, how: OutputsPlan, param: int, members: Any, values: Any,
           threads: int) -> tuple[np.ndarray, int] | None:
    """Run the kernel on every point: ``(out, first)``, ``first`` the first point the
    reference loop must evaluate again (``len(members)``: none); None when Numba
    cannot compile the kernel for these arguments (the plan is then serial or gone)."""
    from numba.core import errors

    k = len(members)
    sizes = np.fromiter((np.size(m) for m in members), dtype=np.int64, count=k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat_members = np.ascontiguousarray(np.concatenate(
        [np.asarray(m, dtype=np.int64).reshape(-1) for m in members]))
    dtype = vf.working[param].dtype
    flat_values = np.ascontiguousarray(np.concatenate(
        [np.asarray(v).reshape(-1) for v in values]).astype(dtype, copy=False))
    out = np.empty((k, vf.size), dtype=np.complex128 if vf.complex_step else np.float64)
    shape = np.asarray(vf.out_shape, dtype=np.int64).reshape(-1)
    chunks = min(k, threads * config.NUMBA_CHUNKS_PER_THREAD) if how.parallel else 1
    bounds = (np.arange(chunks + 1, dtype=np.int64) * k) // chunks
    failed = np.zeros(chunks, dtype=np.int64)
    try:
        kernel(how.parallel)(vf.f, how.param_slot[param], offsets, flat_members, flat_values,
                             out, shape, failed, bounds, how.slots, how.roles)
    except (errors.NumbaError, TypeError, NotImplementedError):
        return None
    first = int(failed[failed > 0].min()) - 1 if failed.any() else k
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        first = min(first, int(np.flatnonzero(~finite)[0]))
    return out, first
