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

import numpy as np
import pytest
import torch

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
    assert record.measurement.version == "2.1.0"
    assert record.measurement.params == {
        "n_sequences": 128,
        "seq_len": 24,
        "batch_size": 16,
        "bootstrap_resamples": 1000,
        "ci_level": 0.95,
        "top_k": 1,
        "score_threshold": 0.2,
        "random_ablation_draws": 32,
    }
    assert set(record.seeds) == {"task", "tokens", "twin", "split", "bootstrap", "random_heads"}
    assert [t.name for t in record.tables] == ["head_scores", "head_scores_discovery", "twin_head_scores"]
    table = record.tables[0]
    assert table.columns == ["layer", "head", "prev_token", "duplicate_token", "induction"]
    assert len(table.rows) == 8
    assert record.metric("induction_head_index").unit == "head index"
    assert "L1H" in record.summary


def test_heads_are_chosen_on_one_split_and_reported_on_another(record):
    discovery, evaluation = record.data
    assert (discovery.name, evaluation.name) == ("heads.discovery_tokens", "heads.evaluation_tokens")
    assert discovery.count == evaluation.count == 64
    assert len(discovery.sha256) == 64 and discovery.sha256 != evaluation.sha256
    assert record.metric("induction_score_max").ci.n == 64  # the evaluation half only
    assert record.metric("repeat_loss_increase_vs_random").ci.n == 64


def test_the_split_halves_share_no_sequence(induction):
    from evidence.measure.suite.heads_inventory import _repeated_tokens, _split

    tokens, _ = _repeated_tokens(induction, 128, 24, np.random.default_rng(0))
    discovery, evaluation = _split(tokens, np.random.default_rng(1))
    assert discovery.shape[0] + evaluation.shape[0] == 128
    assert not {r.tobytes() for r in discovery} & {r.tobytes() for r in evaluation}


def test_the_causal_check_is_a_paired_difference_against_random_heads_with_an_interval(record):
    increase = record.metric("repeat_loss_increase")
    difference = record.metric("repeat_loss_increase_vs_random")
    assert increase.baseline is not None and increase.baseline.ci is not None
    assert difference.ci is not None and difference.ci.method == "percentile bootstrap"
    assert difference.value == pytest.approx(increase.value - increase.baseline.value)
    # One induction head of four: more harmful than the average other head, but not than every one.
    assert difference.ci.lower > 0
    assert 0 < record.metric("random_sets_as_harmful").value < 0.5
    assert record.metric("random_increase_spread").value > 0
    assert "7 random sets" in record.summary  # every other single head: the baseline is exact


def test_every_head_above_the_threshold_is_ablated_together(record):
    assert record.metric("n_heads_above_threshold").value == 4  # the four planted layer-1 heads
    assert "L1H0, L1H1, L1H2, L1H3" in record.metric("n_heads_above_threshold").description
    joint = record.metric("joint_repeat_loss_increase")
    difference = record.metric("joint_repeat_loss_increase_vs_random")
    assert joint.value > 10 * record.metric("repeat_loss_increase").value  # the heads back each other up
    assert difference.ci.lower > 1.0  # nats
    assert record.metric("joint_random_sets_as_harmful").value == 0
    assert "32 random sets" in record.summary  # 32 of the 69 other sets of four of the eight heads


def test_heads_are_mean_ablated_not_zeroed(induction):
    from evidence.measure.suite.heads_inventory import _head_means, _Layout, _repeat_loss, _repeated_tokens

    tokens, offset = _repeated_tokens(induction, 16, 24, np.random.default_rng(0))
    layout = _Layout(offset, 24)
    means = _head_means(induction, tokens, 16)
    zero = {layer: torch.zeros_like(mean) for layer, mean in means.items()}
    heads = [(0, 0), (0, 1), (0, 2), (0, 3)]
    with_means = _repeat_loss(induction, tokens, layout, 16, heads, means)
    with_zeros = _repeat_loss(induction, tokens, layout, 16, heads, zero)
    assert np.abs(with_means - with_zeros).max() > 1e-3  # the replacement value matters, and it is the mean


def test_the_random_twin_shows_no_circuit(record, twin_record):
    assert twin_record.status == "ok", twin_record.error
    trained = record.metric("induction_score_max")
    twin = twin_record.metric("induction_score_max")
    assert twin.ci.upper < UNIFORM_CEILING
    assert twin.ci.upper < trained.ci.lower / 3
    assert twin_record.metric("prev_token_score_max").ci.upper < UNIFORM_CEILING
    assert twin_record.metric("repeat_loss_clean").value > 4.0  # about ln(128) = 4.85
    assert twin_record.metric("n_heads_above_threshold").value == 0
    assert "joint_repeat_loss_increase_vs_random" not in {m.name for m in twin_record.metrics}
    difference = twin_record.metric("repeat_loss_increase_vs_random").ci
    assert difference.lower < 0 < difference.upper  # no head of an untrained model is special
    for metric in twin_record.metrics:  # no interval of zero width, each containing its estimate
        pairs = [(metric.value, metric.ci)] + ([(metric.baseline.value, metric.baseline.ci)] if metric.baseline else [])
        for value, ci in pairs:
            if ci is not None:
                assert ci.lower <= value <= ci.upper and ci.upper > ci.lower, metric.name


def test_a_score_the_same_on_every_sequence_gets_an_exact_interval_not_a_zero_width_one():
    from evidence.measure.suite.heads_inventory import HeadsInventoryParams, _score_metrics

    # a perfect previous-token head (score 1 on every sequence) beside a twin whose best head scores 0 everywhere
    scores = np.full((64, 2, 4, 3), 0.5)
    scores[:, 0, 1, 0] = 1.0
    twin = np.full((64, 2, 4, 3), 0.5)
    twin[:, :, :, 0] = 0.0
    metrics, best = _score_metrics((scores, scores), (twin, twin), HeadsInventoryParams(), np.random.default_rng(0), 1)
    t = 0.025 ** (1 / 64)
    by_name = {m.name: m for m in metrics}
    prev = by_name["prev_token_score_max"]
    assert prev.value == 1.0 and prev.ci.method == "exact, constant sample of a bounded variable"
    assert prev.ci.lower == pytest.approx(t) and prev.ci.upper == 1.0
    assert prev.baseline.value == 0.0 and prev.baseline.ci.lower == 0.0
    assert prev.baseline.ci.upper == pytest.approx(1 - t)
    induction = by_name["induction_score_max"]  # 0.5 everywhere: inside, and still never of zero width
    assert induction.ci.lower < 0.5 < induction.ci.upper
    assert (best["prev_token"].layer, best["prev_token"].head) == (0, 1)


def test_an_ablation_that_changes_no_sequence_is_reported_without_an_interval():
    from evidence.measure.suite.heads_inventory import HeadsInventoryParams, _Ablation, _ablation_metrics

    check = _Ablation(
        heads=[(1, 0)],
        ablated=np.full(16, 2.0),
        increase=np.zeros(16),
        random_sets=[[(0, 0)], [(0, 1)]],
        random_increase=np.zeros((2, 16)),
    )
    metrics, sentence = _ablation_metrics(check, HeadsInventoryParams(), np.random.default_rng(0), "")
    by_name = {m.name: m for m in metrics}
    for name in ("repeat_loss_ablated", "repeat_loss_increase", "repeat_loss_increase_vs_random"):
        assert by_name[name].ci is None and "no interval" in by_name[name].description, name
    assert by_name["repeat_loss_increase"].baseline.ci is None
    assert "the same on every sequence" in sentence


def test_the_same_task_gives_the_same_record_bytes(induction):
    params = {"n_sequences": 16, "bootstrap_resamples": 200, "random_ablation_draws": 4}
    a, b = (
        run_task(Task("heads.inventory", params, 3, SPEC), induction).model_copy(update={"duration_s": None})
        for _ in range(2)
    )
    assert a.status == "ok"
    assert canonical_bytes(a) == canonical_bytes(b)
