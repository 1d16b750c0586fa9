"""Compiling gradprobe's Numba kernels: a notice on a first run, a cache probe, warm-up.

Numba compiles a kernel on its first call and keeps it in its disk cache
(``cache=True``: ``__pycache__`` next to the module, or ``NUMBA_CACHE_DIR``);
later processes load it in milliseconds. A cold compile of a parallel kernel
takes 1.5-5 s, and nothing on screen says why a first run is slow, so:

* :func:`install_notice` registers a listener on Numba's ``"numba:compile"``
  event, which Numba broadcasts only when it really compiles (after a cache
  miss). The first time one of gradprobe's cached kernels that takes more
  than about a second to compile (the parallel ones, and the Numba engine's
  kernel) starts compiling, :data:`NOTICE` is written once to stderr, the
  stream of progress bars. A warm cache prints nothing.
* :func:`load_cached` loads a kernel from the disk cache *without* compiling
  it, so a caller can choose to skip a compile that would cost more than the
  work it speeds up (the Numba engine does, for small checks).
* :func:`gradprobe.integrations.warmup.warmup` compiles and caches every kernel ahead of time
  (``python -m gradprobe warmup``: a CI step, a Docker build).
"""
from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

#: Written once per process to stderr when a slow kernel compiles.
NOTICE = ("gradprobe: compiling Numba kernels, first run only (they are cached on disk; "
          "'python -m gradprobe warmup' compiles them ahead of time)")

#: Modules whose kernels take more than about a second to compile even when
#: serial (the Numba engine's kernel: a per-layout loop that calls ``f``).
_SLOW_MODULES = ("gradprobe.engines.numba_kernel",)

_lock = threading.Lock()
_state = {"installed": False, "announced": False}
#: Dispatchers being probed by :func:`load_cached`: compiling one is aborted.
_probing: set[int] = set()


class _NotCached(Exception):
    """Raised inside Numba's compile event to stop a probe from compiling."""


def _cached(dispatcher: Any) -> bool:
    """True when ``dispatcher`` writes to Numba's disk cache (``cache=True``)."""
    cache = getattr(dispatcher, "_cache", None)
    return cache is not None and type(cache).__name__ != "NullCache"


def is_slow_kernel(dispatcher: Any) -> bool:
    """True for a cached gradprobe kernel that takes more than about a second to compile.

    Examples
    --------
    >>> from gradprobe.nn import kernels
    >>> is_slow_kernel(kernels.matmul), is_slow_kernel(kernels.column_sums)
    (True, False)
    """
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    if not module.startswith("gradprobe."):
        return False
    slow = bool(getattr(dispatcher, "targetoptions", {}).get("parallel")) or \
        module in _SLOW_MODULES
    return slow and _cached(dispatcher)


def announce(stream: TextIO | None = None) -> bool:
    """Write :data:`NOTICE` to ``stream`` (stderr) unless it was written already.

    Returns True when it wrote it.
    """
    with _lock:
        if _state["announced"]:
            return False
        _state["announced"] = True
    stream = sys.stderr if stream is None else stream
    try:
        stream.write(NOTICE + "\n")
        stream.flush()
    except (OSError, ValueError):  # pragma: no cover - a closed stream
        pass
    return True


def install_notice() -> None:
    """Register the compile listener (once per process; imports Numba)."""
    with _lock:
        if _state["installed"]:
            return
        _state["installed"] = True
    from numba.core import event

    class _CompileListener(event.Listener):
        def on_start(self, evt: Any) -> None:
            dispatcher = (evt.data or {}).get("dispatcher")
            if id(dispatcher) in _probing:
                raise _NotCached()
            if is_slow_kernel(dispatcher):
                announce()

        def on_end(self, evt: Any) -> None:
            pass

    event.register("numba:compile", _CompileListener())


def load_cached(dispatcher: Any, signature: Any) -> bool:
    """Load ``signature`` of ``dispatcher`` from memory or Numba's disk cache, never compiling.

    Returns True when the compiled version is now available, False when it
    would have to be compiled (it is not in the cache, or the dispatcher
    does not cache).

    Examples
    --------
    >>> import numba
    >>> @numba.njit
    ... def double(x):
    ...     return 2 * x
    >>> load_cached(double, (numba.float64,))
    False
    >>> double(1.0), load_cached(double, (numba.float64,))
    (2.0, True)
    """
    install_notice()
    key = id(dispatcher)
    with _lock:
        _probing.add(key)
    try:
        dispatcher.compile(signature)
    except _NotCached:
        return False
    finally:
        with _lock:
            _probing.discard(key)
    return True


def quiet_notice() -> None:
    """Never write :data:`NOTICE` in this process: the caller (``warmup``) says what
    it compiles itself."""
    install_notice()
    with _lock:
        _state["announced"] = True
