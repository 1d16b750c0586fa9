"""Error bars and verdicts over parameter scales and function length scales.

``f(x) = sum(g(x / L))`` for smooth ``g`` (tanh, exp, sin, log(1 + x^2), x^4, a
rational function), parameters of magnitude ``S`` and length scales ``L``,
each from 1e-6 to 1e6, in float64 and float32 (default options). The exact
derivative ``g'(x / L) / L`` is written by hand, never taken from the code
under test. Measured, and printed (``pytest -s``):

* coverage: the fraction of entries whose true error ``|numeric - exact|`` is
  within the reported error bar, and the worst ratio ``true error / bar``;
* false alarms (a correct gradient failing) and inconclusive checks;
* missed errors: a 1 % error planted in two entries of a float64 gradient
  must fail and be named, and nothing else may fail.

The point is drawn so that ``x / L`` stays where ``g`` is computed accurately:
``|x / L| <= 10`` for the periodic and exponential ``g`` (beyond that their
exact derivative itself is ill-conditioned), any ratio for the others.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp

SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)
LENGTHS = (1e-6, 1e-3, 1.0, 1e3, 1e6)
ENTRIES = 48


def _rational(t):
    return (1.0 + t) / (2.0 + t * t)


def _rational_d(t):
    return (2.0 + t * t - 2.0 * t * (1.0 + t)) / (2.0 + t * t) ** 2


#: name -> (g, g', largest |x / L| at which g' is well conditioned or None)
FUNCTIONS = {
    "tanh": (np.tanh, lambda t: 1.0 / np.cosh(t) ** 2, None),
    "exp": (np.exp, np.exp, 10.0),
    "sin": (np.sin, np.cos, 10.0),
    "log1p_sq": (lambda t: np.log1p(t * t), lambda t: 2.0 * t / (1.0 + t * t), None),
    "quartic": (lambda t: t ** 4, lambda t: 4.0 * t ** 3, None),
    "rational": (_rational, _rational_d, None),
}


def _cases(dtype):
    for name, (_, _, limit) in FUNCTIONS.items():
        for scale in SCALES:
            for length in LENGTHS:
                if limit is not None and scale / length > limit:
                    continue
                if name == "quartic" and dtype == np.float32 and scale / length > 1e6:
                    continue  # (x / L)^4 overflows float32: f itself is not finite
                yield name, scale, length


def _point(name: str, scale: float, length: float, dtype) -> np.ndarray:
    rng = np.random.default_rng([len(name), int(np.log10(scale)) + 6,
                                 int(np.log10(length)) + 6])
    u = rng.uniform(-2.0, 2.0, ENTRIES)
    limit = FUNCTIONS[name][2]
    if limit is not None:
        u = u * min(1.0, 0.5 * limit * length / scale)
    return (scale * u).astype(dtype)


def _run(dtype) -> dict:
    entries = covered = 0
    worst = 0.0
    false_alarms, inconclusive, missed, extra, flat = [], [], [], [], []
    unresolvable = []
    for name, scale, length in _cases(dtype):
        g, dg, _ = FUNCTIONS[name]
        x = _point(name, scale, length, dtype)
        with np.errstate(over="ignore", under="ignore"):
            exact = dg(x.astype(np.float64) / length) / length

        def f(x, g=g, length=length):
            return np.sum(g(x / length))

        with np.errstate(over="ignore", under="ignore"):
            report = gp.check(f, x, exact.astype(dtype), progress=False)
        p = report.params["x"]
        err = np.abs(p.numeric_flat - exact)
        bar = p.error_bar_flat
        ok = err <= bar
        entries += err.size
        covered += int(np.count_nonzero(ok))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(bar > 0, err / bar, np.where(err > 0, np.inf, 0.0))
        worst = max(worst, float(ratio.max()))
        case = (name, scale, length)
        # f does not change measurably when any entry moves by its own size (a
        # saturated tanh: every derivative ~ 0): no error in a derivative can show
        flat_case = bool(np.abs(exact).max() * max(scale, 1.0) <=
                         1e-10 * max(abs(report.loss), 1.0))
        if report.status == "failed":
            false_alarms.append(case + (p.failed_indices,))
        elif report.status == "inconclusive":
            inconclusive.append(case)
            # allowed only where f does not change measurably (flat_case)
            if flat_case:
                flat.append(case)
        if dtype == np.float64:
            big = np.abs(exact) >= 1e-3 * np.abs(exact).max()
            if big.any():
                order = np.flatnonzero(big)
                planted = sorted({int(order[0]), int(order[len(order) // 2])})
                wrong = exact.copy()
                wrong[planted] *= 1.01
                with np.errstate(over="ignore", under="ignore"):
                    bad_report = gp.check(f, x, wrong, progress=False)
                bad, bad_status = bad_report.params["x"], bad_report.status
                named = sorted(i[0] for i in bad.failed_indices)
                if not set(planted) <= set(named) and bad_status != "inconclusive":
                    # a 1 % error of a derivative f cannot show is below resolution
                    (unresolvable if flat_case else missed).append(case + (planted, named))
                if set(named) - set(planted):
                    extra.append(case + (planted, named))
    return {"entries": entries, "coverage": covered / entries, "worst": worst,
            "false_alarms": false_alarms, "inconclusive": inconclusive, "missed": missed,
            "extra": extra, "checks": sum(1 for _ in _cases(dtype)),
            "flat": flat, "unresolvable": unresolvable}


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def measured(request):
    result = _run(request.param)
    print(f"\n[step scales, {np.dtype(request.param)}] {result['checks']} checks, "
          f"{result['entries']} entries: error bar covers the true error on "
          f"{100 * result['coverage']:.3f} % (worst true error / bar "
          f"{result['worst']:.3g}); false alarms {len(result['false_alarms'])}, "
          f"inconclusive {len(result['inconclusive'])} (of which {len(result['flat'])} with "
          f"every derivative ~ 0), missed 1 % errors "
          f"{len(result['missed'])} (and {len(result['unresolvable'])} in checks where f "
          f"cannot show any derivative), extra entries named {len(result['extra'])}")
    for key in ("false_alarms", "inconclusive", "missed", "extra"):
        for case in result[key][:5]:
            print(f"  {key}: {case}")
    return np.dtype(request.param), result


def test_error_bars_cover_the_true_error(measured):
    dtype, result = measured
    assert result["coverage"] >= 0.999, result


def test_correct_gradients_pass_at_every_scale(measured):
    _, result = measured
    assert result["false_alarms"] == []
    assert result["inconclusive"] == result["flat"]


def test_one_percent_errors_are_named_at_every_scale(measured):
    dtype, result = measured
    if dtype != np.float64:
        pytest.skip("1 % errors are planted in float64 gradients (SPEC section 3)")
    assert result["missed"] == []
    assert result["extra"] == []


# -- the reproductions of issue 16 --------------------------------------------------

def test_a_one_percent_error_at_a_small_parameter_fails_and_is_named():
    x = np.array([0.004])
    report = gp.check(lambda x: np.sum(x ** 4), x, 1.01 * 4 * x ** 3)
    assert report.status == "failed" and not report.passed
    assert report.params["x"].failed_indices == [(0,)]


def test_an_exact_gradient_of_a_short_length_function_passes():
    x = np.array([1e-4])
    exact = (1 - np.tanh(x / 3e-4) ** 2) / 3e-4
    report = gp.check(lambda x: np.sum(np.tanh(x / 3e-4)), x, exact)
    assert report.passed and report.status == "passed", str(report)
    p = report.params["x"]
    # the bar covers the true error and is below the tolerance it must resolve
    assert abs(p.numeric_flat[0] - exact[0]) <= p.error_bar_flat[0] <= 1e-5 * exact[0]


def test_steps_shrink_to_stay_inside_the_domain():
    for x in (np.array([3e-4]), np.array([1e-6, 2.0, 5e-7])):
        with np.errstate(invalid="ignore", divide="ignore"):
            report = gp.check(lambda x: np.sum(np.log(x)), x, 1 / x)
        assert report.passed, str(report)
        p = report.params["x"]
        assert np.all(np.abs(p.numeric_flat - 1 / x) <= p.error_bar_flat)


def test_a_loss_with_no_finite_step_near_the_point_still_names_the_entry():
    w = np.array([1.0, 0.0])
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=r"f returned nan with w\[1\]"):
        gp.check(lambda w: np.sum(np.sqrt(w)), w, np.array([0.5, 1.0]))


def test_a_check_that_cannot_resolve_the_tolerance_is_inconclusive():
    x = np.linspace(0.5, 1.5, 5)

    def coarse(x):  # the loss rounded to float16: far too noisy for rtol=1e-7
        return float(np.float16(np.sum(x ** 2)))

    report = gp.check(coarse, x, 2 * x, rtol=1e-7)
    assert report.status == "inconclusive" and not report.passed
    p = report.params["x"]
    assert p.failed == 0 and len(p.unresolved) > 0
    assert report.to_dict()["status"] == "inconclusive"
    assert report.to_dict()["params"]["x"]["unresolved"] == [list(i) for i in p.unresolved]
    assert str(report).startswith("gradprobe check INCONCLUSIVE")
    # the same check with a tolerance the noise can resolve passes
    assert gp.check(coarse, x, 2 * x, rtol=0.5).status == "passed"


def test_a_parameter_that_f_does_not_use_is_resolved_not_inconclusive():
    """Its gradient is exactly 0 on both sides and its estimate sits at the rounding
    floor: there is nothing finer to resolve, so the check passes (the tolerance of
    the resolution rule is floored by the check's largest gradient entry)."""
    X = np.random.default_rng(0).standard_normal((8, 2))

    def f(W, b):  # b is not used
        return float(np.sum(np.sin(X @ W)))

    W, b = np.full((2, 2), 0.3), np.array([0.3, 1.7])
    gW = X.T @ np.cos(X @ W)
    report = gp.check(f, (W, b), (gW, np.zeros(2)))
    assert report.status == "passed", str(report)
    assert report.params["b"].unresolved == []
    # a real error in that zero gradient still fails
    assert gp.check(f, (W, b), (gW, np.array([1e-6, 0.0]))).params["b"].failed_indices == [(0,)]


@pytest.mark.parametrize("case", ["least_squares_optimum", "zero_point"])
def test_correct_gradients_at_a_stationary_point_pass(case):
    """Every gradient entry ~0 (a least-squares optimum; the minimum of a sum of
    squares): the bars sit at the rounding floor of a deterministic f, which is as
    resolved as an estimate gets; such a check passes, as before the rule existed."""
    rng = np.random.default_rng(0)
    if case == "least_squares_optimum":
        X, y = rng.normal(size=(50, 5)), rng.normal(size=50)
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        report = gp.check(lambda w: 0.5 * np.sum((X @ w - y) ** 2), w,
                          lambda w: X.T @ (X @ w - y))
    else:
        report = gp.check(lambda a: np.sum(a ** 2), np.zeros(3), np.zeros(3))
    assert report.status == "passed", str(report)


def test_a_correct_float32_loss_evaluated_in_float32_passes():
    """A loss computed in float32 inside (f casts), float32 gradient: rounding-level
    noise of float32 is not a noisy f, and its rounding-limited bars are resolved."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=200).astype(np.float32)

    def loss(w):
        return np.float32(np.sum(np.sin(w.astype(np.float32)) ** 2))

    report = gp.check(loss, w, (2 * np.sin(w) * np.cos(w)).astype(np.float32))
    assert report.status == "passed", str(report)
