"""Re-run the measurements a dossier records and compare, metric by metric (``interp-dossier reproduce``).

Each record is re-measured with its recorded version, parameters and task seed,
on the same model (its weights digest must match the dossier's) and the same
prompt sets (each dataset's sha256 must match the record's). Per metric the
recorded and the reproduced value (and interval bounds) are compared: identical,
within the tolerance the record declares, or different. On the organisms, on
the machine that made the dossier, every metric is identical.

This checks that the numbers follow from the model and the data; that the files
are the signed ones is ``verify``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from evidence.datasets import Dataset
from evidence.errors import ConfigError
from evidence.records import Dossier, EvidenceRecord, Metric, Tolerance
from evidence.runspec import RunSpec

__all__ = ["MetricComparison", "RecordComparison", "compare_records", "reproduce"]

Agreement = Literal["identical", "within tolerance", "differs"]


@dataclass(frozen=True)
class MetricComparison:
    """One metric: recorded, reproduced, and how they agree."""

    name: str
    recorded: float
    reproduced: float | None
    agreement: Agreement
    difference: float | None = None


@dataclass(frozen=True)
class RecordComparison:
    """One record re-measured."""

    record_id: str
    measurement: str
    metrics: list[MetricComparison] = field(default_factory=list)
    problem: str | None = None

    @property
    def reproduced(self) -> bool:
        """True when the re-run succeeded and every metric agrees."""
        return self.problem is None and all(m.agreement != "differs" for m in self.metrics)


def _agree(recorded: float, reproduced: float, tolerance: Tolerance) -> Agreement:
    if recorded == reproduced or (math.isnan(recorded) and math.isnan(reproduced)):
        return "identical"
    if abs(reproduced - recorded) <= tolerance.absolute + tolerance.relative * abs(recorded):
        return "within tolerance"
    return "differs"


def _compare_metric(recorded: Metric, reproduced: Metric | None, tolerance: Tolerance) -> MetricComparison:
    if reproduced is None:
        return MetricComparison(recorded.name, recorded.value, None, "differs")
    pairs = [(recorded.value, reproduced.value)]
    if recorded.ci is not None and reproduced.ci is not None:
        pairs += [(recorded.ci.lower, reproduced.ci.lower), (recorded.ci.upper, reproduced.ci.upper)]
    elif (recorded.ci is None) != (reproduced.ci is None):
        return MetricComparison(recorded.name, recorded.value, reproduced.value, "differs")
    outcomes = [_agree(a, b, tolerance) for a, b in pairs]
    worst: Agreement = (
        "differs" if "differs" in outcomes else "within tolerance" if "within tolerance" in outcomes else "identical"
    )
    difference = reproduced.value - recorded.value
    return MetricComparison(recorded.name, recorded.value, reproduced.value, worst, difference)


def compare_records(recorded: EvidenceRecord, reproduced: EvidenceRecord, default: Tolerance) -> RecordComparison:
    """How ``reproduced`` agrees with ``recorded``, metric by metric, with the record's declared tolerance."""
    measurement = recorded.measurement.id
    if reproduced.status != recorded.status:
        why = reproduced.error.message if reproduced.error else ""
        return RecordComparison(recorded.record_id, measurement, problem=f"recorded {recorded.status}, re-run "
                                f"{reproduced.status}{': ' + why if why else ''}")  # fmt: skip
    tolerance = recorded.tolerance or default
    by_name = {m.name: m for m in reproduced.metrics}
    metrics = [_compare_metric(m, by_name.get(m.name), tolerance) for m in recorded.metrics]
    generated = {d.name: d.sha256 for d in reproduced.data}
    changed = [d.name for d in recorded.data if d.name in generated and generated[d.name] != d.sha256]
    problem = f"the re-run drew other inputs: {', '.join(changed)}" if changed else None
    return RecordComparison(recorded.record_id, measurement, metrics, problem)


def reproduce(
    dossier: Dossier,
    spec: RunSpec,
    *,
    measurements: Sequence[str] | None = None,
    announce: Callable[[int, int, str], None] | None = None,
) -> list[RecordComparison]:
    """Re-measure the records of ``dossier`` (or those of ``measurements``) with the inputs ``spec`` names."""
    from evidence.measure import SharedResults, Task, registered, run_task
    from evidence.measure.registry import DEFAULT_TOLERANCE
    from evidence.measure.runtime import configure_determinism
    from evidence.model import ModelSpec, load_model

    records = [r for r in dossier.records if measurements is None or r.measurement.id in measurements]
    if measurements is not None:
        missing = sorted(set(measurements) - {r.measurement.id for r in dossier.records})
        if missing:
            raise ConfigError(f"the dossier records no {', '.join(missing)}", hint="see the dossier's records")
    _check_datasets(records, spec.datasets)
    defs = registered()
    configure_determinism(spec.seed, threads=dossier.environment.threads)
    model = load_model(
        ModelSpec(organism=spec.model_organism, path=spec.model_path, device=spec.model_device,
                  dtype=spec.model_dtype, n_gpus=spec.model_n_gpus)  # fmt: skip
    )
    if model.identity.weights_sha256 != dossier.model.weights_sha256:
        raise ConfigError(
            f"the model's weights digest {model.identity.weights_sha256[:16]} is not the dossier's "
            f"({dossier.model.weights_sha256[:16]}, {dossier.model.name})",
            hint="reproduce on the model the dossier was made from (--model)",
        )
    markers = {kind: tuple(phrases) for kind, phrases in spec.markers.items()}
    datasets = _as_limited(dossier, spec)
    shared = SharedResults()
    out = []
    for i, record in enumerate(records, start=1):
        mid = record.measurement.id
        if announce is not None:
            announce(i, len(records), mid)
        definition = defs.get(mid)
        if definition is None or definition.version != record.measurement.version:
            have = "not registered" if definition is None else f"version {definition.version}"
            out.append(RecordComparison(record.record_id, mid, problem=f"recorded with version "
                                        f"{record.measurement.version}; this release has {have}"))  # fmt: skip
            continue
        task = Task(
            measurement_id=mid,
            params=dict(record.measurement.params),
            seed=record.seeds.get("task", spec.seed),
            subject=model.spec,
            datasets=datasets,
            markers=markers,
            profile=record.profile,
            prompt_limit=record.prompt_limit,
        )
        again = run_task(task, model, shared=shared)
        out.append(compare_records(record, again, DEFAULT_TOLERANCE))
    return out


def _as_limited(dossier: Dossier, spec: RunSpec) -> Mapping[str, Dataset]:
    """The run spec's datasets cut as the dossier's run cut them (``run --limit``), else as they are."""
    if dossier.prompt_limit is None:
        return spec.datasets
    from evidence.datasets import limit_prompts

    seed = dossier.environment.seeds.get("run", spec.seed)
    return {name: limit_prompts(d, dossier.prompt_limit, seed) for name, d in spec.datasets.items()}


def _check_datasets(records: Sequence[EvidenceRecord], datasets: Mapping[str, Dataset]) -> None:
    """Every prompt set a record was measured on, where the run spec names it, must have the recorded sha256."""
    for record in records:
        for ref in record.data:
            dataset = datasets.get(ref.name)
            if dataset is not None and dataset.sha256 != ref.sha256:
                raise ConfigError(
                    f"prompt set {ref.name} has sha256 {dataset.sha256[:16]}, but {record.record_id} was measured "
                    f"on {ref.sha256[:16]}",
                    hint=f"pass the prompt set the dossier was made with: --data {ref.name}=FILE",
                )
