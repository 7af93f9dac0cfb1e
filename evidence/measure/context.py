"""What a measurement function is given and what it returns.

:class:`MeasureContext` carries one task's inputs (datasets, markers), its seed
and every seed derived from it (recorded by the context itself, so that a
record always names the seeds it used), progress reporting, and access to
intermediate results shared between measurements of one run
(:class:`SharedResults`), keyed by what they were computed from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evidence.datasets import Dataset
from evidence.errors import ConfigError
from evidence.records import CalibrationCheck, DataRef, Metric, Table

if TYPE_CHECKING:
    import torch

__all__ = [
    "MeasureContext",
    "MeasurementParams",
    "MeasurementResult",
    "ProgressFn",
    "SharedResults",
    "UncertaintyParams",
]

#: ``progress(fraction, message)``: fraction in [0, 1].
ProgressFn = Callable[[float, str], None]
T = TypeVar("T")


def _no_progress(fraction: float, message: str) -> None:
    """Default progress callback: ignore."""


class MeasurementParams(BaseModel):
    """Base class for measurement parameters: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class UncertaintyParams(MeasurementParams):
    """The parameters every measurement with intervals shares."""

    bootstrap_resamples: int = Field(default=1000, ge=100, description="bootstrap resamples for every interval")
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0, description="coverage of every confidence interval")


@dataclass
class MeasurementResult:
    """What a measurement function returns; the runner wraps it in a record."""

    metrics: list[Metric] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    data: list[DataRef] = field(default_factory=list)
    summary: str = ""
    checks: list[CalibrationCheck] = field(default_factory=list)


def _digest(parts: Mapping[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class SharedResults:
    """Intermediate results shared by the measurements of one run, computed once each.

    A result is keyed by its name and by everything it was computed from (the
    model's weights digest, dataset digests, parameters, seed), so that two
    tasks asking for the same thing get the same object, and a task asking
    with other inputs gets its own. The seeds a computation derived are stored
    with it and recorded again by every task that reuses it.
    """

    def __init__(self) -> None:
        self._store: dict[str, tuple[Any, dict[str, int]]] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self._store)

    def get_or_compute(self, key: str, compute: Callable[[], T], seeds: dict[str, int]) -> tuple[T, dict[str, int]]:
        """The stored value and seeds for ``key``, computing them the first time."""
        if key in self._store:
            self.hits += 1
            value, used = self._store[key]
            return value, dict(used)
        before = dict(seeds)
        value = compute()
        used = {k: v for k, v in seeds.items() if before.get(k) != v}
        self._store[key] = (value, used)
        return value, used


@dataclass
class MeasureContext:
    """Per-task context: the seed and the seeds derived from it, inputs, progress, shared results."""

    seed: int
    progress: ProgressFn = _no_progress
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    markers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subject_digest: str = ""
    #: At most this many prompts per dataset (``run --limit``): the task's datasets are already cut to it;
    #: a measurement that reads prompt sets of its own (the organisms') cuts them the same way.
    prompt_limit: int | None = None
    shared_results: SharedResults = field(default_factory=SharedResults)
    #: Every seed this task derived, by label (recorded in the record's ``seeds``).
    seeds: dict[str, int] = field(default_factory=dict)

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
        """A stable 31-bit seed for one use (``label``) of this task's seed; recorded under ``label``."""
        digest = hashlib.sha256(f"{self.seed}:{label}".encode()).digest()
        value = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
        self.seeds[label] = value
        return value

    def numpy_rng(self, label: str) -> np.random.Generator:
        """A numpy generator seeded with :meth:`derive_seed` of ``label``."""
        return np.random.default_rng(self.derive_seed(label))

    def torch_generator(self, label: str) -> torch.Generator:
        """A CPU torch generator seeded with :meth:`derive_seed` of ``label``."""
        import torch

        generator = torch.Generator(device="cpu")
        generator.manual_seed(self.derive_seed(label))
        return generator

    def shared(self, name: str, key: Mapping[str, Any], compute: Callable[[], T]) -> T:
        """An intermediate result shared across this run's tasks, computed once per key.

        ``key`` names everything the result depends on besides the model and
        the seed, which are always part of it (e.g. dataset digests and the
        parameters used). Seeds derived while computing it are recorded in
        this task too.
        """
        full = {"name": name, "model": self.subject_digest, "seed": self.seed, **dict(key)}
        value, used = self.shared_results.get_or_compute(_digest(full), compute, self.seeds)
        self.seeds.update(used)
        return value

    @contextmanager
    def stage(self, message: str, start: float, end: float) -> Iterator[Callable[[float], None]]:
        """Report progress of one stage: yields ``advance(fraction_of_stage)``; reports start and end."""
        span = max(end - start, 0.0)
        self.progress(start, message)

        def advance(fraction: float) -> None:
            self.progress(start + span * min(max(fraction, 0.0), 1.0), message)

        yield advance
        self.progress(end, message)
