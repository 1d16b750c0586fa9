"""Build and run a C test program of tests/c/ under AddressSanitizer + UBSan."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CC = os.environ.get("CC", "gcc")
HAVE_CC = shutil.which(CC) is not None
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANITIZE = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer", "-pthread"]

needs_cc = pytest.mark.skipif(not HAVE_CC, reason=f"no C compiler ({CC})")


def run_sanitized(tmp_path, program: str, csrc: list[str]) -> str:
    """Compile ``tests/c/<program>.c`` with the ``csrc/`` files under the sanitizers,
    run it, assert that it passed, and return its output (skips when the sanitizer
    runtime is missing)."""
    binary = tmp_path / program
    build = subprocess.run(
        [CC, *SANITIZE, "-I", os.path.join(ROOT, "csrc"),
         *(os.path.join(ROOT, "csrc", name) for name in csrc),
         os.path.join(ROOT, "tests", "c", f"{program}.c"), "-o", str(binary), "-lm"],
        capture_output=True, text=True)
    if build.returncode != 0:
        if "sanitize" in build.stderr or "asan" in build.stderr or "ubsan" in build.stderr:
            pytest.skip(f"sanitizer runtime unavailable: {build.stderr.strip()[:200]}")
        pytest.fail(build.stderr)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("LD_PRELOAD", None)
    done = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "all checks passed" in done.stdout
    return done.stdout
