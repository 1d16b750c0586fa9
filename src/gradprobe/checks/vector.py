"""Checks for array-valued functions: VJP, JVP, Jacobian and Hessian-vector products.

Most hand-written backward passes are per layer: a function from arrays to an
array, and a backward that maps an upstream gradient to the inputs'
gradients. These checks take such functions directly, without a scalar loss
invented by the user:

* :func:`check_vjp` -- ``vjp(u, *inputs)`` is the gradient of the scalar
  ``<u, f(*inputs)>``; every random cotangent ``u`` becomes one full
  :func:`gradprobe.check` (per-entry localization, kinks, float32 upcast,
  error bars and diagnosis included), and the per-cotangent reports are
  merged into one.
* :func:`check_jvp` -- ``jvp(t, *inputs)`` against central differences of
  ``f`` along ``t``: two evaluations per tangent give every output entry,
  each with its own error bar (noise of that entry plus truncation).
* :func:`check_jacobian` -- a whole Jacobian, one perturbed pair of
  evaluations per input entry (one column per pair).
* :func:`check_hvp` -- Hessian-vector products of a scalar ``f``, against
  differences of ``grad`` along ``v`` when it is given, otherwise against the
  gradient of a second difference of ``f``.

All four return a :class:`~gradprobe.report.reports.CheckReport` built through
:func:`gradprobe.verdict.compare.compare_param` and
:func:`gradprobe.verdict.diagnosis.diagnose_all`, and never write the user's arrays.
When several directions are used, an entry fails when it fails along any of
them, and shows the values of the direction where it did worst.
"""
from ..config import HVP_INNER_STEP_POWER
from ..config import DEFAULT_VECTOR_DIRECTIONS as DEFAULT_DIRECTIONS  # the old name
from .vector_setup import merge_runs
from .vjp import check_jvp, check_vjp, vjp_check
from .jacobian import check_jacobian
from .hvp import check_hvp

__all__ = ["check_vjp", "check_jvp", "check_jacobian", "check_hvp", "vjp_check", "merge_runs",
           "DEFAULT_DIRECTIONS", "HVP_INNER_STEP_POWER"]
