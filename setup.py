"""Build hooks that ``pyproject.toml`` cannot express.

Everything declarative lives in ``pyproject.toml``. This file adds the
optional C kernel (``gradprobe._ckernel``, built by cffi from ``csrc/``) and
a ``build_ext`` that survives its failure: without a working C compiler the
build prints why and gradprobe installs without the kernel (the Python and
Numba engines work as before; ``gradprobe.info()`` says the C kernel is
unavailable). Set ``GRADPROBE_REQUIRE_C_KERNEL=1`` to make a failed build
an error instead (pattern: MarkupSafe's ``setup.py``).
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

try:  # setuptools vendors distutils; its errors are what compilers raise
    from setuptools.errors import CCompilerError, ExecError, PlatformError
except ImportError:  # pragma: no cover - setuptools < 59
    from distutils.errors import CCompilerError
    from distutils.errors import DistutilsExecError as ExecError
    from distutils.errors import DistutilsPlatformError as PlatformError

BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError, ValueError)


class BuildFailed(Exception):
    """The C kernel could not be compiled."""


class optional_build_ext(build_ext):
    """``build_ext`` that turns a failed compilation into a warning."""

    def run(self):
        try:
            super().run()
        except BUILD_ERRORS as exc:  # e.g. no compiler found at all
            self._give_up(exc)
            self.extensions = []  # nothing to copy or to put in the wheel

    def build_extensions(self):
        self.check_extensions_list(self.extensions)
        built = []
        for ext in self.extensions:
            try:
                self.build_extension(ext)
            except BUILD_ERRORS as exc:
                self._give_up(exc)
            else:
                built.append(ext)
        # Later steps (in-place copy, editable wheels, get_outputs) only see
        # the extensions that exist.
        self.extensions = built

    def _give_up(self, exc):
        if os.environ.get("GRADPROBE_REQUIRE_C_KERNEL", "") not in ("", "0"):
            raise BuildFailed(f"the gradprobe C kernel failed to build: {exc}") from exc
        bar = "=" * 74
        print(f"\n{bar}\nWARNING: the optional gradprobe C kernel could not be compiled:\n"
              f"  {type(exc).__name__}: {exc}\n"
              "gradprobe is installed without it: the Python and Numba engines work,\n"
              "backend='cffi' does not. Install a C compiler (gcc/clang, or MSVC on\n"
              "Windows) and reinstall to enable it; gradprobe.info() reports its state.\n"
              f"{bar}\n", file=sys.stderr)


try:
    import cffi  # noqa: F401  (a build requirement; absent only in odd builds)
except ImportError:  # pragma: no cover
    print("WARNING: cffi is not installed at build time: building gradprobe "
          "without its C kernel", file=sys.stderr)
    cffi_options = {}
else:
    cffi_options = {"cffi_modules": ["src/gradprobe/_cffi_build.py:ffibuilder"]}

setup(cmdclass={"build_ext": optional_build_ext}, **cffi_options)
