"""Build and run a C test program of tests/c/ under AddressSanitizer + UBSan, or
ThreadSanitizer."""
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
#: ThreadSanitizer instead (it cannot be combined with AddressSanitizer).
SANITIZE_THREADS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
                    "-fsanitize=thread", "-pthread"]

needs_cc = pytest.mark.skipif(not HAVE_CC, reason=f"no C compiler ({CC})")


def run_sanitized(tmp_path, program: str, csrc: list[str], flags: list[str] = SANITIZE) -> str:
    """Compile ``tests/c/<program>.c`` with the ``csrc/`` files under the sanitizers
    of ``flags``, run it, assert that it passed, and return its output (skips when
    the sanitizer runtime is missing or cannot start on this kernel)."""
    binary = tmp_path / program
    build = subprocess.run(
        [CC, *flags, "-I", os.path.join(ROOT, "csrc"),
         *(os.path.join(ROOT, "csrc", name) for name in csrc),
         os.path.join(ROOT, "tests", "c", f"{program}.c"), "-o", str(binary), "-lm"],
        capture_output=True, text=True)
    if build.returncode != 0:
        if any(word in build.stderr for word in ("sanitize", "asan", "ubsan", "tsan")):
            pytest.skip(f"sanitizer runtime unavailable: {build.stderr.strip()[:200]}")
        pytest.fail(build.stderr)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("LD_PRELOAD", None)
    done = subprocess.run([str(binary)], capture_output=True, text=True, env=env, timeout=300)
    if done.returncode != 0 and "unexpected memory mapping" in done.stderr:
        pytest.skip(f"ThreadSanitizer cannot start here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    assert "all checks passed" in done.stdout
    return done.stdout
