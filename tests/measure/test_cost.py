"""Time estimates: declared passes times a timed forward pass, checked against the time a measurement takes."""

from __future__ import annotations

import time

import pytest

from evidence.measure import Task, get, run_task
from evidence.measure.cost import (
    REPLY_TOKENS,
    ForwardTiming,
    Passes,
    Workload,
    estimate_seconds,
    format_seconds,
    time_forward,
)
from evidence.model import ModelSpec


def test_passes_add_up_and_batch():
    assert Passes.batched(10, 7, 4) == Passes(calls=3, tokens=70)
    assert Passes.batched(10, 7, 4, times=2) + Passes(1, 5, 2, 9) == Passes(
        calls=7, tokens=145, backward_calls=2, backward_tokens=9
    )
    assert Passes.batched(0, 7, 4) == Passes(calls=0, tokens=0)


def test_a_backward_pass_counts_as_two_forward_passes():
    timing = ForwardTiming(per_call=0.5, per_token=0.01)
    assert timing.seconds(Passes(calls=2, tokens=100)) == pytest.approx(2.0)
    assert timing.seconds(Passes(calls=0, tokens=0, backward_calls=1, backward_tokens=10)) == pytest.approx(1.2)


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "1 s"), (42.4, "42 s"), (600, "10 min"), (9000, "2.5 h")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_measurement_without_a_declared_cost_has_no_estimate(temporary_measurement):
    temporary_measurement("cost.undeclared", lambda model, params, ctx: None)
    definition = get("cost.undeclared")
    assert definition.cost is None
    assert estimate_seconds(definition, definition.params_for({}), Workload(), ForwardTiming(0.01, 1e-5)) is None


def test_a_measurement_that_never_runs_the_subject_is_timed_on_an_organism(monkeypatch):
    """calibration.organisms counts passes on the organisms: the subject's timing does not scale them."""
    from evidence.measure import cost

    monkeypatch.setattr(cost, "organism_timing", lambda: ForwardTiming(per_call=1.0, per_token=0.0))
    definition = get("calibration.organisms")
    params = definition.params_for({"measurements": ["model.batch_invariance"], "spot_check": 0})
    passes = definition.cost(params, Workload())
    slow_subject = ForwardTiming(per_call=1000.0, per_token=1.0)
    assert passes.calls > 0
    assert estimate_seconds(definition, params, Workload(), slow_subject) == pytest.approx(passes.calls)


def test_a_workload_batches_as_the_model_does():
    lengths = {"set": ((3, "a"), (3, "b"), (5, "a"), (7, "a"))}
    by_length = Workload(prompts=lengths)
    assert by_length.batches(by_length.lengths("set"), 2) == [(2, 3), (1, 5), (1, 7)]
    assert by_length.read(by_length.lengths("set", "a"), 8) == Passes(calls=3, tokens=15)
    padded = Workload(prompts=lengths, padded=True)
    assert padded.read(padded.lengths("set"), 8) == Passes(calls=1, tokens=28)
    assert padded.read(padded.lengths("set"), 8, equal=True) == Passes(calls=3, tokens=18)
    assert padded.sample("set", 2) == [3, 7]  # spread over the lengths, shortest first
    # a judged reply is counted at REPLY_TOKENS tokens at most; an unjudged one at its budget
    assert padded.generate([4, 4], 32, 8) == Passes(calls=REPLY_TOKENS, tokens=2 * (4 + REPLY_TOKENS - 1))
    assert padded.generate([4, 4], 32, 8, judged=False) == Passes(calls=32, tokens=2 * (4 + 31))


@pytest.mark.parametrize(
    ("measurement_id", "params"),
    [
        ("heads.inventory", {"n_sequences": 32, "bootstrap_resamples": 200, "random_ablation_draws": 8}),
        ("model.batch_invariance", {"prompts": "random", "bootstrap_resamples": 200}),
    ],
)
def test_the_estimate_is_within_five_times_the_measured_time_on_demo(organism, one_thread, measurement_id, params):
    model = organism("demo")
    timing = time_forward(model)
    assert timing.per_call > 0 or timing.per_token > 0
    definition = get(measurement_id)
    estimate = estimate_seconds(definition, definition.params_for(params), Workload.of(model, {}), timing)
    assert estimate is not None and estimate > 0

    start = time.perf_counter()
    record = run_task(Task(measurement_id, params, 0, ModelSpec(organism="demo")), model)
    measured = time.perf_counter() - start
    assert record.status == "ok", record.error
    assert measured / 5 <= estimate <= measured * 5, (estimate, measured)


def test_a_cost_that_cannot_count_the_prompt_sets_gives_no_estimate_instead_of_stopping(temporary_measurement):
    def needs_a_set(params, work):
        return Passes(calls=1, tokens=max(work.lengths("refusal.harmful")))  # an empty set: max() of nothing

    temporary_measurement("cost.uncountable", lambda model, params, ctx: None, cost=needs_a_set)
    definition = get("cost.uncountable")
    assert estimate_seconds(definition, definition.params_for({}), Workload(), ForwardTiming(0.01, 1e-5)) is None
