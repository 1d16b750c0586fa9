"""cffi build script of the optional C kernel ``gradprobe._ckernel``.

Run at install time through ``setup.py`` (``cffi_modules``); the sources are
``csrc/``: the perturbation loop for C losses (``gp_kernel``), the C twin of
:mod:`gradprobe.nn`'s Numba kernels (``gp_nn``) and their thread pool
(``gp_parallel``). The build may fail (no C compiler): ``setup.py``
then installs gradprobe without the kernel, and
:mod:`gradprobe.engines.cffi` reports it as unavailable.

Build in place by hand (from the repository root)::

    python src/gradprobe/_cffi_build.py
"""
from __future__ import annotations

import os
import re
import sys

from cffi import FFI

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CSRC = os.path.join(_ROOT, "csrc")


def _relative(path: str) -> str:
    """``path`` relative to the working directory when below it (setuptools
    places objects of absolute sources outside ``build/``)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


#: The headers whose declarations Python calls.
HEADERS = ("gp_kernel.h", "gp_nn.h")


def cdef_from_header(path: str) -> str:
    """The declarations of a csrc/ header in the form ``ffi.cdef`` takes.

    Comments, include guards and includes are dropped; ``#define GP_...``
    integer constants are kept (cffi exposes them on ``lib``). cffi then
    checks every declaration against the header itself when it compiles the
    module, so the C and Python sides cannot drift apart.
    """
    with open(path, encoding="utf-8") as handle:
        text = re.sub(r"/\*.*?\*/", "", handle.read(), flags=re.S)
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.fullmatch(r"#define\s+GP_\w+\s+-?\d+", stripped):
                kept.append(stripped)
            continue
        kept.append(line)
    return "\n".join(kept)


#: The C sources of the module, in csrc/.
SOURCES = ("gp_kernel.c", "gp_nn.c", "gp_parallel.c")

ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_from_header(os.path.join(_CSRC, name)) for name in HEADERS))
ffibuilder.set_source(
    "gradprobe._ckernel",
    "".join(f'#include "{name}"\n' for name in HEADERS),
    sources=[_relative(os.path.join(_CSRC, name)) for name in SOURCES],
    include_dirs=[_relative(_CSRC)],
    # -ffp-contract=off: no fused multiply-add, so the nn kernels round exactly
    # like their Numba twins; -O3 vectorises their row loops (without
    # reassociating any sum); -pthread for the worker threads.
    extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-ffp-contract=off",
                                                            "-pthread"],
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

if __name__ == "__main__":  # pragma: no cover - manual build
    os.chdir(os.path.join(_ROOT, "src"))
    ffibuilder.compile(verbose=True)
