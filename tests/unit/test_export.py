"""Standard exports: the CycloneDX 1.6 ML-BOM and the Hugging Face model-index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from evidence import export
from evidence.errors import RecordError
from evidence.records import ClauseRef, DataRef, Dossier, ErrorInfo, SignerInfo
from tests.factories import make_dossier, make_metric_record, make_record

ROOT = Path(__file__).resolve().parents[2]
DOSSIER_ID = "0b7e4f52-8a1c-4d2e-9f3a-6c5d4e3b2a10"
AIA_2G = "EU-AIA/AnnexIV/2/g@OJ-2024-07-12"
AIA_S2_1 = "EU-AIA/AnnexXI/S2/1@OJ-2024-07-12"
NIST = "NIST-AI-RMF/1.0/MEASURE/2.9"


def dossier(**changes: object) -> Dossier:
    refusal = make_metric_record(
        "refusal.direction:toy", "refusal.direction",
        {"refusal_rate_baseline": (0.97, 0.94, 0.99), "refusal_rate_ablated": (0.05, 0.02, 0.09)},
        clauses=[ClauseRef(id=AIA_2G, strength="direct", rationale="refusal measured with intervals"),
                 ClauseRef(id=AIA_S2_1, strength="partial", rationale="an evaluation result with its method")],
        data=[DataRef(name="refusal.harmful", sha256="c" * 64, count=100)],
        summary="Refusal is mediated by one direction in the residual stream.",
    )
    probe = make_metric_record(
        "deception.probe:toy", "deception.probe",
        {"auroc": (0.93, 0.9, 0.96), "flagged_rate_eval": (0.4, 0.31, 0.49)},
        clauses=[ClauseRef(id=NIST, strength="supporting", rationale="probe validity")],
    )
    failed = make_metric_record(
        "refusal.stability:toy", "refusal.stability", {}, status="error",
        error=ErrorInfo(type="MeasurementError", message="attack did not converge"),
    )
    calibration = make_metric_record(
        "refusal.direction:refusing", "refusal.direction", {"refusal_rate_baseline": (0.99, 0.97, 1.0)},
        subject="refusing",
    )
    fields: dict = {"records": [refusal, probe, failed, calibration, make_record()], "dossier_id": DOSSIER_ID}
    fields.update(changes)
    return make_dossier(**fields)


@pytest.fixture(scope="module")
def bom() -> dict:
    return json.loads(export.cyclonedx_bom(dossier()))


def test_bom_validates_with_the_library_validator() -> None:
    data = export.cyclonedx_bom(dossier())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    doc = json.loads(data)
    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.6", 1)


def test_bom_component_is_the_model(bom: dict) -> None:
    (model,) = bom["components"]
    assert (model["type"], model["name"], model["bom-ref"]) == ("machine-learning-model", "toy", "model")
    assert model["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    (weights,) = model["components"]
    assert (weights["type"], weights["name"]) == ("file", "toy.safetensors")
    tools = bom["metadata"]["tools"]["components"]
    assert [(t["name"], t["type"]) for t in tools] == [("interp-dossier", "application")]


def test_model_card_carries_our_metrics_with_intervals(bom: dict) -> None:
    card = bom["components"][0]["modelCard"]
    metrics = {m["type"]: m for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    # Only ok records of the subject: not the failed one, not the calibration organism's.
    assert sorted(metrics) == [
        "deception.probe/auroc",
        "deception.probe/flagged_rate_eval",
        "heads.inventory/induction_score_max",
        "refusal.direction/refusal_rate_ablated",
        "refusal.direction/refusal_rate_baseline",
    ]
    assert metrics["refusal.direction/refusal_rate_baseline"] == {
        "type": "refusal.direction/refusal_rate_baseline",
        "value": "0.97",
        "confidenceInterval": {"lowerBound": "0.94", "upperBound": "0.99"},
    }
    props = {p["name"]: p["value"] for p in card["properties"]}
    assert props["interp-dossier:ci:refusal.direction/refusal_rate_baseline"] == (
        "level=0.95; method=percentile bootstrap; n=100; resamples=1000"
    )
    assert props["interp-dossier:dossier_id"] == DOSSIER_ID


def test_clause_ids_are_standards_requirements_attested_by_records(bom: dict) -> None:
    standards = {s["name"]: s for s in bom["definitions"]["standards"]}
    assert {"EU-AIA", "EU-GPAI-CoP", "NIST-AI-RMF"} <= set(standards)
    assert standards["EU-AIA"]["version"] == "OJ-2024-07-12"
    requirement_ids = {r["identifier"] for s in standards.values() for r in s["requirements"]}
    assert {AIA_2G, AIA_S2_1, NIST} <= requirement_ids

    decl = bom["declarations"]
    claims = {c["bom-ref"]: c for c in decl["claims"]}
    mapping = {m["requirement"]: m["claims"] for m in decl["attestations"][0]["map"]}
    assert mapping[f"requirement:{AIA_2G}"] == [f"claim:{AIA_2G}"]
    claim = claims[f"claim:{AIA_2G}"]
    assert claim["target"] == "model"
    assert claim["evidence"] == ["evidence:refusal.direction:toy"]
    assert "refusal measured with intervals" in claim["reasoning"]
    assert "strongest mapping: direct" in claim["predicate"]
    # Only evidenced clauses are attested.
    assert all(entry.startswith("requirement:") for entry in mapping)
    assert f"requirement:{'EU-AIA/Art15/4@OJ-2024-07-12'}" not in mapping

    evidence = {e["bom-ref"]: e for e in decl["evidence"]}
    item = evidence["evidence:refusal.direction:toy"]
    assert item["propertyName"] == "refusal.direction"
    assert item["data"][0]["contents"]["url"] == "dossier.json#/records/0"
    assert "evidence:refusal.stability:toy" not in evidence  # failed measurements evidence nothing


def test_every_reference_resolves(bom: dict) -> None:
    defined: set[str] = set()
    used: set[str] = set()
    export._refs(bom, defined, used)
    assert used and used <= defined


def test_bom_is_deterministic_and_its_serial_derives_from_the_dossier() -> None:
    first = export.cyclonedx_bom(dossier())
    assert export.cyclonedx_bom(dossier()) == first
    doc = json.loads(first)
    expected = uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "https://interp-dossier.dev/cyclonedx/serial"), DOSSIER_ID)
    assert doc["serialNumber"] == f"urn:uuid:{expected}"
    assert doc["metadata"]["timestamp"] == "2026-11-24T12:00:00+00:00"
    other = json.loads(export.cyclonedx_bom(dossier(dossier_id="1b7e4f52-8a1c-4d2e-9f3a-6c5d4e3b2a10")))
    assert other["serialNumber"] != doc["serialNumber"]


def test_signer_is_the_assessor() -> None:
    signed = dossier(signer=SignerInfo(subject="CN=Acme Compliance", certificate_sha256="d" * 64,
                                       development_key=False))
    decl = json.loads(export.cyclonedx_bom(signed))["declarations"]
    assert decl["assessors"] == [{"bom-ref": "assessor", "thirdParty": False,
                                  "organization": {"name": "CN=Acme Compliance"}}]
    assert decl["attestations"][0]["assessor"] == "assessor"


def test_schema_violation_is_a_record_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = export._model_card

    def broken(d: Dossier) -> dict:
        card = real(d)
        card["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 0.97  # must be a string
        return card

    monkeypatch.setattr(export, "_model_card", broken)
    with pytest.raises(RecordError, match="does not validate against the CycloneDX 1.6 schema"):
        export.cyclonedx_bom(dossier())


def test_model_index_yaml_has_the_model_index_shape() -> None:
    text = export.model_index_yaml(dossier())
    assert export.model_index_yaml(dossier()) == text
    assert text.startswith(b"# model-index for toy from interp-dossier dossier " + DOSSIER_ID.encode())
    doc = yaml.safe_load(text)
    (entry,) = doc["model-index"]
    assert entry["name"] == "toy"
    results = {r["task"]["name"]: r for r in entry["results"]}
    assert sorted(results) == ["deception.probe 1.0.0", "heads.inventory 1.0.0", "refusal.direction 1.0.0"]
    refusal = results["refusal.direction 1.0.0"]
    assert refusal["task"]["type"] == "text-generation"
    assert refusal["dataset"] == {
        "type": "interp-dossier/refusal.direction",
        "name": "refusal.harmful",
        "args": {"refusal.harmful": "sha256:" + "c" * 64},
    }
    baseline = next(m for m in refusal["metrics"] if m["type"] == "refusal_rate_baseline")
    assert baseline["value"] == 0.97
    assert (baseline["args"]["ci_lower"], baseline["args"]["ci_upper"]) == (0.94, 0.99)
    assert refusal["source"]["url"] == f"urn:uuid:{DOSSIER_ID}"
    assert "authoritative" in refusal["source"]["name"]


def test_model_index_is_read_by_huggingface_hub() -> None:
    repocard_data = pytest.importorskip("huggingface_hub.repocard_data", reason="huggingface_hub not installed")
    doc = yaml.safe_load(export.model_index_yaml(dossier()))
    name, results = repocard_data.model_index_to_eval_results(doc["model-index"])
    assert name == "toy"
    assert {(r.dataset_type, r.metric_type) for r in results} >= {
        ("interp-dossier/refusal.direction", "refusal_rate_baseline"),
        ("interp-dossier/deception.probe", "flagged_rate_eval"),
    }


def test_build_exports_names_both_files() -> None:
    out = export.build_exports(dossier())
    assert sorted(out) == ["dossier.cdx.json", "model-index.yaml"]
    assert all(isinstance(v, bytes) for v in out.values())


def test_importing_export_loads_neither_cyclonedx_nor_yaml() -> None:
    code = "import json, sys, evidence.export; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert not loaded & {"cyclonedx", "yaml", "torch", "transformer_lens", "weasyprint"}


def test_exports_do_not_depend_on_the_hash_seed() -> None:
    code = (
        "import hashlib, json; from tests.unit.test_export import dossier; "
        "from evidence.export import build_exports; "
        "print(json.dumps({k: hashlib.sha256(v).hexdigest() for k, v in build_exports(dossier()).items()}))"
    )
    digests = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    ]
    assert digests[0] == digests[1]
