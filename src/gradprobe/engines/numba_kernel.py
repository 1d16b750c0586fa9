"""The compiled loop of the Numba engine: copy, perturb one entry, call ``f``, restore.

``f`` is called with *slots*: its positional arguments in call order. A slot
is either a parameter (copied once per chunk of entries, then perturbed one
entry at a time) or an extra argument (passed through, never written). Two
facts of Numba shape the code:

* a 0-d array cannot cross into a ``prange`` region (parfor lowering turns
  it into a scalar), so 0-d slots travel as 1-element 1-d arrays and are
  viewed as 0-d again inside the chunk;
* the loop must know, at compile time, which slot is what. That layout is
  carried by the *types* of ``roles``, a tuple of zeros (see :data:`ROLES`),
  so the generated code depends on types only.

The kernel therefore compiles once per layout and dtypes (never per shape),
and, because ``f`` arrives as a first-class function value
(``types.FunctionType``) rather than as itself, one compiled kernel serves
every ``f`` with the same signature and is cached on disk. The per-chunk
loop is generated for each layout by :func:`_overload_evaluate_rows`; the
parallel kernel itself, :func:`evaluate_chunks`, is four lines.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange, types
from numba.extending import overload

from .. import config

#: Role of a slot, encoded by the dtype of its zero in ``roles``.
ROLES = {
    "param": np.int8,      # a parameter, passed with its own shape (ndim >= 1)
    "param_0d": np.int16,  # a 0-d parameter, passed as shape (1,)
    "arg": np.int32,       # an extra argument, passed as it is
    "arg_0d": np.int64,    # a 0-d array argument, passed as shape (1,)
}
_ROLE_OF_TYPE = {types.int8: "param", types.int16: "param_0d", types.int32: "arg",
                 types.int64: "arg_0d"}


def slot_layout(roles: Any, slots: Any) -> list[str] | None:
    """The role of every slot from the Numba types of ``roles`` (None when the
    counts differ: not a layout the generated loops handle)."""
    layout = [_ROLE_OF_TYPE[t] for t in roles]
    return layout if len(layout) == len(slots) else None


def slot_views(layout: list[str], params: list[int]) -> list[str]:
    """Source lines of a generated chunk loop that give every slot its view: a
    private working copy (made once per chunk) for the parameters, the caller's
    array for the other arguments, reshaped to ``()`` for 0-d slots."""
    lines = []
    for i, role in enumerate(layout):
        if i in params:
            lines += [f"    source{i} = slots[{i}].reshape(slots[{i}].size)",
                      f"    work{i} = slots[{i}].copy()",  # once per chunk
                      f"    flat{i} = work{i}.reshape(work{i}.size)"]
            view = f"work{i}.reshape(())" if role == "param_0d" else f"work{i}"
        else:
            view = f"slots[{i}].reshape(())" if role == "arg_0d" else f"slots[{i}]"
        lines.append(f"    view{i} = {view}")
    return lines


def evaluate_rows(f: Any, slot: int, entries: np.ndarray, points: np.ndarray,
                  out: np.ndarray, lo: int, hi: int, slots: tuple, roles: tuple) -> int:
    """Evaluate rows ``lo:hi`` on private copies of the parameters (compiled only).

    Writes ``f`` at every point of ``points[lo:hi]`` into ``out[lo:hi]``,
    perturbing entry ``entries[row]`` of slot ``slot``. Returns 0, or
    ``row * m + col + 1`` for the first point where ``f`` raised (the chunk
    stops there; the caller re-raises the exception from Python).
    """
    raise NotImplementedError("evaluate_rows only exists inside compiled code")


@overload(evaluate_rows, jit_options=config.NUMBA_OVERLOAD_FLAGS)
def _overload_evaluate_rows(f, slot, entries, points, out, lo, hi, slots, roles):
    """Generate the chunk loop for one layout of slots.

    ``f`` is called from one place only (compile time grows with call
    sites); the perturbed entry is written by a short ``if slot == i``
    chain and restored from the unperturbed source array.
    """
    layout = slot_layout(roles, slots)
    if layout is None:
        return None
    params = [i for i, role in enumerate(layout) if role.startswith("param")]
    lines = ["def evaluate_rows(f, slot, entries, points, out, lo, hi, slots, roles):"]
    lines += slot_views(layout, params)

    def dispatch(indent: str, statement: str) -> list[str]:
        out = []
        for n, i in enumerate(params):
            out += [f"{indent}{'if' if n == 0 else 'elif'} slot == {i}:",
                    f"{indent}    {statement.format(i=i)}"]
        return out

    call = ", ".join(f"view{i}" for i in range(len(layout)))
    lines += ["    m = points.shape[1]",
              "    for row in range(lo, hi):",
              "        index = entries[row]",
              "        for col in range(m):"]
    lines += dispatch("            ", "flat{i}[index] = points[row, col]")
    lines += ["            try:",
              f"                out[row, col] = f({call})",
              "            except Exception:",
              "                return row * m + col + 1"]
    lines += dispatch("        ", "flat{i}[index] = source{i}[index]")
    lines.append("    return 0")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", f"<gradprobe evaluate_rows {layout}>", "exec"),
         namespace)
    return namespace["evaluate_rows"]


def evaluate_chunks(f, slot, entries, points, out, failed, bounds, slots, roles):
    """Parallel kernel: chunk ``c`` evaluates rows ``bounds[c]:bounds[c + 1]``.

    Each chunk works on its own copies of the parameters (made inside
    :func:`evaluate_rows`, never indexed by thread id) and writes its own
    rows of ``out`` and its own ``failed[c]``.
    """
    for chunk in prange(bounds.size - 1):
        failed[chunk] = evaluate_rows(f, slot, entries, points, out, bounds[chunk],
                                      bounds[chunk + 1], slots, roles)


def evaluate_chunks_serial(f, slot, entries, points, out, failed, bounds, slots, roles):
    """:func:`evaluate_chunks` for one thread (compiled without ``parallel``).

    A separate function, not the same one compiled with other flags: Numba's
    disk cache keys entries by function and signature only, so a serial
    build of :func:`evaluate_chunks` could be loaded for a parallel one.
    """
    for chunk in range(bounds.size - 1):
        failed[chunk] = evaluate_rows(f, slot, entries, points, out, bounds[chunk],
                                      bounds[chunk + 1], slots, roles)


#: Kernels: (parallel, signature or None) -> dispatcher. With a signature,
#: ``f`` is a first-class function value and the kernel is cached on disk; with
#: None, ``f`` is typed as itself (needed when its signature has omitted default
#: arguments) and the kernel is compiled per ``f``, uncached.
_KERNELS: dict[tuple[bool, Any], Any] = {}


def kernel(parallel: bool, signature: tuple | None, compile: bool = True) -> Any:
    """The :func:`evaluate_chunks` dispatcher for ``signature``.

    With ``compile`` (default) it is compiled, or loaded from Numba's disk
    cache, for ``signature``; with ``compile=False`` it is only loaded from the
    cache, and None is returned when it is not there (nothing is compiled:
    see :func:`gradprobe.compilation.load_cached`). A signature's dispatcher
    accepts no other types once compiled (``f`` converts to the signature's
    function type).
    """
    import numba

    from ..compilation import install_notice, load_cached

    install_notice()
    key = (parallel, signature)
    found = _KERNELS.get(key)
    if found is None:
        flags = config.NUMBA_FLAGS if signature is not None else config.NUMBA_UNCACHED_FLAGS
        options = dict(flags, parallel=parallel)
        function = evaluate_chunks if parallel else evaluate_chunks_serial
        found = numba.njit(**options)(function)
        _KERNELS[key] = found
    if signature is None:  # typed on each f by the caller (dispatcher.compile), uncached
        return found if compile else None
    if tuple(signature) not in found.overloads:
        if compile:
            found.compile(signature)
        elif not load_cached(found, signature):
            return None
        found.disable_compile()
    return found
