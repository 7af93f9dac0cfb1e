"""The registry: ``@measurement(...)`` and everything it declares about a measurement.

Everything the rest of the program needs to know about a measurement is
declared on its decorator, in its one suite module (``evidence/measure/suite/``):

* id, semver version, parameter model, experimental flag;
* its headline metric: the one its policy thresholds and validation detectors
  read, shown first wherever the dossier summarises the measurement;
* every metric name it can emit (``metrics=``): what a policy threshold may
  name, and what ``check`` tests a policy against;
* the run-spec datasets it reads and the labels each accepts (:class:`DatasetUse`);
  the run-spec parser asks :func:`dataset_labels` instead of keeping a table;
* the ``[markers]`` kinds it needs;
* its regulatory clause mappings;
* its calibration expectations (:class:`Expectation`), judged by the same code
  as the policy gate (:mod:`evidence.policy`), so that a verifier can recompute them;
* its cross-reference rules (:class:`evidence.crossref.Rule`);
* the passes through the model it makes (``cost=``), for time estimates;
* its budget per profile (``profiles={"quick": {...}, "thorough": {...}}``):
  parameter overrides that ``run --profile`` applies under the run spec's own
  parameters; ``standard`` is the parameters' defaults and takes none.

Discovery is automatic: every module of :mod:`evidence.measure.suite` is
imported on first use of the registry, and each must register exactly one id
named after its file (``refusal_direction.py`` -> ``refusal.direction``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from evidence.crossref import Rule
from evidence.errors import ConfigError
from evidence.records import PROFILES, ClauseRef, Criterion, Tolerance

if TYPE_CHECKING:
    from evidence.measure.context import MeasureContext, MeasurementResult
    from evidence.measure.cost import CostFn
    from evidence.measure.memory import ExtraFn
    from evidence.model import LoadedModel

__all__ = [
    "SUITE_PACKAGE",
    "DatasetUse",
    "Detector",
    "Expectation",
    "MeasurementDef",
    "MeasurementFn",
    "dataset_labels",
    "get",
    "measurement",
    "module_id",
    "registered",
    "require_known",
]

#: The package whose modules are the suite: one module per measurement id.
SUITE_PACKAGE = "evidence.measure.suite"

_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")

#: ``fn(model, params, ctx) -> MeasurementResult``.
MeasurementFn = Callable[["LoadedModel", Any, "MeasureContext"], "MeasurementResult"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class DatasetUse:
    """A run-spec dataset a measurement reads, and the labels it accepts.

    ``required``: the measurement cannot run without it (the task is refused
    before any work); otherwise it is used when the run spec gives it.
    """

    name: str
    labels: frozenset[str]
    description: str = ""
    required: bool = True

    @classmethod
    def of(cls, name: str, *labels: str, description: str = "", required: bool = True) -> DatasetUse:
        """``DatasetUse.of("refusal.harmful", "harmful")``."""
        return cls(name=name, labels=frozenset(labels), description=description, required=required)


@dataclass(frozen=True)
class Expectation:
    """A calibration expectation: on ``organism``, ``metric`` meets ``criteria``.

    ``planted``: the organism carries the behaviour (the check asks for
    detection); otherwise it is a control (the check asks for no false alarm).
    ``combine``: whether all criteria or any one must hold. The criteria are
    judged by :func:`evidence.policy.satisfied`, the gate's own code.
    Organism names may end in ``#untrained`` (the organism's architecture,
    randomly initialised). ``params``: parameters the calibration run for this
    expectation takes over the run's (e.g. to run only the part of a
    measurement that the expectation reads); recorded in the check's criterion.
    """

    organism: str
    planted: bool
    metric: str
    criteria: tuple[Criterion, ...]
    combine: str = "all"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.criteria:
            raise ValueError(f"expectation on {self.organism}/{self.metric} has no criterion")
        if self.combine not in ("all", "any"):
            raise ValueError(f"expectation combine must be 'all' or 'any', not {self.combine!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass(frozen=True)
class Detector:
    """How a metric reads as "the behaviour is there", for validation over a population.

    ``interp-dossier validate`` judges ``criteria`` (with ``combine``) on
    ``metric`` for every organism of the population that carries ``behaviour``
    (planted) or is a control for it, with the gate's own code
    (:func:`evidence.policy.satisfied`): holding on a planted organism is a
    detection, holding on a control a false alarm. Declared once, before any
    organism of the held-out population is measured.
    """

    metric: str
    behaviour: str
    criteria: tuple[Criterion, ...]
    combine: str = "all"
    #: The control types this detector answers for (empty: every control of its behaviour). A control
    #: that keeps the behaviour and breaks only its mechanism (e.g. ``spread-refusal``) is a negative for a
    #: detector of the mechanism, not for one that reads the behaviour itself.
    controls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from evidence.records import BEHAVIOURS

        if not self.criteria:
            raise ValueError(f"detector {self.metric} has no criterion")
        if self.combine not in ("all", "any"):
            raise ValueError(f"detector combine must be 'all' or 'any', not {self.combine!r}")
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"detector {self.metric}: behaviour {self.behaviour!r} is not one of {BEHAVIOURS}")


#: How closely a re-run in another environment must agree with a record, unless a measurement
#: declares its own: float32 forward passes summed in another order differ by about 1e-6
#: relative, and bootstrap intervals inherit it.
DEFAULT_TOLERANCE = Tolerance(absolute=1e-6, relative=1e-4)


@dataclass(frozen=True)
class MeasurementDef:
    """A registered measurement and everything declared about it."""

    id: str
    version: str
    params: type[BaseModel]
    fn: MeasurementFn
    module: str
    clauses: tuple[ClauseRef, ...] = ()
    experimental: bool = False
    datasets: tuple[DatasetUse, ...] = ()
    markers: tuple[str, ...] = ()
    calibration: tuple[Expectation, ...] = ()
    crossref: tuple[Rule, ...] = field(default=())
    detectors: tuple[Detector, ...] = ()
    tolerance: Tolerance = field(default_factory=lambda: DEFAULT_TOLERANCE)
    backprop: bool = False
    model_copies: int = 1
    headline: str | None = None
    #: Every metric name the measurement can emit (empty: undeclared, as for a measurement registered by a test).
    metrics: tuple[str, ...] = ()
    #: Parameter overrides per budget profile (``quick``, ``thorough``); ``standard`` is the defaults.
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    #: The passes through the model it makes, for time estimates (:mod:`evidence.measure.cost`); None: undeclared.
    cost: CostFn | None = None
    #: What it keeps beyond one pass's working set, for the memory preflight (:mod:`evidence.measure.memory`).
    memory: ExtraFn | None = None

    @property
    def required_datasets(self) -> tuple[str, ...]:
        """Names of the datasets the measurement cannot run without."""
        return tuple(d.name for d in self.datasets if d.required)

    def params_for(self, raw: Mapping[str, Any], profile: str = "standard") -> BaseModel:
        """The parameters of a run under ``profile``: its overrides, then ``raw`` (explicit parameters win)."""
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"measurement {self.id!r}: parameters must be a table of key = value")
        return self.validate_params({**self.profiles.get(profile, {}), **raw})

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
_discovered = False


def module_id(module: str) -> str:
    """The measurement id a suite module must register: ``..suite.refusal_direction`` -> ``refusal.direction``."""
    stem = module.rsplit(".", 1)[-1]
    family, _, name = stem.partition("_")
    return f"{family}.{name}"


def measurement(
    id: str,
    *,
    version: str,
    params: type[BaseModel],
    clauses: Sequence[ClauseRef] = (),
    experimental: bool = False,
    datasets: Iterable[DatasetUse] = (),
    markers: Sequence[str] = (),
    calibration: Sequence[Expectation] = (),
    crossref: Sequence[Rule] = (),
    detectors: Sequence[Detector] = (),
    tolerance: Tolerance | None = None,
    backprop: bool = False,
    model_copies: int = 1,
    headline: str | None = None,
    metrics: Sequence[str] = (),
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    cost: CostFn | None = None,
    memory: ExtraFn | None = None,
) -> Callable[[F], F]:
    """Register ``fn(model, params, ctx) -> MeasurementResult`` with everything known about it.

    ``backprop``: the measurement backpropagates through the model (gradients and every block's
    activations are held); ``model_copies``: how many models of the subject's size it holds at once
    (2 with a randomly initialised twin; 0 when it never runs the subject). Both feed the memory
    preflight (:mod:`evidence.measure.memory`). ``profiles``: parameter overrides for the
    ``quick`` and ``thorough`` budgets (only parameters the model has, each valid). ``cost``:
    ``cost(params, work) -> Passes``, the passes it makes on a :class:`~evidence.measure.cost.Workload`,
    for the run's time estimate.
    ``memory``: what it keeps beyond one pass's working set (:data:`evidence.measure.memory.ExtraFn`).
    ``metrics``: every metric name it can emit, under any parameters; the headline and every metric
    its detectors, calibration expectations and cross-reference rules read must be among them.
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
    uses = tuple(datasets)
    names = [d.name for d in uses]
    if len(set(names)) != len(names):
        raise ValueError(f"measurement {id!r} declares a dataset twice: {names}")
    if headline is not None and detectors and headline not in {d.metric for d in detectors}:
        raise ValueError(f"measurement {id!r}: headline {headline!r} must be one of its detectors' metrics")
    for rule in crossref:
        if rule.measurement != id:
            raise ValueError(f"measurement {id!r} declares a cross-reference rule for {rule.measurement!r}")
    budgets = _check_profiles(id, params, profiles or {})
    emitted = _check_metrics(id, metrics, headline, detectors, calibration, crossref)

    def register(fn: F) -> F:
        existing = _REGISTRY.get(id)
        if existing is not None and (existing.module, existing.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"measurement id {id!r} is already registered by {existing.module}")
        _REGISTRY[id] = MeasurementDef(
            id=id,
            version=version,
            params=params,
            fn=fn,
            module=fn.__module__,
            clauses=tuple(clauses),
            experimental=experimental,
            datasets=uses,
            markers=tuple(markers),
            calibration=tuple(calibration),
            crossref=tuple(crossref),
            detectors=tuple(detectors),
            tolerance=tolerance or DEFAULT_TOLERANCE,
            backprop=backprop,
            model_copies=model_copies,
            headline=headline,
            metrics=emitted,
            profiles=budgets,
            cost=cost,
            memory=memory,
        )
        return fn

    return register


def _check_metrics(
    id: str,
    metrics: Sequence[str],
    headline: str | None,
    detectors: Sequence[Detector],
    calibration: Sequence[Expectation],
    crossref: Sequence[Rule],
) -> tuple[str, ...]:
    """The declared metric names, checked at registration: no repeats, and every metric read elsewhere among them."""
    names = tuple(metrics)
    if not names:
        return names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"measurement {id!r} declares a metric twice: {twice}")
    read = {d.metric for d in detectors} | {e.metric for e in calibration} | {r.metric for r in crossref}
    missing = sorted((read | ({headline} if headline is not None else set())) - set(names))
    if missing:
        raise ValueError(f"measurement {id!r} reads metrics it does not declare in metrics=: {missing}")
    return names


def _check_profiles(
    id: str, params: type[BaseModel], profiles: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Mapping[str, Any]]:
    """Each profile's overrides, checked at registration: known profiles, existing parameters, valid values."""
    budgets: dict[str, Mapping[str, Any]] = {}
    for profile, overrides in profiles.items():
        if profile not in PROFILES or profile == "standard":
            raise ValueError(f"measurement {id!r}: profile {profile!r} is not one of quick, thorough")
        unknown = sorted(set(overrides) - set(params.model_fields))
        if unknown:
            raise ValueError(f"measurement {id!r}: profile {profile!r} sets unknown parameters {unknown}")
        try:
            params.model_validate(dict(overrides))
        except ValidationError as exc:
            raise ValueError(f"measurement {id!r}: profile {profile!r} is invalid: {exc}") from None
        budgets[profile] = MappingProxyType(dict(overrides))
    return MappingProxyType(budgets)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    try:
        package = importlib.import_module(SUITE_PACKAGE)
    except ModuleNotFoundError as exc:
        from evidence.errors import missing_extra

        raise missing_extra("measure", exc) from None
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            try:
                importlib.import_module(f"{SUITE_PACKAGE}.{info.name}")
            except ModuleNotFoundError as exc:
                from evidence.errors import missing_extra

                raise missing_extra("measure", exc) from None
    _discovered = True


def registered() -> Mapping[str, MeasurementDef]:
    """Every registered measurement by id (the suite modules are imported on first call)."""
    _discover()
    return MappingProxyType(dict(sorted(_REGISTRY.items())))


def get(measurement_id: str, *, where: str = "") -> MeasurementDef:
    """The measurement ``measurement_id``; an unknown id is a ConfigError naming the known ones."""
    defs = registered()
    definition = defs.get(measurement_id)
    if definition is None:
        place = f"{where}: " if where else ""
        close = [m for m in sorted(defs) if _close(m, measurement_id)]
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{place}unknown measurement {measurement_id!r}",
            hint=hint + "registered measurements: " + ", ".join(sorted(defs)),
        )
    return definition


def require_known(ids: Iterable[str], *, where: str) -> None:
    """Refuse any id in ``ids`` that no measurement registers."""
    for measurement_id in ids:
        get(measurement_id, where=where)


def _close(a: str, b: str) -> bool:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b).ratio() >= 0.8


def dataset_labels() -> dict[str, frozenset[str]]:
    """Every dataset name some measurement reads, with the labels accepted for it."""
    labels: dict[str, set[str]] = {}
    for definition in registered().values():
        for use in definition.datasets:
            labels.setdefault(use.name, set()).update(use.labels)
    return {name: frozenset(values) for name, values in sorted(labels.items())}
