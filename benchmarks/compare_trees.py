"""No-slowdown check: the same workloads on two source trees, rounds interleaved.

A restructuring must not make checks slower. This script times a fixed set of
workloads, one from each stage and front end (scalar check on the Python and
Numba engines, the structured ``gradprobe.nn`` check, a compressed black-box
layer, a directional check, a layer check, a Jacobian check), on a baseline
tree and on the current tree, alternating the two in separate processes round
after round so that a change in the machine's load hits both alike. It prints,
per workload, the best time of each tree and their ratio.

Run (from the repository root; the baseline tree is any checkout, e.g.
``git worktree add --detach /tmp/base <commit>``, with its C kernel built or
copied in)::

    python benchmarks/compare_trees.py /tmp/base/src src --rounds 5

A ratio above 1 means the current tree is slower. Only ratios measured in one
run mean anything: the absolute times depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

#: Workloads: a name and the statement that runs one check (after SETUP).
WORKLOADS = {
    "check: numpy loss, 2,000 entries, python engine":
        "gp.check(quad, {'w': w}, {'w': 2 * A.T @ (A @ w)}, backend='python', progress=False)",
    "check: njit loss, 3,000 entries, numba engine":
        "gp.check(nquad, v, 4 * v ** 3, backend='numba', progress=False)",
    "nn: Dense(1024, 1024) full structured check":
        "nn.check_model(model, X, Y, ngrads)",
    "check_vjp: black-box dense 128 tanh, compressed":
        "gp.check_vjp(df, dinputs, dvjp, progress=False)",
    "check_vjp: elementwise (64, 1024), compressed":
        "gp.check_vjp(ef, einputs, evjp, progress=False)",
    "check_jacobian: elementwise (16, 64)":
        "gp.check_jacobian(ef, jx, ejac(jx))",
    "check: directional, 200,000 entries":
        "gp.check(quad1, big, 2 * big, mode='directional', progress=False)",
}

SETUP = """
import numpy as np, numba, gradprobe as gp
from gradprobe.examples.blackbox_layers import dense_tanh, elementwise
rng = np.random.default_rng(0)
A = rng.standard_normal((50, 2000)) / 40
w = rng.standard_normal(2000)
def quad(w):
    r = A @ w
    return float(r @ r)
@numba.njit
def nquad(v):
    return (v ** 4).sum()
v = rng.standard_normal(3000)
big = rng.standard_normal(200_000)
def quad1(x):
    return float(x @ x)
from gradprobe import nn
model = nn.Sequential([nn.Dense(1024, 1024, seed=1)], loss=nn.MSE())
X = rng.standard_normal((64, 1024)); Y = rng.standard_normal((64, 1024))
ngrads = model.gradients(X, Y)
df, dvjp, dinputs = dense_tanh(batch=64, n_in=128, n_out=128)
ef, evjp, einputs = elementwise(shape=(64, 1024))
jx = rng.standard_normal((16, 64))
def ejac(x):
    return np.diag(evjp(np.ones_like(x), x)[0].ravel()).reshape(x.shape + x.shape)
"""


def _child(names: list[str], repeats: int) -> None:
    """Run in the child: time each workload ``repeats`` times, print JSON."""
    namespace: dict = {}
    exec(SETUP, namespace)  # noqa: S102 - our own fixed benchmark text
    out = {}
    for name in names:
        code = compile(WORKLOADS[name], name, "eval")
        eval(code, namespace)  # warm-up: compilation and first-touch costs
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            eval(code, namespace)
            best = min(best, time.perf_counter() - start)
        out[name] = best
    print(json.dumps(out))


def _run(tree: str, names: list[str], repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--repeats", str(repeats),
           "--only", *names]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the workloads failed on {tree}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", nargs="?", help="the baseline tree's src/ folder")
    parser.add_argument("current", nargs="?", help="the current tree's src/ folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.only, args.repeats)
        return
    best = {tree: dict.fromkeys(args.only, float("inf")) for tree in ("baseline", "current")}
    for r in range(args.rounds):
        order = ("baseline", "current") if r % 2 == 0 else ("current", "baseline")
        for which in order:
            times = _run(getattr(args, which), args.only, args.repeats)
            for name, t in times.items():
                best[which][name] = min(best[which][name], t)
    load = os.getloadavg()[0]
    print(f"| workload | baseline s | current s | current / baseline |  (load {load:.1f})")
    print("|---|---|---|---|")
    for name in args.only:
        b, c = best["baseline"][name], best["current"][name]
        print(f"| {name} | {b:.4f} | {c:.4f} | {c / b:.2f} |")


if __name__ == "__main__":
    main()
