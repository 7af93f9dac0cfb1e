"""The pre-run check's report: problems first, grouped by source, then one row per measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.check import CheckReport, MeasurementRow, Problem
from evidence.measure.memory import MemoryEstimate


def test_the_report_groups_problems_by_source_errors_first_then_rows_then_the_bottom_line():
    memory = MemoryEstimate("refusal.direction", weights=1024, activations=2048, gradients=0, batch=8, tokens=40)
    report = CheckReport(
        spec=Path("/specs/run.toml"),
        model="organism 'demo'",
        problems=(
            Problem("markers", "marker 'Sure' splits", "prefer one token", "warning"),
            Problem("spec", "unknown measurement 'x'", "did you mean 'y'?"),
            Problem("markers", "marker 'zz' is unknown"),
        ),
        rows=(
            MeasurementRow("refusal.direction", "2.1.0", memory),
            MeasurementRow("heads.inventory", "2.1.0", seconds=95.0),
        ),
        available_memory=(8 * 2**30, "the budget INTERP_DOSSIER_MEMORY_BUDGET"),
    )
    assert report.lines() == [
        "run spec: /specs/run.toml",
        "model: organism 'demo'",
        "problems:",
        "  spec:",
        "    error: unknown measurement 'x' (did you mean 'y'?)",
        "  markers:",
        "    error: marker 'zz' is unknown",
        "    warning: marker 'Sure' splits (prefer one token)",
        "measurements:",
        "  measurement        version  peak memory (estimate)            time (estimate)",
        "  refusal.direction  2.1.0    3.0 KiB (8 x 40 tokens per pass)  not estimated",
        "  heads.inventory    2.1.0    not estimated                     about 2 min",
        "memory available: 8.0 GiB (the budget INTERP_DOSSIER_MEMORY_BUDGET)",
        "FAILED: 2 errors, 1 warning; fix the errors before `run`",
    ]
    assert not report.ok


def test_a_report_with_warnings_only_is_ready_to_run():
    report = CheckReport(spec=None, model=None, problems=(Problem("policy", "p", severity="warning"),))
    assert report.ok
    assert report.lines()[-1] == "OK: ready to run (1 warning)"


def test_a_problem_names_a_known_source():
    with pytest.raises(ValueError, match="not one of"):
        Problem("elsewhere", "m")
