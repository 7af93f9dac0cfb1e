"""Fixtures shared by the suite tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def deception_record(organism):
    """``deception_record(measurement, organism, seed=0)``: the record of a default run on the bundled
    deception sets and markers, computed once per test session (several modules read the same records)."""
    from evidence.measure import Task, run_task
    from evidence.model import ModelSpec
    from evidence.records import EvidenceRecord
    from tests.measure.suite._deception import DATASETS, MARKER_TABLE

    cache: dict[tuple[str, str, int], EvidenceRecord] = {}

    def run(measurement: str, name: str, seed: int = 0) -> EvidenceRecord:
        if (measurement, name, seed) not in cache:
            task = Task(measurement, {}, seed, ModelSpec(organism=name), datasets=DATASETS, markers=MARKER_TABLE)
            rec = run_task(task, organism(name))
            assert rec.status == "ok", rec.error
            cache[measurement, name, seed] = rec
        return cache[measurement, name, seed]

    return run
