"""calibration.organisms: planted behaviour detected, controls clean, failures visible."""

from __future__ import annotations

import pytest

from evidence.measure import Task, run_task
from evidence.measure.suite import calibration_organisms as cal
from evidence.model import ModelSpec, load_model

FAST = {"measurements": ["heads.inventory"], "params": {"heads.inventory": {"n_sequences": 16}}}


@pytest.fixture(scope="module")
def induction():
    return load_model(ModelSpec(organism="induction"))


def calibrate(model, params=FAST):
    task = Task(measurement_id="calibration.organisms", params=params, seed=0, subject=model.spec)
    return run_task(task, model)


def test_planted_induction_detected_and_untrained_twin_clean(induction):
    record = calibrate(induction)
    assert record.status == "ok", record.error
    by_organism = {c.organism: c for c in record.checks}
    planted, control = by_organism["induction"], by_organism["induction#untrained"]
    assert planted.planted and planted.passed and planted.ci.lower >= 0.5
    assert not control.planted and control.passed and control.ci.upper < 0.2
    assert record.metric("all_checks_passed").value == 1
    assert record.measurement.params["measurements"] == ["heads.inventory"]


def test_a_check_that_cannot_run_fails_visibly(induction, monkeypatch):
    broken = cal.Check("heads.inventory", "no-such-organism", True, "induction_score_max",
                       "95% CI lower bound >= 0.5", lambda m: True)
    monkeypatch.setattr(cal, "CHECKS", (*cal.CHECKS, broken))
    record = calibrate(induction)
    row = next(c for c in record.checks if c.organism == "no-such-organism")
    assert not row.passed and row.value is None and "not evaluated" in row.criterion
    assert record.metric("all_checks_passed").value == 0
    assert "no-such-organism" in record.summary


def test_a_control_that_looks_planted_is_a_false_alarm(induction, monkeypatch):
    # Claim the trained organism is a control: its strong induction head must fail the check.
    wrong = cal.Check("heads.inventory", "induction", False, "induction_score_max",
                      "95% CI upper bound < 0.2", lambda m: m.ci.upper < 0.2)
    monkeypatch.setattr(cal, "CHECKS", (wrong,))
    record = calibrate(induction)
    (row,) = record.checks
    assert not row.passed and row.value > 0.5
