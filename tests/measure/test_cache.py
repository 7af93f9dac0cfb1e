"""The result cache: finished records reused by their cache key, anything doubtful measured again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import Field

from evidence.canonical import canonical_bytes
from evidence.errors import MeasurementError
from evidence.measure import MeasureContext, MeasurementParams, MeasurementResult, Task, registry, run_suite
from evidence.measure.cache import CACHE_DIR_ENV, ResultCache, default_cache_dir
from evidence.measure.runner import task_cache_key
from evidence.model import LoadedModel, ModelSpec
from evidence.records import EvidenceRecord, Metric, ModelIdentity, WeightFile

SPEC = ModelSpec(organism="toy")
CALLS: list[str] = []


class CountParams(MeasurementParams):
    alpha: int = Field(default=1, ge=0)


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
def counted_measurements(temporary_measurement) -> Iterator[None]:
    def counted(model: LoadedModel, params: CountParams, ctx: MeasureContext) -> MeasurementResult:
        CALLS.append("cache.counted")
        value = float(ctx.numpy_rng("value").random()) + params.alpha
        return MeasurementResult(metrics=[Metric(name="value", value=value, unit="score")], summary="counted")

    def failing(model: LoadedModel, params: CountParams, ctx: MeasureContext) -> MeasurementResult:
        CALLS.append("cache.failing")
        raise MeasurementError("fails on purpose")

    temporary_measurement("cache.counted", counted, params=CountParams, headline="value")
    temporary_measurement("cache.failing", failing, params=CountParams)
    CALLS.clear()
    yield
    CALLS.clear()


def run(model: LoadedModel, cache: ResultCache | None, *tasks: Task) -> tuple[list[EvidenceRecord], list[str]]:
    said: list[str] = []
    records = run_suite(
        list(tasks), model, cache=cache,
        announce=lambda i, n, task: said.append(f"[{i}/{n}] measuring {task.measurement_id}"),
        reused=lambda i, n, task, key: said.append(f"[{i}/{n}] reused {task.measurement_id} {key}"),
    )  # fmt: skip
    return records, said


def without_note(record: EvidenceRecord) -> bytes:
    return canonical_bytes(record.model_copy(update={"reused_cache_key": None}))


def test_a_second_run_reuses_the_finished_record_and_says_so(model, tmp_path: Path):
    cache = ResultCache(tmp_path)
    task = Task("cache.counted", {"alpha": 2}, 3, SPEC)
    (first,), said = run(model, cache, task)
    assert said == ["[1/1] measuring cache.counted"] and first.reused_cache_key is None
    key = task_cache_key(
        task, model, registry.get("cache.counted"), registry.get("cache.counted").validate_params({"alpha": 2})
    )
    assert cache.path_for(key).is_file()

    (second,), said = run(model, cache, task)
    assert said == [f"[1/1] reused cache.counted {key}"]
    assert CALLS == ["cache.counted"]  # measured once
    assert second.reused_cache_key == key
    assert without_note(second) == canonical_bytes(first)  # the same record, duration included


@pytest.mark.parametrize("change", [{"params": {"alpha": 3}}, {"seed": 4}, {"markers": {"refusal": ("No",)}}])
def test_a_changed_parameter_seed_or_marker_is_measured_again(model, tmp_path: Path, change):
    cache = ResultCache(tmp_path)
    base = {"measurement_id": "cache.counted", "params": {"alpha": 2}, "seed": 3, "subject": SPEC}
    run(model, cache, Task(**base))
    (record,), said = run(model, cache, Task(**{**base, **change}))
    assert said == ["[1/1] measuring cache.counted"] and record.reused_cache_key is None
    assert CALLS == ["cache.counted", "cache.counted"]


def test_another_model_is_measured_again(model, tmp_path: Path):
    cache = ResultCache(tmp_path)
    task = Task("cache.counted", {}, 0, SPEC)
    run(model, cache, task)
    other = model.identity.model_copy(update={"weights_sha256": "2" * 64})
    retrained = LoadedModel(bridge=None, identity=other, tokenizer=None, spec=SPEC)  # type: ignore[arg-type]
    _, said = run(retrained, cache, task)
    assert said == ["[1/1] measuring cache.counted"]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda data: data[: len(data) // 2], "it is not JSON"),
        (lambda data: data.replace(b'"format":1', b'"format":9'), "it is not an entry of this format"),
        (lambda data: data.replace(b'"summary":"counted"', b'"summary":7'), "its record does not parse (1 errors)"),
        (lambda data: b"\xff\xfe", "it is not JSON"),
    ],
)
def test_a_corrupt_entry_is_ignored_with_one_warning_and_measured_again(model, tmp_path: Path, damage, problem):
    warnings: list[str] = []
    cache = ResultCache(tmp_path, warn=warnings.append)
    task = Task("cache.counted", {}, 0, SPEC)
    (first,), _ = run(model, cache, task)
    (entry,) = tmp_path.glob("*/*.json")
    entry.write_bytes(damage(entry.read_bytes()))

    (again,), said = run(model, cache, task)
    assert said == ["[1/1] measuring cache.counted"] and again.reused_cache_key is None
    assert warnings == [f"cached result {entry} is ignored: {problem}; measuring again"]
    assert EvidenceRecord.model_validate_json(entry.read_bytes().split(b'"record":', 1)[1][:-1]) == again  # rewritten


def test_an_entry_under_another_key_is_not_trusted(model, tmp_path: Path):
    warnings: list[str] = []
    cache = ResultCache(tmp_path, warn=warnings.append)
    run(model, cache, Task("cache.counted", {"alpha": 1}, 0, SPEC))
    (entry,) = tmp_path.glob("*/*.json")
    definition = registry.get("cache.counted")
    other = Task("cache.counted", {"alpha": 5}, 0, SPEC)
    target = cache.path_for(task_cache_key(other, model, definition, definition.validate_params({"alpha": 5})))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(entry.read_bytes())  # a record of alpha=1 planted where alpha=5 would be found

    (record,), said = run(model, cache, other)
    assert said == ["[1/1] measuring cache.counted"] and record.measurement.params == {"alpha": 5}
    assert warnings == [f"cached result {target} is ignored: its stored key differs from its name; measuring again"]


def test_error_records_are_not_cached(model, tmp_path: Path):
    cache = ResultCache(tmp_path)
    task = Task("cache.failing", {}, 0, SPEC)
    (record,), _ = run(model, cache, task)
    assert record.status == "error"
    (again,), said = run(model, cache, task)
    assert said == ["[1/1] measuring cache.failing"] and again.status == "error"
    assert list(tmp_path.rglob("*")) == []


def test_an_interrupted_suite_keeps_what_finished(model, tmp_path: Path, monkeypatch):
    import evidence.measure.runner as runner

    cache = ResultCache(tmp_path)
    tasks = [Task("cache.counted", {"alpha": 1}, 0, SPEC), Task("cache.counted", {"alpha": 2}, 0, SPEC)]
    real = runner.run_task

    def interrupted_after_the_first(task: Task, *args, **kwargs) -> EvidenceRecord:
        if task.params["alpha"] == 2:
            raise KeyboardInterrupt
        return real(task, *args, **kwargs)

    monkeypatch.setattr(runner, "run_task", interrupted_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        run(model, cache, *tasks)
    monkeypatch.setattr(runner, "run_task", real)

    records, said = run(model, cache, *tasks)
    assert said[0].startswith("[1/2] reused cache.counted ") and said[1:] == ["[2/2] measuring cache.counted"]
    assert [r.reused_cache_key is not None for r in records] == [True, False]
    assert list(tmp_path.glob("*/.*.tmp")) == []  # no half-written entry


def test_an_unwritable_cache_warns_and_the_run_goes_on(model, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    warnings: list[str] = []
    (record,), _ = run(model, ResultCache(blocker, warn=warnings.append), Task("cache.counted", {}, 0, SPEC))
    assert record.status == "ok"
    assert len(warnings) == 1 and warnings[0].startswith(f"the result cache {blocker} cannot be written (")


def test_the_cache_directory_comes_from_the_environment_then_xdg_then_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "interp-dossier" / "results"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "interp-dossier" / "results"


def test_the_test_session_never_uses_a_developers_cache():
    import os

    assert os.environ[CACHE_DIR_ENV] != str(Path.home() / ".cache" / "interp-dossier" / "results")
    assert not default_cache_dir().is_relative_to(Path.home() / ".cache")


def test_heads_inventory_on_an_organism_is_reused_identically_and_recomputed_for_a_new_seed(
    organism, one_thread, tmp_path: Path
):
    model = organism("induction")
    cache = ResultCache(tmp_path)
    task = Task("heads.inventory", {"n_sequences": 8, "bootstrap_resamples": 100}, 0, ModelSpec(organism="induction"))
    (first,), said = run(model, cache, task)
    assert first.status == "ok" and said == ["[1/1] measuring heads.inventory"]
    (second,), said = run(model, cache, task)
    assert said[0].startswith("[1/1] reused heads.inventory ") and second.reused_cache_key is not None
    assert without_note(second) == canonical_bytes(first)
    (third,), said = run(model, cache, Task(**{**task.__dict__, "seed": 1}))
    assert said == ["[1/1] measuring heads.inventory"] and third.seeds["task"] == 1


def test_an_edit_of_the_code_is_measured_again(model, tmp_path: Path, monkeypatch):
    import evidence.measure.cache as cache_module

    cache = ResultCache(tmp_path)
    task = Task("cache.counted", {}, 0, SPEC)
    run(model, cache, task)
    assert len(cache_module.code_digest()) == 64 and cache_module.code_digest() == cache_module.code_digest()
    monkeypatch.setattr(cache_module, "code_digest", lambda: "f" * 64)
    _, said = run(model, cache, task)
    assert said == ["[1/1] measuring cache.counted"]
