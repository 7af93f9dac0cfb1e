"""The README's reference tables are the registry's, as generated."""

from __future__ import annotations

import typing
from pathlib import Path

from evidence.measure.registry import dataset_labels, registered
from evidence.records.core import DecisionRule
from evidence.reference import README_BEGIN, README_END, RULE_MEANINGS, readme_tables

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_generated_tables():
    readme = README.read_text(encoding="utf-8")
    assert readme.count(README_BEGIN) == 1 and readme.count(README_END) == 1, "README lost its table markers"
    shown = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    expected = readme_tables()
    assert shown == expected, f"replace README's reference tables (between the markers) with:\n{expected}"


def test_every_dataset_label_measurement_and_rule_has_a_row():
    tables = readme_tables()
    for name, labels in dataset_labels().items():
        row = next(line for line in tables.splitlines() if line.startswith(f"| `{name}` |"))
        assert all(f"`{label}`" in row for label in labels), row
    for measurement_id in registered():
        assert any(line.startswith(f"| `{measurement_id}`") for line in tables.splitlines()), measurement_id
    assert set(RULE_MEANINGS) == set(typing.get_args(DecisionRule))
    for rule in typing.get_args(DecisionRule):
        assert f"| `{rule}` |" in tables
