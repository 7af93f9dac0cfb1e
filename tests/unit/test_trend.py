"""The trend over a sweep's checkpoints: built from their dossiers, and recomputed from them."""

from __future__ import annotations

from datetime import UTC, datetime

import jsonschema
import pytest

from evidence.canonical import canonical_bytes
from evidence.dossier import dossier_bytes
from evidence.errors import ConfigError, EvidenceError
from evidence.policy import evaluate, roll_up
from evidence.records.trend import TrendDossier
from evidence.schema import load_schema
from evidence.trend import Checkpoint, build_trend, check_trend, natural_key, parse_trend
from tests.factories import make_dossier, make_policy, make_record

from evidence.records import ConfidenceInterval, Metric  # isort: skip


def _checkpoint(label: str, score: float, *, policy=None, status: str = "ok") -> Checkpoint:
    """A checkpoint whose heads.inventory record reads ``score`` (interval +-0.05), judged by ``policy``."""
    if status == "ok":
        ci = ConfidenceInterval(lower=max(score - 0.05, 0.0), upper=min(score + 0.05, 1.0), level=0.95,
                                method="percentile bootstrap", n=8, resamples=100)  # fmt: skip
        record = make_record(metrics=[Metric(name="induction_score_max", value=score, unit="score", ci=ci)],
                             headline="induction_score_max")  # fmt: skip
    else:
        from evidence.records import ErrorInfo

        record = make_record(status="error", metrics=[], error=ErrorInfo(type="ModelLoadError", message="no"))
    policy = policy if policy is not None else make_policy()
    verdicts = evaluate(policy, [record], subject="toy")
    dossier = make_dossier(records=[record], policy=policy, verdicts=verdicts, gate=roll_up(verdicts))
    return Checkpoint(label=label, bundle=f"../checkpoints/{label}", data=dossier_bytes(dossier), dossier=dossier)


AFTER = datetime(2026, 12, 1, tzinfo=UTC)


def test_natural_order_compares_numbers_as_numbers():
    labels = ["step-1000", "step-200", "step-30", "final"]
    assert sorted(labels, key=natural_key) == ["final", "step-30", "step-200", "step-1000"]


def test_the_trend_follows_each_gated_metric_and_finds_the_first_verdict_change():
    checkpoints = [_checkpoint("step-1", 0.9), _checkpoint("step-2", 0.8), _checkpoint("step-3", 0.2)]
    trend = build_trend(checkpoints, title="run", order="natural", created_at=AFTER)
    gated = next(s for s in trend.metrics if s.metric == "induction_score_max")
    assert [p.value for p in gated.points] == [0.9, 0.8, 0.2]
    assert gated.headline and gated.gated_by == ["induction-present"]
    assert gated.points[0].ci is not None and gated.points[0].ci.lower == pytest.approx(0.85)
    series = next(s for s in trend.verdicts if s.verdict_id == "induction-present")
    assert [p.verdict for p in series.points] == ["pass", "pass", "fail"]
    change = series.first_change
    assert change is not None and (change.checkpoint, change.previous, change.before, change.after) == (
        "step-3",
        "step-2",
        "pass",
        "fail",
    )
    # the threshold on a measurement that was not run is inconclusive throughout: no change
    absent = next(s for s in trend.verdicts if s.verdict_id == "absent-measurement")
    assert absent.first_change is None
    # the gate: inconclusive while the absent measurement is, failed once a verdict fails
    assert trend.gate is not None
    assert [p.decision for p in trend.gate.points] == ["inconclusive", "inconclusive", "fail"]
    assert trend.gate.first_change is not None and trend.gate.first_change.checkpoint == "step-3"


def test_a_failed_measurement_is_a_point_without_a_value():
    checkpoints = [_checkpoint("a", 0.9), _checkpoint("b", 0.9, status="error")]
    trend = build_trend(checkpoints, title="run", order="given", created_at=AFTER)
    gated = next(s for s in trend.metrics if s.metric == "induction_score_max")
    assert [(p.status, p.value) for p in gated.points] == [("ok", 0.9), ("error", None)]
    assert trend.checkpoints[1].failed_measurements == ["heads.inventory"]


def test_the_trend_validates_against_its_committed_schema_and_round_trips():
    trend = build_trend([_checkpoint("a", 0.9), _checkpoint("b", 0.3)], title="run", order="given", created_at=AFTER)
    data = canonical_bytes(trend.model_dump(mode="json"))
    jsonschema.Draft202012Validator(load_schema("trend.schema.json")).validate(trend.model_dump(mode="json"))
    assert parse_trend(data) == trend


def test_checkpoints_gated_by_different_policies_are_refused():
    other = make_policy(name="another policy")
    with pytest.raises(ConfigError, match="another policy than"):
        build_trend([_checkpoint("a", 0.9), _checkpoint("b", 0.9, policy=other)], title="run", order="given")


def test_check_trend_recomputes_and_names_what_disagrees():
    checkpoints = [_checkpoint("a", 0.9), _checkpoint("b", 0.2)]
    trend = build_trend(checkpoints, title="run", order="given", created_at=AFTER)
    files = {c.label: c.data for c in checkpoints}
    assert "verdict changes: induction-present" in check_trend(trend, files)

    # a checkpoint dossier swapped for another one: its digest no longer matches
    swapped = {**files, "b": _checkpoint("b", 0.95).data}
    with pytest.raises(EvidenceError, match="checkpoint 'b': its dossier.json has sha256"):
        check_trend(trend, swapped)
    # a missing checkpoint dossier
    with pytest.raises(EvidenceError, match="checkpoint 'b': its dossier is missing"):
        check_trend(trend, {"a": files["a"]})
    # a trend whose verdict change was edited away (the digests still match)
    series = trend.verdicts[0].model_copy(update={"first_change": None})
    edited = trend.model_copy(update={"verdicts": [series, *trend.verdicts[1:]]})
    with pytest.raises(EvidenceError, match="verdicts do"):
        check_trend(edited, files)
    # checkpoints said to be in natural order that are not
    reordered = build_trend(checkpoints[::-1], title="run", order="natural", created_at=AFTER)
    with pytest.raises(EvidenceError, match="natural order"):
        check_trend(reordered, files)


def test_a_trend_cannot_predate_its_checkpoints():
    checkpoints = [_checkpoint("a", 0.9)]
    early = build_trend(checkpoints, title="run", order="given", created_at=datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(EvidenceError, match="created after the trend"):
        check_trend(early, {"a": checkpoints[0].data})


def test_a_series_must_give_one_point_per_checkpoint():
    trend = build_trend([_checkpoint("a", 0.9), _checkpoint("b", 0.3)], title="run", order="given", created_at=AFTER)
    short = trend.metrics[0].model_copy(update={"points": trend.metrics[0].points[:1]})
    with pytest.raises(ValueError, match="one point per checkpoint"):
        TrendDossier.model_validate({**trend.model_dump(), "metrics": [short.model_dump()]})
