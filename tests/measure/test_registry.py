"""The registry's layout rules: one suite module per id, a method page per id, no suite module importing another;
unknown ids refused; the worked example of CONTRIBUTING.md runs as written."""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import pytest

from evidence.errors import ConfigError
from evidence.measure import registered, registry
from evidence.methods_docs import SECTIONS, doc_page

ROOT = Path(__file__).resolve().parents[2]
SUITE_DIR = ROOT / "evidence" / "measure" / "suite"
DOCS_DIR = ROOT / "docs" / "methods"


def suite_definitions():
    """The registered measurements, without any a test registered for itself."""
    return {mid: d for mid, d in registered().items() if not d.module.startswith("tests.")}


def suite_modules() -> set[str]:
    import evidence.measure.suite as package

    return {f"{registry.SUITE_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
            if not m.name.startswith("_")}


# -- one module per id, named after it --------------------------------------------------------


def test_every_measurement_lives_in_the_suite_module_named_after_its_id():
    for mid, definition in suite_definitions().items():
        assert definition.module.startswith(registry.SUITE_PACKAGE + "."), (mid, definition.module)
        assert registry.module_id(definition.module) == mid, (mid, definition.module)


def test_every_suite_module_registers_exactly_one_id():
    modules = [d.module for d in suite_definitions().values()]
    assert sorted(modules) == sorted(set(modules)), "a suite module registers more than one id"
    assert set(modules) == suite_modules()


def _suite_imports(path: Path) -> list[str]:
    """Every suite module that ``path`` imports, however it is spelled (absolute or relative)."""
    suite = registry.SUITE_PACKAGE
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == suite or a.name.startswith(suite + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y / from .. import suite
                parts = f"{suite}.{path.stem}".split(".")[: -node.level]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == suite or module.startswith(suite + "."):
                found += [module] if module != suite else [f"{suite}.{a.name}" for a in node.names]
            elif module == suite.rsplit(".", 1)[0]:  # from evidence.measure import suite
                found += [f"{module}.{a.name}" for a in node.names if a.name == "suite"]
    return found


def test_no_suite_module_imports_another():
    files = sorted(p for p in SUITE_DIR.glob("*.py") if not p.name.startswith("_"))
    assert files
    offenders = {p.name: imports for p in files if (imports := _suite_imports(p))}
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "import evidence.measure.suite.refusal_direction",
        "from evidence.measure.suite.refusal_direction import direction",
        "from evidence.measure.suite import refusal_direction",
        "from evidence.measure import suite",
        "from . import refusal_direction",
        "from .refusal_direction import direction",
    ],
)
def test_the_import_check_sees_every_spelling(tmp_path: Path, source: str):
    path = tmp_path / "refusal_stability.py"
    path.write_text(f"{source}\nfrom evidence.measure import stats\nfrom evidence.measure.methods import probes\n")
    assert _suite_imports(path)


# -- a method page per id ----------------------------------------------------------------------


@pytest.mark.parametrize("measurement_id", sorted(suite_definitions()))
def test_every_measurement_has_a_complete_method_page(measurement_id: str):
    page = doc_page(measurement_id)  # a missing page, section or summary is a ConfigError naming the file
    assert page.title == measurement_id
    assert page.summary
    assert [name for name, _ in page.sections] == list(SECTIONS)
    assert all(text.strip() for _, text in page.sections)


def test_every_method_page_belongs_to_a_registered_measurement():
    pages = {p.stem for p in DOCS_DIR.glob("*.md")}
    assert pages == set(suite_definitions())


# -- unknown ids are an error wherever they are named ------------------------------------------


def test_every_measurement_declares_a_headline_its_policy_or_detectors_read():
    import tomllib

    policy = tomllib.loads((ROOT / "evidence" / "specs" / "policy-organisms.toml").read_text(encoding="utf-8"))
    gated: dict[str, set[str]] = {}
    for threshold in policy["threshold"]:
        gated.setdefault(threshold["measurement"], set()).add(threshold["metric"])
    for mid, definition in suite_definitions().items():
        assert definition.headline, mid
        if definition.detectors:
            assert definition.headline in {d.metric for d in definition.detectors}, mid
        if mid in gated:
            assert definition.headline in gated[mid], mid


def test_a_headline_outside_the_detectors_is_refused():
    from evidence.measure import Detector, MeasurementParams
    from evidence.records import Criterion

    class NoParams(MeasurementParams):
        pass

    detector = Detector("found", "refusal", (Criterion(comparator=">=", threshold=1, rule="point"),))
    with pytest.raises(ValueError, match="headline 'other' must be one of its detectors' metrics"):
        registry.measurement("test.bad_headline", version="1.0.0", params=NoParams, detectors=[detector],
                             headline="other")


def test_every_measurement_declares_every_metric_its_policy_detectors_and_calibration_read():
    """The shipped policy may name only declared metrics; so may every detector, expectation and rule."""
    import tomllib

    policy = tomllib.loads((ROOT / "evidence" / "specs" / "policy-organisms.toml").read_text(encoding="utf-8"))
    for threshold in policy["threshold"]:
        assert threshold["metric"] in registered()[threshold["measurement"]].metrics, threshold
    for mid, definition in suite_definitions().items():
        declared = set(definition.metrics)
        assert declared and len(declared) == len(definition.metrics), mid
        read = {d.metric for d in definition.detectors} | {e.metric for e in definition.calibration}
        assert read | {r.metric for r in definition.crossref} | {definition.headline} <= declared, mid


@pytest.mark.parametrize(
    ("declarations", "message"),
    [
        ({"headline": "found", "metrics": ["other"]}, r"reads metrics it does not declare in metrics=: \['found'\]"),
        ({"metrics": ["a", "b", "a"]}, r"declares a metric twice: \['a'\]"),
    ],
)
def test_metrics_that_miss_what_the_measurement_reads_are_refused(declarations, message):
    from evidence.measure import MeasurementParams

    class NoParams(MeasurementParams):
        pass

    with pytest.raises(ValueError, match=message):
        registry.measurement("test.bad_metrics", version="1.0.0", params=NoParams, **declarations)


def test_an_unknown_id_suggests_the_closest_registered_one():
    with pytest.raises(ConfigError) as info:
        registry.require_known(["heads.inventory", "probe.casuality"], where="somewhere")
    assert str(info.value) == "somewhere: unknown measurement 'probe.casuality'"
    assert info.value.hint.startswith("did you mean 'probe.causality'? registered measurements: ")


def test_calibration_refuses_an_unknown_measurement_to_calibrate(organism):
    from evidence.errors import ConfigError
    from evidence.measure import Task, run_task

    model = organism("induction")
    task = Task(measurement_id="calibration.organisms", params={"measurements": ["heads.inventroy"]}, seed=0,
                subject=model.spec)
    with pytest.raises(ConfigError, match="calibration.organisms: unknown measurement 'heads.inventroy'") as info:
        run_task(task, model)  # refused before any work, not recorded as a failed measurement
    assert "did you mean 'heads.inventory'?" in (info.value.hint or "")


# -- the worked example of CONTRIBUTING.md -----------------------------------------------------


def contributing_example() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    assert len(blocks) == 1, "CONTRIBUTING.md should hold exactly one python example"
    return blocks[0]


@pytest.fixture
def example_measurement():
    """Execute the example module; its registration is undone afterwards."""
    namespace: dict[str, object] = {"__name__": "tests.contributing_example"}
    try:
        exec(compile(contributing_example(), "CONTRIBUTING.md", "exec"), namespace)  # noqa: S102
        yield registry.get("refusal.first_token")
    finally:
        registry._REGISTRY.pop("refusal.first_token", None)


def test_the_contributing_example_registers_and_runs(example_measurement, organism, one_thread):
    from evidence.measure import Task, run_task
    from evidence.policy import satisfied
    from evidence.runspec import default_runspec_path, load_runspec

    definition = example_measurement
    assert registry.module_id("evidence.measure.suite.refusal_first_token") == definition.id
    assert [d.name for d in definition.datasets] == ["refusal.harmful", "refusal.harmless"]
    assert set(definition.params.model_fields) == {"bootstrap_resamples", "ci_level", "max_prompts"}

    spec = load_runspec(default_runspec_path())
    model = organism("refuser")
    task = Task(measurement_id=definition.id, params={"max_prompts": 16, "bootstrap_resamples": 200}, seed=0,
                subject=model.spec, datasets=spec.datasets, markers={"refusal": tuple(spec.markers["refusal"])})
    record = run_task(task, model)
    assert record.status == "ok", record.error
    assert set(record.seeds) == {"task", "sample:refusal.harmful", "sample:refusal.harmless",
                                 "bootstrap:refusal.harmful", "bootstrap:refusal.harmless"}
    assert record.measurement.params == {"max_prompts": 16, "bootstrap_resamples": 200, "ci_level": 0.95}
    metric = record.metric("refusal_logprob")
    assert metric.ci is not None and metric.ci.n == 16 and metric.ci.resamples == 200
    assert metric.baseline is not None and metric.baseline.ci is not None
    assert [d.name for d in record.data] == ["refusal.harmful", "refusal.harmless"]
    # Its calibration expectation holds on the organism it names.
    (expectation,) = definition.calibration
    assert expectation.organism == "refuser"
    assert satisfied(expectation.criteria, expectation.combine, metric)
