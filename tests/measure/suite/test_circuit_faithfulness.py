"""circuit.faithfulness on the induction organism (planted circuit), its random-init twin, and toy models.

The planted circuit is read independently from heads.inventory (attention
patterns): its strongest previous-token head (layer 0) and its strongest
induction head (layer 1) must both be in the circuit that circuit.faithfulness
finds. The organism has 8 heads and spreads each role over two heads, so the
circuit reaching 80% is at least 4 heads (an exhaustive search over all 2^8
subsets finds none of 3 heads above 0.6); the circuit and k are chosen on one
half of the examples and every reported curve is drawn on the other half."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.canonical import canonical_bytes
from evidence.errors import ConfigError, MeasurementError
from evidence.measure import Task, registered, run_task
from evidence.measure.methods.edges import EdgeModel
from evidence.measure.stats import spearman
from evidence.model import LoadedModel, ModelSpec, random_twin
from evidence.records import EvidenceRecord, Table

SPEC = ModelSpec(organism="induction")
TARGET = 0.8


def rows(table: Table) -> list[dict[str, object]]:
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def table(record: EvidenceRecord, name: str) -> list[dict[str, object]]:
    return rows(next(t for t in record.tables if t.name == name))


def circuit(record: EvidenceRecord) -> set[str]:
    return {str(r["node"]) for r in table(record, "nodes") if r["in_circuit"] == 1}


@pytest.fixture(scope="module")
def induction(organism) -> LoadedModel:
    return organism("induction")


@pytest.fixture(scope="module")
def record(induction) -> EvidenceRecord:
    return run_task(Task("circuit.faithfulness", {}, 0, SPEC), induction)


@pytest.fixture(scope="module")
def twin(induction) -> LoadedModel:
    return random_twin(induction, 4242)


@pytest.fixture(scope="module")
def twin_record(twin) -> EvidenceRecord:
    return run_task(Task("circuit.faithfulness", {}, 0, SPEC), twin)


#: A tiny native model with LayerNorm and MLPs.
TWO_LAYERS_WITH_MLPS: dict[str, object] = {
    "d_model": 32,
    "d_head": 8,
    "n_heads": 2,
    "n_layers": 2,
    "n_ctx": 32,
    "d_vocab": 24,
    "attn_only": False,
    "d_mlp": 64,
    "normalization_type": "LN",
}


def tiny(architecture: dict[str, object], seed: int = 5) -> LoadedModel:
    from evidence.records import ModelIdentity, WeightFile

    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**architecture, seed=seed, device="cpu"))
    bridge.eval()
    identity = ModelIdentity(
        name="tiny",
        source="organism",
        architecture=architecture,
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="tiny", sha256="0" * 64, bytes=1)],
        n_parameters=1,
        processing={},
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=None, spec=ModelSpec(organism="tiny"))


def test_registered_with_its_clauses():
    definition = registered()["circuit.faithfulness"]
    assert definition.version == "2.2.0"
    assert {c.id for c in definition.clauses} == {
        "EU-AIA/AnnexIV/2/b@OJ-2024-07-12",
        "EU-AIA/AnnexIV/2/c@OJ-2024-07-12",
        "EU-AIA/AnnexXI/S2/3@OJ-2024-07-12",
        "NIST-AI-RMF/1.0/MEASURE/2.9",
        "NIST-AI-600-1/MS-2.9-001",
        "ISO-IEC-TS-6254:2025",
    }


def test_the_planted_circuit_is_in_the_attribution_methods_own_circuit(induction, record):
    assert record.status == "ok", record.error
    inventory = run_task(Task("heads.inventory", {"random_ablation_draws": 2}, 0, SPEC), induction)
    assert inventory.status == "ok", inventory.error
    prev = (inventory.metric("prev_token_head_layer").value, inventory.metric("prev_token_head_index").value)
    induction = (inventory.metric("induction_head_layer").value, inventory.metric("induction_head_index").value)
    assert prev[0] == 0 and induction[0] == 1
    found = circuit(record)
    assert f"L{prev[0]}H{prev[1]}" in found
    assert f"L{induction[0]}H{induction[1]}" in found
    assert {n[:2] for n in found} == {"L0", "L1"}  # both stages of the mechanism
    assert record.metric("circuit_size_k").value == len(found)
    # The headline circuit is EAP-IG's own ranking, not the ranking by verified patching effects.
    by_rank = sorted(table(record, "nodes"), key=lambda r: int(r["circuit_rank"]))
    magnitudes = [abs(float(r["attribution"])) for r in by_rank]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_the_node_circuit_of_eap_ig_is_not_sparse_enough_to_beat_random_circuits_by_the_margin(record):
    # EAP-IG ranks all four layer-1 heads first; without the layer-0 heads they copy nothing, so its
    # smallest circuit reaching the target holds 6 of the 8 heads, where 6 random heads already recover
    # most of the task. The ranking by verified patching effects would reach the target with 4.
    assert record.metric("top_node_layer").value == 1
    assert record.metric("circuit_size_k").value >= 6
    gain = record.metric("heldout_faithfulness_gain_over_random")
    assert gain.ci is not None and 0 < gain.ci.lower and gain.ci.upper < 0.25
    assert record.metric("circuit_found").value == 0
    assert "No sparse faithful circuit was found." in record.summary


def test_the_circuit_beats_random_circuits_on_held_out_examples(record):
    faithful = record.metric("heldout_faithfulness_at_k")
    assert faithful.ci is not None and faithful.baseline is not None and faithful.baseline.ci is not None
    assert faithful.ci.lower > faithful.baseline.ci.upper
    gain = record.metric("heldout_faithfulness_gain_over_random")
    assert gain.value == pytest.approx(faithful.value - faithful.baseline.value)
    cpr, cmd = record.metric("heldout_cpr"), record.metric("heldout_cmd")
    assert cpr.baseline is not None and cmd.baseline is not None
    assert cpr.value + cmd.value == pytest.approx(1.0, abs=0.01)  # the curve stays (nearly) within [0, 1] here


def test_circuit_and_k_are_chosen_on_examples_disjoint_from_those_reported(induction, record):
    from evidence.measure.methods.patching import induction_task

    discovery, evaluation = record.data
    assert (discovery.name, evaluation.name) == ("circuit.discovery_examples", "circuit.evaluation_examples")
    assert discovery.count == evaluation.count == 64
    # Rebuild the examples and the split from the recorded seeds: the digests match, the rows are disjoint.
    task = induction_task(induction, 128, 16, np.random.default_rng(record.seeds["tokens"]))
    order = np.random.default_rng(record.seeds["split"]).permutation(128)
    parts = [task.rows(np.sort(order[:64])), task.rows(np.sort(order[64:]))]
    assert [p.digest() for p in parts] == [discovery.sha256, evaluation.sha256]
    assert not {r.tobytes() for r in parts[0].clean} & {r.tobytes() for r in parts[1].clean}
    assert record.metric("heldout_faithfulness_at_k").ci.n == 64
    assert record.metric("rank_agreement_spearman").ci.n == 64


def test_the_tautological_expectation_is_gone_and_the_new_one_fails_on_the_untrained_twin(record, twin_record):
    from evidence.policy import satisfied

    expectations = registered()["circuit.faithfulness"].calibration
    # k was the smallest size reaching 0.8 on the reported examples (else all nodes, where f = 1):
    # "faithfulness_at_k >= 0.8" could not fail. No expectation reads a discovery-split number now.
    assert not any(e.metric in ("faithfulness_at_k", "discovery_faithfulness_at_k") for e in expectations)
    planted = [e for e in expectations if e.organism == "induction" and "gain_over_random" in e.metric]
    assert planted
    for e in planted:
        assert satisfied(e.criteria, e.combine, record.metric(e.metric))
        assert not satisfied(e.criteria, e.combine, twin_record.metric(e.metric))
    # On the twin no circuit short of the whole model reaches the target: the gain is 0 by construction,
    # and it is reported without an interval rather than with one of zero width.
    gain = twin_record.metric("edge_heldout_faithfulness_gain_over_random")
    assert twin_record.metric("edge_circuit_size_k").value == 81 and gain.value == 0 and gain.ci is None


def test_the_task_effect_is_large_and_absent_in_the_untrained_baseline(record):
    effect = record.metric("task_effect")
    assert effect.unit == "nats" and effect.ci is not None and effect.ci.lower > 5.0  # ln(128) = 4.85
    assert effect.baseline is not None and effect.baseline.ci is not None
    assert abs(effect.baseline.value) < 0.2
    assert record.metric("task_metric_clean").value > -0.5


def test_attribution_is_verified_by_exhaustive_patching(record):
    nodes = table(record, "nodes")
    assert len(nodes) == 8 == record.metric("n_nodes").value == record.metric("n_verified_nodes").value
    assert all(isinstance(r["patching_effect"], float) for r in nodes)
    rho = record.metric("rank_agreement_spearman")
    assert rho.ci is not None and rho.ci.method == "percentile bootstrap" and rho.ci.n == 64
    atp = [float(r["attribution"]) for r in nodes]
    effect = [float(r["patching_effect"]) for r in nodes]
    assert rho.value == pytest.approx(float(spearman(np.array(atp), np.array(effect))[0]))
    # The patching ranking is the verified one: its ranks follow |measured effect|.
    by_rank = sorted(nodes, key=lambda r: int(r["patching_rank"]))
    magnitudes = [abs(float(r["patching_effect"])) for r in by_rank]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_integrated_gradients_are_the_default_and_plain_atp_is_recorded_beside_them(record):
    assert record.measurement.params["attribution"] == "eap-ig"
    assert record.measurement.params["ig_steps"] == 8
    nodes = table(record, "nodes")
    assert any(r["attribution"] != pytest.approx(r["attribution_atp"]) for r in nodes)
    effect = np.array([float(r["patching_effect"]) for r in nodes])
    plain = record.metric("rank_agreement_spearman_atp")
    atp = np.array([float(r["attribution_atp"]) for r in nodes])
    assert plain.ci is not None and plain.value == pytest.approx(float(spearman(atp, effect)[0]))
    # Integrated along the path, the layer-1 heads' scores are no longer judged by the flat gradient of
    # the saturated clean log-probability: each is far larger than its plain AtP score.
    for r in nodes:
        if r["layer"] == 1:
            assert abs(float(r["attribution"])) > 10 * abs(float(r["attribution_atp"]))


def test_integrated_gradients_need_corrupted_inputs():
    with pytest.raises(ConfigError) as caught:
        registered()["circuit.faithfulness"].validate_params({"ablation": "mean"})
    assert str(caught.value).startswith(
        "measurement 'circuit.faithfulness': attribution 'eap-ig' integrates from the clean to the corrupted input"
    )
    registered()["circuit.faithfulness"].validate_params({"ablation": "mean", "attribution": "atp"})


def test_exact_attention_patterns_improve_agreement_on_the_logit_difference(induction):
    # With the logit difference as metric, plain AtP's ranking is unrelated to the measured effects
    # (all its layer-0 scores have the wrong sign); recomputing the layer-1 attention patterns
    # exactly under each layer-0 patch (AtP*'s QK fix) brings it into agreement.
    params = {"metric": "logit_diff", "attribution": "atp*", "twin_baseline": False, "bootstrap_resamples": 500}
    result = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert result.status == "ok", result.error
    assert result.measurement.params["attribution"] == "atp*"
    star, plain = result.metric("rank_agreement_spearman"), result.metric("rank_agreement_spearman_atp")
    assert star.ci is not None and plain.ci is not None
    assert star.ci.lower > plain.ci.upper
    nodes = table(result, "nodes")
    effect = np.array([float(r["patching_effect"]) for r in nodes])
    for column, metric in (("attribution", star), ("attribution_atp", plain)):
        scores = np.array([float(r[column]) for r in nodes])
        assert metric.value == pytest.approx(float(spearman(scores, effect)[0]))
    for r in nodes:  # no attention after layer 1: the two methods coincide there
        if r["layer"] == 1:
            assert float(r["attribution"]) == pytest.approx(float(r["attribution_atp"]))
    # The two layer-0 heads with the largest measured effects (the previous-token heads) get the
    # sign of their effect back.
    layer0 = sorted((r for r in nodes if r["layer"] == 0), key=lambda r: float(r["patching_effect"]))[:2]
    for r in layer0:
        assert float(r["patching_effect"]) < 0 < float(r["attribution_atp"])
        assert float(r["attribution"]) < 0


def test_the_curve_is_complete(record):
    curve = table(record, "faithfulness_curve")
    assert [r["k"] for r in curve] == list(range(1, 9))
    assert curve[-1]["faithfulness"] == pytest.approx(1.0)
    k = record.metric("circuit_size_k").value
    # k is chosen on the discovery examples, and the held-out curve is what is reported at it.
    assert all(float(r["faithfulness_discovery"]) < TARGET for r in curve[: k - 1])
    assert float(curve[k - 1]["faithfulness_discovery"]) >= TARGET
    assert curve[k - 1]["faithfulness_discovery"] == pytest.approx(record.metric("discovery_faithfulness_at_k").value)
    assert curve[k - 1]["faithfulness"] == pytest.approx(record.metric("heldout_faithfulness_at_k").value)
    for r in curve:
        assert float(r["ci_lower"]) <= float(r["faithfulness"]) <= float(r["ci_upper"])
        assert float(r["random_ci_lower"]) <= float(r["faithfulness_random"]) <= float(r["random_ci_upper"])
    # The random band at the circuit's k is the interval of the metric's random baseline.
    baseline = record.metric("heldout_faithfulness_at_k").baseline
    assert baseline is not None and baseline.ci is not None
    assert (curve[k - 1]["random_ci_lower"], curve[k - 1]["random_ci_upper"]) == pytest.approx(
        (baseline.ci.lower, baseline.ci.upper)
    )
    assert set(record.seeds) == {"task", "tokens", "split", "random_rankings", "bootstrap", "twin", "edge_rankings"}


def test_the_random_twin_shows_no_faithful_sparse_circuit(twin_record):
    assert twin_record.status == "ok", twin_record.error
    assert twin_record.metric("circuit_found").value == 0
    effect = twin_record.metric("task_effect")
    assert effect.ci is not None and effect.ci.upper < 0.5  # below min_task_effect: no task to explain
    # No k short of the whole model reaches the target.
    assert twin_record.metric("circuit_size_k").value == 8
    curve = table(twin_record, "faithfulness_curve")
    assert max(float(r["ci_upper"]) for r in curve) < TARGET


def test_the_twin_at_the_organisms_circuit_size_is_not_faithful(twin, record):
    k = record.metric("circuit_size_k").value
    result = run_task(Task("circuit.faithfulness", {"k": k, "twin_baseline": False}, 1, SPEC), twin)
    assert result.status == "ok", result.error
    faithful = result.metric("heldout_faithfulness_at_k")
    assert faithful.ci is not None and faithful.ci.upper < TARGET
    assert result.metric("circuit_found").value == 0


def test_the_same_task_gives_the_same_record_bytes(induction):
    params = {"n_examples": 16, "bootstrap_resamples": 200, "random_rankings": 2, "twin_baseline": False}
    a, b = (
        run_task(Task("circuit.faithfulness", params, 3, SPEC), induction).model_copy(update={"duration_s": None})
        for _ in range(2)
    )
    assert a.status == "ok", a.error
    assert canonical_bytes(a) == canonical_bytes(b)


def test_attribution_is_exact_where_the_model_is_linear_in_the_nodes():
    # One attention-only layer, no normalisation: the logits are linear in every head's output,
    # so the first-order estimate must equal the measured patching effect.
    model = tiny(
        {
            "d_model": 32,
            "d_head": 8,
            "n_heads": 4,
            "n_layers": 1,
            "n_ctx": 32,
            "d_vocab": 24,
            "attn_only": True,
            "normalization_type": None,
        }
    )
    params = {
        "metric": "logit_diff",
        "n_examples": 16,
        "seq_len": 6,
        "twin_baseline": False,
        "bootstrap_resamples": 200,
    }
    result = run_task(Task("circuit.faithfulness", params, 0, model.spec), model)
    assert result.status == "ok", result.error
    for r in table(result, "nodes"):
        assert float(r["attribution"]) == pytest.approx(float(r["patching_effect"]), rel=1e-4, abs=1e-7)
    assert result.metric("rank_agreement_spearman").value == pytest.approx(1.0)
    # No attention follows any node: the QK fix has nothing to recompute and gives the same scores.
    star = run_task(Task("circuit.faithfulness", {**params, "attribution": "atp*"}, 0, model.spec), model)
    assert star.status == "ok", star.error
    for r, s in zip(table(result, "nodes"), table(star, "nodes"), strict=True):
        assert float(s["attribution"]) == pytest.approx(float(r["attribution"]), rel=1e-9, abs=1e-12)


def test_mlps_are_nodes_and_large_models_are_verified_on_their_top_candidates():
    model = tiny(TWO_LAYERS_WITH_MLPS)
    params = {
        "n_examples": 8,
        "seq_len": 6,
        "max_patched_nodes": 3,
        "max_curve_points": 3,
        "ablation": "mean",
        "attribution": "atp",
        "twin_baseline": False,
        "bootstrap_resamples": 200,
    }
    result = run_task(Task("circuit.faithfulness", params, 0, model.spec), model)
    assert result.status == "ok", result.error
    nodes = table(result, "nodes")
    assert [r["node"] for r in nodes] == ["L0H0", "L0H1", "L0MLP", "L1H0", "L1H1", "L1MLP"]
    assert [r["kind"] for r in nodes].count("mlp") == 2 and nodes[2]["head"] is None
    verified = [r for r in nodes if r["patching_effect"] is not None]
    assert len(verified) == 3 == result.metric("n_verified_nodes").value
    # The verified nodes are the three with the largest |attribution|, and they lead the circuit ranking.
    top3 = sorted(nodes, key=lambda r: -abs(float(r["attribution"])))[:3]
    assert {r["node"] for r in verified} == {r["node"] for r in top3}
    assert {int(r["circuit_rank"]) for r in verified} == {1, 2, 3}
    assert [r["k"] for r in table(result, "faithfulness_curve")] == [1, 4, 6]


def test_a_circuit_larger_than_the_model_is_an_error_record(induction):
    result = run_task(Task("circuit.faithfulness", {"k": 9}, 0, SPEC), induction)
    assert result.status == "error" and result.error is not None
    assert "k=9 exceeds the model's 8 components" in result.error.message


def test_the_segment_fits_the_context_unless_set_explicitly():
    model = tiny(
        {
            "d_model": 16,
            "d_head": 4,
            "n_heads": 4,
            "n_layers": 1,
            "n_ctx": 20,
            "d_vocab": 24,
            "attn_only": True,
            "normalization_type": "LN",
        }
    )
    params = {"n_examples": 8, "twin_baseline": False, "bootstrap_resamples": 200}
    fitted = run_task(Task("circuit.faithfulness", params, 0, model.spec), model)
    assert fitted.status == "ok", fitted.error
    assert "segments of 10 tokens" in fitted.summary and "[4, 20]" in fitted.data[0].description
    too_long = run_task(Task("circuit.faithfulness", {**params, "seq_len": 11}, 0, model.spec), model)
    assert too_long.status == "error" and "22 tokens exceed the model's context of 20" in too_long.error.message


# -- edges ---------------------------------------------------------------------------------------


def edge_rows(record: EvidenceRecord) -> list[dict[str, object]]:
    return table(record, "edges")


def test_the_planted_edges_are_recovered(induction, record):
    # The planted mechanism, read from heads.inventory: the previous-token head reads the token
    # (its value input) and writes into the induction head's key (K-composition); the induction head
    # reads the token to copy through its value input and writes to the logits.
    inventory = run_task(Task("heads.inventory", {"random_ablation_draws": 1}, 0, SPEC), induction)
    prev = f"L0H{inventory.metric('prev_token_head_index').value}"
    induction = f"L1H{inventory.metric('induction_head_index').value}"
    rows = edge_rows(record)
    assert len(rows) == 81 == record.metric("n_edges").value  # 12 layer-0 q/k/v, 12 x 6 layer-1, 9 to the logits
    assert all(isinstance(r["patching_effect"], float) for r in rows)  # all verified
    circuit_edges = {f"{r['sender']}->{r['receiver']}" for r in rows if r["in_circuit"] == 1}
    for edge in (f"input->{prev}.v", f"{prev}->{induction}.k", f"{induction}->logits", f"input->{induction}.v"):
        assert edge in circuit_edges, edge
    # Between the two layers the circuit composes through keys, not queries or values.
    between = [r for r in rows if str(r["sender"]).startswith("L0") and str(r["receiver"]).startswith("L1H")]
    by_input = {
        c: sum(abs(float(r["patching_effect"])) for r in between if str(r["receiver"]).endswith(c))
        for c in (".q", ".k", ".v")
    }
    assert by_input[".k"] > 2 * by_input[".q"] and by_input[".k"] > 2 * by_input[".v"]
    strongest = max(between, key=lambda r: abs(float(r["patching_effect"])))
    assert strongest["sender"] == prev and str(strongest["receiver"]).endswith(".k")

    faithful = record.metric("edge_heldout_faithfulness_at_k")
    assert faithful.value >= TARGET and faithful.ci is not None and faithful.baseline is not None
    assert faithful.baseline.ci is not None and faithful.ci.lower > faithful.baseline.ci.upper
    k = record.metric("edge_circuit_size_k").value
    assert k == len(circuit_edges) <= 0.4 * 81
    assert record.metric("edge_circuit_found").value == 1
    cpr = record.metric("edge_heldout_cpr")
    assert cpr.ci is not None and cpr.baseline is not None and cpr.baseline.ci is not None
    assert cpr.ci.lower > cpr.baseline.ci.upper
    cmd = record.metric("edge_heldout_cmd")
    assert cmd.ci is not None and cmd.baseline is not None and cmd.baseline.ci is not None
    assert cmd.ci.upper < cmd.baseline.ci.lower
    rho = record.metric("edge_rank_agreement_spearman")
    scores = np.array([float(r["attribution"]) for r in rows])
    effects = np.array([float(r["patching_effect"]) for r in rows])
    assert rho.value == pytest.approx(float(spearman(scores, effects)[0])) and rho.ci is not None
    assert record.metric("edge_recompute_error").value < 1e-5
    assert record.metric("edges_scored").value == 1


def test_the_random_twin_has_no_edge_circuit(twin_record):
    assert twin_record.metric("edge_circuit_found").value == 0


def test_a_model_whose_edges_cannot_be_recomputed_keeps_its_node_results(induction, monkeypatch):
    def refuse(self: EdgeModel, tokens: torch.Tensor) -> float:
        raise MeasurementError("edge patching cannot reproduce this model's layer 1 k (relative error 0.5)")

    monkeypatch.setattr(EdgeModel, "check", refuse)
    params = {"n_examples": 16, "bootstrap_resamples": 200, "twin_baseline": False}
    result = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert result.status == "ok", result.error
    names = {m.name for m in result.metrics}
    assert "heldout_faithfulness_at_k" in names and not any(n.startswith("edge_") for n in names)
    flag = result.metric("edges_scored")
    assert flag.value == 0 and "cannot reproduce this model's layer 1 k" in (flag.description or "")
    assert "Edges were not scored: edge patching cannot reproduce" in result.summary
    assert [t.name for t in result.tables] == ["nodes", "faithfulness_curve"]


def test_too_many_edges_are_skipped_with_the_reason(induction):
    params = {"n_examples": 16, "bootstrap_resamples": 200, "twin_baseline": False, "max_edges": 80}
    result = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert result.status == "ok", result.error
    assert result.metric("edges_scored").value == 0
    assert "the model has 81 edges, more than max_edges = 80" in result.summary
    off = run_task(Task("circuit.faithfulness", {**params, "edges": False}, 0, SPEC), induction)
    assert off.metric("edges_scored").value == 0 and "Edges were not scored" not in off.summary



def test_edges_scored_a_group_of_receivers_at_a_time_give_the_same_record(induction, monkeypatch):
    # Below the budget every receiver's gradient is scored at once; above it, a group at a time.
    from evidence.measure.methods import edges

    params = {"n_examples": 16, "bootstrap_resamples": 200, "twin_baseline": False, "max_patched_edges": 16}
    whole = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    monkeypatch.setattr(edges, "SCORE_CHUNK_BYTES", 4096)
    chunked = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert whole.status == chunked.status == "ok" and whole.metric("edges_scored").value == 1
    before, after = table(whole, "edges"), table(chunked, "edges")
    assert [(r["sender"], r["receiver"]) for r in before] == [(r["sender"], r["receiver"]) for r in after]
    assert [r["attribution"] for r in after] == pytest.approx([r["attribution"] for r in before], rel=1e-9)
    for a, b in zip(whole.metrics, chunked.metrics, strict=True):
        assert a.name == b.name and a.value == pytest.approx(b.value, rel=1e-9, abs=1e-12), a.name


def test_edges_of_a_batch_too_large_for_the_senders_budget_are_scored_a_part_at_a_time(induction, monkeypatch):
    # Every sender's output on a whole batch must fit SENDER_BATCH_BYTES; with a budget of about three
    # rows, the batches are cut, and every score and metric is that of the whole batches.
    from evidence.measure.methods import edges

    params = {"n_examples": 16, "bootstrap_resamples": 200, "twin_baseline": False, "max_patched_edges": 16}
    whole = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    cuts: list[int] = []
    original = edges.EdgePatchingInputs._rows

    def counted(self):
        for part, clean, corrupted in original(self):
            cuts.append(clean.shape[0])
            yield part, clean, corrupted

    graph = edges.EdgeModel(induction)
    seq = 2 * 16 + 2  # more than any induction example's tokens here
    monkeypatch.setattr(edges, "SENDER_BATCH_BYTES", 3 * len(graph.senders) * graph.d_model * 4 * seq)
    monkeypatch.setattr(edges.EdgePatchingInputs, "_rows", counted)
    parts = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert cuts and max(cuts) <= 3 < params["n_examples"] // 2  # the batches were cut
    assert whole.status == parts.status == "ok" and whole.metric("edges_scored").value == 1
    before, after = table(whole, "edges"), table(parts, "edges")
    assert [(r["sender"], r["receiver"]) for r in before] == [(r["sender"], r["receiver"]) for r in after]
    assert [r["attribution"] for r in after] == pytest.approx([r["attribution"] for r in before], rel=1e-6)
    for a, b in zip(whole.metrics, parts.metrics, strict=True):
        assert a.name == b.name and a.value == pytest.approx(b.value, rel=1e-6, abs=1e-9), a.name


# -- the refusal task ----------------------------------------------------------------------------

#: Small budgets: 48 pairs (24 to choose the circuit on, 24 to score it on), fewer curve points and draws.
REFUSAL_FAST = {
    "tasks": ["refusal"],
    "refusal_max_pairs": 48,
    "bootstrap_resamples": 200,
    "random_rankings": 2,
    "max_edge_curve_points": 12,
    "ig_steps": 4,
    "twin_baseline": False,
}


def organism_inputs() -> tuple[dict[str, object], dict[str, tuple[str, ...]]]:
    """The organisms' refusal prompt sets and markers, as the default run spec gives them."""
    import evidence
    from evidence.runspec import load_runspec

    spec = load_runspec(Path(evidence.__file__).parent / "specs" / "default.toml")
    datasets = {name: spec.datasets[name] for name in ("refusal.harmful", "refusal.harmless")}
    return datasets, {k: tuple(v) for k, v in spec.markers.items()}


def refusal_record(model: LoadedModel, params: dict[str, object]) -> EvidenceRecord:
    datasets, markers = organism_inputs()
    record = run_task(Task("circuit.faithfulness", params, 0, model.spec, datasets, markers), model)  # type: ignore[arg-type]
    assert record.status == "ok", record.error
    return record


@pytest.mark.usefixtures("one_thread")
def test_the_refusal_task_finds_a_sparse_faithful_circuit_on_the_refuser(organism):
    record = refusal_record(organism("refuser"), REFUSAL_FAST)
    assert record.metric("refusal_task_run").value == 1
    assert record.metric("refusal_pairs").value == 48
    assert record.metric("refusal_pairs").description.endswith(
        "128 of 128 harmful/harmless twins kept (0 left out: the twins' token lengths differ); a seeded sample of 48 "
        "of the 128 used (refusal_max_pairs)"
    )
    behaviour = record.metric("refusal_behaviour_gap")
    assert behaviour.ci is not None and behaviour.ci.lower > 10  # it refuses harmful prompts, not their twins
    gain = record.metric("refusal_heldout_faithfulness_gain_over_random")
    assert gain.ci is not None and gain.ci.lower > 0.5
    assert record.metric("refusal_circuit_found").value == 1
    assert record.metric("refusal_edge_circuit_found").value == 1
    assert record.metric("refusal_circuit_size_fraction").value <= 0.5
    # Only the refusal task ran: nothing unprefixed but the model-level edge flag.
    names = {m.name for m in record.metrics}
    assert {n for n in names if not n.startswith("refusal_")} == {"edges_scored"}
    assert [t.name for t in record.tables] == ["refusal_nodes", "refusal_faithfulness_curve", "refusal_edges"]
    discovery, evaluation = (d for d in record.data if d.name.startswith("circuit.refusal_"))
    assert (discovery.count, evaluation.count) == (24, 24) and discovery.sha256 != evaluation.sha256
    assert record.metric("refusal_heldout_faithfulness_at_k").ci.n == 24
    assert {"refusal_pairs", "refusal_split", "refusal_bootstrap", "refusal_random_rankings"} <= set(record.seeds)
    opening = "Refusal task: Circuit chosen on 24 and scored on 24 other harmful prompts (against their harmless twins)"
    assert opening in record.summary
    # The planted mechanism starts in layer 0: the circuit's top component is there.
    assert record.metric("refusal_top_node_layer").value == 0


@pytest.mark.usefixtures("one_thread")
def test_a_model_that_does_not_refuse_gets_no_refusal_circuit_and_the_reason(organism):
    record = refusal_record(organism("refuser-control"), {**REFUSAL_FAST, "tasks": ["induction", "refusal"],
                                                          "n_examples": 8, "edges": False})  # fmt: skip
    flag = record.metric("refusal_task_run")
    assert flag.value == 0
    assert (flag.description or "").startswith("0: no circuit was sought: the model does not refuse")
    assert "Refusal task: no circuit was sought, because the model does not refuse" in record.summary
    refuses = record.metric("refusal_logodds_harmful")
    assert refuses.ci is not None and refuses.ci.upper < 0
    assert not any(m.name.startswith("refusal_") and "circuit" in m.name for m in record.metrics)
    assert not any(t.name.startswith("refusal_") for t in record.tables)
    assert record.metric("circuit_size_k").value >= 1  # the induction task ran as usual


@pytest.mark.usefixtures("one_thread")
def test_without_refusal_prompt_sets_no_refusal_task_is_posed(induction):
    params = {"n_examples": 8, "edges": False, "twin_baseline": False, "bootstrap_resamples": 200}
    record = run_task(Task("circuit.faithfulness", params, 0, SPEC), induction)
    assert record.status == "ok", record.error
    flag = record.metric("refusal_task_run")
    assert flag.value == 0
    assert "the run spec gives no refusal.harmful and no refusal.harmless prompt set" in (flag.description or "")
    assert not any(t.name.startswith("refusal_") for t in record.tables)


@pytest.mark.usefixtures("one_thread")
def test_mean_ablation_poses_no_refusal_task(organism):
    params = {**REFUSAL_FAST, "ablation": "mean", "attribution": "atp"}
    record = refusal_record(organism("refuser"), params)
    assert record.metric("refusal_task_run").value == 0
    assert "mean ablation averages each position" in (record.metric("refusal_task_run").description or "")


def test_tasks_are_named_once():
    with pytest.raises(ConfigError, match="tasks lists a task twice"):
        registered()["circuit.faithfulness"].validate_params({"tasks": ["refusal", "refusal"]})
    with pytest.raises(ConfigError):
        registered()["circuit.faithfulness"].validate_params({"tasks": []})
