"""Inputs and helpers shared by the tests of the deception measurements."""

from __future__ import annotations

from evidence.organisms.datasets import DATASET_FILES, data_dir
from evidence.organisms.language import MARKERS
from evidence.records import EvidenceRecord, Metric
from evidence.runspec import load_dataset

NAMES = ("deception.train", "deception.eval", "deception.control")
DATASETS = {name: load_dataset(name, data_dir() / DATASET_FILES[name]) for name in NAMES}
MARKER_TABLE = {kind: tuple(phrases) for kind, phrases in MARKERS.items()}


def metric(rec: EvidenceRecord, name: str) -> Metric:
    found = [m for m in rec.metrics if m.name == name]
    assert len(found) == 1, f"{rec.record_id}: metric {name!r} appears {len(found)} times"
    return found[0]


def names(rec: EvidenceRecord) -> set[str]:
    return {m.name for m in rec.metrics}
