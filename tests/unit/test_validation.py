"""Validation over a population: rates that recount, and thresholds that require them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.cli import main
from evidence.policy import evaluate, load_policy, roll_up
from evidence.records import (
    ConfidenceInterval,
    Criterion,
    DetectorValidation,
    OrganismOutcome,
    Rate,
    Threshold,
    ValidationEnvironment,
    ValidationReport,
    ValidationRequirement,
)
from tests.factories import make_policy, make_record

CRITERION = Criterion(comparator=">=", threshold=0.5, rule="ci-bound")


def cp(k: int, n: int) -> Rate:
    from evidence.measure.stats import clopper_pearson_interval

    return Rate(k=k, n=n, rate=k / n, ci=clopper_pearson_interval(k, n))


def outcome(name: str, role: str, fired: bool, **extra) -> OrganismOutcome:
    return OrganismOutcome(organism=name, role=role, architecture="gpt2", language="L1", seed=1, split="heldout",
                           status="ok", value=0.9 if fired else 0.1, fired=fired, **extra)


def detector(planted: tuple[int, int], controls: tuple[int, int], *, version="1.0.0", params=None):
    organisms = [outcome(f"p{i}", "planted", i < planted[0]) for i in range(planted[1])]
    organisms += [outcome(f"c{i}", "control", i < controls[0]) for i in range(controls[1])]
    return DetectorValidation(
        measurement="heads.inventory", version=version, params=params if params is not None else {"n_sequences": 8},
        metric="induction_score_max", behaviour="induction", criteria=[CRITERION], combine="all",
        criterion="induction_score_max: CI lower bound >= 0.5", detection=cp(*planted), false_alarms=cp(*controls),
        errors=0, organisms=organisms,
    )


def report(*detectors: DetectorValidation) -> tuple[ValidationReport, str]:
    r = ValidationReport(
        population="heldout", population_digest="d" * 64, tuned_on=["dev"], organisms=["p0"],
        created_at=datetime(2026, 12, 1, tzinfo=UTC), producer="interp-dossier 0", seed=0, level=0.95,
        environment=ValidationEnvironment(python="3.11", torch=None, transformer_lens=None, transformers=None,
                                          platform="Linux", cpu_capability=None, threads=1),
        detectors=list(detectors),
    )
    return r, sha256_hex(canonical_bytes(r))


def test_rates_must_recount_from_the_organisms():
    good = detector((9, 9), (1, 12))
    assert good.summary().startswith("heads.inventory 1.0.0 induction_score_max: detected 9/9 [66%, 100%]")
    with pytest.raises(ValidationError, match="do not recount"):
        DetectorValidation.model_validate({**good.model_dump(), "detection": cp(8, 9).model_dump()})
    with pytest.raises(ValidationError, match="not 1/2"):
        Rate(k=1, n=2, rate=0.4, ci=ConfidenceInterval(lower=0.0, upper=1.0, level=0.95, method="m", n=2))
    with pytest.raises(ValidationError, match="never fires"):
        OrganismOutcome(organism="x", role="planted", architecture="a", language="l", seed=0, split="s",
                        status="error", fired=True, error="boom")


def gated(**requirement) -> Threshold:
    return Threshold(id="induction-present", measurement="heads.inventory", metric="induction_score_max",
                     comparator=">=", threshold=0.5, rationale="r", validation=ValidationRequirement(**requirement))


def spot_checked(digest: str | None, *agreements: bool, metric="induction_score_max"):
    """A calibration record whose spot checks of heads.inventory against report ``digest`` agree or not."""
    from evidence.records import CalibrationCheck, MeasurementSpec

    checks = [
        CalibrationCheck(measurement="heads.inventory", organism=f"m{i}", planted=True, metric=metric, value=0.9,
                         criteria=[CRITERION], criterion="spot check", expected="holds" if agrees else "fails",
                         validation_report=digest, passed=agrees)
        for i, agrees in enumerate(agreements)
    ]  # fmt: skip
    return make_record("calibration.organisms:toy", checks=checks,
                       measurement=MeasurementSpec(id="calibration.organisms", version="1.3.0", params={}))


def judged(threshold: Threshold, validation, record=None, spot=None):
    """The verdict of ``threshold``; by default the run's spot check agrees with the report."""
    policy = make_policy(thresholds=[threshold])
    if spot is None:
        spot = spot_checked(validation[1] if validation else None, True, True)
    return evaluate(policy, [record or make_record(), spot], subject="toy", validation=validation)[0]


def test_a_validated_instrument_decides_and_the_verdict_cites_its_validation():
    r, digest = report(detector((9, 9), (0, 12)))
    verdict = judged(gated(min_detection=0.6, max_false_alarms=0.3), (r, digest))
    assert verdict.verdict == "pass"
    assert verdict.validation_report == digest
    assert "detected 9/9" in verdict.validation and "false alarms 0/12" in verdict.validation


def absent_record():
    """A reading below the detector's criterion: the instrument reports the behaviour absent."""
    from evidence.records import Metric

    ci = ConfidenceInterval(lower=0.05, upper=0.15, level=0.95, method="percentile bootstrap", n=8, resamples=100)
    return make_record(metrics=[Metric(name="induction_score_max", value=0.1, unit="score", ci=ci)])


@pytest.mark.parametrize(
    ("validation", "absent", "reason"),
    [
        (None, False, "no validation report"),
        (report(detector((5, 9), (0, 12))), True, "absent, but its detection rate is not validated high enough"),
        (report(detector((5, 9), (0, 12))), True, "lower bound 0.21 < 0.60 (5/9 planted organisms detected)"),
        (report(detector((9, 9), (4, 12))), False, "present, but its false-alarm rate is not validated low enough"),
        (report(detector((9, 9), (4, 12))), False, "upper bound 0.65 > 0.20 (4/12 controls)"),
        (report(detector((9, 9), (0, 12), version="0.9.0")), False, "validated as version 0.9.0"),
        (report(detector((9, 9), (0, 12), params={"n_sequences": 64})), False, "parameters other than the validated"),
    ],
)
def test_an_instrument_short_of_its_validation_leaves_the_verdict_inconclusive(validation, absent, reason):
    verdict = judged(gated(), validation, absent_record() if absent else make_record())
    assert verdict.verdict == "inconclusive"
    assert reason in verdict.reason
    assert roll_up([verdict]).decision == "inconclusive"


def test_a_reading_rests_on_the_rate_that_makes_it_credible():
    """'Present' needs rare false alarms, 'absent' needs sure detection; the other rate does not block it."""
    misses = report(detector((5, 9), (0, 12)))  # misses planted organisms, never false-alarms
    present = judged(gated(max_false_alarms=0.3), misses)
    assert present.verdict == "pass" and "reports the behaviour present" in present.validation
    assert judged(gated(max_false_alarms=0.3), misses, absent_record()).verdict == "inconclusive"
    alarms = report(detector((9, 9), (4, 12)))  # detects every planted organism, false-alarms often
    absent = judged(gated(), alarms, absent_record())
    assert absent.verdict == "fail" and "reports the behaviour absent" in absent.validation
    assert judged(gated(), alarms).verdict == "inconclusive"


def test_the_runs_spot_check_must_confirm_the_report():
    r, digest = report(detector((9, 9), (0, 12)))
    requirement = gated(max_false_alarms=0.3)
    assert judged(requirement, (r, digest)).verdict == "pass"
    disagrees = judged(requirement, (r, digest), spot=spot_checked(digest, True, False))
    assert disagrees.verdict == "inconclusive" and "disagrees with the validation report on m1" in disagrees.reason
    for missing in (spot_checked(digest), spot_checked("f" * 64, True), spot_checked(digest, True, metric="other")):
        verdict = judged(requirement, (r, digest), spot=missing)
        assert verdict.verdict == "inconclusive" and "no spot check in this run" in verdict.reason


def test_a_spot_check_expects_what_the_report_recorded():
    """A check that expects the criteria to fail passes when they fail, and never on a missing value."""
    from evidence.policy import check_passes
    from evidence.records import CalibrationCheck

    def check(value, expected):
        point = Criterion(comparator=">=", threshold=0.5, rule="point")
        return CalibrationCheck(measurement="heads.inventory", organism="m", planted=True, metric="x", value=value,
                                criteria=[point], criterion="c", expected=expected, passed=False)

    assert check_passes(check(0.9, "holds")) and not check_passes(check(0.1, "holds"))
    assert check_passes(check(0.1, "fails")) and not check_passes(check(0.9, "fails"))
    assert not check_passes(check(None, "fails"))


def test_the_spot_check_re_measures_organisms_of_the_report_and_compares(temporary_measurement, monkeypatch):
    """Over the bundled population: agreement, a changed instrument, a changed population, a failed run."""
    from evidence.measure import Detector, MeasurementResult
    from evidence.records import Metric
    from evidence.validation import bundled_population, spot_check, validate
    from evidence.validation_report import report_bytes

    fires_on = {"refuser"}

    def reads_the_name(model, params, ctx):
        if "broken" in fires_on:
            raise RuntimeError("cannot read")
        value = 1.0 if model.identity.name in fires_on else 0.0
        return MeasurementResult(metrics=[Metric(name="score", value=value, unit="0/1")], summary="")

    point = (Criterion(comparator=">=", threshold=1, rule="point"),)
    temporary_measurement("val.spot", reads_the_name, detectors=[Detector("score", "refusal", point)])
    r = validate(bundled_population(), measurements=["val.spot"])
    digest = sha256_hex(report_bytes(r))
    checks = spot_check(r, digest)
    assert [(c.organism, c.expected, c.passed) for c in checks] == [
        ("refuser", "holds", True), ("refuser-control", "fails", True)]
    assert all(c.validation_report == digest and c.record_digest for c in checks)

    fires_on.add("refuser-control")  # the instrument now raises a false alarm the report did not record
    assert [c.passed for c in spot_check(r, digest)] == [True, False]
    fires_on.add("broken")
    failed = spot_check(r, digest)
    assert not any(c.passed for c in failed) and "not evaluated: RuntimeError: cannot read" in failed[0].criterion
    fires_on.discard("broken")

    stale = r.model_copy(update={"detectors": [r.detectors[0].model_copy(update={"version": "0.0.1"})]})
    assert all("validated as version 0.0.1" in c.criterion and not c.passed for c in spot_check(stale, digest))
    moved = r.model_copy(update={"population_digest": "0" * 64})
    assert all("not the one the validation report was measured on" in c.criterion for c in spot_check(moved, digest))
    assert spot_check(r, digest, per_role=0) == []

    # in a run: calibration.organisms spot-checks the shipped report, and the verifier recomputes its checks
    from evidence.measure import Task, run_task
    from evidence.model import ModelSpec, load_model
    from evidence.policy import check_passes

    fires_on.discard("refuser-control")
    monkeypatch.setattr("evidence.validation_report.shipped_report", lambda: (r, digest))
    subject = load_model(ModelSpec(organism="refuser"))
    task = Task("calibration.organisms", {"measurements": ["val.spot"]}, 0, subject.spec)
    record = run_task(task, subject)
    assert record.status == "ok", record.error
    assert [record.metric(m).value for m in ("spot_checks_total", "spot_checks_agreeing", "all_checks_passed")] == [
        2, 2, 1]
    assert "2 of 2 organisms re-measured here agree" in record.summary
    assert all(check_passes(c) == c.passed for c in record.checks)
    off = run_task(Task("calibration.organisms", {"measurements": ["val.spot"], "spot_check": 0}, 0, subject.spec),
                   subject)
    assert off.metric("spot_checks_total").value == 0 and off.checks == []


def test_execution_parameters_do_not_void_a_validation():
    r = report(detector((9, 9), (0, 12), params={"n_sequences": 8, "batch_size": 64}))
    assert judged(gated(max_false_alarms=0.3), r).verdict == "pass"


def test_a_report_without_the_metric_leaves_it_inconclusive():
    other = detector((9, 9), (0, 12)).model_copy(update={"metric": "something_else"})
    verdict = judged(gated(), report(other))
    assert verdict.verdict == "inconclusive" and "does not cover" in verdict.reason


def test_a_policy_declares_the_requirement_in_toml(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(
        'name = "p"\nversion = "1"\nset_by = "board"\nset_at = 2026-01-01T00:00:00Z\n\n[[threshold]]\n'
        'id = "t"\nmeasurement = "heads.inventory"\nmetric = "induction_score_max"\ncomparator = ">="\n'
        'threshold = 0.5\nrationale = "r"\nvalidation = { min_detection = 0.8, max_false_alarms = 0.1 }\n',
        encoding="utf-8",
    )
    t = load_policy(path).thresholds[0]
    assert t.validation == ValidationRequirement(min_detection=0.8, max_false_alarms=0.1)


def test_validate_counts_detections_false_alarms_and_failures(temporary_measurement):
    """A detector over the bundled refusal pair: the measurement fires on the refuser and fails on the control."""
    from evidence.measure import Detector, MeasurementResult
    from evidence.records import Metric
    from evidence.validation import bundled_population, validate

    def reads_the_name(model, params, ctx):
        if model.identity.name == "refuser-control":
            raise RuntimeError("cannot read this one")
        return MeasurementResult(metrics=[Metric(name="score", value=1.0, unit="0/1")], summary="")

    temporary_measurement("val.fixed", reads_the_name, detectors=[
        Detector("score", "refusal", (Criterion(comparator=">=", threshold=1, rule="point"),))])
    lines: list[str] = []
    r = validate(bundled_population(), measurements=["val.fixed"], progress=lines.append)
    (d,) = r.detectors
    assert (d.detection.k, d.detection.n, d.false_alarms.k, d.false_alarms.n, d.errors) == (1, 1, 0, 1, 1)
    assert d.detection.ci.lower > 0 and d.detection.ci.upper == 1.0  # exact interval, never [1, 1]
    failed = next(o for o in d.organisms if o.organism == "refuser-control")
    assert failed.status == "error" and "cannot read this one" in failed.error and not failed.fired
    assert [m for m in lines if m.startswith("[")] == [
        "[1/2] val.fixed on refuser (planted)", "[2/2] val.fixed on refuser-control (control)"]
    timings = [m for m in lines if not m.startswith("[")]
    assert len(timings) == 2 and timings[0].endswith(" s") and timings[1].endswith(" s (failed)")
    assert r.population == "bundled" and len(r.population_digest) == 64


def test_a_detector_counts_only_the_controls_it_answers_for_and_a_missing_metric_is_no_detection(
    temporary_measurement, tmp_path
):
    """A behaviour detector is not answerable for a control that keeps the behaviour (spread-refusal);
    a run that reports no such metric detected nothing and is not a failed run."""
    from evidence.measure import Detector, MeasurementResult
    from evidence.records import Metric
    from evidence.validation import Member, Population, validate

    def member(name, role, control_type=None):
        return Member(name=name, behaviour="refusal", role=role, control_type=control_type, architecture="gpt2",
                      language="L1", seed=1, split="dev", load=lambda: _Named(name), inputs=lambda: ({}, {}))

    def reads(model, params, ctx):
        name = model.identity.name
        metrics = [Metric(name="behaviour", value=1.0 if name != "never" else 0.0, unit="0/1")]
        if name == "planted":
            metrics.append(Metric(name="mechanism", value=1.0, unit="0/1"))
        return MeasurementResult(metrics=metrics, summary=f"read {name}")

    point = (Criterion(comparator=">=", threshold=1, rule="point"),)
    temporary_measurement("val.kinds", reads, detectors=[
        Detector("behaviour", "refusal", point, controls=("never-refuses",)),
        Detector("mechanism", "refusal", point)])
    population = Population(name="toy", digest="e" * 64, members=(
        member("planted", "planted"), member("never", "control", "never-refuses"),
        member("spread", "control", "spread-refusal")))
    behaviour, mechanism = validate(population, measurements=["val.kinds"]).detectors
    assert [o.organism for o in behaviour.organisms] == ["planted", "never"], behaviour.organisms  # spread refuses
    assert behaviour.control_types == ["never-refuses"]
    assert (behaviour.detection.k, behaviour.false_alarms.k, behaviour.false_alarms.n) == (1, 0, 1), behaviour.organisms
    assert [o.organism for o in mechanism.organisms] == ["planted", "never", "spread"]
    assert (mechanism.detection.k, mechanism.false_alarms.k, mechanism.false_alarms.n, mechanism.errors) == (1, 0, 2, 0)
    silent = [o for o in mechanism.organisms if o.role == "control"]
    assert all(o.status == "no-metric" and not o.fired and "no metric 'mechanism'" in o.error for o in silent)
    with pytest.raises(ValidationError, match="does not answer for"):
        DetectorValidation.model_validate(
            behaviour.model_dump() | {"control_types": ["spread-refusal"]})


class _Named:
    """The least a measurement needs of a loaded model here: a name and a spec."""

    def __init__(self, name: str) -> None:
        from types import SimpleNamespace

        from evidence.model import ModelSpec

        self.identity = SimpleNamespace(name=name, weights_sha256="a" * 64, processing={"batching": "left-padded"})
        self.spec = ModelSpec(organism=name)


def _fake_manifest(directory, names, *, row_changes=None):
    """A population manifest in ``directory`` with an entry (table row and one file digest) for each name."""
    from evidence.population import get_member

    entries = {n: {"member": {**get_member(n).as_dict(), **(row_changes or {})}, "files": {"x": "0" * 64}}
               for n in names}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps({"format": 1, "members": entries}), encoding="utf-8")


def test_the_cli_refuses_a_population_split_that_is_not_trained(tmp_path, capsys, monkeypatch):
    from evidence.population import ENV_POPULATION_DIR

    monkeypatch.setenv(ENV_POPULATION_DIR, str(tmp_path))
    assert main(["validate", "--population", "heldout", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "'heldout' split is incomplete" in err and "93 not trained" in err
    assert "interp-dossier population train --split heldout" in err
    assert not (tmp_path / "r.json").exists()


def test_a_population_split_is_its_trained_members_with_their_own_language_inputs(tmp_path):
    from evidence.population import members
    from evidence.validation import population_split

    dev = members("dev")
    _fake_manifest(tmp_path, [m.name for m in members()])
    population = population_split("dev", tmp_path)
    assert population.name == "dev" and [m.name for m in population.members] == [m.name for m in dev]
    assert {m.split for m in population.members} == {"dev"}
    first = population.members[0]
    assert (first.behaviour, first.role, first.language, first.seed) == (
        dev[0].behaviour, dev[0].role, dev[0].language, dev[0].seed)
    # A planted member has no control type (the report's outcomes refuse an empty one).
    assert {m.control_type for m in population.members if m.role == "planted"} == {None}
    assert {m.control_type for m in population.members if m.role == "control"} >= {"no-repeats", "spread-refusal"}
    # Each member reads its own language's prompt sets and markers.
    by_language = {m.language: m for m in population.members}
    assert set(by_language) == {"L1", "L2"}
    datasets, markers = by_language["L2"].inputs()
    assert markers["refusal"] == ("nokt veralt",) and "refusal.harmful" in datasets
    assert by_language["L1"].inputs()[1]["refusal"] == ("sorry i cannot",)
    everyone = population_split("all", tmp_path)
    assert len(everyone.members) == len(members()) and everyone.digest != population.digest
    # The digest covers the split's manifest entries only: training another split leaves it as it was.
    _fake_manifest(tmp_path, [m.name for m in dev])
    assert population_split("dev", tmp_path).digest == population.digest


def test_a_population_subset_and_its_errors(tmp_path):
    from evidence.errors import ConfigError
    from evidence.population import members
    from evidence.validation import population_split

    dev = [m.name for m in members("dev")]
    _fake_manifest(tmp_path, dev[:2])
    subset = population_split("dev", tmp_path, names=dev[:2])
    assert subset.name == "dev-subset" and [m.name for m in subset.members] == dev[:2]
    assert subset.digest != population_split("dev", tmp_path, names=dev[:1]).digest
    with pytest.raises(ConfigError, match="not members of the population's 'heldout' split"):
        population_split("heldout", tmp_path, names=dev[:1])
    with pytest.raises(ConfigError, match=r"31 not trained") as missing:
        population_split("dev", tmp_path)
    assert "population train --split dev" in missing.value.hint
    _fake_manifest(tmp_path, dev, row_changes={"steps": 1})
    with pytest.raises(ConfigError, match="33 trained for another table row"):
        population_split("dev", tmp_path)
    with pytest.raises(ConfigError, match="no population split 'test'"):
        population_split("test", tmp_path)


def test_a_written_report_reads_back(tmp_path):
    from evidence.validation_report import read_report, report_bytes

    r, digest = report(detector((9, 9), (1, 12)))
    path = tmp_path / "r.json"
    path.write_bytes(report_bytes(r))
    assert read_report(path) == r
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": "9"}), encoding="utf-8")
    from evidence.errors import ConfigError

    with pytest.raises(ConfigError, match="validation report"):
        read_report(path)


def cited_dossier(r: ValidationReport, digest: str, **changes):
    """A dossier whose verdict rests on report ``r`` and which cites it."""
    from evidence.validation_report import cite
    from tests.factories import make_dossier

    policy = make_policy(thresholds=[gated(max_false_alarms=0.3)])
    records = [make_record()]
    verdicts = evaluate(policy, records, subject="toy", validation=(r, digest))
    fields = dict(policy=policy, records=records, verdicts=verdicts, gate=roll_up(verdicts),
                  validation=cite(r, digest, records))
    return make_dossier(**(fields | changes))


def test_a_dossier_cites_the_report_and_says_how_its_run_relates_to_it():
    from evidence.validation_report import cite

    r, digest = report(detector((9, 9), (1, 12)))
    citation = cite(r, digest, [make_record()])
    (line,) = citation.detectors
    assert citation.report_sha256 == digest and citation.population == "heldout"
    assert (line.detection.k, line.detection.n, line.false_alarms.k, line.false_alarms.n) == (9, 9, 1, 12)
    assert line.architectures == ["gpt2"] and line.languages == ["L1"]
    assert line.run == "same"
    from evidence.records import MeasurementSpec

    other = MeasurementSpec(id="heads.inventory", version="1.1.0", params={"n_sequences": 8})
    assert cite(r, digest, [make_record(measurement=other)]).detectors[0].run == "other-version"
    other = MeasurementSpec(id="heads.inventory", version="1.0.0", params={"n_sequences": 64})
    assert cite(r, digest, [make_record(measurement=other)]).detectors[0].run == "other-params"
    assert cite(r, digest, []).detectors[0].run == "not-run"


def test_the_verifier_reads_the_cited_report_from_the_bundle():
    """Step 7 recomputes verdicts from the report the bundle carries, whatever report the verifier's release has."""
    from evidence.validation_report import report_bytes
    from signing.verify import _cited_validation, _Failed
    from tests.factories import make_dossier

    r, _ = report(detector((9, 9), (0, 12)))
    data = report_bytes(r)
    digest = sha256_hex(data)
    dossier = cited_dossier(r, digest)
    assert dossier.verdicts[0].validation_report == digest
    assert _cited_validation(dossier, {"validation-report.json": data}) == (r, digest)
    with pytest.raises(_Failed, match="the bundle has no validation-report.json"):
        _cited_validation(dossier, {})
    other = report_bytes(report(detector((8, 9), (0, 12)))[0])
    with pytest.raises(_Failed, match="not the report the dossier cites"):
        _cited_validation(dossier, {"validation-report.json": other})
    # a summary edited to look better than the report it cites
    edited = dossier.validation.model_copy(update={"detectors": []})
    with pytest.raises(_Failed, match="does not follow from the report"):
        _cited_validation(dossier.model_copy(update={"validation": edited}), {"validation-report.json": data})
    # verdicts resting on a report the dossier does not cite
    with pytest.raises(_Failed, match="does not cite"):
        _cited_validation(dossier.model_copy(update={"validation": None}), {})
    plain = make_dossier(policy=make_policy(), verdicts=[], gate=None)
    assert _cited_validation(plain, {}) is None
    with pytest.raises(_Failed, match="cites no validation report"):
        _cited_validation(plain, {"validation-report.json": data})


def test_a_signed_bundle_carries_the_cited_report_and_verifies(tmp_path, monkeypatch):
    """The report joins the bundle, signed and embedded; the PDF summarises it; the verifier passes all steps."""
    pytest.importorskip("weasyprint")
    from evidence.run import publish, sign_draft
    from evidence.validation_report import report_bytes
    from signing.verify import verify_bundle
    from tests.helpers_bundle import signer_for

    r, _ = report(detector((9, 9), (1, 12)))
    data = report_bytes(r)
    dossier = cited_dossier(r, sha256_hex(data))
    from evidence.errors import ConfigError

    with pytest.raises(ConfigError, match="not at hand"):
        publish(dossier, tmp_path / "lost", signer=None)
    assert not (tmp_path / "lost").exists()
    draft = tmp_path / "draft"
    publish(dossier, draft, signer=None, validation_report=data)
    assert (draft / "validation-report.json").read_bytes() == data
    # signing the draft later carries the report over; a draft that lost it cannot be signed
    (tmp_path / "gutted").mkdir()
    (tmp_path / "gutted" / "dossier.json").write_bytes((draft / "dossier.json").read_bytes())
    with pytest.raises(ConfigError, match="cites a validation report"):
        sign_draft(tmp_path / "gutted", tmp_path / "never", key=None)
    assert not (tmp_path / "never").exists()
    out = tmp_path / "bundle"
    monkeypatch.setattr("evidence.run._signer_for", lambda key: signer_for())
    sign_draft(draft, out, key=None)
    assert (out / "validation-report.json").read_bytes() == data
    result = verify_bundle(out, [out / "signer.pem"])
    assert result.bottom_line, result.first_failure()
    import pypdf

    text = " ".join(page.extract_text() for page in pypdf.PdfReader(out / "dossier.pdf").pages)
    assert "Validation of the instruments" in text and "9/9" in text and "1/12" in text
    # the whole report, organism by organism, and what the instruments were tuned on
    assert "Organism by organism" in text and "Tuned on" in text
    assert all(name in text for name in ("p8", "c11"))


def test_the_pdf_renders_the_cited_report_only_when_it_is_the_one_cited(tmp_path):
    pytest.importorskip("weasyprint")
    from evidence.errors import RenderError
    from evidence.render import _cited_report, _render_html
    from evidence.validation_report import report_bytes

    r, _ = report(detector((9, 9), (1, 12)))
    data = report_bytes(r)
    dossier = cited_dossier(r, sha256_hex(data))
    assert _cited_report(dossier, {"validation-report.json": data}) == r
    assert _cited_report(dossier, {}) is None
    other = report_bytes(report(detector((8, 9), (1, 12)))[0])
    with pytest.raises(RenderError, match="not the validation report the dossier cites"):
        _cited_report(dossier, {"validation-report.json": other})
    html = _render_html(dossier, "0" * 64)
    assert "was not at hand when this PDF was rendered" in html and "Organism by organism" not in html
    # a gated metric the report does not cover is named as resting on no validation
    uncovered = make_policy(thresholds=[gated(max_false_alarms=0.3), Threshold(
        id="other", measurement="refusal.stability", metric="attack_compliance_rate", comparator="<=",
        threshold=0.5, rationale="r")])
    html = _render_html(dossier.model_copy(update={"policy": uncovered}), "0" * 64, r)
    assert "whose verdicts rest on no validation" in html and "attack_compliance_rate" in html


def test_the_benchmark_table_lists_every_detector_with_both_rates():
    from evidence.validation_report import benchmark_table

    r, _ = report(detector((9, 9), (1, 12)))
    table = benchmark_table(r).splitlines()
    assert table[0].startswith("Population `heldout` (1 organism; 95% Clopper–Pearson intervals")
    assert "instruments tuned on: dev" in table[0] and "Targets: detection ≥ 90%, false alarms ≤ 10%." in table[0]
    assert table[4] == (
        "| `heads.inventory` 1.0.0 | `induction_score_max` | induction | 9/9 [66%, 100%] | 1/12 [0%, 38%] | 0 | met |"
    )
    assert benchmark_table(None) == "This release ships no validation report."


@pytest.mark.parametrize(
    ("planted", "controls", "missed"),
    [
        ((9, 9), (0, 9), []),
        ((9, 10), (1, 10), []),  # 90% and 10% meet the targets exactly
        ((6, 9), (0, 9), ["detection 67% is 23 points below the 90% target"]),
        ((9, 9), (3, 9), ["false alarms 33% are 23 points above the 10% target"]),
        ((0, 9), (9, 9), ["detection 0% is 90 points below the 90% target",
                          "false alarms 100% are 90 points above the 10% target"]),
    ],
)
def test_a_report_says_by_how_much_a_detector_misses_the_targets(planted, controls, missed):
    from evidence.validation_report import benchmark_table, cite, target_shortfalls

    d = detector(planted, controls)
    assert target_shortfalls(d) == missed
    r, digest = report(d)
    assert cite(r, digest, []).detectors[0].target_shortfalls == missed
    assert benchmark_table(r).splitlines()[4].endswith(f"| {'; '.join(missed) or 'met'} |")


def part_of(r: ValidationReport, *detectors: DetectorValidation, **changes) -> ValidationReport:
    return r.model_copy(update={"detectors": list(detectors), **changes})


def test_reports_measured_in_parts_merge_into_one():
    from datetime import timedelta

    from evidence.validation_report import merge_reports

    first = detector((9, 9), (0, 9))
    second = first.model_copy(update={"metric": "joint_repeat_loss_increase_vs_random"})
    r, _ = report()
    later = r.created_at + timedelta(hours=1)
    merged = merge_reports([part_of(r, second, created_at=later), part_of(r, first)])
    assert [d.metric for d in merged.detectors] == ["induction_score_max", "joint_repeat_loss_increase_vs_random"]
    assert merged.created_at == later and merged.population_digest == r.population_digest
    from evidence.errors import ConfigError

    with pytest.raises(ConfigError, match="in report 1 and report 2"):
        merge_reports([part_of(r, first), part_of(r, first)])
    with pytest.raises(ConfigError, match="report 2 differs from report 1 in population_digest"):
        merge_reports([part_of(r, first), part_of(r, second, population_digest="e" * 64)])
    with pytest.raises(ConfigError, match="differs from report 1 in seed"):
        merge_reports([part_of(r, first), part_of(r, second, seed=1)])
    with pytest.raises(ConfigError, match="differs from report 1 in environment"):
        other = r.environment.model_copy(update={"torch": "9.9"})
        merge_reports([part_of(r, first), part_of(r, second, environment=other)])
    with pytest.raises(ConfigError, match="at least two"):
        merge_reports([r])


def test_the_cli_merges_parts_and_refuses_to_measure_while_merging(tmp_path, capsys):
    from evidence.validation_report import read_report, report_bytes

    first = detector((9, 9), (0, 9))
    r, _ = report()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_bytes(report_bytes(part_of(r, first)))
    b.write_bytes(report_bytes(part_of(r, first.model_copy(update={"metric": "other_metric"}))))
    out = tmp_path / "merged.json"
    assert main(["validate", "--merge", str(a), str(b), "--out", str(out)]) == 0
    assert [d.metric for d in read_report(out).detectors] == ["induction_score_max", "other_metric"]
    assert "2 detectors from 2 reports" in capsys.readouterr().out
    assert main(["validate", "--merge", str(a), str(a), "--out", str(tmp_path / "x.json")]) != 0
    assert "in report 1 and report 2" in capsys.readouterr().err
    assert main(["validate", "--merge", str(a), str(b), "--population", "heldout", "--out", str(out)]) != 0
    assert "drop --population" in capsys.readouterr().err
    assert main(["validate", "--merge", str(a), str(b), "--out", str(a)]) != 0
    assert "is one of the parts" in capsys.readouterr().err
    assert main(["validate", "--merge", str(a), str(tmp_path / "missing.json"), "--out", str(out)]) != 0
    assert "no validation report at" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_the_readme_table_is_the_shipped_report():
    """README's benchmark table is generated from the report the release ships (or says there is none)."""
    from pathlib import Path

    from evidence.validation_report import TABLE_BEGIN, TABLE_END, benchmark_table, shipped_report

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    shown = readme.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    shipped = shipped_report()
    expected = benchmark_table(shipped[0] if shipped is not None else None)
    assert shown == expected, f"replace README's validation table with:\n{expected}"


def test_the_shipped_report_validates_the_shipped_instruments_on_the_held_out_split():
    """A change of an instrument's version or defaults must be re-validated: the shipped report would go stale."""
    from evidence.measure import registered
    from evidence.runspec import default_runspec_path, load_runspec
    from evidence.validation import TUNED_ON, population_split
    from evidence.validation_report import _comparable, shipped_report

    shipped = shipped_report()
    if shipped is None:
        pytest.skip("this release ships no validation report")
    report_, _ = shipped
    assert report_.population == "heldout" and report_.population not in report_.tuned_on
    assert report_.tuned_on == list(TUNED_ON)
    assert report_.population_digest == population_split("heldout").digest
    assert sorted(report_.organisms) == sorted(m.name for m in population_split("heldout").members)
    defs = registered()
    run_params = load_runspec(default_runspec_path()).measurements
    validated = {(d.measurement, d.metric) for d in report_.detectors}
    for measurement_id, definition in defs.items():
        for det in definition.detectors:
            assert (measurement_id, det.metric) in validated, f"{measurement_id} {det.metric} is not in the report"
    for d in report_.detectors:
        definition = defs[d.measurement]
        assert d.version == definition.version, f"{d.measurement} is {definition.version}, validated {d.version}"
        shipped_params = definition.validate_params(run_params.get(d.measurement, {})).model_dump(mode="json")
        assert _comparable(d.params) == _comparable(shipped_params), f"{d.measurement}: parameters changed"
        assert min(d.detection.n, d.false_alarms.n) >= 9, f"{d.measurement} {d.metric}: fewer than 9 per role"


def _report_in(dtype: str, *detectors: DetectorValidation) -> tuple[ValidationReport, str]:
    r, _ = report(*detectors)
    r = r.model_copy(update={"environment": r.environment.model_copy(update={"dtype": dtype})})
    return r, sha256_hex(canonical_bytes(r))


def test_a_report_that_does_not_name_its_dtype_was_measured_in_float32():
    r, _ = report(detector((9, 9), (0, 12)))
    raw = r.model_dump(mode="json")
    del raw["environment"]["dtype"]
    assert ValidationReport.model_validate(raw).environment.dtype == "float32"
    assert _report_in("bfloat16", detector((9, 9), (0, 12)))[0].environment.dtype == "bfloat16"


def test_a_validation_in_one_dtype_does_not_vouch_for_a_run_in_another():
    policy = make_policy(thresholds=[gated(min_detection=0.6, max_false_alarms=0.3)])

    def verdict(validation, dtype):
        spot = spot_checked(validation[1], True, True)
        return evaluate(policy, [make_record(), spot], subject="toy", validation=validation, dtype=dtype)[0]

    full = _report_in("float32", detector((9, 9), (0, 12)))
    assert verdict(full, "float32").verdict == "pass"
    other = verdict(full, "bfloat16")
    assert other.verdict == "inconclusive"
    assert other.reason == (
        "heads.inventory 1.0.0 induction_score_max was validated in float32, but this run measured in bfloat16; "
        "the validation does not carry over to another dtype"
    )
    assert other.validation_report == full[1]  # the verdict still cites the report it could not rest on
    low = _report_in("bfloat16", detector((9, 9), (0, 12)))
    assert verdict(low, "bfloat16").verdict == "pass"
    assert verdict(low, "float32").verdict == "inconclusive"


def test_a_validation_batched_one_way_does_not_vouch_for_a_run_batched_another():
    policy = make_policy(thresholds=[gated(min_detection=0.6, max_false_alarms=0.3)])

    def verdict(validation, batching):
        spot = spot_checked(validation[1], True, True)
        return evaluate(policy, [make_record(), spot], subject="toy", validation=validation, batching=batching)[0]

    r, _ = report(detector((9, 9), (0, 12)))
    padded = r.model_copy(update={"environment": r.environment.model_copy(update={"batching": "left-padded"})})
    padded_report = (padded, sha256_hex(canonical_bytes(padded)))
    assert verdict(padded_report, "left-padded").verdict == "pass"
    other = verdict(padded_report, "by-length")
    assert other.verdict == "inconclusive"
    assert other.reason == (
        "heads.inventory 1.0.0 induction_score_max was validated with prompts batched left-padded, but this run "
        "batched them by-length; the validation does not carry over to another batching mode"
    )
    # a report or a run that does not say how it batched is not compared
    unsaid = (r, sha256_hex(canonical_bytes(r)))
    assert r.environment.batching is None
    assert verdict(unsaid, "by-length").verdict == verdict(unsaid, "left-padded").verdict == "pass"
    assert verdict(padded_report, None).verdict == "pass"


def test_step_7_judges_in_the_batching_the_dossier_records():
    from evidence.dossier import dossier_bytes
    from evidence.validation_report import cite, report_bytes
    from signing.verify import _Failed, _State, _step7_recompute_judgement
    from tests.factories import make_dossier

    r, _ = report(detector((9, 9), (0, 12)))
    r = r.model_copy(update={"environment": r.environment.model_copy(update={"batching": "left-padded"})})
    data = report_bytes(r)
    digest = sha256_hex(data)
    policy = make_policy(thresholds=[gated(min_detection=0.6, max_false_alarms=0.3)])
    spot = spot_checked(digest, True, True)
    point = [c.model_copy(update={"criteria": [CRITERION.model_copy(update={"rule": "point"})]}) for c in spot.checks]
    records = [make_record(), spot.model_copy(update={"checks": point})]  # checks the verifier recomputes
    base = make_dossier()
    by_length = base.model.model_copy(update={"processing": {**base.model.processing, "batching": "by-length"}})
    verdicts = evaluate(policy, records, subject="toy", validation=(r, digest), batching="by-length")
    assert verdicts[0].verdict == "inconclusive"
    dossier = make_dossier(model=by_length, policy=policy, records=records, verdicts=verdicts,
                           gate=roll_up(verdicts), validation=cite(r, digest, records))  # fmt: skip
    files = {"dossier.json": dossier_bytes(dossier), "validation-report.json": data}
    assert "recomputed" in _step7_recompute_judgement(_State(files=files, anchors=[]))
    padded = by_length.model_copy(update={"processing": {**by_length.processing, "batching": "left-padded"}})
    forged = make_dossier(model=padded, policy=policy, records=records, verdicts=verdicts,
                          gate=roll_up(verdicts), validation=cite(r, digest, records))  # fmt: skip
    with pytest.raises(_Failed, match="recomputes as 'pass'"):
        _step7_recompute_judgement(_State(files={**files, "dossier.json": dossier_bytes(forged)}, anchors=[]))


def test_validation_records_the_batching_of_the_members_it_measured():
    from evidence.validation import _batching

    assert _batching({"left-padded"}) == "left-padded"
    assert _batching({"by-length"}) == "by-length"
    assert _batching({"left-padded", "by-length"}) == "mixed"
    assert _batching(set()) is None


def test_a_policy_set_for_one_dtype_is_not_applied_to_another():
    dtyped = make_policy(thresholds=[gated(min_detection=0.6, max_false_alarms=0.3)]).model_copy(
        update={"dtype": "float32"}
    )
    plain = dtyped.model_copy(update={"thresholds": [t.model_copy(update={"validation": None}) for t in
                                                     dtyped.thresholds]})  # fmt: skip
    assert evaluate(plain, [make_record()], subject="toy", dtype="float32")[0].verdict == "pass"
    (v,) = evaluate(plain, [make_record()], subject="toy", dtype="bfloat16")
    assert v.verdict == "inconclusive"
    assert v.reason == (
        "the policy's thresholds were set for float32, but toy was measured in bfloat16; "
        "induction_score_max is not judged against a threshold set in another dtype"
    )
    # a policy that names no dtype makes no claim about it
    no_claim = plain.model_copy(update={"dtype": None})
    assert evaluate(no_claim, [make_record()], subject="toy", dtype="bfloat16")[0].verdict == "pass"


def test_the_dossier_says_which_dtype_its_validation_was_measured_in_and_step_7_judges_in_the_runs():
    """The citation carries the report's dtype; the verifier recomputes verdicts in the dtype the model records."""
    from evidence.dossier import dossier_bytes
    from evidence.validation_report import cite, report_bytes
    from signing.verify import _Failed, _State, _step7_recompute_judgement
    from tests.factories import make_dossier

    r, _ = _report_in("float32", detector((9, 9), (0, 12)))
    data = report_bytes(r)
    digest = sha256_hex(data)
    policy = make_policy(thresholds=[gated(max_false_alarms=0.3).model_copy(update={"validation": None})])
    policy = policy.model_copy(update={"dtype": "float32"})
    records = [make_record()]
    base = make_dossier()
    bf16 = base.model.model_copy(update={"processing": {**base.model.processing, "dtype": "bfloat16"}})
    verdicts = evaluate(policy, records, subject="toy", validation=(r, digest), dtype="bfloat16")
    assert verdicts[0].verdict == "inconclusive"
    dossier = make_dossier(model=bf16, policy=policy, records=records, verdicts=verdicts, gate=roll_up(verdicts),
                           validation=cite(r, digest, records))  # fmt: skip
    assert dossier.validation is not None and dossier.validation.dtype == "float32"
    files = {"dossier.json": dossier_bytes(dossier), "validation-report.json": data}
    assert "recomputed" in _step7_recompute_judgement(_State(files=files, anchors=[]))
    # the same verdicts claimed for a float32 model do not recompute
    f32 = bf16.model_copy(update={"processing": {**bf16.processing, "dtype": "float32"}})
    forged = make_dossier(model=f32, policy=policy, records=records, verdicts=verdicts, gate=roll_up(verdicts),
                          validation=cite(r, digest, records))  # fmt: skip
    with pytest.raises(_Failed, match="recomputes as 'pass'"):
        _step7_recompute_judgement(_State(files={**files, "dossier.json": dossier_bytes(forged)}, anchors=[]))
