"""``circuit.faithfulness``: find the components that carry a behaviour, check them causally, and score the circuit.

Attribution (EAP-IG by default; AtP and AtP* as options) screens every node
and every edge, activation patching verifies the candidates, and the circuit
ranked by verified effect is scored by its faithfulness curve (MIB-style CPR
and CMD) against random circuits and a randomly initialised twin. The
algorithms live in :mod:`evidence.measure.methods.patching`,
:mod:`~evidence.measure.methods.attribution`, :mod:`~evidence.measure.methods.edges`
and :mod:`~evidence.measure.methods.faithfulness`; the method, its rationale
and the validation numbers are in docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from evidence.errors import MeasurementError
from evidence.measure import MeasureContext, MeasurementResult, UncertaintyParams, measurement
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
    n_examples: int = Field(default=64, ge=2, le=100_000)
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
    target_faithfulness: float = Field(default=0.8, gt=0.0, le=1.0)
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


def _node_circuit(
    inputs: PatchingInputs, params: CircuitParams, boot: Bootstrap, rng: np.random.Generator, ctx: MeasureContext
) -> tuple[Circuit, np.ndarray]:
    """The node circuit, and plain AtP scores ``[examples, nodes]`` (always computed, reported beside it)."""
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
        progress=lambda f, what: ctx.progress(0.1 + 0.5 * f, what),
    )
    return circuit, plain_atp


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
    graph: EdgeModel, inputs: PatchingInputs, params: CircuitParams, boot: Bootstrap, seed: int, ctx: MeasureContext
) -> Circuit:
    """Edges scored by attribution, verified by patching each alone, ranked, and the edge circuit's curve."""
    ctx.progress(0.65, "edge attribution")
    edges = EdgePatchingInputs(graph, inputs)
    scores, attribution_clean = edge_attribution_scores(edges, params.attribution, params.ig_steps)
    return find_circuit(
        scores,
        attribution_clean,
        lambda sets, progress: edge_patched_metrics(edges, sets, progress),
        search=_search(params, params.max_patched_edges, params.max_edge_curve_points, None),
        boot=boot,
        rng=np.random.default_rng(seed),
        stages=("edge patching", "edge faithfulness curve", "edge gradients and edge patching"),
        progress=lambda f, what: ctx.progress(0.7 + 0.25 * f, what),
    )


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


def _circuit_found(effect_lower: float, faithful: float, k: int, n: int, params: CircuitParams) -> int:
    """1 if the task effect is real, the target is reached, and with at most ``max_circuit_fraction`` of ``n``."""
    return int(
        effect_lower > params.min_task_effect
        and faithful >= params.target_faithfulness
        and k <= params.max_circuit_fraction * n
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


def _node_table(nodes: list[Node], circuit: Circuit, plain_atp: np.ndarray, params: CircuitParams) -> Table:
    """The ``nodes`` table: per node its scores, measured effect, ranks and membership."""
    rankings, k, unit, method = circuit.rankings, circuit.k, _unit(params), _NODE_METHOD[params.attribution]
    score_mean, plain_atp_mean, effect_of = circuit.scores.mean(axis=0), plain_atp.mean(axis=0), circuit.effect_of()
    rank_of = {j: i + 1 for i, j in enumerate(rankings.circuit)}
    attribution_rank_of = {j: i + 1 for i, j in enumerate(rankings.attribution)}
    rows: list[list[str | float | int | None]] = [
        [node.label, node.layer, node.head, node.kind, float(score_mean[j]), float(plain_atp_mean[j]),
         effect_of.get(j), rank_of[j], attribution_rank_of[j], int(rank_of[j] <= k)]
        for j, node in enumerate(nodes)
    ]
    return Table(
        name="nodes",
        columns=["node", "layer", "head", "kind", "attribution",
            "attribution_atp", "patching_effect", "circuit_rank", "attribution_rank", "in_circuit",
        ],
        rows=rows,
        description=(
            f"per node: mean attribution score ({method}) and plain AtP score, mean measured effect of patching it "
            f"alone ({unit}; null when not verified), its rank in the circuit ranking and by {method} alone; head "
            "is null for an MLP"
        ),
    )


def _curve_table(nodes: list[Node], circuit: Circuit) -> Table:
    """The ``faithfulness_curve`` table: the circuit, attribution-only and random curves at every k."""
    scorer, rankings, main, by_attribution, rnd = (
        circuit.scorer, circuit.rankings, circuit.main, circuit.by_attribution, circuit.rnd
    )
    rows: list[list[str | float | int | None]] = []
    for i, k in enumerate(scorer.ks):
        ci = scorer.boot.interval(float(main.point[i]), main.draws[:, i])
        added = nodes[rankings.circuit[k - 1]].label
        point, by_attribution_k, random_k = float(main.point[i]), float(by_attribution.point[i]), float(rnd.point[i])
        rows.append([k, k / scorer.n_components, added, point, ci.lower, ci.upper, by_attribution_k, random_k])
    return Table(
        name="faithfulness_curve",
        columns=["k", "fraction", "added_node", "faithfulness",
            "ci_lower", "ci_upper", "faithfulness_attribution_ranked", "faithfulness_random",
        ],
        rows=rows,
        description=(
            "faithfulness of the top-k circuit (all other nodes patched) with its CI, and the same for the "
            "ranking by attribution alone and for random rankings (mean)"
        ),
    )


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


def _at_k_metrics(c: Circuit, params: CircuitParams, what: str, prefix: str, labels: str) -> list[Metric]:
    """Faithfulness at k against random ``what`` (nodes or edges), the circuit size, CPR and CMD."""
    boot, k, ki, f_k, r_k = c.scorer.boot, c.k, c.ki, c.at_k(c.main), c.at_k(c.rnd)
    rnd = Baseline(
        name=f"random {what}",
        value=r_k,
        ci=boot.interval(r_k, c.rnd.draws[:, ki]),
        description=f"mean faithfulness of {k} {what} chosen at random, over {params.random_rankings} draws",
    )
    if what == "nodes":
        recovered = f"share of the task effect recovered by the top {k} nodes ({labels}), all others patched"
        kept = "nodes kept in the circuit"
    else:
        recovered = (
            f"share of the task effect recovered when only the top {k} edges ({labels}) carry the clean "
            "run and every other edge is patched"
        )
        kept = "edges kept in the edge circuit"
    size = f"{prefix.replace('_', ' ')}circuit size over all {what}"
    orderings = f"mean curve of {params.random_rankings} random {what[:-1]} orderings"
    return [
        _ci_metric(f"{prefix}faithfulness_at_k", f_k, c.main.draws[:, ki], boot, "fraction", recovered, baseline=rnd),
        Metric(name=f"{prefix}circuit_size_k", value=k, unit=what, description=kept),
        Metric(name=f"{prefix}circuit_size_fraction", value=k / c.n, unit="fraction", description=size),
        *_area_metrics(c.scorer, c.main, c.rnd, prefix, orderings),
    ]


def _found_description(params: CircuitParams, what: str) -> str:
    effect = (
        f"the task effect's CI lower bound exceeds {params.min_task_effect} and"
        if what == "nodes"
        else f"the task effect with every edge patched has a CI lower bound above {params.min_task_effect} and"
    )
    return (
        f"1 if {effect} faithfulness reaches {params.target_faithfulness} with at most "
        f"{params.max_circuit_fraction:.0%} of the {what}"
    )


def _node_metrics(
    c: Circuit, plain_atp: np.ndarray, nodes: list[Node], params: CircuitParams, twin: Baseline | None, found: int
) -> list[Metric]:
    """The node circuit's metrics, in record order."""
    boot, k, method, unit = c.scorer.boot, c.k, _NODE_METHOD[params.attribution], _unit(params)
    rho, rho_draws = rank_agreement(c.scores[:, c.verified], c.effects, boot)
    rho_plain, rho_plain_draws = rank_agreement(plain_atp[:, c.verified], c.effects, boot)
    top = nodes[c.rankings.circuit[0]]
    labels = ", ".join(nodes[j].label for j in c.rankings.circuit[:k])
    agreement = (
        f"Spearman correlation between the {method} attribution scores and activation-patching effects "
        f"over {len(c.verified)} of {c.n} nodes"
    )
    plain_agreement = "the same for plain AtP scores (attention patterns linearised), over the same nodes" + (
        " (the attribution used)" if params.attribution == "atp" else ""
    )
    overlap = len(set(c.rankings.circuit[:k]) & set(c.rankings.attribution[:k])) / k
    carried = "m(M) - m(0): how much of the task the scored components carry"
    verified = "nodes checked by activation patching"
    unpatched, all_patched = f"({params.metric}) of the unpatched model", f"every node patched ({params.ablation})"
    return [
        *_at_k_metrics(c, params, "nodes", "", labels),
        _ci_metric("rank_agreement_spearman", rho, rho_draws, boot, "correlation", agreement),
        _ci_metric("rank_agreement_spearman_atp", rho_plain, rho_plain_draws, boot, "correlation", plain_agreement),
        Metric(
            name="attribution_topk_overlap",
            value=overlap,
            unit="fraction",
            description=f"share of the circuit's {k} nodes that the attribution scores alone rank in their top {k}",
        ),
        _ci_metric(
            "faithfulness_at_k_attribution_ranked",
            c.at_k(c.by_attribution),
            c.by_attribution.draws[:, c.ki],
            boot,
            "fraction",
            f"faithfulness of the top {k} nodes ranked by attribution scores alone",
        ),
        _mean_metric("task_metric_clean", c.clean, boot, unit, f"task metric m(M) {unpatched}"),
        _mean_metric("task_metric_all_patched", c.empty, boot, unit, f"task metric m(0) with {all_patched}"),
        _mean_metric("task_effect", c.clean - c.empty, boot, unit, carried, baseline=twin),
        Metric(name="circuit_found", value=found, unit="flag", description=_found_description(params, "nodes")),
        Metric(name="n_nodes", value=c.n, unit="nodes", description="attention heads and MLPs scored"),
        Metric(name="n_verified_nodes", value=len(c.verified), unit="nodes", description=verified),
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
    ]


def _edge_labels(graph: EdgeModel, circuit: Circuit) -> str:
    """The first (at most 8) edges of the edge circuit."""
    labels = ", ".join(graph.label(graph.edges[j]) for j in circuit.rankings.circuit[: min(circuit.k, 8)])
    return labels + (", ..." if circuit.k > 8 else "")


def _edge_metrics(graph: EdgeModel, c: Circuit, params: CircuitParams, recompute_error: float) -> list[Metric]:
    """The edge circuit's metrics, in record order."""
    boot, k, method = c.scorer.boot, c.k, _EDGE_METHOD[params.attribution]
    found = _circuit_found(c.task_effect()[1].lower, c.at_k(c.main), k, c.n, params)
    rho, rho_draws = rank_agreement(c.scores[:, c.verified], c.effects, boot)
    agreement = (
        f"Spearman correlation between {method} edge scores and the effect of patching each edge alone, "
        f"over {len(c.verified)} of {c.n} edges"
    )
    recompute = (
        "largest relative difference between the model's own activations and the recomputation edge "
        "patching uses (split residual stream, q/k/v, MLPs) on the first batch"
    )
    return [
        *_at_k_metrics(c, params, "edges", "edge_", _edge_labels(graph, c)),
        _ci_metric("edge_rank_agreement_spearman", rho, rho_draws, boot, "correlation", agreement),
        _ci_metric(
            "edge_faithfulness_at_k_attribution_ranked",
            c.at_k(c.by_attribution),
            c.by_attribution.draws[:, c.ki],
            boot,
            "fraction",
            f"faithfulness of the top {k} edges ranked by {method} scores alone",
        ),
        Metric(name="edge_circuit_found", value=found, unit="flag", description=_found_description(params, "edges")),
        Metric(name="n_edges", value=c.n, unit="edges", description="edges between scored components"),
        Metric(name="edge_recompute_error", value=recompute_error, unit="relative error", description=recompute),
    ]


def _edge_table(graph: EdgeModel, circuit: Circuit, params: CircuitParams) -> Table:
    """The ``edges`` table: per edge, in circuit order, its score, measured effect, ranks and membership."""
    c, k = circuit, circuit.k
    score_mean = c.scores.mean(axis=0)
    effect_of = c.effect_of()
    rank_of = {j: i + 1 for i, j in enumerate(c.rankings.circuit)}
    attribution_rank_of = {j: i + 1 for i, j in enumerate(c.rankings.attribution)}
    rows: list[list[str | float | int | None]] = []
    for j in c.rankings.circuit[: max(k, params.max_patched_edges)]:
        edge = graph.edges[j]
        sender, receiver = graph.senders[edge.sender].label, graph.receivers[edge.receiver].label
        ranks = [rank_of[j], attribution_rank_of[j], int(rank_of[j] <= k)]
        rows.append([sender, receiver, float(score_mean[j]), effect_of.get(j), *ranks])
    return Table(
        name="edges",
        columns=["sender", "receiver", "attribution", "patching_effect",
            "circuit_rank", "attribution_rank", "in_circuit",
        ],
        rows=rows,
        description=(
            f"per edge, in circuit order (the first {max(k, params.max_patched_edges)} at most): mean "
            f"{_EDGE_METHOD[params.attribution]} score, mean effect of patching it alone ({_unit(params)}; null "
            "when not verified), its ranks, and membership of the edge circuit; a receiver is a head's q, k or v "
            "input, an MLP, or the logits"
        ),
    )


def _edge_summary(graph: EdgeModel, circuit: Circuit, params: CircuitParams) -> str:
    c = circuit
    rho = rank_agreement(c.scores[:, c.verified], c.effects, c.scorer.boot)[0]
    return (
        f"Over {c.n} edges, the top {c.k} ({_edge_labels(graph, c)}) recover {c.at_k(c.main):.1%} of the task "
        f"({c.k} random edges {c.at_k(c.rnd):.1%}); {_EDGE_METHOD[params.attribution]} edge scores agree with "
        f"patching each edge alone at Spearman {rho:.2f}."
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


def _examples_ref(task: InductionTask, params: CircuitParams) -> DataRef:
    return DataRef(
        name="circuit.induction_examples",
        sha256=task.digest(),
        count=params.n_examples,
        description=(
            f"two int64 arrays of shape {list(task.clean.shape)} (little-endian, row-major), clean then "
            "corrupted: "
            + ("BOS, then " if task.offset else "")
            + f"{task.seq_len} random token ids and the same ids again; corrupted: fresh ids, then the segment"
        ),
    )


def _summary(circuit: Circuit, metrics: list[Metric], nodes: list[Node], params: CircuitParams, seq_len: int) -> str:
    """The node part of the summary, from the circuit and its metrics."""
    c, k, unit = circuit, circuit.k, _unit(params)
    by_name = {m.name: m for m in metrics}
    effect, faithful, cpr, cmd = (by_name[n] for n in ("task_effect", "faithfulness_at_k", "cpr", "cmd"))
    assert effect.ci is not None and faithful.ci is not None and faithful.baseline is not None  # built with them
    effect_text = f"task effect {effect.value:.3f} {unit} (CI {effect.ci.lower:.3f}-{effect.ci.upper:.3f})"
    if effect.baseline is not None:
        effect_text += f"; random-init twin {effect.baseline.value:.3f}"
    rho, rho_plain = by_name["rank_agreement_spearman"].value, by_name["rank_agreement_spearman_atp"].value
    labels = ", ".join(nodes[j].label for j in c.rankings.circuit[:k])
    return (
        f"On {params.n_examples} repeated random segments of {seq_len} tokens: {effect_text}. "
        f"Keeping the top {k} of {c.n} components ({labels}) and patching the rest recovers "
        f"{faithful.value:.1%} of it (CI {faithful.ci.lower:.1%}-{faithful.ci.upper:.1%}; {k} random nodes "
        f"{faithful.baseline.value:.1%}). "
        f"CPR {cpr.value:.3f} (random {_baseline_value(cpr):.3f}), "
        f"CMD {cmd.value:.3f} (random {_baseline_value(cmd):.3f}). "
        f"Attribution patching ({_NODE_METHOD[params.attribution]}) agrees with activation patching at Spearman "
        f"{rho:.2f}"
        + (f" (plain AtP {rho_plain:.2f})" if params.attribution != "atp" else "")
        + f"; ranked by attribution alone, the top {k} recover {c.by_attribution.point[c.ki]:.1%}. "
        + (
            "A sparse faithful circuit was found."
            if by_name["circuit_found"].value
            else "No sparse faithful circuit was found."
        )
    )


@measurement(
    "circuit.faithfulness",
    version="1.2.0",
    params=CircuitParams,
    clauses=CLAUSES,
    calibration=(
        Expectation("induction", True, "faithfulness_at_k", (Criterion(comparator=">=", threshold=0.8, rule="point"),)),
        Expectation("induction", True, "circuit_found", (Criterion(comparator=">=", threshold=1, rule="point"),)),
        Expectation(
            "induction#untrained", False, "circuit_found", (Criterion(comparator="<=", threshold=0, rule="point"),)
        ),
        Expectation(
            "induction", True, "edge_circuit_found", (Criterion(comparator=">=", threshold=1, rule="point"),)
        ),
        Expectation(
            "induction#untrained", False, "edge_circuit_found", (Criterion(comparator="<=", threshold=0, rule="point"),)
        ),
    ),
)
def circuit_faithfulness(model: LoadedModel, params: CircuitParams, ctx: MeasureContext) -> MeasurementResult:
    """Attribution patching, verified by activation patching; the faithfulness curve of the circuit."""
    token_seed, ranking_seed, bootstrap_seed = (ctx.derive_seed(n) for n in ("tokens", "random_rankings", "bootstrap"))
    edge_seed = ctx.derive_seed("edge_rankings") if params.edges else 0
    twin_seed = ctx.derive_seed("twin") if params.twin_baseline else 0
    nodes = model_nodes(model)
    _check_size(len(nodes), params)
    seq_len = params.seq_len if params.seq_len is not None else default_seq_len(model)
    task = induction_task(model, params.n_examples, seq_len, np.random.default_rng(token_seed))
    inputs = PatchingInputs(model, nodes, task, params.metric, params.ablation, params.batch_size)
    boot = Bootstrap.draw(
        params.n_examples,
        rng=np.random.default_rng(bootstrap_seed),
        resamples=params.bootstrap_resamples,
        level=params.ci_level,
    )
    circuit, plain_atp = _node_circuit(inputs, params, boot, np.random.default_rng(ranking_seed), ctx)

    twin: Baseline | None = None
    if params.twin_baseline:
        ctx.progress(0.6, "randomly initialised twin")
        twin = _twin_effect(model, inputs, twin_seed, boot)
    graph, edges_skipped = _edge_graph(model, task, params)
    edge_circuit = None if graph is None else _edge_circuit(graph, inputs, params, boot, edge_seed, ctx)

    found = _circuit_found(circuit.task_effect()[1].lower, circuit.at_k(circuit.main), circuit.k, len(nodes), params)
    metrics = _node_metrics(circuit, plain_atp, nodes, params, twin, found)
    summary = _summary(circuit, metrics, nodes, params, seq_len)
    tables = [_node_table(nodes, circuit, plain_atp, params), _curve_table(nodes, circuit)]
    if graph is not None and edge_circuit is not None:
        assert graph.recompute_error is not None  # checked by edge_model
        metrics += _edge_metrics(graph, edge_circuit, params, graph.recompute_error)
        tables.append(_edge_table(graph, edge_circuit, params))
        summary += " " + _edge_summary(graph, edge_circuit, params)
    metrics.append(_edges_scored(edge_circuit is not None, params, edges_skipped))
    if edges_skipped:
        summary += " " + edges_skipped
    ctx.progress(1.0, "done")
    return MeasurementResult(metrics=metrics, tables=tables, data=[_examples_ref(task, params)], summary=summary)
