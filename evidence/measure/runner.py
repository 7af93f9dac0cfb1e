"""Tasks and their execution: one task in, one record out.

A :class:`Task` names one measurement, its parameters, a seed, the subject
model and the run-spec inputs. :func:`run_task` validates it, seeds every
generator, runs the measurement and turns the outcome into one
:class:`evidence.records.EvidenceRecord`. Tasks share no mutable state except
the run's :class:`~evidence.measure.context.SharedResults`, whose entries are
keyed by what they were computed from, so a runner may execute tasks in any
order, or elsewhere.

Failure policy: invalid parameters and missing inputs are the user's error and
raise :class:`evidence.errors.ConfigError` before any work; anything that goes
wrong inside a measurement (including non-finite numbers and invalid metrics)
becomes a record with ``status="error"`` — recorded, never dropped, never raised.

Resume: given a :class:`~evidence.measure.cache.ResultCache`, :func:`run_suite`
reuses the finished record of a task whose cache key it holds, and stores each
new ``ok`` record as soon as it exists.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel

from evidence.datasets import Dataset
from evidence.errors import ConfigError, MeasurementError
from evidence.measure.cache import ResultCache, cache_key
from evidence.measure.context import MeasureContext, MeasurementResult, ProgressFn, SharedResults
from evidence.measure.registry import MeasurementDef, get
from evidence.model import LoadedModel, ModelSpec
from evidence.records import PROFILES, ErrorInfo, EvidenceRecord, MeasurementSpec

__all__ = [
    "Task",
    "TaskProblem",
    "check_task",
    "lost_task_record",
    "run_suite",
    "run_task",
    "task_cache_key",
    "task_problems",
]

_RECORD_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/-]")


@dataclass(frozen=True)
class Task:
    """One unit of work: a measurement with parameters and a seed, on one model."""

    measurement_id: str
    params: dict[str, Any]
    seed: int
    subject: ModelSpec
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    markers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The budget profile: its parameter overrides apply under ``params`` (explicit parameters win).
    profile: str = "standard"
    #: At most this many prompts of each dataset (the datasets are already cut to it); recorded in the record.
    prompt_limit: int | None = None

    def __post_init__(self) -> None:
        # A private copy: a task never shares mutable state with its creator.
        object.__setattr__(self, "params", copy.deepcopy(dict(self.params)))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"task {self.measurement_id!r}: seed must be a non-negative integer")
        if self.profile not in PROFILES:
            raise ConfigError(f"unknown profile {self.profile!r}", hint=f"use one of {', '.join(PROFILES)}")
        limit = self.prompt_limit
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ConfigError(f"task {self.measurement_id!r}: the prompt limit must be a positive integer")


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _record_id(measurement_id: str, subject: str) -> str:
    return f"{measurement_id}:{_RECORD_ID_UNSAFE.sub('-', subject)}"


def check_task(task: Task) -> tuple[MeasurementDef, BaseModel]:
    """Refuse, before any work, a task that cannot run: unknown id, bad parameters, missing inputs.

    The first of :func:`task_problems` is raised.
    """
    definition = get(task.measurement_id)
    problems = task_problems(task)
    if problems:
        raise problems[0].error
    return definition, definition.params_for(task.params, task.profile)


class TaskProblem(NamedTuple):
    """Why a task cannot run: ``source`` ``"spec"``, ``"datasets"`` or ``"markers"``, the error, the dataset missing."""

    source: str
    error: ConfigError
    dataset: str | None = None


def task_problems(task: Task) -> list[TaskProblem]:
    """Everything that keeps ``task`` from running; empty when it can run.

    An unknown id or bad parameters (source ``"spec"``), each required dataset missing
    (``"datasets"``), each required marker kind missing (``"markers"``).
    """
    try:
        definition = get(task.measurement_id)
    except ConfigError as exc:
        return [TaskProblem("spec", exc)]
    problems: list[TaskProblem] = []
    try:
        definition.params_for(task.params, task.profile)
    except ConfigError as exc:
        problems.append(TaskProblem("spec", exc))
    for name in definition.required_datasets:
        if name not in task.datasets:
            problems.append(TaskProblem("datasets", ConfigError(
                f"measurement {definition.id!r} needs the dataset {name!r}",
                hint=f'add "{name}" = "FILE.jsonl" to [datasets] in the run spec',
            ), dataset=name))  # fmt: skip
    for kind in definition.markers:
        if not task.markers.get(kind):
            problems.append(TaskProblem("markers", ConfigError(
                f"measurement {definition.id!r} needs [markers].{kind} in the run spec",
                hint=f'e.g. {kind} = ["I cannot"]',
            )))  # fmt: skip
    return problems


def _check_subject(task: Task, model: LoadedModel) -> None:
    if model.spec != task.subject:
        raise ConfigError(
            f"task for {task.subject.describe()} was given {model.spec.describe()}",
            hint="load the task's subject model before running it",
        )


def _spec(definition: MeasurementDef, params: BaseModel) -> MeasurementSpec:
    """What a record says was measured: id, version and the validated parameters, defaults included."""
    return MeasurementSpec(id=definition.id, version=definition.version, params=params.model_dump(mode="json"))


def _error_hint(exc: BaseException) -> str | None:
    hint = getattr(exc, "hint", None)
    return hint if isinstance(hint, str) and hint else None


def _error_message(exc: BaseException) -> str:
    message = str(exc).strip() or repr(exc)
    hint = getattr(exc, "hint", None)
    if hint:
        message = f"{message} ({hint})"
    return message


def _common_fields(task: Task, definition: MeasurementDef, params: BaseModel, subject: str) -> dict[str, Any]:
    """What every record of ``task`` says, whatever its outcome."""
    return {
        "record_id": _record_id(definition.id, subject),
        "measurement": _spec(definition, params),
        "subject": subject,
        "clauses": list(definition.clauses),
        "experimental": definition.experimental,
        "profile": task.profile,
        "prompt_limit": task.prompt_limit,
    }


def lost_task_record(task: Task, subject: str, error: ErrorInfo, *, retries: int | None = None) -> EvidenceRecord:
    """The ``error`` record of a task that produced none (e.g. every worker that ran it was lost).

    ``subject`` is the measured model's name (its identity's); ``retries``: how often it was started again.
    """
    definition, params = check_task(task)
    common = _common_fields(task, definition, params, subject)
    return EvidenceRecord(**common, status="error", error=error, headline=definition.headline, retries=retries)


def run_task(
    task: Task,
    model: LoadedModel,
    *,
    progress: ProgressFn | None = None,
    shared: SharedResults | None = None,
) -> EvidenceRecord:
    """Run ``task`` on ``model`` and return its record (``status="error"`` on any failure inside)."""
    definition, params = check_task(task)
    _check_subject(task, model)
    common = _common_fields(task, definition, params, model.identity.name)
    ctx = MeasureContext(
        seed=task.seed,
        progress=progress or (lambda _f, _m: None),
        datasets=task.datasets,
        markers=task.markers,
        subject_digest=model.identity.weights_sha256,
        prompt_limit=task.prompt_limit,
        shared_results=shared if shared is not None else SharedResults(),
    )
    start = time.perf_counter()
    try:
        _seed_everything(task.seed)
        result = definition.fn(model, params, ctx)
        if not isinstance(result, MeasurementResult):
            raise MeasurementError(
                f"measurement {definition.id!r} returned {type(result).__name__}, not a MeasurementResult"
            )
        return EvidenceRecord(
            **common,
            status="ok",
            seeds={"task": task.seed, **ctx.seeds},
            metrics=list(result.metrics),
            tables=list(result.tables),
            checks=list(result.checks),
            data=list(result.data),
            summary=result.summary,
            duration_s=time.perf_counter() - start,
            tolerance=definition.tolerance,
            # A result may lack its headline metric (e.g. a part that did not apply): then it claims none.
            headline=definition.headline if any(m.name == definition.headline for m in result.metrics) else None,
        )
    except Exception as exc:  # every failure inside a measurement is recorded
        return EvidenceRecord(
            **common,
            status="error",
            error=ErrorInfo(type=type(exc).__name__, message=_error_message(exc), hint=_error_hint(exc)),
            headline=definition.headline,
            seeds={"task": task.seed, **ctx.seeds},
            duration_s=time.perf_counter() - start,
        )


def run_suite(
    tasks: Sequence[Task],
    model: LoadedModel,
    *,
    announce: Callable[[int, int, Task], None] | None = None,
    progress: ProgressFn | None = None,
    cache: ResultCache | None = None,
    reused: Callable[[int, int, Task, str], None] | None = None,
    execute: Callable[[Task, ProgressFn | None], EvidenceRecord] | None = None,
) -> list[EvidenceRecord]:
    """Run every task on ``model`` in order, sharing intermediate results; one record per task.

    ``execute(task, progress)``: where each task runs and how (default: here, :func:`run_task` on
    ``model`` with the run's shared results); it returns the task's record, never raises for a
    failure inside the measurement (e.g. :func:`evidence.measure.cluster.actor_executor`).

    ``cache``: finished records are taken from it instead of being recomputed (the
    record then carries ``reused_cache_key``, and ``reused`` is told instead of
    ``announce``), and each new ``ok`` record is stored in it as soon as it is
    finished, so that a run interrupted later keeps it.
    """
    checked = [check_task(task) for task in tasks]  # every task is checked before the first minute of work
    for task in tasks:
        _check_subject(task, model)
    shared = SharedResults()
    records = []
    for i, (task, (definition, params)) in enumerate(zip(tasks, checked, strict=True), start=1):
        key = None
        if cache is not None:
            key = task_cache_key(task, model, definition, params)
            found = cache.get(key, _spec(definition, params))
            if found is not None:
                if reused is not None:
                    reused(i, len(tasks), task, key)
                records.append(EvidenceRecord.model_validate({**found.model_dump(), "reused_cache_key": key}))
                continue
        if announce is not None:
            announce(i, len(tasks), task)
        if execute is not None:
            record = execute(task, progress)
        else:
            record = run_task(task, model, progress=progress, shared=shared)
        if cache is not None and key is not None:
            cache.put(key, record)
        records.append(record)
    return records


def task_cache_key(task: Task, model: LoadedModel, definition: MeasurementDef, params: BaseModel) -> str:
    """The result-cache key of ``task`` on ``model`` (see :func:`evidence.measure.cache.cache_key`)."""
    placement = {"device": task.subject.device, "dtype": task.subject.dtype, "n_gpus": task.subject.n_gpus}
    budget = {"profile": task.profile, "prompt_limit": task.prompt_limit}
    return cache_key(
        model.identity, placement, _spec(definition, params), task.datasets, task.markers, task.seed, budget=budget
    )
