"""Time batched attribution patching against exhaustive activation patching, on the same inputs.

Both methods score every node (attention head, and MLP when the model has
them) for the task circuit.faithfulness uses: repeated random segments, with
the first copy replaced by fresh tokens in the corrupted input.

* attribution patching: per batch one clean forward with a backward pass and
  one corrupted forward, all nodes at once;
* EAP-IG: the same clean and corrupted forwards, plus one forward and one
  backward pass per integration step (the path from the clean to the
  corrupted token embeddings);
* exhaustive activation patching: per batch one corrupted forward, the clean
  forward, one forward per node with that node patched, and one with every
  node patched.

Each method runs ``--repeats`` times in this process (after one warm-up run);
the table gives the minimum and median wall time, the ratio of the medians,
and the Spearman correlation between the two methods' node scores.

Run with the project's environment (``make install`` first)::

    .venv/bin/python benchmarks/attribution_vs_activation_patching.py
    .venv/bin/python benchmarks/attribution_vs_activation_patching.py --native 12,12,768 --examples 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from evidence.measure.methods.attribution import attribution_scores
from evidence.measure.methods.edges import EdgeModel, EdgePatchingInputs, edge_attribution_scores, edge_patched_metrics
from evidence.measure.methods.patching import PatchingInputs, activation_patching_effects, induction_task, model_nodes
from evidence.measure.stats import spearman
from evidence.model import LoadedModel, ModelSpec, load_model
from evidence.records import ModelIdentity, WeightFile


def native_model(shape: str, vocab: int, n_ctx: int) -> LoadedModel:
    """A randomly initialised TransformerLens-native model of shape ``layers,heads,d_model`` (with MLPs)."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    n_layers, n_heads, d_model = (int(x) for x in shape.split(","))
    architecture = {
        "d_model": d_model,
        "d_head": d_model // n_heads,
        "n_heads": n_heads,
        "n_layers": n_layers,
        "n_ctx": n_ctx,
        "d_vocab": vocab,
        "d_mlp": 4 * d_model,
        "attn_only": False,
        "normalization_type": "LN",
    }
    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**architecture, seed=0, device="cpu"))
    bridge.eval()
    identity = ModelIdentity(
        name=f"native-{shape}",
        source="organism",
        architecture=architecture,
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="random-init", sha256="0" * 64, bytes=1)],
        n_parameters=int(bridge.n_params_total),
        processing={},
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=None, spec=ModelSpec(organism="benchmark"))


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organism", default="induction", help="bundled organism to measure (default: induction)")
    parser.add_argument("--native", metavar="L,H,D", help="use a random-init native model of this shape instead")
    parser.add_argument("--vocab", type=int, default=1024, help="vocabulary of the --native model")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--edges", action="store_true", help="also compare edge attribution with edge patching")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.native:
        model = native_model(args.native, args.vocab, 2 * args.seq_len + 1)
        name = model.identity.name
    else:
        model = load_model(ModelSpec(organism=args.organism))
        name = args.organism
    nodes = model_nodes(model)
    task = induction_task(model, args.examples, args.seq_len, np.random.default_rng(0))
    inputs = PatchingInputs(model, nodes, task, "logprob", "corrupted", args.batch_size)
    everything = list(range(len(nodes)))

    atp_scores: list[np.ndarray] = []
    ig_scores: list[np.ndarray] = []
    effects: list[np.ndarray] = []
    atp_times = timed(lambda: atp_scores.append(attribution_scores(inputs)[0]), args.repeats)
    ig_times = timed(
        lambda: ig_scores.append(attribution_scores(inputs, "eap-ig", args.ig_steps)[0]), args.repeats
    )
    ap_times = timed(lambda: effects.append(activation_patching_effects(inputs, everything)[0]), args.repeats)
    measured = effects[-1].mean(axis=0)
    rho = float(spearman(atp_scores[-1].mean(axis=0), measured)[0])
    rho_ig = float(spearman(ig_scores[-1].mean(axis=0), measured)[0])

    print(
        f"model {name}: {model.n_layers} layers, {len(nodes)} nodes; {args.examples} examples of "
        f"{task.length} tokens, batch {args.batch_size}, {args.repeats} repeats, {args.threads} threads"
    )
    print(f"{'method':<34}{'passes per batch':>20}{'min s':>10}{'median s':>10}")
    rows = [
        ("attribution patching (batched)", "2 fwd + 1 bwd", atp_times),
        (f"EAP-IG ({args.ig_steps} steps)", f"{args.ig_steps + 4} fwd + {args.ig_steps + 1} bwd", ig_times),
        ("activation patching (exhaustive)", f"{len(nodes) + 3} fwd", ap_times),
    ]
    for label, passes, times in rows:
        print(f"{label:<34}{passes:>20}{min(times):>10.3f}{statistics.median(times):>10.3f}")
    median = statistics.median(ap_times)
    print(
        f"speed-up over exhaustive patching (median ratio): AtP {median / statistics.median(atp_times):.1f}x, "
        f"EAP-IG {median / statistics.median(ig_times):.1f}x"
    )
    print(f"Spearman with the patching effects: AtP {rho:.3f}, EAP-IG {rho_ig:.3f}")
    if args.edges:
        edge_benchmark(inputs, args)
    return 0


def edge_benchmark(inputs: PatchingInputs, args: argparse.Namespace) -> None:
    """The same comparison over the edges between components."""
    graph = EdgeModel(inputs.model)
    edges = EdgePatchingInputs(graph, inputs)
    n = len(graph.edges)
    scores: dict[str, list[np.ndarray]] = {"atp": [], "eap-ig": []}
    effects: list[np.ndarray] = []
    singles = [frozenset(), *(frozenset({j}) for j in range(n))]

    def patch_all() -> None:
        values = edge_patched_metrics(edges, singles, lambda _: None)
        effects.append((values[1:] - values[0]).mean(axis=1))

    times = {
        method: timed(
            lambda method=method: scores[method].append(
                edge_attribution_scores(edges, method, args.ig_steps)[0].mean(axis=0)
            ),
            args.repeats,
        )
        for method in scores
    }
    patch_times = timed(patch_all, args.repeats)
    print(f"\nedges: {n} (every writer into the residual stream to every q/k/v input, MLP and the logits)")
    print(f"{'method':<34}{'min s':>10}{'median s':>10}")
    rows = [("edge attribution (EAP)", times["atp"]), (f"EAP-IG ({args.ig_steps} steps)", times["eap-ig"])]
    rows.append(("edge patching (one at a time)", patch_times))
    for label, t in rows:
        print(f"{label:<34}{min(t):>10.3f}{statistics.median(t):>10.3f}")
    median = statistics.median(patch_times)
    print(
        f"speed-up over patching each edge (median ratio): EAP {median / statistics.median(times['atp']):.1f}x, "
        f"EAP-IG {median / statistics.median(times['eap-ig']):.1f}x"
    )
    rho = {m: float(spearman(scores[m][-1], effects[-1])[0]) for m in scores}
    print(f"Spearman with the single-edge patching effects: EAP {rho['atp']:.3f}, EAP-IG {rho['eap-ig']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
