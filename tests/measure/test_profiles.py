"""Budget profiles: declared per measurement, applied under explicit parameters, recorded, never silently passed."""

from __future__ import annotations

import pytest
from pydantic import Field

from evidence.errors import ConfigError
from evidence.measure import MeasurementParams, MeasurementResult, Task, registered, registry, run_task
from evidence.model import LoadedModel, ModelSpec
from evidence.policy import evaluate
from evidence.records import PROFILES, Metric, ModelIdentity, WeightFile
from tests.factories import make_policy, make_record

SPEC = ModelSpec(organism="toy")


class BudgetParams(MeasurementParams):
    resamples: int = Field(default=1000, ge=100)
    steps: int = Field(default=50, ge=0)


def toy(model, params, ctx) -> MeasurementResult:
    return MeasurementResult(metrics=[Metric(name="value", value=float(params.resamples), unit="score")])


@pytest.fixture
def model() -> LoadedModel:
    identity = ModelIdentity(
        name="toy", source="organism", architecture={}, weights_sha256="0" * 64,
        weight_files=[WeightFile(name="toy", sha256="1" * 64, bytes=1)], n_parameters=1, processing={},
    )  # fmt: skip
    return LoadedModel(bridge=None, identity=identity, tokenizer=None, spec=SPEC)  # type: ignore[arg-type]


def test_every_suite_profile_sets_existing_parameters_to_valid_values():
    for definition in registered().values():
        for profile, overrides in definition.profiles.items():
            assert profile in ("quick", "thorough")
            applied = definition.params_for({}, profile).model_dump()  # raises if an override is unknown or invalid
            assert {name: applied[name] for name in overrides} == dict(overrides)


def test_quick_spends_less_and_thorough_more_than_standard_on_every_declared_budget():
    declared = 0
    for definition in registered().values():
        standard = definition.params_for({}).model_dump()
        for name, value in definition.profiles.get("quick", {}).items():
            assert value < standard[name], (definition.id, name)
            declared += 1
        for name, value in definition.profiles.get("thorough", {}).items():
            assert value > standard[name], (definition.id, name)
    assert declared >= 9  # every measurement with a bootstrap budget declares one


def test_standard_is_the_defaults_and_explicit_parameters_win_over_the_profile(temporary_measurement, model):
    definition = temporary_measurement(
        "budget.toy", toy, params=BudgetParams, profiles={"quick": {"resamples": 200, "steps": 5}}
    )
    assert definition.params_for({}).model_dump() == {"resamples": 1000, "steps": 50}
    assert definition.params_for({}, "quick").model_dump() == {"resamples": 200, "steps": 5}
    assert definition.params_for({"steps": 7}, "quick").model_dump() == {"resamples": 200, "steps": 7}
    assert definition.params_for({}, "thorough").model_dump() == {"resamples": 1000, "steps": 50}

    record = run_task(Task("budget.toy", {"steps": 7}, 0, SPEC, profile="quick"), model)
    assert record.profile == "quick" and record.measurement.params == {"resamples": 200, "steps": 7}
    assert record.metric("value").value == 200.0


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"fast": {"steps": 1}}, "profile 'fast' is not one of quick, thorough"),
        ({"standard": {"steps": 1}}, "profile 'standard' is not one of quick, thorough"),
        ({"quick": {"attack_steps": 1}}, "profile 'quick' sets unknown parameters ['attack_steps']"),
        ({"quick": {"resamples": 10}}, "profile 'quick' is invalid"),
    ],
)
def test_a_bad_profile_declaration_is_refused_at_registration(temporary_measurement, profiles, message):
    with pytest.raises(ValueError, match="budget.bad") as excinfo:
        temporary_measurement("budget.bad", toy, params=BudgetParams, profiles=profiles)
    assert message in str(excinfo.value)
    registry._REGISTRY.pop("budget.bad", None)


def test_an_unknown_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown profile 'fastest'") as excinfo:
        Task("heads.inventory", {}, 0, SPEC, profile="fastest")
    assert excinfo.value.hint == f"use one of {', '.join(PROFILES)}"
    with pytest.raises(ConfigError, match="prompt limit must be a positive integer"):
        Task("heads.inventory", {}, 0, SPEC, prompt_limit=0)


def test_a_policy_does_not_pass_records_of_another_profile_or_of_limited_prompts():
    policy = make_policy()
    (standard, _) = evaluate(policy, [make_record()], subject="toy")
    assert standard.verdict == "pass"

    (quick, _) = evaluate(policy, [make_record(profile="quick")], subject="toy")
    assert quick.verdict == "inconclusive"
    assert quick.reason == (
        "the policy's thresholds were set for the standard profile, but heads.inventory:toy was measured under "
        "the quick profile; induction_score_max is not judged against it"
    )
    (limited, _) = evaluate(policy, [make_record(prompt_limit=8)], subject="toy")
    assert limited.verdict == "inconclusive"
    assert limited.reason == (
        "heads.inventory:toy was measured on at most 8 prompts per dataset (--limit), the policy's thresholds on "
        "every prompt; induction_score_max is not judged against it"
    )
    (calibrated, _) = evaluate(make_policy(profile="quick"), [make_record(profile="quick")], subject="toy")
    assert calibrated.verdict == "pass"
