"""refusal.stability on the refusing organism and its never-refusing control.

The direction it examines is the one ``refusal.direction`` selects: the two
measurements share the search (computed once per run through the context's
shared results), which the first test checks on a run of both.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from evidence.measure.stats import percentile_interval
from tests.measure.suite.test_refusal_direction import metric, run_measurement, table


@pytest.fixture(scope="module")
def refuser_pair(organism):
    """refusal.direction then refusal.stability on ``refuser``, in one run (shared results), and the sharing."""
    from evidence.measure import SharedResults

    shared = SharedResults()
    direction = run_measurement("refusal.direction", organism("refuser"), shared=shared)
    stability = run_measurement("refusal.stability", organism("refuser"), shared=shared)
    return direction, stability, shared


@pytest.fixture(scope="module")
def stability_record(organism, refuser_pair):
    """``stability_record(name)``: refusal.stability with default parameters, run once per organism."""

    @functools.cache
    def record(name: str):
        if name == "refuser":
            return refuser_pair[1]
        return run_measurement("refusal.stability", organism(name))

    return record


def test_the_direction_search_is_computed_once_for_both_measurements(refuser_pair):
    direction, stability, shared = refuser_pair
    assert len(shared) == 1 and shared.hits == 1
    # the reused search records the seeds it derived in both records
    for label in ("split:refusal.harmful", "split:refusal.harmless"):
        assert direction.seeds[label] == stability.seeds[label]


def test_refuser_direction_is_stable_and_the_suffix_attack_is_measured(refuser_pair, stability_record):
    direction = refuser_pair[0]
    record = stability_record("refuser")
    assert metric(record, "selected_layer").value == metric(direction, "selected_layer").value
    cos = metric(record, "bootstrap_cosine")
    assert cos.value > 0.9 and cos.baseline is not None and abs(cos.baseline.value) < 0.2
    assert metric(record, "template_cosine").value > 0.8
    assert metric(record, "template_refusal_rate").value > 0.9  # the rewording keeps the task
    assert 0.0 <= metric(record, "layer_agreement").value <= 1.0
    success = metric(record, "attack_success_rate")
    assert success.ci is not None and success.ci.n >= 8
    assert success.baseline is not None and success.value >= success.baseline.value
    assert metric(record, "attack_budget_evaluations").value == (
        metric(record, "attack_steps_used").value * record.measurement.params["n_candidates"]
    )
    curve = table(record, "attack_budget_curve")
    assert curve[0]["step"] == 0 and curve[-1]["step"] == metric(record, "attack_steps_used").value
    assert "projection_suppression" in {m.name for m in record.metrics}
    for key in ("resamples", "templates", "attack", "random_directions", "bootstrap"):
        assert key in record.seeds


def test_control_has_nothing_to_attack_and_says_so(stability_record):
    record = stability_record("refuser-control")
    names = {m.name for m in record.metrics}
    assert "attack_success_rate" not in names
    assert "nothing to attack" in record.summary
    assert "bootstrap_cosine" in names


def test_template_part_is_skipped_with_a_reason_when_rewording_is_off(organism):
    record = run_measurement(
        "refusal.stability",
        organism("refuser"),
        n_template_variants=0,
        n_resamples=2,
        attack_steps=1,
        attack_prompts=2,
        positions=[-2],
    )
    assert "template_cosine" not in {m.name for m in record.metrics}
    assert "Template stability was not measured" in record.summary


def test_the_cosine_intervals_always_contain_their_point():
    # bootstrap_cosine and template_cosine: few resamples, so the percentile range may miss the mean
    values = np.array([0.5] * 7 + [0.99])
    ci = percentile_interval(float(values.mean()), values, level=0.95, n=10, method="m")
    assert ci.lower <= values.mean() <= ci.upper
    assert ci.resamples == 8
