from datetime import UTC, datetime

import pytest

from evidence.errors import ConfigError
from evidence.policy import evaluate, judge, load_policy, roll_up
from evidence.records import ConfidenceInterval, Metric, Threshold
from tests.factories import make_record

POLICY = """
name = "test policy"
version = "1"
set_by = "Risk board"
set_at = 2026-01-01T00:00:00Z

[[threshold]]
id = "induction-present"
measurement = "heads.inventory"
metric = "induction_score_max"
comparator = ">="
threshold = 0.5
margin = 0.1
rationale = "the planted induction head must be found"
"""


def metric(value, lo=None, hi=None):
    ci = None if lo is None else ConfidenceInterval(lower=lo, upper=hi, level=0.95, method="m", n=10)
    return Metric(name="x", value=value, unit="score", ci=ci)


def threshold(comparator=">=", value=0.5, margin=0.0, rule="ci-bound"):
    return Threshold(id="t", measurement="heads.inventory", metric="x", comparator=comparator,
                     threshold=value, margin=margin, rule=rule, rationale="r")


@pytest.mark.parametrize(
    ("comparator", "margin", "lo", "hi", "expected"),
    [
        (">=", 0.0, 0.6, 0.8, "pass"),          # whole interval above
        (">=", 0.0, 0.2, 0.4, "fail"),          # whole interval below
        (">=", 0.0, 0.4, 0.6, "inconclusive"),  # straddles
        (">=", 0.2, 0.6, 0.8, "inconclusive"),  # clears the threshold but not the margin
        (">=", 0.05, 0.6, 0.8, "pass"),
        ("<=", 0.0, 0.1, 0.3, "pass"),
        ("<=", 0.0, 0.6, 0.9, "fail"),
        ("<=", 0.0, 0.3, 0.7, "inconclusive"),
        ("<=", 0.25, 0.1, 0.3, "inconclusive"),
    ],
)
def test_ci_bound_rule(comparator, margin, lo, hi, expected):
    verdict, reason = judge(threshold(comparator, margin=margin), metric((lo + hi) / 2, lo, hi))
    assert verdict == expected, reason


def test_ci_bound_without_interval_is_inconclusive():
    verdict, reason = judge(threshold(), metric(0.9))
    assert verdict == "inconclusive" and "no confidence interval" in reason


def test_point_rule_compares_the_value():
    assert judge(threshold(rule="point"), metric(0.9))[0] == "pass"
    assert judge(threshold(rule="point", margin=0.5), metric(0.9))[0] == "fail"


def test_evaluate_points_at_records_by_digest(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    policy = load_policy(path)
    verdicts = evaluate(policy, [make_record()], subject="toy")
    (v,) = verdicts
    assert v.verdict == "pass" and v.record_id == "heads.inventory:toy" and len(v.record_digest) == 64
    assert v.set_by == "Risk board" and v.set_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert roll_up(verdicts).decision == "pass"


def test_missing_failed_and_absent_evidence(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    policy = load_policy(path)
    (unrun,) = evaluate(policy, [], subject="toy")  # a gated measurement that did not run
    assert unrun.verdict == "inconclusive" and "was not run on toy" in unrun.reason
    assert roll_up([unrun]).decision == "inconclusive"
    failed = make_record(status="error", metrics=[], error={"type": "MeasurementError", "message": "boom"})
    assert evaluate(policy, [failed], subject="toy")[0].verdict == "inconclusive"
    other = make_record(metrics=[])
    assert evaluate(policy, [other], subject="toy")[0].verdict == "inconclusive"


def test_roll_up():
    def v(verdict):
        return evaluate_stub(verdict)

    assert roll_up([v("pass"), v("fail"), v("inconclusive")]).decision == "fail"
    assert roll_up([v("pass"), v("inconclusive")]).decision == "inconclusive"
    assert roll_up([v("pass"), v("n/a")]).decision == "pass"
    assert roll_up([v("n/a")]).decision == "inconclusive"
    assert roll_up([]).decision == "inconclusive"


def evaluate_stub(verdict):
    from evidence.records import Verdict

    return Verdict(verdict_id="t", verdict=verdict, measurement="heads.inventory", metric="x", threshold=0.5,
                   comparator=">=", rule="ci-bound", margin=0.0, reason="because", set_by="b",
                   set_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_policy_dated_after_the_run_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    with pytest.raises(ConfigError, match="not before this run"):
        load_policy(path, run_started=datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (POLICY.replace('comparator = ">="', 'comparator = "=>"'), "comparator"),
        (POLICY.replace("set_at = 2026-01-01T00:00:00Z", "set_at = 2026-01-01T00:00:00"), "set_at"),
        (POLICY.replace("margin = 0.1", "margin = -0.1"), "margin"),
        (POLICY.replace('name = "test policy"', 'name = "test policy"\ncolour = 1'), "colour"),
        (POLICY + "[[threshold\n", "not valid TOML"),
    ],
)
def test_malformed_policy(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


# -- criteria: the rules calibration checks share with the gate ------------------------------

from evidence.policy import check_passes, describe, describe_all, satisfied  # noqa: E402
from evidence.records import Baseline, CalibrationCheck, Criterion  # noqa: E402


def _m(value, lo=None, hi=None, baseline=None):
    ci = None if lo is None else ConfidenceInterval(lower=lo, upper=hi, level=0.95, method="wilson", n=10)
    return Metric(name="m", value=value, unit="score", ci=ci, baseline=baseline)


@pytest.mark.parametrize(
    ("rule", "comparator", "threshold", "expected"),
    [("ci-lower", "<=", 0.5, "pass"), ("ci-lower", ">", 0.45, "fail"),
     ("ci-upper", "<", 0.7, "fail"), ("ci-upper", "<=", 0.8, "pass"),
     ("point", ">=", 0.6, "pass"), ("ci-bound", ">=", 0.6, "inconclusive")],
)
def test_single_bound_rules(rule, comparator, threshold, expected):
    metric = _m(0.6, 0.45, 0.75)
    assert judge(Criterion(comparator=comparator, threshold=threshold, rule=rule), metric)[0] == expected


def test_a_threshold_counted_from_the_baseline_uses_the_far_bound():
    above = Criterion(comparator=">", threshold=0, rule="ci-bound", above_baseline=True)
    base = Baseline(name="random", value=0.1,
                    ci=ConfidenceInterval(lower=0.05, upper=0.3, level=0.95, method="wilson", n=8))
    assert judge(above, _m(0.5, 0.31, 0.6, base))[0] == "pass"
    assert judge(above, _m(0.5, 0.29, 0.6, base))[0] == "inconclusive"  # reaches the baseline's upper bound
    assert judge(above, _m(0.2, 0.1, 0.25, base))[0] == "fail"
    verdict, reason = judge(above, _m(0.5, 0.31, 0.6))  # no baseline: nothing to clear
    assert verdict == "inconclusive" and "no baseline" in reason
    assert describe(above, "nie") == "nie: CI lower bound > its baseline"


def test_all_or_any_of_several_criteria():
    near_chance = (Criterion(comparator="<=", threshold=0.5, rule="ci-lower"),
                   Criterion(comparator="<", threshold=0.7, rule="ci-upper"))
    assert satisfied(near_chance, "any", _m(0.6, 0.45, 0.75))  # interval reaches chance
    assert satisfied(near_chance, "any", _m(0.6, 0.55, 0.65))  # bounded below 0.7
    assert not satisfied(near_chance, "any", _m(0.8, 0.55, 0.9))
    assert not satisfied(near_chance, "all", _m(0.6, 0.45, 0.75))
    assert describe_all(near_chance, "any", "auroc") == "auroc: CI lower bound <= 0.5 or auroc: CI upper bound < 0.7"
    assert not satisfied((), "all", _m(1.0))


def test_a_calibration_check_recomputes_from_what_it_records():
    criteria = [Criterion(comparator=">=", threshold=0.5, rule="ci-bound")]
    ci = ConfidenceInterval(lower=0.6, upper=0.9, level=0.95, method="wilson", n=10)
    check = CalibrationCheck(measurement="heads.inventory", organism="induction", planted=True,
                             metric="induction_score_max", value=0.8, ci=ci, criteria=criteria,
                             criterion=describe_all(criteria, "all", "induction_score_max"), passed=True)
    assert check_passes(check)
    assert not check_passes(check.model_copy(update={"ci": ci.model_copy(update={"lower": 0.4})}))
    assert not check_passes(check.model_copy(update={"value": None, "ci": None}))  # not evaluated
