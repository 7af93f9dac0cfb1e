"""Time the logistic probe's primal and dual Newton solvers side by side, on the same data.

``fit_logistic`` solves a ``(d+1)``-square Newton system per step in the primal
and an ``(n+1)``-square one in the dual (the weights are a combination of the
training rows). With ``n`` examples in ``d`` dimensions the primal costs about
``n d^2 + d^3 / 3`` per step and the dual ``n^2 d + n^3 / 3``; ``method="auto"``
takes the dual when ``d >= n``. This script fits both on the same synthetic
activations (``n`` examples, one informative direction among ``d``), after a
warm-up, ``--repeats`` times each in this process, and prints the median wall
times, their ratio, and the largest difference between the two probes' scores.

Run with the project's environment (``make install`` first)::

    .venv/bin/python benchmarks/probe_fit.py
    .venv/bin/python benchmarks/probe_fit.py --examples 256 --dims 512,4096 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from evidence.measure.methods.probes import fit_logistic


def _timed(fit, repeats: int) -> tuple[float, object]:
    fit()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=512, help="training examples n (default 512)")
    parser.add_argument("--dims", default="256,1024,2048,4096", help="comma-separated widths d")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--l2", type=float, default=1.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"n = {args.examples} examples, median of {args.repeats} runs after a warm-up")
    print("| d | primal (s) | dual (s) | primal / dual | max abs score difference |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for d in (int(v) for v in args.dims.split(",")):
        x = rng.normal(size=(args.examples, d))
        y = x[:, 0] + 0.5 * rng.normal(size=args.examples) > 0
        primal_s, primal = _timed(lambda x=x, y=y: fit_logistic(x, y, l2=args.l2, method="primal"), args.repeats)
        dual_s, dual = _timed(lambda x=x, y=y: fit_logistic(x, y, l2=args.l2, method="dual"), args.repeats)
        gap = float(np.max(np.abs(primal.score(x) - dual.score(x))))  # type: ignore[attr-defined]
        print(f"| {d} | {primal_s:.3f} | {dual_s:.3f} | {primal_s / dual_s:.1f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
