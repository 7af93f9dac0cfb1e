"""The measurement framework: the public face.

A measurement lives in one module of :mod:`evidence.measure.suite`, named
after its id, and declares everything about itself on its decorator::

    class Params(UncertaintyParams):
        n_sequences: int = 64

    @measurement(
        "heads.inventory", version="1.0.0", params=Params, clauses=[...],
        datasets=[DatasetUse.of("refusal.harmful", "harmful")], markers=["refusal"],
        calibration=[Expectation("induction", True, "induction_score_max", (Criterion(...),))],
    )
    def inventory(model: LoadedModel, params: Params, ctx: MeasureContext) -> MeasurementResult:
        ...

Layout:

* :mod:`~evidence.measure.registry` — the decorator, the registry, discovery of ``suite/``;
* :mod:`~evidence.measure.context` — :class:`MeasureContext`, parameters base classes, results;
* :mod:`~evidence.measure.runner` — :class:`Task`, :func:`run_task`, :func:`run_suite`;
* :mod:`~evidence.measure.cluster` — the same tasks on a Ray cluster (``--executor ray``; imported on demand);
* :mod:`~evidence.measure.stats` — every interval and test;
* :mod:`~evidence.measure.hooks` — scoped, checked hooks;
* :mod:`~evidence.measure.methods` — shared algorithms (no records);
* :mod:`~evidence.measure.suite` — one module per measurement id.

A suite module imports only the framework and ``methods/``, never another
suite module. Importing this package does not import torch; the suite modules
are imported on first use of the registry.
"""

from __future__ import annotations

from evidence.measure.context import (
    MeasureContext,
    MeasurementParams,
    MeasurementResult,
    ProgressFn,
    SharedResults,
    UncertaintyParams,
)
from evidence.measure.registry import (
    DatasetUse,
    Detector,
    Expectation,
    MeasurementDef,
    MeasurementFn,
    dataset_labels,
    get,
    measurement,
    registered,
    require_known,
)
from evidence.measure.runner import Task, check_task, run_suite, run_task

__all__ = [
    "DatasetUse",
    "Detector",
    "Expectation",
    "MeasureContext",
    "MeasurementDef",
    "MeasurementFn",
    "MeasurementParams",
    "MeasurementResult",
    "ProgressFn",
    "SharedResults",
    "Task",
    "UncertaintyParams",
    "check_task",
    "dataset_labels",
    "get",
    "measurement",
    "registered",
    "require_known",
    "run_suite",
    "run_task",
]
