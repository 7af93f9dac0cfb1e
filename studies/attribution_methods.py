"""Compare plain attribution patching with EAP-IG, for nodes and for edges, on several samples of examples.

``circuit.faithfulness`` scores components by attribution and then verifies
them by patching. Which attribution to use by default was decided on two
criteria, both printed here for ``--samples`` independent draws of the
induction examples:

* ``rho``: Spearman correlation between the attribution scores and the effect
  of patching each component alone (exhaustively);
* ``cpr``: the area under the faithfulness curve of the circuit ranked by the
  attribution scores alone (MIB's circuit performance ratio; keep the top k,
  patch everything else), next to the same area for the ranking by the
  verified single-component effects.

Run with the project's environment (``make install`` first)::

    .venv/bin/python studies/attribution_methods.py                  # demo and induction, 4 samples
    .venv/bin/python studies/attribution_methods.py --organism induction --samples 8

Takes a few minutes per organism on two threads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from evidence.measure.methods.attribution import attribution_scores
from evidence.measure.methods.edges import EdgeModel, EdgePatchingInputs, edge_attribution_scores, edge_patched_metrics
from evidence.measure.methods.patching import (
    PatchingInputs,
    activation_patching_effects,
    induction_task,
    model_nodes,
    patched_metrics,
)
from evidence.measure.stats import spearman
from evidence.model import LoadedModel, ModelSpec, load_model

Patch = Callable[[list[frozenset[int]]], np.ndarray]


def cpr(order: list[int], patch: Patch, n: int, clean: np.ndarray, empty: np.ndarray) -> float:
    """Area under the faithfulness curve of ``order`` (at most 40 points), with f(0) = 0."""
    everything = frozenset(range(n))
    ks = list(range(1, n + 1)) if n <= 40 else sorted({int(round(x)) for x in np.linspace(1, n, 40)})
    values = patch([everything - frozenset(order[:k]) for k in ks]).mean(axis=1)
    f = np.concatenate([[0.0], (values - empty.mean()) / (clean.mean() - empty.mean())])
    x = np.array([0.0, *(k / n for k in ks)])
    return float(np.sum(np.diff(x) * (f[1:] + f[:-1]) / 2.0))


def by_magnitude(values: np.ndarray) -> list[int]:
    return [int(j) for j in np.argsort(-np.abs(values), kind="stable")]


def sample(model: LoadedModel, n_examples: int, seed: int, ig_steps: int) -> list[str]:
    nodes = model_nodes(model)
    seq_len = min(16, (model.n_ctx - 1) // 2)
    task = induction_task(model, n_examples, seq_len, np.random.default_rng(seed))
    inputs = PatchingInputs(model, nodes, task, "logprob", "corrupted", n_examples)
    effects, clean, empty = activation_patching_effects(inputs, list(range(len(nodes))))
    effect = effects.mean(axis=0)

    def patch(sets: list[frozenset[int]]) -> np.ndarray:
        return patched_metrics(inputs, sets, lambda _: None)

    cells = []
    for method in ("atp", "eap-ig"):
        scores = attribution_scores(inputs, method, ig_steps)[0].mean(axis=0)
        rho = float(spearman(scores, effect)[0])
        cells.append(f"{rho:6.2f} {cpr(by_magnitude(scores), patch, len(nodes), clean, empty):5.2f}")
    cells.append(f"{cpr(by_magnitude(effect), patch, len(nodes), clean, empty):5.2f}")

    graph = EdgeModel(model)
    edges = EdgePatchingInputs(graph, inputs)
    n = len(graph.edges)
    values = edge_patched_metrics(
        edges, [frozenset(), *(frozenset({j}) for j in range(n)), frozenset(range(n))], lambda _: None
    )
    e_clean, e_empty, e_effect = values[0], values[-1], (values[1:-1] - values[0]).mean(axis=1)

    def patch_edges(sets: list[frozenset[int]]) -> np.ndarray:
        return edge_patched_metrics(edges, sets, lambda _: None)

    for method in ("atp", "eap-ig"):
        scores = edge_attribution_scores(edges, method, ig_steps)[0].mean(axis=0)
        rho = float(spearman(scores, e_effect)[0])
        cells.append(f"{rho:6.2f} {cpr(by_magnitude(scores), patch_edges, n, e_clean, e_empty):5.2f}")
    cells.append(f"{cpr(by_magnitude(e_effect), patch_edges, n, e_clean, e_empty):5.2f}")
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organism", action="append", help="bundled organism (repeatable; default demo, induction)")
    parser.add_argument("--samples", type=int, default=4, help="independent draws of the examples")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"{args.examples} examples per sample; rho = Spearman with single-component patching, cpr = area")
    print(f"{'organism':<11}{'sample':>7}  {'nodes: AtP':>12} {'EAP-IG':>12} {'verified':>8}  "
          f"{'edges: EAP':>12} {'EAP-IG':>12} {'verified':>8}")
    pair = f"{'rho   cpr':>12}"
    print(f"{'':<11}{'':>7}  {pair} {pair} {'cpr':>8}  {pair} {pair} {'cpr':>8}")
    for name in args.organism or ["demo", "induction"]:
        model = load_model(ModelSpec(organism=name))
        for seed in range(args.samples):
            a, b, c, d, e, f = sample(model, args.examples, seed, args.ig_steps)
            print(f"{name:<11}{seed:>7}  {a:>12} {b:>12} {c:>8}  {d:>12} {e:>12} {f:>8}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
