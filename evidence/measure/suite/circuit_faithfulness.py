"""``circuit.faithfulness``: find the components that carry a behaviour, check them causally, and score the circuit.

On a discovery half of the examples, attribution (EAP-IG by default; AtP and
AtP* as options) scores every node and every edge, activation patching verifies
the candidates, and the circuit size k is chosen; the attribution method's own
circuit is then scored on the disjoint evaluation half by its faithfulness curve
(MIB-style CPR and CMD) against random circuits and a randomly initialised twin.
The algorithms live in :mod:`evidence.measure.methods.patching`,
:mod:`~evidence.measure.methods.attribution`, :mod:`~evidence.measure.methods.edges`
and :mod:`~evidence.measure.methods.faithfulness`; the method, its rationale
and the validation numbers are in docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from evidence.errors import MeasurementError
from evidence.measure import Detector, MeasureContext, MeasurementResult, UncertaintyParams, measurement
from evidence.measure.methods.attribution import attribution_scores
from evidence.measure.methods.edges import (
    EdgeModel,
    EdgePatchingInputs,
    edge_attribution_scores,
    edge_model,
    edge_patched_metrics,
)
from evidence.measure.methods.faithfulness import (
    Circuit,
    CircuitSearch,
    Curve,
    CurveScorer,
    evaluate_circuit,
    find_circuit,
    rank_agreement,
)
from evidence.measure.methods.patching import (
    InductionTask,
    Node,
    PatchingInputs,
    default_seq_len,
    induction_task,
    model_nodes,
    patched_metrics,
)
from evidence.measure.registry import Expectation
from evidence.measure.stats import Bootstrap
from evidence.model import LoadedModel, random_twin
from evidence.records import Baseline, ClauseRef, Criterion, DataRef, Metric, Table

__all__ = ["CLAUSES", "CircuitParams", "circuit_faithfulness"]

#: Display names of the node attribution methods and of their edge counterparts.
_NODE_METHOD = {"atp": "AtP", "atp*": "AtP*", "eap-ig": "EAP-IG"}
_EDGE_METHOD = {"atp": "EAP", "atp*": "EAP", "eap-ig": "EAP-IG"}

CLAUSES = (
    ClauseRef(
        id="EU-AIA/AnnexIV/2/c@OJ-2024-07-12",
        strength="partial",
        rationale=(
            "Identifies, from the weights, which attention heads and MLPs feed which to produce "
            "a behaviour: a measured account of how the model's components build on each other."
        ),
    ),
    ClauseRef(
        id="EU-AIA/AnnexXI/S2/3@OJ-2024-07-12",
        strength="partial",
        rationale="The circuit shows how the model's internal components integrate for one task.",
    ),
    ClauseRef(
        id="EU-AIA/AnnexIV/2/b@OJ-2024-07-12",
        strength="supporting",
        rationale="Describes part of the model's internal logic with a causally verified mechanism.",
    ),
    ClauseRef(
        id="NIST-AI-RMF/1.0/MEASURE/2.9",
        strength="partial",
        rationale=(
            "Explains one behaviour by a sparse set of components and validates the explanation "
            "by patching, against random circuits and an untrained model."
        ),
    ),
    ClauseRef(
        id="NIST-AI-600-1/MS-2.9-001",
        strength="direct",
        rationale=(
            "Applies and documents an attribution method (attribution patching) with counterfactual "
            "inputs, and reports how well it agrees with exhaustive patching."
        ),
    ),
    ClauseRef(
        id="ISO-IEC-TS-6254:2025",
        strength="supporting",
        rationale="A mechanistic interpretability method with a stated faithfulness criterion.",
    ),
)


class CircuitParams(UncertaintyParams):
    """Parameters of ``circuit.faithfulness``."""

    task: Literal["induction"] = Field(default="induction", description="the behaviour the circuit is for")
    metric: Literal["logprob", "logit_diff"] = "logprob"
    n_examples: int = Field(
        default=128, ge=4, le=100_000, description="examples, split into a discovery and an evaluation half"
    )
    seq_len: int | None = Field(
        default=None, ge=2, description="length of the repeated segment; default: 16, or what the context allows"
    )
    batch_size: int = Field(default=64, ge=1)
    ablation: Literal["corrupted", "mean"] = "corrupted"
    attribution: Literal["eap-ig", "atp*", "atp"] = Field(
        default="eap-ig",
        description=(
            "eap-ig: gradients integrated from the clean to the corrupted input; atp: plain first order; "
            "atp*: attention patterns after a node recomputed exactly under its patch"
        ),
    )
    ig_steps: int = Field(default=8, ge=1, le=256, description="integration steps of eap-ig (midpoint rule)")
    k: int | None = Field(default=None, ge=1, description="circuit size; default: smallest k reaching the target")
    target_faithfulness: float = Field(
        default=0.8, gt=0.0, le=1.0, description="k: the smallest size reaching it on the discovery examples"
    )
    min_gain_over_random: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="held-out faithfulness at k minus random circuits' at k: CI lower bound needed for circuit_found",
    )
    max_circuit_fraction: float = Field(default=0.75, gt=0.0, le=1.0)
    min_task_effect: float = Field(default=0.5, gt=0.0, description="in the metric's units")
    max_patched_nodes: int = Field(default=256, ge=3, description="nodes verified by activation patching")
    edges: bool = Field(default=True, description="also score, verify and rank the edges between components")
    max_patched_edges: int = Field(default=512, ge=3, description="edges verified by activation patching")
    max_edge_curve_points: int = Field(default=32, ge=2)
    max_edges: int = Field(
        default=4096, ge=3, description="models with more edges get node scores only (the summary says so)"
    )
    max_curve_points: int = Field(default=64, ge=2)
    random_rankings: int = Field(default=5, ge=1)
    twin_baseline: bool = True

    @model_validator(mode="after")
    def _integrated_needs_corrupted(self) -> CircuitParams:
        if self.attribution == "eap-ig" and self.ablation != "corrupted":
            raise ValueError(
                "attribution 'eap-ig' integrates from the clean to the corrupted input and needs "
                "ablation = 'corrupted'; use attribution = 'atp' or 'atp*' with mean ablation"
            )
        return self


# -- compute -----------------------------------------------------------------------------------


@dataclass
class _Split:
    """The discovery and evaluation examples, each with its patching inputs and bootstrap."""

    discovery: PatchingInputs
    evaluation: PatchingInputs
    discovery_boot: Bootstrap
    evaluation_boot: Bootstrap


def _split(
    model: LoadedModel, nodes: list[Node], task: InductionTask, params: CircuitParams, ctx: MeasureContext
) -> _Split:
    """A seeded random half of the examples for discovery, the other half for evaluation."""
    order = np.random.default_rng(ctx.derive_seed("split")).permutation(task.clean.shape[0])
    half = task.clean.shape[0] // 2
    parts = [task.rows(np.sort(order[:half])), task.rows(np.sort(order[half:]))]
    inputs = [PatchingInputs(model, nodes, t, params.metric, params.ablation, params.batch_size) for t in parts]
    bootstrap_seed = ctx.derive_seed("bootstrap")
    boots = [
        Bootstrap.draw(
            t.clean.shape[0],
            rng=np.random.default_rng([bootstrap_seed, i]),
            resamples=params.bootstrap_resamples,
            level=params.ci_level,
        )
        for i, t in enumerate(parts)
    ]
    return _Split(inputs[0], inputs[1], boots[0], boots[1])


def _node_circuit(
    split: _Split, params: CircuitParams, rng: np.random.Generator, ctx: MeasureContext
) -> tuple[Circuit, Circuit, np.ndarray]:
    """The node circuit found on the discovery examples, the same on the evaluation examples, and plain AtP scores.

    Plain AtP scores ``[discovery examples, nodes]`` are always computed and reported beside the chosen method.
    """
    inputs, boot = split.discovery, split.discovery_boot
    ctx.progress(0.0, "attribution patching")
    plain_atp, attribution_clean = attribution_scores(inputs, "atp")
    if params.attribution == "atp":
        scores = plain_atp
    else:
        scores, attribution_clean = attribution_scores(inputs, params.attribution, params.ig_steps)
    circuit = find_circuit(
        scores,
        attribution_clean,
        lambda sets, progress: patched_metrics(inputs, sets, progress),
        search=_search(params, params.max_patched_nodes, params.max_curve_points, params.k),
        boot=boot,
        rng=rng,
        stages=("activation patching", "faithfulness curve", "the gradient pass and the patching pass"),
        progress=lambda f, what: ctx.progress(0.1 + 0.35 * f, what),
    )
    split.evaluation.means = inputs.means  # mean ablation: the discovery examples' means, on both halves
    held = evaluate_circuit(
        circuit,
        lambda sets, progress: patched_metrics(split.evaluation, sets, progress),
        boot=split.evaluation_boot,
        progress=lambda f, what: ctx.progress(0.45 + 0.15 * f, what),
        stage="held-out faithfulness curve",
    )
    return circuit, held, plain_atp


def _search(params: CircuitParams, max_patched: int, max_points: int, k: int | None) -> CircuitSearch:
    return CircuitSearch(
        max_patched, max_points, k, params.random_rankings, params.min_task_effect, params.target_faithfulness
    )


def _edge_graph(model: LoadedModel, task: InductionTask, params: CircuitParams) -> tuple[EdgeModel | None, str]:
    """The model's checked edges (checked on 16 examples), or None and why not (the node results stand)."""
    if not params.edges:
        return None, ""
    return edge_model(model, torch.from_numpy(task.clean[:16]), params.max_edges)


def _edge_circuit(
    graph: EdgeModel, split: _Split, params: CircuitParams, seed: int, ctx: MeasureContext
) -> tuple[Circuit, Circuit]:
    """Edges scored, verified, ranked and sized on the discovery examples; the edge circuit's held-out curve."""
    ctx.progress(0.65, "edge attribution")
    edges = EdgePatchingInputs(graph, split.discovery)
    scores, attribution_clean = edge_attribution_scores(edges, params.attribution, params.ig_steps)
    found = find_circuit(
        scores,
        attribution_clean,
        lambda sets, progress: edge_patched_metrics(edges, sets, progress),
        search=_search(params, params.max_patched_edges, params.max_edge_curve_points, None),
        boot=split.discovery_boot,
        rng=np.random.default_rng(seed),
        stages=("edge patching", "edge faithfulness curve", "edge gradients and edge patching"),
        progress=lambda f, what: ctx.progress(0.7 + 0.15 * f, what),
    )
    held_out = EdgePatchingInputs(graph, split.evaluation)
    held = evaluate_circuit(
        found,
        lambda sets, progress: edge_patched_metrics(held_out, sets, progress),
        boot=split.evaluation_boot,
        progress=lambda f, what: ctx.progress(0.85 + 0.1 * f, what),
        stage="held-out edge faithfulness curve",
    )
    return found, held


def _check_size(n_nodes: int, params: CircuitParams) -> None:
    if n_nodes < 3:
        raise MeasurementError(f"the model has only {n_nodes} components; a circuit needs at least 3")
    if params.k is not None and params.k > n_nodes:
        raise MeasurementError(f"k={params.k} exceeds the model's {n_nodes} components", hint=f"use k <= {n_nodes}")


def _twin_effect(model: LoadedModel, inputs: PatchingInputs, seed: int, boot: Bootstrap) -> Baseline:
    twin = random_twin(model, seed)
    twin_inputs = PatchingInputs(twin, inputs.nodes, inputs.task, inputs.metric, inputs.ablation, inputs.batch_size)
    everything = frozenset(range(len(inputs.nodes)))
    values = patched_metrics(twin_inputs, [frozenset(), everything], lambda _: None)
    effect = values[0] - values[1]
    point = float(effect.mean())
    return Baseline(
        name="random-init twin",
        value=point,
        ci=boot.interval(point, boot.resample_means(effect)),
        description=(
            f"the same task effect on a randomly initialised model of the same architecture (init seed {seed}), "
            "same examples"
        ),
    )


def _circuit_found(found: Circuit, held: Circuit, params: CircuitParams) -> int:
    """1 if the circuit chosen on the discovery examples holds on the evaluation examples.

    The held-out task effect's CI lower bound exceeds ``min_task_effect``; the
    circuit reached the target faithfulness on the discovery examples with at
    most ``max_circuit_fraction`` of the components; and on the evaluation
    examples its faithfulness beats random circuits of the same size by at
    least ``min_gain_over_random`` (CI lower bound of the paired difference).
    """
    gain, draws = held.gain_over_random()
    gain_lower = held.scorer.boot.interval(gain, draws).lower
    return int(
        held.task_effect()[1].lower > params.min_task_effect
        and found.at_k(found.main) >= params.target_faithfulness
        and found.k <= params.max_circuit_fraction * found.n
        and gain_lower >= params.min_gain_over_random
    )


# -- record ------------------------------------------------------------------------------------


def _area_metrics(scorer: CurveScorer, main: Curve, rnd: Curve, prefix: str, random_description: str) -> list[Metric]:
    """CPR and CMD of the ``main`` curve, each with its CI and the random rankings' value as baseline."""
    out = []
    for name, area, better in (("cpr", scorer.cpr, "higher"), ("cmd", scorer.cmd, "lower")):
        (value, draws), (rnd_value, rnd_draws) = area(main), area(rnd)
        rnd_ci = scorer.boot.interval(rnd_value, rnd_draws)
        baseline = Baseline(name="random ranking", value=rnd_value, ci=rnd_ci, description=random_description)
        what, and_one = ("under", "") if name == "cpr" else ("between", " and 1")
        description = (
            f"area {what} the {prefix.replace('_', ' ')}faithfulness curve{and_one} over the circuit-size "
            f"fraction ({better} is better)"
        )
        out.append(_ci_metric(prefix + name, value, draws, scorer.boot, "area", description, baseline=baseline))
    return out


def _baseline_value(metric: Metric) -> float:
    assert metric.baseline is not None  # the area metrics always carry their random baseline
    return float(metric.baseline.value)


def _node_table(nodes: list[Node], found: Circuit, plain_atp: np.ndarray, params: CircuitParams) -> Table:
    """The ``nodes`` table: per node its scores, measured effect, ranks and membership (discovery examples)."""
    rankings, k, unit, method = found.rankings, found.k, _unit(params), _NODE_METHOD[params.attribution]
    score_mean, plain_atp_mean, effect_of = found.scores.mean(axis=0), plain_atp.mean(axis=0), found.effect_of()
    rank_of = {j: i + 1 for i, j in enumerate(rankings.circuit)}
    patching_rank_of = {j: i + 1 for i, j in enumerate(rankings.patching)}
    rows: list[list[str | float | int | None]] = [
        [node.label, node.layer, node.head, node.kind, float(score_mean[j]), float(plain_atp_mean[j]),
         effect_of.get(j), rank_of[j], patching_rank_of[j], int(rank_of[j] <= k)]
        for j, node in enumerate(nodes)
    ]  # fmt: skip
    return Table(
        name="nodes",
        columns=["node", "layer", "head", "kind", "attribution", "attribution_atp", "patching_effect",
                 "circuit_rank", "patching_rank", "in_circuit"],
        rows=rows,
        description=(
            f"per node, on the discovery examples: mean attribution score ({method}) and plain AtP score, mean "
            f"measured effect of patching it alone ({unit}; null when not verified), its rank in the circuit "
            f"ranking ({method}'s own) and in the ranking by verified patching effect; head is null for an MLP"
        ),
    )  # fmt: skip


def _curve_table(nodes: list[Node], found: Circuit, held: Circuit) -> Table:
    """The ``faithfulness_curve`` table: held-out circuit, patching-ranked and random curves; discovery; per k."""
    scorer, rankings = held.scorer, held.rankings
    rows: list[list[str | float | int | None]] = []
    for i, k in enumerate(scorer.ks):
        ci = scorer.boot.interval(float(held.main.point[i]), held.main.draws[:, i])
        added = nodes[rankings.circuit[k - 1]].label
        rows.append([
            k, k / scorer.n_components, added, float(held.main.point[i]), ci.lower, ci.upper,
            float(held.by_patching.point[i]), float(held.rnd.point[i]), float(found.main.point[i]),
        ])  # fmt: skip
    return Table(
        name="faithfulness_curve",
        columns=["k", "fraction", "added_node", "faithfulness", "ci_lower", "ci_upper",
                 "faithfulness_patching_ranked", "faithfulness_random", "faithfulness_discovery"],
        rows=rows,
        description=(
            "on the evaluation examples: faithfulness of the top-k circuit (all other nodes patched) with its CI, "
            "the same for the ranking by verified patching effect and for random rankings (mean); last, the "
            "circuit's faithfulness on the discovery examples, where k was chosen"
        ),
    )  # fmt: skip


def _unit(params: CircuitParams) -> str:
    return "nats" if params.metric == "logprob" else "logits"


def _ci_metric(
    name: str, value: float, draws: np.ndarray, boot: Bootstrap, unit: str, description: str, **extra: Any
) -> Metric:
    """A metric with the percentile interval of its bootstrap ``draws``."""
    return Metric(name=name, value=value, unit=unit, ci=boot.interval(value, draws), description=description, **extra)


def _mean_metric(name: str, values: np.ndarray, boot: Bootstrap, unit: str, description: str, **extra: Any) -> Metric:
    """A metric of the mean of ``values`` over examples, with its interval."""
    point = float(values.mean())
    return _ci_metric(name, point, boot.resample_means(values), boot, unit, description, **extra)


def _at_k_metrics(
    found: Circuit, held: Circuit, params: CircuitParams, what: str, prefix: str, labels: str
) -> list[Metric]:
    """Held-out faithfulness at the discovery k against random ``what`` (nodes or edges), the gain, size, CPR, CMD."""
    boot, k, ki, f_k, r_k = held.scorer.boot, held.k, held.ki, held.at_k(held.main), held.at_k(held.rnd)
    rnd = Baseline(
        name=f"random {what}",
        value=r_k,
        ci=boot.interval(r_k, held.rnd.draws[:, ki]),
        description=f"mean held-out faithfulness of {k} {what} chosen at random, over {params.random_rankings} draws",
    )
    method = (_NODE_METHOD if what == "nodes" else _EDGE_METHOD)[params.attribution]
    if what == "nodes":
        recovered = f"the top {k} nodes by {method} ({labels}), all others patched"
        kept = (
            f"nodes kept in the circuit: the smallest k reaching {params.target_faithfulness} on the discovery examples"
        )
    else:
        recovered = f"only the top {k} edges by {method} ({labels}) carry the clean run, every other edge patched"
        kept = f"edges kept: the smallest k reaching {params.target_faithfulness} on the discovery examples"
    if params.k is not None and what == "nodes":
        kept = "nodes kept in the circuit (k given)"
    size = f"{prefix.replace('_', ' ')}circuit size over all {what}"
    orderings = f"mean held-out curve of {params.random_rankings} random {what[:-1]} orderings"
    gain, gain_draws = held.gain_over_random()
    d_boot = found.scorer.boot
    gain_name = f"{prefix}heldout_faithfulness_gain_over_random"
    gain_description = (
        f"held-out faithfulness at k minus that of {k} random {what} (mean of {params.random_rankings} "
        "orderings), paired over the evaluation examples"
    )
    if k == held.n:  # the circuit is the whole model: the difference is 0 by construction, not by measurement
        gain_metric = Metric(
            name=gain_name,
            value=0.0,
            unit="fraction",
            description=gain_description + f"; 0 by construction: no circuit smaller than all {held.n} {what} "
            f"reached {params.target_faithfulness} on the discovery examples (no interval)",
        )
    else:
        gain_metric = _ci_metric(gain_name, gain, gain_draws, boot, "fraction", gain_description)
    return [
        _ci_metric(
            f"{prefix}heldout_faithfulness_at_k", f_k, held.main.draws[:, ki], boot, "fraction",
            f"share of the task effect recovered on the evaluation examples when {recovered}", baseline=rnd,
        ),
        gain_metric,
        _ci_metric(
            f"{prefix}discovery_faithfulness_at_k", found.at_k(found.main), found.main.draws[:, found.ki], d_boot,
            "fraction", f"the same on the discovery examples, where the {what} and k were chosen (not held out)",
        ),
        Metric(name=f"{prefix}circuit_size_k", value=k, unit=what, description=kept),
        Metric(name=f"{prefix}circuit_size_fraction", value=k / held.n, unit="fraction", description=size),
        *_area_metrics(held.scorer, held.main, held.rnd, prefix + "heldout_", orderings),
    ]  # fmt: skip


def _found_description(params: CircuitParams, what: str) -> str:
    return (
        f"1 if, on the evaluation examples, the task effect's CI lower bound exceeds {params.min_task_effect} and "
        f"the {what} circuit's faithfulness beats random {what} by at least {params.min_gain_over_random} (CI "
        f"lower bound), where the circuit reached {params.target_faithfulness} on the discovery examples with at "
        f"most {params.max_circuit_fraction:.0%} of the {what}"
    )


def _node_metrics(
    found: Circuit,
    held: Circuit,
    plain_atp: np.ndarray,
    nodes: list[Node],
    params: CircuitParams,
    twin: Baseline | None,
) -> list[Metric]:
    """The node circuit's metrics, in record order."""
    d_boot, boot, k, method, unit = (
        found.scorer.boot,
        held.scorer.boot,
        held.k,
        _NODE_METHOD[params.attribution],
        _unit(params),
    )
    rho, rho_draws = rank_agreement(found.scores[:, found.verified], found.effects, d_boot)
    rho_plain, rho_plain_draws = rank_agreement(plain_atp[:, found.verified], found.effects, d_boot)
    top = nodes[found.rankings.circuit[0]]
    labels = ", ".join(nodes[j].label for j in found.rankings.circuit[:k])
    agreement = (
        f"Spearman correlation between the {method} attribution scores and activation-patching effects "
        f"over {len(found.verified)} of {found.n} nodes (discovery examples)"
    )
    plain_agreement = "the same for plain AtP scores (attention patterns linearised), over the same nodes" + (
        " (the attribution used)" if params.attribution == "atp" else ""
    )
    overlap = len(set(found.rankings.circuit[:k]) & set(found.rankings.patching[:k])) / k
    carried = "m(M) - m(0) on the evaluation examples: how much of the task the scored components carry"
    verified = "nodes checked by activation patching (discovery examples)"
    unpatched, all_patched = f"({params.metric}) of the unpatched model", f"every node patched ({params.ablation})"
    return [
        *_at_k_metrics(found, held, params, "nodes", "", labels),
        _ci_metric("rank_agreement_spearman", rho, rho_draws, d_boot, "correlation", agreement),
        _ci_metric("rank_agreement_spearman_atp", rho_plain, rho_plain_draws, d_boot, "correlation", plain_agreement),
        Metric(
            name="patching_topk_overlap",
            value=overlap,
            unit="fraction",
            description=f"share of the circuit's {k} nodes that verified patching effects also rank in their top {k}",
        ),
        _ci_metric(
            "heldout_faithfulness_at_k_patching_ranked",
            held.at_k(held.by_patching),
            held.by_patching.draws[:, held.ki],
            boot,
            "fraction",
            f"held-out faithfulness of the top {k} nodes ranked by the verified effect of patching each alone",
        ),
        _mean_metric("task_metric_clean", held.clean, boot, unit, f"task metric m(M) {unpatched}, evaluation examples"),
        _mean_metric("task_metric_all_patched", held.empty, boot, unit, f"task metric m(0) with {all_patched}"),
        _mean_metric("task_effect", held.clean - held.empty, boot, unit, carried, baseline=twin),
        Metric(
            name="circuit_found",
            value=_circuit_found(found, held, params),
            unit="flag",
            description=_found_description(params, "nodes"),
        ),
        Metric(name="n_nodes", value=held.n, unit="nodes", description="attention heads and MLPs scored"),
        Metric(name="n_verified_nodes", value=len(found.verified), unit="nodes", description=verified),
        Metric(
            name="top_node_layer",
            value=top.layer,
            unit="layer index",
            description=f"layer of the top node of the circuit ranking, {top.label}",
        ),
        Metric(
            name="top_node_head",
            value=-1 if top.head is None else top.head,
            unit="head index",
            description=f"head index of the top node, {top.label} (-1: an MLP)",
        ),
    ]  # fmt: skip


def _edge_labels(graph: EdgeModel, circuit: Circuit) -> str:
    """The first (at most 8) edges of the edge circuit."""
    labels = ", ".join(graph.label(graph.edges[j]) for j in circuit.rankings.circuit[: min(circuit.k, 8)])
    return labels + (", ..." if circuit.k > 8 else "")


def _edge_metrics(graph: EdgeModel, found: Circuit, held: Circuit, params: CircuitParams) -> list[Metric]:
    """The edge circuit's metrics, in record order."""
    d_boot, boot, k, method = found.scorer.boot, held.scorer.boot, held.k, _EDGE_METHOD[params.attribution]
    assert graph.recompute_error is not None  # checked by edge_model
    rho, rho_draws = rank_agreement(found.scores[:, found.verified], found.effects, d_boot)
    agreement = (
        f"Spearman correlation between {method} edge scores and the effect of patching each edge alone, "
        f"over {len(found.verified)} of {found.n} edges (discovery examples)"
    )
    recompute = (
        "largest relative difference between the model's own activations and the recomputation edge "
        "patching uses (split residual stream, q/k/v, MLPs) on the first batch"
    )
    return [
        *_at_k_metrics(found, held, params, "edges", "edge_", _edge_labels(graph, found)),
        _ci_metric("edge_rank_agreement_spearman", rho, rho_draws, d_boot, "correlation", agreement),
        _ci_metric(
            "edge_heldout_faithfulness_at_k_patching_ranked",
            held.at_k(held.by_patching),
            held.by_patching.draws[:, held.ki],
            boot,
            "fraction",
            f"held-out faithfulness of the top {k} edges ranked by the verified effect of patching each alone",
        ),
        Metric(
            name="edge_circuit_found",
            value=_circuit_found(found, held, params),
            unit="flag",
            description=_found_description(params, "edges"),
        ),
        Metric(name="n_edges", value=held.n, unit="edges", description="edges between scored components"),
        Metric(name="edge_recompute_error", value=graph.recompute_error, unit="relative error", description=recompute),
    ]


def _edge_table(graph: EdgeModel, found: Circuit, params: CircuitParams) -> Table:
    """The ``edges`` table: per edge, in circuit order, its score, measured effect, ranks and membership."""
    c, k = found, found.k
    score_mean = c.scores.mean(axis=0)
    effect_of = c.effect_of()
    rank_of = {j: i + 1 for i, j in enumerate(c.rankings.circuit)}
    patching_rank_of = {j: i + 1 for i, j in enumerate(c.rankings.patching)}
    rows: list[list[str | float | int | None]] = []
    for j in c.rankings.circuit[: max(k, params.max_patched_edges)]:
        edge = graph.edges[j]
        sender, receiver = graph.senders[edge.sender].label, graph.receivers[edge.receiver].label
        ranks = [rank_of[j], patching_rank_of[j], int(rank_of[j] <= k)]
        rows.append([sender, receiver, float(score_mean[j]), effect_of.get(j), *ranks])
    return Table(
        name="edges",
        columns=["sender", "receiver", "attribution", "patching_effect", "circuit_rank", "patching_rank", "in_circuit"],
        rows=rows,
        description=(
            f"per edge, in circuit order (the first {max(k, params.max_patched_edges)} at most), on the discovery "
            f"examples: mean {_EDGE_METHOD[params.attribution]} score, mean effect of patching it alone "
            f"({_unit(params)}; null when not verified), its ranks, and membership of the edge circuit; a receiver "
            "is a head's q, k or v input, an MLP, or the logits"
        ),
    )


def _edge_summary(graph: EdgeModel, found: Circuit, held: Circuit, params: CircuitParams) -> str:
    rho = rank_agreement(found.scores[:, found.verified], found.effects, found.scorer.boot)[0]
    return (
        f"Over {held.n} edges, the top {held.k} by {_EDGE_METHOD[params.attribution]} ({_edge_labels(graph, found)}) "
        f"recover {held.at_k(held.main):.1%} of the task on held-out examples ({held.k} random edges "
        f"{held.at_k(held.rnd):.1%}); edge scores agree with patching each edge alone at Spearman {rho:.2f}."
    )


def _edges_scored(scored: bool, params: CircuitParams, skipped: str) -> Metric:
    return Metric(
        name="edges_scored",
        value=int(scored),
        unit="flag",
        description=(
            "1 if the edges between components were scored"
            if scored
            else ("0: edges were not requested (edges = false)" if not params.edges else "0: " + skipped)
        ),
    )


def _examples_ref(name: str, task: InductionTask, use: str) -> DataRef:
    return DataRef(
        name=name,
        sha256=task.digest(),
        count=int(task.clean.shape[0]),
        description=(
            f"two int64 arrays of shape {list(task.clean.shape)} (little-endian, row-major), clean then "
            "corrupted: "
            + ("BOS, then " if task.offset else "")
            + f"{task.seq_len} random token ids and the same ids again; corrupted: fresh ids, then the segment; "
            f"the {use}"
        ),
    )


def _summary(
    found: Circuit, held: Circuit, metrics: list[Metric], nodes: list[Node], params: CircuitParams, seq_len: int
) -> str:
    """The node part of the summary, from the circuit and its metrics."""
    k, unit, method = held.k, _unit(params), _NODE_METHOD[params.attribution]
    by_name = {m.name: m for m in metrics}
    effect, faithful, gain, cpr, cmd = (
        by_name[n] for n in ("task_effect", "heldout_faithfulness_at_k", "heldout_faithfulness_gain_over_random",
                             "heldout_cpr", "heldout_cmd")
    )  # fmt: skip
    assert effect.ci is not None and faithful.ci is not None and faithful.baseline is not None  # built with them
    discovery_f = found.at_k(found.main)
    if params.k is not None:
        reached = f"k given; {discovery_f:.1%} on the discovery examples"
    elif discovery_f >= params.target_faithfulness:
        reached = f"the smallest size reaching {params.target_faithfulness:.0%} on the discovery examples"
    else:
        reached = f"no smaller circuit reached {params.target_faithfulness:.0%} on the discovery examples"
    gain_text = (
        f"gain {gain.value:.1%}, CI {gain.ci.lower:.1%}-{gain.ci.upper:.1%}" if gain.ci is not None else "no gain"
    )
    effect_text = f"task effect {effect.value:.3f} {unit} (CI {effect.ci.lower:.3f}-{effect.ci.upper:.3f})"
    if effect.baseline is not None:
        effect_text += f"; random-init twin {effect.baseline.value:.3f}"
    rho, rho_plain = by_name["rank_agreement_spearman"].value, by_name["rank_agreement_spearman_atp"].value
    labels = ", ".join(nodes[j].label for j in found.rankings.circuit[:k])
    n_disc, n_eval = found.clean.shape[0], held.clean.shape[0]
    return (
        f"Circuit chosen on {n_disc} and scored on {n_eval} other repeated random segments of {seq_len} tokens: "
        f"{effect_text}. Keeping the top {k} of {held.n} components by {method} ({labels}; {reached}) and "
        f"patching the rest recovers {faithful.value:.1%} of it on the evaluation examples (CI "
        f"{faithful.ci.lower:.1%}-{faithful.ci.upper:.1%}; {k} random nodes {faithful.baseline.value:.1%}; "
        f"{gain_text}). "
        f"CPR {cpr.value:.3f} (random {_baseline_value(cpr):.3f}), CMD {cmd.value:.3f} (random "
        f"{_baseline_value(cmd):.3f}). "
        f"{method} agrees with activation patching at Spearman {rho:.2f}"
        + (f" (plain AtP {rho_plain:.2f})" if params.attribution != "atp" else "")
        + f"; ranked by verified patching effects, the top {k} recover {held.at_k(held.by_patching):.1%}. "
        + (
            "A sparse faithful circuit was found."
            if by_name["circuit_found"].value
            else "No sparse faithful circuit was found."
        )
    )


@measurement(
    "circuit.faithfulness",
    version="2.0.0",
    params=CircuitParams,
    clauses=CLAUSES,
    detectors=(Detector("edge_circuit_found", "induction", (Criterion(comparator=">=", threshold=1, rule="point"),)),),
    calibration=(
        # On examples it was not chosen on, the edge circuit (EAP-IG's own ranking, k chosen on the discovery
        # examples) beats random edge circuits of its size by the stated margin (min_gain_over_random, 0.25).
        # The node circuit has no planted expectation: see "Known failure modes" on the method page.
        Expectation(
            "induction",
            True,
            "edge_heldout_faithfulness_gain_over_random",
            (Criterion(comparator=">=", threshold=0.25, rule="ci-lower"),),
        ),
        Expectation("induction", True, "edge_circuit_found", (Criterion(comparator=">=", threshold=1, rule="point"),)),
        Expectation(
            "induction#untrained", False, "circuit_found", (Criterion(comparator="<=", threshold=0, rule="point"),)
        ),
        Expectation(
            "induction#untrained", False, "edge_circuit_found", (Criterion(comparator="<=", threshold=0, rule="point"),)
        ),
    ),
)
def circuit_faithfulness(model: LoadedModel, params: CircuitParams, ctx: MeasureContext) -> MeasurementResult:
    """Attribution patching on discovery examples, verified by activation patching; the held-out faithfulness curve."""
    token_seed, ranking_seed = ctx.derive_seed("tokens"), ctx.derive_seed("random_rankings")
    edge_seed = ctx.derive_seed("edge_rankings") if params.edges else 0
    twin_seed = ctx.derive_seed("twin") if params.twin_baseline else 0
    nodes = model_nodes(model)
    _check_size(len(nodes), params)
    seq_len = params.seq_len if params.seq_len is not None else default_seq_len(model)
    task = induction_task(model, params.n_examples, seq_len, np.random.default_rng(token_seed))
    split = _split(model, nodes, task, params, ctx)
    found, held, plain_atp = _node_circuit(split, params, np.random.default_rng(ranking_seed), ctx)

    twin: Baseline | None = None
    if params.twin_baseline:
        ctx.progress(0.6, "randomly initialised twin")
        twin = _twin_effect(model, split.evaluation, twin_seed, split.evaluation_boot)
    graph, edges_skipped = _edge_graph(model, split.discovery.task, params)
    edge = None if graph is None else _edge_circuit(graph, split, params, edge_seed, ctx)

    metrics = _node_metrics(found, held, plain_atp, nodes, params, twin)
    summary = _summary(found, held, metrics, nodes, params, seq_len)
    tables = [_node_table(nodes, found, plain_atp, params), _curve_table(nodes, found, held)]
    if graph is not None and edge is not None:
        metrics += _edge_metrics(graph, edge[0], edge[1], params)
        tables.append(_edge_table(graph, edge[0], params))
        summary += " " + _edge_summary(graph, edge[0], edge[1], params)
    metrics.append(_edges_scored(edge is not None, params, edges_skipped))
    if edges_skipped:
        summary += " " + edges_skipped
    data = [
        _examples_ref(
            "circuit.discovery_examples", split.discovery.task, "discovery split (circuit and k are chosen on it)"
        ),
        _examples_ref(
            "circuit.evaluation_examples", split.evaluation.task, "evaluation split (every curve is reported on it)"
        ),
    ]
    ctx.progress(1.0, "done")
    return MeasurementResult(metrics=metrics, tables=tables, data=data, summary=summary)
