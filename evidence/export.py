"""Standard exports of a dossier: a CycloneDX 1.6 ML-BOM and a Hugging Face ``model-index``.

Both are summaries for other tools; the signed dossier.json stays authoritative,
and both say so. Both are deterministic: the same dossier gives the same bytes
(with the same library versions).

CycloneDX (``dossier.cdx.json``)
    Built with ``cyclonedx-python-lib``: the model is a component of type
    ``machine-learning-model`` with its weights digest (and one nested ``file``
    component per weight file), and every clause of the dossier's clause index
    is a requirement under ``definitions.standards`` (one standard per
    framework). Two parts of CycloneDX 1.6 that this export needs are not
    modelled by the library (11.x): ``component.modelCard`` and the top-level
    ``declarations``. They are added to the library's JSON output exactly as the
    1.6 schema defines them, and the whole document is then validated with the
    library's own strict 1.6 JSON validator against its bundled schema.

    * ``modelCard.quantitativeAnalysis.performanceMetrics``: one entry per
      metric of the subject's ``ok`` records, ``type`` =
      ``<measurement id>/<metric name>``, value and interval bounds as strings.
      The interval's level, method and n, which the schema has no field for,
      are ``modelCard.properties`` (``interp-dossier:ci:<type>``).
    * ``declarations``: one ``evidence`` entry per ``ok`` record (pointing into
      dossier.json), one ``claim`` per evidenced clause (the evidence records,
      with each mapping's strength and rationale as the reasoning), and one
      ``attestation`` mapping each evidenced requirement to its claim. The
      assessor is the dossier's signer when one is named.

Hugging Face (``model-index.yaml``)
    The ``model-index`` block of a model card's YAML metadata: one result per
    measurement on the subject, its metrics with their intervals in ``args``,
    and the dossier id as the source.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from evidence.errors import RecordError, missing_extra
from evidence.records import ClauseIndexEntry, Dossier, EvidenceRecord, Metric

__all__ = ["CYCLONEDX_FILE", "MODEL_INDEX_FILE", "build_exports", "cyclonedx_bom", "model_index_yaml"]

CYCLONEDX_FILE = "dossier.cdx.json"
MODEL_INDEX_FILE = "model-index.yaml"

#: Serial numbers of our BOMs are uuid5(this namespace, dossier_id).
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://interp-dossier.dev/cyclonedx/serial")
_AUTHORITATIVE = "a summary of the signed dossier; the signed dossier.json is authoritative"
_MODEL_REF = "model"
_ASSESSOR_REF = "assessor"


def _num(x: float) -> str:
    """A number as text, exactly: integers as integers, floats by shortest round-trip repr."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return repr(float(x))


def _subject_records(dossier: Dossier) -> list[EvidenceRecord]:
    return [r for r in dossier.records if r.subject == dossier.model.name and r.status == "ok"]


def _framework(clause_id: str) -> str:
    return clause_id.split("/", 1)[0].split(":", 1)[0]


def _standard_version(clause_id: str) -> str | None:
    if "@" in clause_id:
        return clause_id.rsplit("@", 1)[1]
    head = clause_id.split("/", 1)[0]
    return head.split(":", 1)[1] if ":" in head else None


def _clause_entries(dossier: Dossier) -> list[ClauseIndexEntry]:
    """The dossier's clause index; for a dossier without one, the clauses its records name."""
    if dossier.clause_index:
        return list(dossier.clause_index)
    found: dict[str, list[str]] = {}
    for record in dossier.records:
        for ref in record.clauses:
            ids = found.setdefault(ref.id, [])
            if record.status == "ok":
                ids.append(record.record_id)
    return [
        ClauseIndexEntry(
            clause_id=cid,
            paraphrase=cid,
            text_version="",
            status="evidenced" if ids else "not evidenced by this dossier",
            records=sorted(set(ids)),
        )
        for cid, ids in sorted(found.items())
    ]


# --- CycloneDX -----------------------------------------------------------------------------


def _library_bom(dossier: Dossier, entries: list[ClauseIndexEntry]) -> str:
    """What cyclonedx-python-lib models: metadata, the model component, the standards."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.definition import Definitions, Requirement, Standard
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6

    model = dossier.model
    props = [
        Property(name="interp-dossier:source", value=model.source),
        Property(name="interp-dossier:n_parameters", value=str(model.n_parameters)),
        Property(
            name="interp-dossier:weights_sha256",
            value="sha256 over the weight files as defined by interp-dossier; each file's own digest "
            "is on its nested component",
        ),
    ]
    if model.tokenizer_sha256:
        props.append(Property(name="interp-dossier:tokenizer_sha256", value=model.tokenizer_sha256))
    files = [
        Component(
            type=ComponentType.FILE,
            name=f.name,
            bom_ref=f"{_MODEL_REF}/file:{f.name}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
            properties=[Property(name="interp-dossier:bytes", value=str(f.bytes))],
        )
        for f in model.weight_files
    ]
    component = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model.name,
        bom_ref=_MODEL_REF,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=model.weights_sha256)],
        properties=props,
        components=files,
    )
    by_framework: dict[str, list[ClauseIndexEntry]] = {}
    for entry in entries:
        by_framework.setdefault(_framework(entry.clause_id), []).append(entry)
    standards = [
        Standard(
            bom_ref=f"standard:{framework}",
            name=framework,
            version=_standard_version(group[0].clause_id),
            description=group[0].text_version or None,
            requirements=[
                Requirement(
                    bom_ref=f"requirement:{e.clause_id}",
                    identifier=e.clause_id,
                    descriptions=[e.paraphrase],
                )
                for e in group
            ],
        )
        for framework, group in by_framework.items()
    ]
    meta_props = [
        Property(name="interp-dossier:dossier_id", value=dossier.dossier_id),
        Property(name="interp-dossier:note", value=_AUTHORITATIVE),
    ]
    if dossier.gate is not None:
        meta_props.append(Property(name="interp-dossier:gate", value=dossier.gate.decision))
    if dossier.clause_catalog_version:
        meta_props.append(
            Property(name="interp-dossier:clause_catalog_version", value=dossier.clause_catalog_version)
        )
    bom = Bom(
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, dossier.dossier_id),
        version=1,
        metadata=BomMetaData(
            timestamp=dossier.created_at,
            tools=ToolRepository(
                components=[
                    Component(
                        type=ComponentType.APPLICATION,
                        name=dossier.producer.name,
                        version=dossier.producer.version,
                    )
                ]
            ),
            properties=meta_props,
        ),
        components=[component],
        definitions=Definitions(standards=standards),
    )
    return JsonV1Dot6(bom).output_as_string()


def _performance_metrics(records: Iterable[EvidenceRecord]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    metrics: list[dict[str, Any]] = []
    props: list[dict[str, str]] = []
    for record in records:
        for m in record.metrics:
            kind = f"{record.measurement.id}/{m.name}"
            entry: dict[str, Any] = {"type": kind, "value": _num(m.value)}
            if m.ci is not None:
                entry["confidenceInterval"] = {"lowerBound": _num(m.ci.lower), "upperBound": _num(m.ci.upper)}
                how = f"level={m.ci.level}; method={m.ci.method}; n={m.ci.n}"
                if m.ci.resamples is not None:
                    how += f"; resamples={m.ci.resamples}"
                props.append({"name": f"interp-dossier:ci:{kind}", "value": how})
            props.append({"name": f"interp-dossier:unit:{kind}", "value": m.unit})
            if record.experimental:
                props.append({"name": f"interp-dossier:experimental:{kind}", "value": "true"})
            metrics.append(entry)
    return metrics, props


def _model_card(dossier: Dossier) -> dict[str, Any]:
    metrics, props = _performance_metrics(_subject_records(dossier))
    card: dict[str, Any] = {
        "bom-ref": f"{_MODEL_REF}/model-card",
        "modelParameters": {"architectureFamily": "transformer"},
        "quantitativeAnalysis": {"performanceMetrics": metrics},
    }
    card["properties"] = [
        {"name": "interp-dossier:dossier_id", "value": dossier.dossier_id},
        {"name": "interp-dossier:metrics_scope", "value": f"records of {dossier.model.name} with status ok"},
        *props,
    ]
    return card


def _declarations(dossier: Dossier, entries: list[ClauseIndexEntry]) -> dict[str, Any]:
    ok = {r.record_id: (i, r) for i, r in enumerate(dossier.records) if r.status == "ok"}
    created = dossier.created_at.isoformat()
    evidence = [
        {
            "bom-ref": f"evidence:{rid}",
            "propertyName": record.measurement.id,
            "description": record.summary
            or f"{record.measurement.id} {record.measurement.version} on {record.subject}",
            "data": [{"name": rid, "contents": {"url": f"dossier.json#/records/{i}"}}],
            "created": created,
        }
        for rid, (i, record) in ok.items()
    ]
    claims: list[dict[str, Any]] = []
    mapping: list[dict[str, Any]] = []
    for entry in entries:
        if entry.status != "evidenced":
            continue
        rids = [rid for rid in entry.records if rid in ok]
        reasons = [
            f"{rid} ({ref.strength}): {ref.rationale}"
            for rid in rids
            for ref in ok[rid][1].clauses
            if ref.id == entry.clause_id
        ]
        if entry.verdicts:
            reasons.append(f"verdicts judged against this clause: {', '.join(entry.verdicts)}")
        claim: dict[str, Any] = {
            "bom-ref": f"claim:{entry.clause_id}",
            "target": _MODEL_REF,
            "predicate": f"This dossier holds evidence bearing on {entry.clause_id}"
            + (f" (strongest mapping: {entry.strongest})." if entry.strongest else "."),
            "reasoning": "; ".join(reasons) or "mapped in the dossier's clause index",
        }
        if rids:
            claim["evidence"] = [f"evidence:{rid}" for rid in rids]
        claims.append(claim)
        mapping.append({"requirement": f"requirement:{entry.clause_id}", "claims": [claim["bom-ref"]]})
    attestation: dict[str, Any] = {
        "summary": f"Clauses the evidence of dossier {dossier.dossier_id} bears on, as mapped by its "
        f"producer ({_AUTHORITATIVE}).",
        "map": mapping,
    }
    out: dict[str, Any] = {}
    if dossier.signer is not None:
        out["assessors"] = [
            {"bom-ref": _ASSESSOR_REF, "thirdParty": False, "organization": {"name": dossier.signer.subject}}
        ]
        attestation["assessor"] = _ASSESSOR_REF
    out["attestations"] = [attestation]
    out["claims"] = claims
    out["evidence"] = evidence
    return out


def _refs(node: Any, defined: set[str], used: set[str]) -> None:
    """Collect the bom-refs defined and those referenced anywhere in the document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "bom-ref" and isinstance(v, str):
                defined.add(v)
            elif k in {"target", "requirement", "assessor", "ref"} and isinstance(v, str):
                used.add(v)
            elif k in {"claims", "evidence", "dependsOn"} and isinstance(v, list):
                used.update(x for x in v if isinstance(x, str))
            _refs(v, defined, used)
    elif isinstance(node, list):
        for item in node:
            _refs(item, defined, used)


def cyclonedx_bom(dossier: Dossier) -> bytes:
    """The dossier as a CycloneDX 1.6 ML-BOM, validated against the library's bundled schema."""
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ModuleNotFoundError as exc:
        raise missing_extra("export", exc) from None

    entries = _clause_entries(dossier)
    doc = json.loads(_library_bom(dossier, entries))
    (component,) = [c for c in doc["components"] if c.get("bom-ref") == _MODEL_REF]
    component["modelCard"] = _model_card(dossier)
    doc["declarations"] = _declarations(dossier, entries)
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise RecordError(
            f"{CYCLONEDX_FILE} does not validate against the CycloneDX 1.6 schema: {error.data.message}",
            hint="this is a bug in interp-dossier's export; please report it with the dossier",
        )
    defined: set[str] = set()
    used: set[str] = set()
    _refs(doc, defined, used)
    dangling = sorted(used - defined)
    if dangling:
        raise RecordError(f"{CYCLONEDX_FILE} references undefined bom-refs {dangling[:5]}")
    return text.encode("utf-8")


# --- Hugging Face model-index --------------------------------------------------------------


def _hf_metric(m: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.name, "name": f"{m.name} ({m.unit})", "value": m.value}
    if m.ci is not None:
        args: dict[str, Any] = {
            "ci_lower": m.ci.lower,
            "ci_upper": m.ci.upper,
            "ci_level": m.ci.level,
            "ci_method": m.ci.method,
            "n": m.ci.n,
        }
        if m.ci.resamples is not None:
            args["resamples"] = m.ci.resamples
        out["args"] = args
    return out


def model_index_yaml(dossier: Dossier) -> bytes:
    """The ``model-index`` block for a Hugging Face model card, as YAML."""
    try:
        import yaml
    except ModuleNotFoundError as exc:
        raise missing_extra("export", exc) from None

    results = []
    for record in _subject_records(dossier):
        if not record.metrics:
            continue
        dataset: dict[str, Any] = {
            "type": f"interp-dossier/{record.measurement.id}",
            "name": ", ".join(d.name for d in record.data) or record.measurement.id,
        }
        if record.data:
            dataset["args"] = {d.name: f"sha256:{d.sha256}" for d in record.data}
        results.append(
            {
                "task": {"type": "text-generation", "name": f"{record.measurement.id} {record.measurement.version}"},
                "dataset": dataset,
                "metrics": [_hf_metric(m) for m in record.metrics],
                "source": {
                    "name": f"interp-dossier dossier {dossier.dossier_id} ({_AUTHORITATIVE})",
                    "url": f"urn:uuid:{dossier.dossier_id}",
                },
            }
        )
    header = (
        f"# model-index for {dossier.model.name} from interp-dossier dossier {dossier.dossier_id}\n"
        f"# created {dossier.created_at.isoformat()}; {_AUTHORITATIVE}.\n"
    )
    body: str = yaml.safe_dump(
        {"model-index": [{"name": dossier.model.name, "results": results}]},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return (header + body).encode("utf-8")


def build_exports(dossier: Dossier) -> dict[str, bytes]:
    """File name -> bytes of every standard export of ``dossier``."""
    return {CYCLONEDX_FILE: cyclonedx_bom(dossier), MODEL_INDEX_FILE: model_index_yaml(dossier)}
