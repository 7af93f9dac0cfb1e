"""The measurement framework: registered measurements, tasks, and the record each one yields.

A measurement is a function registered with :func:`measurement`::

    class Params(MeasurementParams):
        n_sequences: int = 64

    @measurement("heads.inventory", version="1.0.0", params=Params, clauses=[...])
    def inventory(model: LoadedModel, params: Params, ctx: MeasureContext) -> MeasurementResult:
        ...

A :class:`Task` names one measurement, its parameters, a seed and the model;
:func:`run_task` validates the parameters, seeds every generator, runs the
function and turns the outcome into one :class:`evidence.records.EvidenceRecord`.
Tasks share no mutable state, so a runner can execute them in any order or in
other processes.

Failure policy: invalid parameters are the user's error and raise
:class:`evidence.errors.ConfigError`; anything that goes wrong inside a
measurement (including non-finite numbers and invalid metrics) becomes a
record with ``status="error"`` — recorded, never dropped, never raised.

Importing this package does not import torch; the built-in measurement modules
are imported (and so registered) on first use of :func:`registered` or
:func:`run_task`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from evidence.errors import ConfigError, MeasurementError
from evidence.model import LoadedModel, ModelSpec
from evidence.records import (
    CalibrationCheck,
    ClauseRef,
    DataRef,
    ErrorInfo,
    EvidenceRecord,
    MeasurementSpec,
    Metric,
    Table,
)
from evidence.runspec import Dataset

if TYPE_CHECKING:
    import torch

__all__ = [
    "MeasureContext",
    "MeasurementDef",
    "MeasurementFn",
    "MeasurementParams",
    "MeasurementResult",
    "ProgressFn",
    "Task",
    "check_task",
    "measurement",
    "registered",
    "run_task",
]

#: ``progress(fraction, message)``: fraction in [0, 1].
ProgressFn = Callable[[float, str], None]

# Modules that hold the built-in measurements; importing one registers it.
_BUILTIN_MODULES: tuple[str, ...] = (
    "evidence.measure.heads",
    "evidence.measure.circuit",
    "evidence.measure.batch",
    "evidence.measure.refusal_direction",
    "evidence.measure.refusal_stability",
    "evidence.measure.deception",
    "evidence.measure.probe_causality",
    "evidence.measure.deception_robustness",
    "evidence.measure.goal",
    "evidence.measure.calibration",
)

_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
_RECORD_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/-]")


def _no_progress(fraction: float, message: str) -> None:
    """Default progress callback: ignore."""


class MeasurementParams(BaseModel):
    """Base class for measurement parameters: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class MeasurementResult:
    """What a measurement function returns; :func:`run_task` wraps it in a record."""

    metrics: list[Metric] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    data: list[DataRef] = field(default_factory=list)
    summary: str = ""
    checks: list[CalibrationCheck] = field(default_factory=list)
    seeds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MeasureContext:
    """Per-task context: the seed, generators derived from it, inputs, and progress reporting."""

    seed: int
    progress: ProgressFn = _no_progress
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    markers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def dataset(self, name: str) -> Dataset:
        """The prompt set ``name`` of the run spec."""
        try:
            return self.datasets[name]
        except KeyError:
            raise ConfigError(
                f"this measurement needs the dataset {name!r}",
                hint=f'add "{name}" = "FILE.jsonl" to [datasets] in the run spec',
            ) from None

    def data_ref(self, name: str, description: str = "") -> DataRef:
        """How a record names the prompt set ``name`` it used: by sha256 and count."""
        ds = self.dataset(name)
        return DataRef(name=name, sha256=ds.sha256, count=ds.count, description=description)

    def marker_phrases(self, kind: str) -> tuple[str, ...]:
        """The run spec's ``[markers]`` phrases of ``kind`` (refusal, defection, helpful)."""
        phrases = self.markers.get(kind, ())
        if not phrases:
            raise ConfigError(
                f"this measurement needs [markers].{kind} in the run spec",
                hint=f'e.g. {kind} = ["I cannot"]',
            )
        return tuple(phrases)

    def derive_seed(self, label: str) -> int:
        """A stable 31-bit seed for one use (``label``) of this task's seed."""
        digest = hashlib.sha256(f"{self.seed}:{label}".encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    def numpy_rng(self, label: str) -> np.random.Generator:
        """A numpy generator seeded with :meth:`derive_seed` of ``label``."""
        return np.random.default_rng(self.derive_seed(label))

    def torch_generator(self, label: str) -> torch.Generator:
        """A CPU torch generator seeded with :meth:`derive_seed` of ``label``."""
        import torch

        generator = torch.Generator(device="cpu")
        generator.manual_seed(self.derive_seed(label))
        return generator


#: ``fn(model, params, ctx) -> MeasurementResult``.
MeasurementFn = Callable[[LoadedModel, Any, MeasureContext], MeasurementResult]
F = TypeVar("F", bound=Callable[..., MeasurementResult])


@dataclass(frozen=True)
class MeasurementDef:
    """A registered measurement: id, version, parameter model, clause mappings, function."""

    id: str
    version: str
    params: type[BaseModel]
    clauses: tuple[ClauseRef, ...]
    experimental: bool
    fn: MeasurementFn
    datasets: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()

    def validate_params(self, raw: Mapping[str, Any]) -> BaseModel:
        """Parse ``raw`` into the parameter model; ConfigError names the offending key."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"measurement {self.id!r}: parameters must be a table of key = value")
        try:
            return self.params.model_validate(dict(raw))
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                key = ".".join(str(part) for part in err["loc"])
                if err["type"] == "extra_forbidden":
                    problems.append(f"unknown parameter {key!r}")
                elif not key:  # a rule over several parameters
                    problems.append(str(err["msg"]).removeprefix("Value error, "))
                else:
                    problems.append(f"parameter {key!r}: {err['msg']}")
            known = ", ".join(sorted(self.params.model_fields))
            raise ConfigError(
                f"measurement {self.id!r}: " + "; ".join(problems),
                hint=f"known parameters: {known}" if known else "this measurement takes no parameters",
            ) from None


_REGISTRY: dict[str, MeasurementDef] = {}
_builtins_loaded = False


def measurement(
    id: str,
    *,
    version: str,
    params: type[BaseModel],
    clauses: Sequence[ClauseRef] = (),
    experimental: bool = False,
    datasets: Sequence[str] = (),
    markers: Sequence[str] = (),
) -> Callable[[F], F]:
    """Register ``fn(model, params, ctx) -> MeasurementResult`` under ``id`` and ``version``.

    ``datasets`` and ``markers`` name the run-spec inputs the measurement cannot run without;
    a task lacking one is refused before any work starts.
    """
    if not _ID_PATTERN.match(id):
        raise ValueError(f"measurement id {id!r} must look like 'family.name' (lower case)")
    if not _VERSION_PATTERN.match(version):
        raise ValueError(f"measurement {id!r}: version {version!r} is not MAJOR.MINOR.PATCH")
    config = params.model_config
    if config.get("extra") != "forbid" or not config.get("frozen"):
        raise TypeError(
            f"measurement {id!r}: parameter model {params.__name__} must be frozen with "
            "extra='forbid' (subclass MeasurementParams)"
        )

    def register(fn: F) -> F:
        existing = _REGISTRY.get(id)
        if existing is not None and (
            existing.fn.__module__,
            existing.fn.__qualname__,
        ) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"measurement id {id!r} is already registered by {existing.fn.__module__}")
        _REGISTRY[id] = MeasurementDef(
            id=id,
            version=version,
            params=params,
            clauses=tuple(clauses),
            experimental=experimental,
            fn=fn,
            datasets=tuple(datasets),
            markers=tuple(markers),
        )
        return fn

    return register


def registered() -> Mapping[str, MeasurementDef]:
    """Every registered measurement by id (the built-in ones are imported on first call)."""
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True
    return MappingProxyType(_REGISTRY)


@dataclass(frozen=True)
class Task:
    """One unit of work: a measurement with parameters and a seed, on one model."""

    measurement_id: str
    params: dict[str, Any]
    seed: int
    subject: ModelSpec
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    markers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A private copy: a task never shares mutable state with its creator.
        object.__setattr__(self, "params", copy.deepcopy(dict(self.params)))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"task {self.measurement_id!r}: seed must be a non-negative integer")


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _record_id(measurement_id: str, subject: str) -> str:
    return f"{measurement_id}:{_RECORD_ID_UNSAFE.sub('-', subject)}"


def check_task(task: Task) -> tuple[MeasurementDef, BaseModel]:
    """Refuse, before any work, a task that cannot run: unknown id, bad parameters, missing inputs."""
    defs = registered()
    definition = defs.get(task.measurement_id)
    if definition is None:
        raise ConfigError(
            f"unknown measurement {task.measurement_id!r}",
            hint="registered measurements: " + ", ".join(sorted(defs)),
        )
    params = definition.validate_params(task.params)
    for name in definition.datasets:
        if name not in task.datasets:
            raise ConfigError(
                f"measurement {definition.id!r} needs the dataset {name!r}",
                hint=f'add "{name}" = "FILE.jsonl" to [datasets] in the run spec',
            )
    for kind in definition.markers:
        if not task.markers.get(kind):
            raise ConfigError(
                f"measurement {definition.id!r} needs [markers].{kind} in the run spec",
                hint=f'e.g. {kind} = ["I cannot"]',
            )
    return definition, params


def run_task(task: Task, model: LoadedModel, *, progress: ProgressFn | None = None) -> EvidenceRecord:
    """Run ``task`` on ``model`` and return its record (``status="error"`` on any failure inside)."""
    definition, params = check_task(task)
    if model.spec != task.subject:
        raise ConfigError(
            f"task for {task.subject.describe()} was given {model.spec.describe()}",
            hint="load the task's subject model before running it",
        )
    spec = MeasurementSpec(id=definition.id, version=definition.version, params=params.model_dump(mode="json"))
    subject = model.identity.name
    common: dict[str, Any] = {
        "record_id": _record_id(definition.id, subject),
        "measurement": spec,
        "subject": subject,
        "clauses": list(definition.clauses),
        "experimental": definition.experimental,
    }
    ctx = MeasureContext(
        seed=task.seed, progress=progress or _no_progress, datasets=task.datasets, markers=task.markers
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
            seeds={"task": task.seed, **result.seeds},
            metrics=list(result.metrics),
            tables=list(result.tables),
            checks=list(result.checks),
            data=list(result.data),
            summary=result.summary,
            duration_s=time.perf_counter() - start,
        )
    except Exception as exc:  # every failure inside a measurement is recorded
        message = str(exc).strip() or repr(exc)
        return EvidenceRecord(
            **common,
            status="error",
            error=ErrorInfo(type=type(exc).__name__, message=message),
            seeds={"task": task.seed},
            duration_s=time.perf_counter() - start,
        )
