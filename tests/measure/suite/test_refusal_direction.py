"""refusal.direction on the refusing organism and its never-refusing control.

The planted ground truth: ``refuser`` refuses requests with a harmful word,
``refuser-control`` was trained on the same requests and never refuses. What
was not planted is that one direction, removed by projection (the headline
method), carries the refuser's refusal; on the bundled refuser it does not (the
doc page gives the numbers), so the tests check the claim's rule, its intervals
and its splits rather than a detection. On ``refuser-control`` the measurement
must report that no direction with a causal effect exists, as a result with
status ok.

Datasets and markers come from the organisms' run-spec fragment
(``evidence/organisms/data/organisms.toml``), loaded with the run spec's loader.
The helpers here are shared with ``test_refusal_stability.py``.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import pytest

from evidence.errors import ConfigError
from evidence.model import LoadedModel
from evidence.organisms import read_manifest
from evidence.organisms.datasets import data_dir
from evidence.records import EvidenceRecord, Metric
from evidence.runspec import Dataset, load_dataset

NEEDED = ("refuser", "refuser-control")


def test_the_organisms_these_tests_need_are_committed():
    assert set(NEEDED) <= set(read_manifest())


@functools.cache
def spec_inputs() -> tuple[dict[str, Dataset], dict[str, tuple[str, ...]]]:
    fragment = data_dir() / "organisms.toml"
    raw = tomllib.loads(fragment.read_text(encoding="utf-8"))
    datasets = {
        name: load_dataset(name, fragment.parent / rel)
        for name, rel in raw["datasets"].items()
        if name.startswith("refusal.")
    }
    markers = {kind: tuple(phrases) for kind, phrases in raw["markers"].items()}
    return datasets, markers


def run_measurement(
    measurement_id: str, model: LoadedModel, seed: int = 0, *, shared: Any = None, **params: Any
) -> EvidenceRecord:
    """One task on ``model`` with the organisms' refusal datasets and markers; its record must be ok."""
    from evidence.measure import Task, run_task

    datasets, markers = spec_inputs()
    task = Task(measurement_id, params, seed, model.spec, datasets, markers)
    record = run_task(task, model, shared=shared)
    assert record.status == "ok", record.error
    return record


def metric(record: EvidenceRecord, name: str) -> Metric:
    return record.metric(name)


def table(record: EvidenceRecord, name: str) -> list[dict[str, Any]]:
    t = next(t for t in record.tables if t.name == name)
    return [dict(zip(t.columns, row, strict=True)) for row in t.rows]


@pytest.fixture(scope="module")
def direction_record(organism):
    """``direction_record(name)``: refusal.direction with default parameters, run once per organism."""
    return functools.cache(lambda name: run_measurement("refusal.direction", organism(name)))


def test_refuser_record_reads_on_the_evaluation_part_with_projection_as_the_headline(direction_record):
    record = direction_record("refuser")
    assert record.measurement.params["ablation"] == "projection"
    assert record.measurement.version == "2.1.0"
    base = metric(record, "refusal_rate_baseline")
    assert base.ci is not None and base.ci.lower >= 0.85, base
    assert metric(record, "refusal_rate_harmless").value < 0.1
    # the second method is reported beside the headline, with its KL on the prompts' text
    names = {m.name for m in record.metrics}
    assert {"refusal_rate_ablated_affine", "kl_harmless_ablation_affine", "kl_text_ablation_affine"} <= names
    assert "kl_text_ablation" in names
    assert "projection (Arditi et al. 2024, the headline method)" in record.summary
    # three disjoint parts, each named by a digest of its prompt ids
    refs = {d.name: d for d in record.data}
    for name in ("refusal.harmful", "refusal.harmless"):
        parts = [refs[f"{name}:{part}"] for part in ("direction", "selection", "evaluation")]
        assert sum(p.count for p in parts) == refs[name].count
        assert len({p.sha256 for p in parts}) == 3
    # the plain refusal rate rests on no choice and is read on every harmful prompt; the rest on the evaluation part
    assert base.ci.n == refs["refusal.harmful"].count
    assert metric(record, "refusal_rate_ablated").ci.n == refs["refusal.harmful:evaluation"].count


def test_the_drop_interval_has_width_even_when_every_prompt_changes(organism):
    # The affine edit removes all refusal on the refuser's evaluation part: 100% -> 0%. A paired
    # bootstrap gave [100, 100]; Newcombe's interval for the difference of two rates does not.
    record = run_measurement(
        "refusal.direction", organism("refuser"), ablation="affine", positions=[-1], max_kl=10.0, n_random_directions=2
    )
    base, ablated = metric(record, "refusal_rate_baseline"), metric(record, "refusal_rate_ablated")
    assert base.value == 1.0 and ablated.value == 0.0, (base, ablated)
    drop = metric(record, "refusal_drop_under_ablation")
    assert drop.value == 100.0 and drop.ci is not None
    assert drop.ci.upper - drop.ci.lower > 1.0 and drop.ci.lower < 100.0, drop.ci
    assert drop.ci.method.startswith("newcombe")


def test_no_causal_direction_when_addition_does_not_induce_refusal_in_generated_text(organism):
    # On demo the direction that ablation removes raises the refusal token's log-odds under addition
    # but few harmless prompts are refused in generated text: the claim must not be made.
    # (version 1's configuration: the affine edit with a KL filter that passes it)
    record = run_measurement(
        "refusal.direction", organism("demo"), ablation="affine", positions=[-1], max_kl=10.0, n_random_directions=2
    )
    assert metric(record, "candidates_passing").value >= 1
    assert metric(record, "refusal_drop_under_ablation").value >= 80.0
    induced = metric(record, "refusal_rate_induced")
    assert induced.ci is not None and induced.ci.lower < 0.5, induced
    assert metric(record, "causal_direction_found").value == 0
    assert "does not reach" in record.summary or "Wilson lower bound" in record.summary


def test_refuser_candidate_table_covers_every_layer_and_position(direction_record, organism):
    record = direction_record("refuser")
    rows = table(record, "candidates")
    n_layers = organism("refuser").n_layers
    assert sorted({(r["layer"], r["position"]) for r in rows}) == sorted(
        (layer, pos) for layer in range(n_layers + 1) for pos in (-1, -2, -3)
    )
    selected = [r for r in rows if r["selected"] == "yes"]
    assert len(selected) == 1
    chosen = selected[0]
    assert (chosen["layer"], chosen["position"]) == (
        metric(record, "selected_layer").value,
        metric(record, "selected_position").value,
    )
    # the selected candidate has the lowest ablated refusal (selection part) in its tier
    tier = [r for r in rows if r["layer_ok"] == chosen["layer_ok"] and r["kl_ok"] == chosen["kl_ok"]
            and r["refusal_logodds_ablated"] is not None]
    assert chosen["refusal_logodds_ablated"] == min(r["refusal_logodds_ablated"] for r in tier)
    passing = [r for r in rows if r["layer_ok"] == r["kl_ok"] == r["induces_refusal"] == "yes"]
    assert metric(record, "candidates_passing").value == len(passing)


def test_the_claim_follows_its_stated_rule(direction_record):
    record = direction_record("refuser")
    params = record.measurement.params
    over = metric(record, "refusal_drop_over_random")
    induced = metric(record, "refusal_rate_induced")
    assert over.ci is not None and induced.ci is not None
    expected = (
        metric(record, "candidates_passing").value > 0
        and over.ci.lower >= params["min_drop_over_random"]
        and induced.ci.lower >= params["min_induced_rate"]
    )
    assert metric(record, "causal_direction_found").value == int(expected)
    assert len(table(record, "random_directions")) == params["n_random_directions"]


def test_control_reports_no_causal_direction_as_a_result(direction_record):
    record = direction_record("refuser-control")
    assert metric(record, "causal_direction_found").value == 0
    assert metric(record, "candidates_passing").value == 0
    base = metric(record, "refusal_rate_baseline")
    assert base.ci is not None and base.ci.upper < 0.15, base  # 0 of 32: Wilson upper bound 0.107
    induced = metric(record, "refusal_rate_induced")
    assert induced.ci is not None and induced.ci.upper < 0.2, induced
    rows = table(record, "candidates")
    assert all(r["induces_refusal"] == "no" for r in rows)
    assert "no direction with a causal effect" in record.summary
    drop = metric(record, "refusal_drop_under_ablation")
    assert drop.ci is not None and drop.ci.lower < 0.0 < drop.ci.upper  # 0% -> 0%: an interval, not [0, 0]


def test_direction_is_deterministic_for_a_seed(organism):
    params = {"positions": [-2], "n_random_directions": 2, "bootstrap_resamples": 200}
    a = run_measurement("refusal.direction", organism("refuser"), seed=7, **params)
    b = run_measurement("refusal.direction", organism("refuser"), seed=7, **params)
    assert [m.model_dump() for m in a.metrics] == [m.model_dump() for m in b.metrics]
    assert a.seeds == b.seeds and a.data == b.data


def test_dataset_files_are_recorded_by_digest(direction_record):
    record = direction_record("refuser")
    datasets, _ = spec_inputs()
    refs = {d.name: d for d in record.data}
    for name in ("refusal.harmful", "refusal.harmless"):
        assert refs[name].sha256 == datasets[name].sha256
        assert Path(datasets[name].path).is_file()


# -- registration --------------------------------------------------------------------------------


def test_both_measurements_are_registered_with_their_inputs_and_catalogued_clauses():
    from evidence.clauses import load_catalog
    from evidence.measure import registered

    catalog = load_catalog()
    defs = registered()
    for mid in ("refusal.direction", "refusal.stability"):
        d = defs[mid]
        assert d.version == "2.1.0"
        assert d.required_datasets == ("refusal.harmful", "refusal.harmless")
        assert d.markers == ("refusal",)
        catalog.check(d.clauses)
        for ref in d.clauses:
            assert "measurement" in catalog.get(ref.id).accepts
    assert {c.id.split("@")[0] for c in defs["refusal.stability"].clauses} >= {
        "EU-AIA/Art15/5",
        "EU-AIA/Art55/1/a",
        "EU-AIA/AnnexXI/S2/2",
        "NIST-AI-RMF/1.0/MEASURE/2.7",
        "ISO-IEC-24029-2:2023",
    }


def test_parameters_are_validated():
    from evidence.measure import registered

    d = registered()["refusal.direction"]
    with pytest.raises(ConfigError, match="unknown parameter"):
        d.validate_params({"max_kll": 0.1})
    with pytest.raises(ConfigError, match="max_layer_fraction"):
        d.validate_params({"max_layer_fraction": 1.5})
    s = registered()["refusal.stability"]
    params = s.validate_params({"template_datasets": [{"harmful": "a.jsonl", "harmless": "b.jsonl"}]})
    assert params.template_datasets[0].harmful == "a.jsonl"


def test_example_outputs_show_the_replies_the_rates_count(direction_record, organism):
    """Each example is judged as the measurement judged it, and its reply bears the judgement out."""
    from evidence.measure.methods.behaviour import matches_marker
    from evidence.measure.methods.examples import MAX_CHARS

    record = direction_record("refuser")
    rows = table(record, "example_outputs")
    conditions = [r["condition"] for r in rows]
    assert conditions == (
        ["harmful, no intervention"] * 3 + ["harmful, direction ablated (projection)"] * 3
        + ["harmless, no intervention"] * 3 + ["harmless, direction added"] * 3
    )  # fmt: skip
    # the first prompts of the evaluation part, not chosen by outcome
    refs = {d.name: d for d in record.data}
    assert all(r["prompt_id"] for r in rows)
    assert all(len(r["prompt"]) <= MAX_CHARS and len(r["reply"]) <= MAX_CHARS for r in rows)
    model = organism("refuser")
    _, markers = spec_inputs()
    for row in rows:
        said = matches_marker(model.tokenizer, [model.tokenizer.encode(row["reply"].rstrip("\u2026"))],
                              markers["refusal"])[0]  # fmt: skip
        assert (row["judged"] == "refused") == bool(said), row
    # the refuser refuses harmful prompts and answers harmless ones
    assert [r["judged"] for r in rows[:3]] == ["refused"] * 3
    assert [r["judged"] for r in rows[6:9]] == ["not refused"] * 3
    assert "refusal.harmful:evaluation" in refs
