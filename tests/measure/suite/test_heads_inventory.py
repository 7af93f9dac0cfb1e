"""heads.inventory on the ``induction`` organism (planted previous-token and induction heads) and its random-init twin.

Thresholds. An induction score is an attention weight averaged over the query
rows of the repeated half, each of which can see 25 to 48 keys; a head that
spreads its attention evenly scores about 1/36 = 0.03 there, and the random-init
twin's heads score 0.03 (previous-token: 0.07, because early rows see few keys).
A score of 0.2 is several times what uniform attention gives and a quarter of
what a working induction head gives, so the twin must stay below 0.2 and the
trained heads' interval must lie above 0.5.
"""

from __future__ import annotations

import pytest

from evidence.canonical import canonical_bytes
from evidence.measure import Task, run_task
from evidence.model import LoadedModel, ModelSpec, random_twin
from evidence.records import EvidenceRecord

SPEC = ModelSpec(organism="induction")
UNIFORM_CEILING = 0.2
HEAD_FLOOR = 0.5


@pytest.fixture(scope="module")
def induction(organism) -> LoadedModel:
    return organism("induction")


@pytest.fixture(scope="module")
def record(induction) -> EvidenceRecord:
    return run_task(Task("heads.inventory", {}, 0, SPEC), induction)


@pytest.fixture(scope="module")
def twin_record(induction) -> EvidenceRecord:
    twin = random_twin(induction, 12345)
    return run_task(Task("heads.inventory", {}, 0, SPEC), twin)


def test_heads_inventory_finds_the_planted_circuit(record):
    assert record.status == "ok", record.error
    assert record.record_id == "heads.inventory:induction"
    assert record.metric("induction_head_layer").value == 1
    assert record.metric("prev_token_head_layer").value == 0
    for name in ("induction_score_max", "prev_token_score_max"):
        metric = record.metric(name)
        assert metric.ci is not None and metric.baseline is not None and metric.baseline.ci is not None
        assert metric.ci.method == "percentile bootstrap" and metric.ci.n == 64
        assert metric.ci.lower > HEAD_FLOOR, name
        assert metric.baseline.ci.upper < UNIFORM_CEILING, name
        assert metric.ci.lower > 3 * metric.baseline.ci.upper, name


def test_the_record_is_complete(record):
    assert record.measurement.params == {
        "n_sequences": 64,
        "seq_len": 24,
        "batch_size": 16,
        "bootstrap_resamples": 1000,
        "ci_level": 0.95,
        "top_k": 1,
        "random_ablation_draws": 4,
    }
    assert set(record.seeds) == {"task", "tokens", "twin", "bootstrap", "random_heads"}
    assert [t.name for t in record.tables] == ["head_scores", "twin_head_scores"]
    table = record.tables[0]
    assert table.columns == ["layer", "head", "prev_token", "duplicate_token", "induction"]
    assert len(table.rows) == 8
    assert record.data[0].count == 64 and len(record.data[0].sha256) == 64
    assert record.metric("induction_head_index").unit == "head index"
    assert "L1H" in record.summary


def test_ablating_the_top_induction_head_raises_the_repeat_loss(record):
    clean = record.metric("repeat_loss_clean")
    ablated = record.metric("repeat_loss_ablated")
    increase = record.metric("repeat_loss_increase")
    assert clean.value < 0.25  # the organism predicts repeated tokens almost perfectly
    assert ablated.value > 1.5 * clean.value
    assert increase.ci is not None and increase.ci.lower > 0.05
    assert increase.baseline is not None and increase.value > increase.baseline.value


def test_the_random_twin_shows_no_circuit(record, twin_record):
    assert twin_record.status == "ok", twin_record.error
    trained = record.metric("induction_score_max")
    twin = twin_record.metric("induction_score_max")
    assert twin.ci.upper < UNIFORM_CEILING
    assert twin.ci.upper < trained.ci.lower / 3
    assert twin_record.metric("prev_token_score_max").ci.upper < UNIFORM_CEILING
    assert twin_record.metric("repeat_loss_clean").value > 4.0  # about ln(128) = 4.85


def test_the_same_task_gives_the_same_record_bytes(induction):
    params = {"n_sequences": 16, "bootstrap_resamples": 200, "random_ablation_draws": 2}
    a, b = (
        run_task(Task("heads.inventory", params, 3, SPEC), induction).model_copy(update={"duration_s": None})
        for _ in range(2)
    )
    assert a.status == "ok"
    assert canonical_bytes(a) == canonical_bytes(b)
