"""cffi build script of the optional C kernel ``gradprobe._ckernel``.

Run at install time through ``setup.py`` (``cffi_modules``); the sources are
``csrc/gp_kernel.{c,h}``. The build may fail (no C compiler): ``setup.py``
then installs gradprobe without the kernel, and
:mod:`gradprobe.engines.cffi` reports it as unavailable.

Build in place by hand (from the repository root)::

    python src/gradprobe/_cffi_build.py
"""
from __future__ import annotations

import os
import sys

from cffi import FFI

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CSRC = os.path.join(_ROOT, "csrc")


def _relative(path: str) -> str:
    """``path`` relative to the working directory when below it (setuptools
    places objects of absolute sources outside ``build/``)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


CDEF = """
typedef double (*gp_loss_fn)(const double *theta, size_t n, void *ctx);
int gp_evaluate(gp_loss_fn loss, void *ctx, const double *theta, size_t n,
                size_t offset, size_t size, const int64_t *entries, size_t k,
                const double *points, size_t m, double *out, int threads);
int gp_max_threads(void);
#define GP_OK 0
#define GP_EINVAL 1
#define GP_ENOMEM 2
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "gradprobe._ckernel",
    '#include "gp_kernel.h"',
    sources=[_relative(os.path.join(_CSRC, "gp_kernel.c"))],
    include_dirs=[_relative(_CSRC)],
    # -ffp-contract=off: the kernel only moves values, never licensed to fuse
    # arithmetic; -pthread for the worker threads.
    extra_compile_args=[] if sys.platform == "win32" else ["-O2", "-ffp-contract=off",
                                                            "-pthread"],
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

if __name__ == "__main__":  # pragma: no cover - manual build
    os.chdir(os.path.join(_ROOT, "src"))
    ffibuilder.compile(verbose=True)
