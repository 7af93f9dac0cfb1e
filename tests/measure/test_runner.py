import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

import evidence.measure as measure
from evidence.errors import ConfigError, MeasurementError
from evidence.measure import (
    MeasureContext,
    MeasurementParams,
    MeasurementResult,
    Task,
    measurement,
    registered,
    registry,
    run_task,
)
from evidence.model import LoadedModel, ModelSpec
from evidence.records import ClauseRef, Metric, ModelIdentity, WeightFile

SPEC = ModelSpec(organism="toy")
CLAUSE = ClauseRef(id="NIST-AI-RMF/1.0/MEASURE/2.9", strength="supporting", rationale="test mapping")


class ToyParams(MeasurementParams):
    alpha: int = Field(default=1, ge=0)
    label: str = "x"


@pytest.fixture
def model() -> LoadedModel:
    identity = ModelIdentity(
        name="toy model",
        source="organism",
        architecture={"d_model": 4},
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="toy.safetensors", sha256="1" * 64, bytes=1)],
        n_parameters=1,
        processing={"fold_ln": False},
    )
    return LoadedModel(bridge=None, identity=identity, tokenizer=None, spec=SPEC)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def toy_measurements() -> Iterator[None]:
    @measurement(
        "test.toy_ok", version="1.2.3", params=ToyParams, clauses=[CLAUSE], experimental=True, headline="value"
    )
    def toy_ok(model: LoadedModel, params: ToyParams, ctx: MeasureContext) -> MeasurementResult:
        value = float(ctx.numpy_rng("value").random()) + params.alpha
        ctx.progress(1.0, "done")
        return MeasurementResult(
            metrics=[Metric(name="value", value=value, unit="score")],
            summary=f"label {params.label}",
        )

    @measurement("test.toy_raises", version="1.0.0", params=ToyParams, headline="value")
    def toy_raises(model: LoadedModel, params: ToyParams, ctx: MeasureContext) -> MeasurementResult:
        raise MeasurementError("the toy measurement failed on purpose", hint="give it a reason not to")

    @measurement("test.toy_no_headline", version="1.0.0", params=ToyParams, headline="missing")
    def toy_no_headline(model: LoadedModel, params: ToyParams, ctx: MeasureContext) -> MeasurementResult:
        return MeasurementResult(metrics=[Metric(name="value", value=1.0, unit="score")])

    @measurement("test.toy_nan", version="1.0.0", params=ToyParams)
    def toy_nan(model: LoadedModel, params: ToyParams, ctx: MeasureContext) -> MeasurementResult:
        return MeasurementResult(metrics=[Metric(name="value", value=math.nan, unit="score")])

    @measurement("test.toy_wrong_type", version="1.0.0", params=ToyParams)
    def toy_wrong_type(model: LoadedModel, params: ToyParams, ctx: MeasureContext) -> MeasurementResult:
        return {"value": 1.0}  # type: ignore[return-value]

    yield
    for key in ("test.toy_ok", "test.toy_raises", "test.toy_nan", "test.toy_wrong_type", "toy.needs_inputs",
                "test.toy_no_headline"):
        registry._REGISTRY.pop(key, None)


def test_public_api_is_pinned():
    assert measure.__all__ == [
        "DatasetUse",
        "Detector",
        "Expectation",
        "MeasureContext",
        "MeasurementDef",
        "MeasurementFn",
        "MeasurementParams",
        "MeasurementResult",
        "ProgressFn",
        "SharedResults",
        "Task",
        "UncertaintyParams",
        "check_task",
        "dataset_labels",
        "get",
        "measurement",
        "registered",
        "require_known",
        "run_suite",
        "run_task",
    ]


def test_builtin_measurements_are_registered():
    defs = registered()
    assert "heads.inventory" in defs
    assert defs["heads.inventory"].version == "2.1.0"
    assert [c.id for c in defs["heads.inventory"].clauses] == [
        "EU-AIA/AnnexIV/2/b@OJ-2024-07-12",
        "EU-AIA/AnnexXI/S2/2@OJ-2024-07-12",
        "NIST-AI-RMF/1.0/MEASURE/2.9",
    ]


def test_ok_record_carries_spec_seeds_clauses_and_flags(model):
    progress = []
    record = run_task(Task("test.toy_ok", {"alpha": 2}, 5, SPEC), model, progress=lambda f, m: progress.append(f))
    assert record.status == "ok" and record.error is None
    assert record.record_id == "test.toy_ok:toy-model"
    assert record.subject == "toy model"
    assert record.measurement.id == "test.toy_ok" and record.measurement.version == "1.2.3"
    # The full parameters, defaults included, exactly as validated.
    assert record.measurement.params == {"alpha": 2, "label": "x"}
    assert record.clauses == [CLAUSE]
    assert record.experimental is True
    assert record.seeds == {"task": 5, "value": MeasureContext(seed=5).derive_seed("value")}
    assert record.summary == "label x"
    assert record.duration_s is not None and record.duration_s >= 0
    assert progress == [1.0]
    assert record.headline == "value"


def test_a_result_without_its_headline_metric_claims_none(model):
    record = run_task(Task("test.toy_no_headline", {}, 0, SPEC), model)
    assert record.status == "ok" and record.headline is None


def test_an_internal_error_records_no_hint(model):
    record = run_task(Task("test.toy_wrong_type", {}, 0, SPEC), model)
    assert record.error is not None and record.error.hint is None


def test_same_task_gives_the_same_record_apart_from_duration(model):
    task = Task("test.toy_ok", {}, 11, SPEC)
    a = run_task(task, model).model_copy(update={"duration_s": None})
    b = run_task(task, model).model_copy(update={"duration_s": None})
    assert a == b
    c = run_task(Task("test.toy_ok", {}, 12, SPEC), model)
    assert c.metrics[0].value != a.metrics[0].value


def test_a_failing_measurement_becomes_an_error_record(model):
    record = run_task(Task("test.toy_raises", {"label": "y"}, 0, SPEC), model)
    assert record.status == "error"
    assert record.error is not None
    assert record.error.type == "MeasurementError"
    assert record.error.message == "the toy measurement failed on purpose (give it a reason not to)"
    assert record.error.hint == "give it a reason not to"
    assert record.headline == "value"  # what the measurement would have headlined
    assert record.metrics == [] and record.tables == [] and record.data == []
    assert record.measurement.params == {"alpha": 1, "label": "y"}


def test_a_non_finite_metric_becomes_an_error_record(model):
    record = run_task(Task("test.toy_nan", {}, 0, SPEC), model)
    assert record.status == "error"
    assert record.error is not None and record.error.type == "ValidationError"
    assert "finite" in record.error.message


def test_a_wrong_return_type_becomes_an_error_record(model):
    record = run_task(Task("test.toy_wrong_type", {}, 0, SPEC), model)
    assert record.status == "error"
    assert "not a MeasurementResult" in record.error.message


def test_an_unknown_parameter_is_a_config_error_naming_measurement_and_key(model):
    with pytest.raises(ConfigError) as info:
        run_task(Task("test.toy_ok", {"alpah": 1}, 0, SPEC), model)
    assert "test.toy_ok" in str(info.value) and "'alpah'" in str(info.value)
    assert "alpha" in (info.value.hint or "")


def test_an_invalid_parameter_value_is_a_config_error(model):
    with pytest.raises(ConfigError, match="'alpha'"):
        run_task(Task("test.toy_ok", {"alpha": -1}, 0, SPEC), model)


def test_an_unknown_measurement_is_a_config_error(model):
    with pytest.raises(ConfigError, match="unknown measurement 'test.nope'"):
        run_task(Task("test.nope", {}, 0, SPEC), model)


def test_a_task_for_another_model_is_refused(model):
    with pytest.raises(ConfigError, match="organism 'other'"):
        run_task(Task("test.toy_ok", {}, 0, ModelSpec(organism="other")), model)


def test_a_task_owns_a_copy_of_its_parameters():
    params = {"alpha": 1, "nested": {"a": [1]}}
    task = Task("test.toy_ok", params, 0, SPEC)
    params["alpha"] = 2
    params["nested"]["a"].append(2)
    assert task.params == {"alpha": 1, "nested": {"a": [1]}}


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_task_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ConfigError):
        Task("test.toy_ok", {}, seed, SPEC)


def test_parameter_models_must_be_frozen_and_closed():
    class Open(BaseModel):
        a: int = 1

    class Mutable(BaseModel):
        model_config = ConfigDict(extra="forbid")

    for params in (Open, Mutable):
        with pytest.raises(TypeError, match="frozen"):
            measurement("test.bad_params", version="1.0.0", params=params)


@pytest.mark.parametrize(("mid", "version"), [("Toy", "1.0.0"), ("toy", "1.0.0"), ("test.toy", "1.0")])
def test_ids_and_versions_are_checked(mid, version):
    with pytest.raises(ValueError):
        measurement(mid, version=version, params=ToyParams)


def test_an_id_cannot_be_taken_by_another_function():
    with pytest.raises(ValueError, match="already registered"):

        @measurement("test.toy_ok", version="1.0.0", params=ToyParams)
        def impostor(model, params, ctx):  # pragma: no cover
            raise AssertionError


def test_context_seeds_are_stable_and_label_specific():
    ctx = MeasureContext(seed=3)
    assert ctx.derive_seed("a") == MeasureContext(seed=3).derive_seed("a")
    assert ctx.derive_seed("a") != ctx.derive_seed("b")
    assert ctx.derive_seed("a") != MeasureContext(seed=4).derive_seed("a")
    assert 0 <= ctx.derive_seed("a") < 2**31
    assert np.array_equal(ctx.numpy_rng("x").integers(0, 100, 5), ctx.numpy_rng("x").integers(0, 100, 5))
    import torch

    a = torch.rand(3, generator=ctx.torch_generator("t"))
    b = torch.rand(3, generator=ctx.torch_generator("t"))
    assert torch.equal(a, b)



def test_required_inputs_are_checked_before_any_work():
    from pydantic import BaseModel, ConfigDict

    from evidence.measure import Task, check_task, measurement
    from evidence.model import ModelSpec
    from evidence.runspec import Dataset, Prompt

    class NoParams(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")

    ran = []

    from evidence.measure import DatasetUse

    @measurement("toy.needs_inputs", version="1.0.0", params=NoParams,
                 datasets=[DatasetUse.of("refusal.harmful", "harmful")], markers=["refusal"])
    def needs_inputs(model, params, ctx):
        ran.append(ctx.data_ref("refusal.harmful"))
        raise AssertionError("not reached in this test")

    spec = ModelSpec(organism="induction")
    with pytest.raises(ConfigError, match="needs the dataset 'refusal.harmful'"):
        check_task(Task(measurement_id="toy.needs_inputs", params={}, seed=0, subject=spec))
    ds = Dataset(name="refusal.harmful", path=Path("x.jsonl"), sha256="0" * 64,
                 prompts=(Prompt(id="a", label="harmful", text="x"),))
    with pytest.raises(ConfigError, match=r"needs \[markers\]\.refusal"):
        check_task(Task(measurement_id="toy.needs_inputs", params={}, seed=0, subject=spec,
                        datasets={"refusal.harmful": ds}))
    check_task(Task(measurement_id="toy.needs_inputs", params={}, seed=0, subject=spec,
                    datasets={"refusal.harmful": ds}, markers={"refusal": ("I cannot",)}))
    assert ran == []
