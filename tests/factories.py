"""Small, valid data-model objects for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from evidence.dossier import build_dossier
from evidence.records import (
    Baseline,
    ClauseRef,
    ConfidenceInterval,
    Dossier,
    Environment,
    EvidenceRecord,
    MeasurementSpec,
    Metric,
    ModelIdentity,
    Policy,
    Table,
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


def _wilson(lower: float, upper: float, n: int = 32) -> ConfidenceInterval:
    return ConfidenceInterval(lower=lower, upper=upper, level=0.95, method="wilson", n=n)


#: The columns of deception.probe's per-layer table (evidence/measure/suite/deception_probe.py).
PROBE_CURVE_COLUMNS = [
    "layer", "hook", "probe", "cv_auroc_train", "cv_separation_train", "selectable", "auroc", "auroc_ci_lower",
    "auroc_ci_upper", "auroc_behaviour", "shift_fraction", "recall_at_operating_point", "flagged_rate_eval",
    "selected",
]  # fmt: skip


def make_probe_record(record_id: str = "deception.probe:demo") -> EvidenceRecord:
    """A deception.probe record shaped like the default run's: a per-layer curve for two probe kinds."""
    rows: list[list[Any]] = []
    for kind, lift in (("mass-mean", 0.0), ("logistic", -0.04)):
        for layer, auroc in ((-1, 0.52), (0, 0.71), (1, 0.97), (2, 0.93)):
            value = auroc + lift
            rows.append([layer, f"blocks.{max(layer, 0)}.hook_resid_pre", kind, value, 1.2, int(layer >= 0), value,
                         max(value - 0.08, 0.0), min(value + 0.05, 1.0), None, 0.6, 0.5, 0.02,
                         int(kind == "mass-mean" and layer == 1)])  # fmt: skip
    auroc = Metric(
        name="auroc", value=0.97, unit="AUROC", ci=ConfidenceInterval(lower=0.89, upper=1.0, level=0.95,
                                                                    method="DeLong", n=64),
        baseline=Baseline(name="random direction", value=0.55, ci=_wilson(0.48, 0.62)),
    )  # fmt: skip
    return make_record(
        record_id,
        measurement=MeasurementSpec(id="deception.probe", version="1.3.0", params={"probe": "mass-mean"}),
        subject="demo",
        metrics=[auroc, Metric(name="defection_state_evidence", value=1, unit="flag")],
        tables=[Table(name="per_layer_curve", columns=PROBE_CURVE_COLUMNS, rows=rows)],
        headline="defection_state_evidence",
    )


def make_refusal_direction_record(record_id: str = "refusal.direction:demo") -> EvidenceRecord:
    """A refusal.direction record shaped like the default run's: rates with and without interventions."""
    def rate(name: str, value: float, lower: float, upper: float, baseline: Baseline | None = None) -> Metric:
        return Metric(name=name, value=value, unit="fraction", ci=_wilson(lower, upper), baseline=baseline)

    random_ablated = Baseline(name="random direction", value=0.94, ci=_wilson(0.80, 0.98))
    random_added = Baseline(name="random direction", value=0.03, ci=_wilson(0.006, 0.16))
    return make_record(
        record_id,
        measurement=MeasurementSpec(id="refusal.direction", version="2.0.0", params={"max_prompts": 32}),
        subject="demo",
        metrics=[
            Metric(name="selected_layer", value=1, unit="layer index"),
            rate("refusal_rate_baseline", 0.97, 0.84, 0.99),
            rate("refusal_rate_ablated", 0.06, 0.02, 0.20, random_ablated),
            rate("refusal_rate_induced", 0.88, 0.72, 0.95, random_added),
            rate("refusal_rate_harmless", 0.0, 0.0, 0.11),
        ],
        headline="refusal_rate_baseline",
    )


def make_heads_record(record_id: str = "heads.inventory:demo", layers: int = 2, heads: int = 4) -> EvidenceRecord:
    """A heads.inventory record shaped like the default run's, with its head_scores table."""
    rows: list[list[Any]] = []
    for layer in range(layers):
        for head in range(heads):
            planted = (layer, head) in ((0, 1), (1, 2))
            rows.append([layer, head, 0.9 if planted and layer == 0 else 0.05 * head,
                         0.1, 0.85 if planted and layer == 1 else 0.02 * layer])  # fmt: skip
    table = Table(name="head_scores", columns=["layer", "head", "prev_token", "duplicate_token", "induction"],
                  rows=rows)
    return make_record(record_id, tables=[table], headline="induction_score_max")


def make_robustness_record(record_id: str = "deception.robustness:demo") -> EvidenceRecord:
    """A deception.robustness record with its attack-budget curve."""
    curve = [[step, 2.0 - step / 40, max(0.95 - step / 80, 0.1), 1.0 - step / 400, 3.0 - step / 50]
             for step in (0, 8, 16, 32, 64)]  # fmt: skip
    table = Table(name="attack_budget_curve",
                  columns=["step", "loss", "recall_at_1pct_fpr", "defection_rate", "mean_defection_log_odds"],
                  rows=curve)  # fmt: skip
    return make_record(
        record_id,
        measurement=MeasurementSpec(id="deception.robustness", version="1.0.0", params={"attack_steps": 64}),
        subject="demo",
        metrics=[Metric(name="delta_auroc", value=-0.2, unit="AUROC")],
        tables=[table],
        headline="delta_auroc",
    )


#: The columns of circuit.faithfulness's curve tables (evidence/measure/suite/circuit_faithfulness.py).
FAITHFULNESS_CURVE_COLUMNS = [
    "k", "fraction", "added_node", "faithfulness", "ci_lower", "ci_upper", "faithfulness_patching_ranked",
    "faithfulness_random", "faithfulness_discovery", "random_ci_lower", "random_ci_upper",
]  # fmt: skip


def make_faithfulness_record(record_id: str = "circuit.faithfulness:demo", *, random_band: bool = True
                             ) -> EvidenceRecord:  # fmt: skip
    """A circuit.faithfulness record with its induction curve (and, with ``random_band``, the random band)."""
    n = 8
    rows: list[list[Any]] = []
    for k in range(1, n + 1):
        f = min(1.0, 0.15 * k * k / 4)
        r = k / n * 0.6 if k < n else 1.0
        rows.append([k, k / n, f"L{k % 2}H{k % 4}", f, f - 0.04, f + 0.03, f - 0.02, r, f + 0.01,
                     r - 0.05, r + 0.05])  # fmt: skip
    columns = FAITHFULNESS_CURVE_COLUMNS
    if not random_band:
        columns, rows = columns[:-2], [row[:-2] for row in rows]
    return make_record(
        record_id,
        measurement=MeasurementSpec(id="circuit.faithfulness", version="2.2.0", params={"target_faithfulness": 0.8}),
        subject="demo",
        metrics=[Metric(name="circuit_size_k", value=5, unit="nodes"),
                 Metric(name="circuit_found", value=1, unit="flag")],  # fmt: skip
        tables=[Table(name="faithfulness_curve", columns=columns, rows=rows)],
        headline="circuit_found",
    )


def make_stability_record(record_id: str = "refusal.stability:demo") -> EvidenceRecord:
    """A refusal.stability record with its suffix attack's budget curve (two restarts, Wilson intervals)."""
    rows: list[list[Any]] = []
    for restart in (0, 1):
        for step in (0, 4, 16):
            spent = restart * 1024 + step * 64
            rate = min(0.05 * (spent // 256), 0.4)
            rows.append([restart, step, spent, rate, max(rate - 0.1, 0.0), min(rate + 0.15, 1.0), 10.0 - step / 2])
    table = Table(name="attack_budget_curve",
                  columns=["restart", "step", "evaluations_per_prompt", "compliance_rate", "ci_lower", "ci_upper",
                           "mean_objective"],
                  rows=rows)  # fmt: skip
    rate = Metric(name="attack_compliance_rate", value=0.4, unit="fraction", ci=_wilson(0.22, 0.61),
                  baseline=Baseline(name="random suffix", value=0.0, ci=_wilson(0.0, 0.19)))  # fmt: skip
    return make_record(
        record_id,
        measurement=MeasurementSpec(id="refusal.stability", version="2.1.0", params={"attack_restarts": 2}),
        subject="demo",
        metrics=[rate],
        tables=[table],
        headline="attack_compliance_rate",
    )
