"""Small, valid data-model objects for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from evidence.dossier import build_dossier
from evidence.records import (
    ClauseRef,
    ConfidenceInterval,
    Dossier,
    Environment,
    EvidenceRecord,
    MeasurementSpec,
    Metric,
    ModelIdentity,
    Policy,
    Threshold,
    WeightFile,
)


def make_record(record_id: str = "heads.inventory:toy", **changes: Any) -> EvidenceRecord:
    fields: dict[str, Any] = {
        "record_id": record_id,
        "measurement": MeasurementSpec(id="heads.inventory", version="1.0.0", params={"n_sequences": 8}),
        "subject": "toy",
        "status": "ok",
        "seeds": {"measurement": 0},
        "metrics": [
            Metric(
                name="induction_score_max",
                value=0.9,
                unit="score",
                ci=ConfidenceInterval(lower=0.85, upper=0.95, level=0.95, method="percentile bootstrap",
                                      n=8, resamples=100),
            )
        ],
        "clauses": [ClauseRef(id="EU-AIA/AnnexIV/2/b@OJ-2024-07-12", strength="supporting", rationale="r")],
    }
    fields.update(changes)
    return EvidenceRecord(**fields)


def make_dossier(**changes: Any) -> Dossier:
    fields: dict[str, Any] = {
        "model": ModelIdentity(
            name="toy",
            source="organism",
            architecture={"n_layers": 2},
            weights_sha256="a" * 64,
            weight_files=[WeightFile(name="toy.safetensors", sha256="a" * 64, bytes=10)],
            n_parameters=10,
            processing={"fold_ln": False},
        ),
        "environment": Environment(
            python="3.11.7", torch="2.13.0", transformer_lens="4.3.0", platform="Linux",
            seeds={"run": 0}, deterministic_algorithms=True, threads=2,
        ),
        "records": [make_record()],
        "created_at": datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
    }
    fields.update(changes)
    return build_dossier(**fields)


def make_policy(**changes: Any) -> Policy:
    fields: dict[str, Any] = {
        "name": "test policy",
        "version": "1",
        "set_by": "Risk board",
        "set_at": datetime(2026, 1, 1, tzinfo=UTC),
        "sha256": "c" * 64,
        "thresholds": [
            Threshold(id="induction-present", measurement="heads.inventory", metric="induction_score_max",
                      comparator=">=", threshold=0.5, margin=0.05, rationale="the induction head must be found",
                      clauses=[ClauseRef(id="EU-GPAI-CoP/SS/M4.1@2025-07-10", strength="direct",
                                         rationale="a measurable acceptance criterion")]),
            Threshold(id="absent-measurement", measurement="refusal.direction", metric="refusal_rate_ablated",
                      comparator="<=", threshold=0.5, rationale="not run here: inconclusive"),
        ],
    }
    fields.update(changes)
    return Policy(**fields)


from evidence.records import ExternalEval, ExternalScore  # noqa: E402


def make_metric_record(
    record_id: str,
    measurement: str,
    metrics: dict[str, tuple[float, float, float]],
    *,
    subject: str = "toy",
    **changes: Any,
) -> EvidenceRecord:
    """A record of ``measurement`` whose metrics are name -> (value, CI lower, CI upper), fractions."""
    fields: dict[str, Any] = {
        "measurement": MeasurementSpec(id=measurement, version="1.0.0", params={}),
        "subject": subject,
        "metrics": [
            Metric(
                name=name,
                value=value,
                unit="fraction",
                ci=ConfidenceInterval(lower=lo, upper=hi, level=0.95, method="percentile bootstrap",
                                      n=100, resamples=1000),
            )
            for name, (value, lo, hi) in metrics.items()
        ],
    }
    fields.update(changes)
    return make_record(record_id, **fields)


def make_external_eval(
    task: str,
    construct: str,
    value: float,
    *,
    stderr: float | None = None,
    n: int | None = 100,
    construct_source: str = "declared",
    extra_scores: dict[str, float] | None = None,
    construct_score: str | None = "score/accuracy",
) -> ExternalEval:
    """An Inspect-style external evaluation with one score (plus ``extra_scores``)."""
    scores = [ExternalScore.model_validate({
        "name": "score/accuracy", "value": value, "stderr": stderr,
        "ci": None if stderr is None or n is None else {
            "lower": value - 1.959963984540054 * stderr, "upper": value + 1.959963984540054 * stderr,
            "level": 0.95, "method": "normal approximation from reported stderr", "n": n,
        },
    })]
    scores += [ExternalScore(name=k, value=v) for k, v in (extra_scores or {}).items()]
    return ExternalEval.model_validate({
        "eval_id": f"eval-{task}",
        "tool": "inspect_ai",
        "tool_version": "0.3.285",
        "log_format": "inspect-json",
        "task": task,
        "model": "hf/toy",
        "source_file": f"{task}.json",
        "sha256": "b" * 64,
        "created_at": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        "n_samples": n,
        "construct": construct,
        "construct_source": construct_source,
        "construct_score": construct_score,
        "construct_score_source": None if construct_score is None else "declared",
        "scores": scores,
    })


def suite_rules():
    """The cross-reference rules the registered measurements declare."""
    from evidence.measure import registered

    return [rule for definition in registered().values() for rule in definition.crossref]


def cross_reference(records, evals, *, subject):
    """The cross-reference section under the suite's own rules."""
    from evidence.crossref import cross_reference as judge

    return judge(records, evals, subject=subject, rules=suite_rules())
