import pytest

from evidence.clauses import build_clause_index, load_catalog
from evidence.errors import ConfigError
from evidence.records import ClauseRef
from tests.factories import make_record

REQUIRED = [
    "EU-AIA/Art11/1@OJ-2024-07-12",
    "EU-AIA/Art13/3/b/iv@OJ-2024-07-12",
    "EU-AIA/Art13/3/b/vii@OJ-2024-07-12",
    *(f"EU-AIA/Art15/{p}@OJ-2024-07-12" for p in (1, 3, 4, 5)),
    "EU-AIA/Art53/1/a@OJ-2024-07-12",
    "EU-AIA/Art55/1/a@OJ-2024-07-12",
    "EU-AIA/Art55/1/b@OJ-2024-07-12",
    *(f"EU-AIA/AnnexIV/{p}@OJ-2024-07-12" for p in ("1/a", "2/b", "2/c", "2/e", "2/g", 3, 4, 5, 6, 7)),
    "EU-AIA/AnnexXI/S1/1/d@OJ-2024-07-12",
    "EU-AIA/AnnexXI/S1/2/b@OJ-2024-07-12",
    *(f"EU-AIA/AnnexXI/S2/{p}@OJ-2024-07-12" for p in (1, 2, 3)),
    *(f"EU-GPAI-CoP/SS/M7.{p}@2025-07-10" for p in range(1, 7)),
    "EU-GPAI-CoP/SS/M7.3/1/e@2025-07-10",
    "EU-GPAI-CoP/SS/M7.3/1/f@2025-07-10",
    "EU-GPAI-CoP/SS/M4.1@2025-07-10",
    "EU-GPAI-CoP/SS/M4.2@2025-07-10",
    "EU-GPAI-CoP/SS/App3.1@2025-07-10",
    "EU-GPAI-CoP/SS/App3.4@2025-07-10",
    *(f"NIST-AI-RMF/1.0/MEASURE/{p}" for p in ("2.1", "2.3", "2.5", "2.7", "2.9", "2.13")),
    "NIST-AI-600-1/MS-2.9-001",
    "ISO-IEC-42001:2023/A.6.2.4",
    "ISO-IEC-TS-6254:2025",
    "ISO-IEC-24029-2:2023",
]

# Points that a filing must address explicitly: evidenced, or marked as not evidenced.
MUST_BE_ADDRESSED = [
    "EU-AIA/AnnexXI/S2/1@OJ-2024-07-12",
    "EU-AIA/AnnexXI/S2/2@OJ-2024-07-12",
    "EU-AIA/AnnexXI/S2/3@OJ-2024-07-12",
    "EU-AIA/AnnexIV/2/g@OJ-2024-07-12",
]


def test_catalog_has_every_required_clause_with_a_text_version():
    catalog = load_catalog()
    missing = [c for c in REQUIRED if c not in catalog]
    assert not missing
    for cid in REQUIRED:
        assert catalog.text_version(cid), cid


def test_paraphrases_are_one_line():
    for clause in load_catalog().clauses.values():
        assert "\n" not in clause.paraphrase and clause.paraphrase.endswith(".")


def test_unknown_clause_is_refused():
    record = make_record(clauses=[ClauseRef(id="EU-AIA/Art99/1@OJ-2024-07-12", strength="direct",
                                            rationale="r")])
    with pytest.raises(ConfigError, match="not in the clause catalog"):
        build_clause_index([record], [])


def test_index_marks_evidenced_and_unevidenced_clauses():
    record = make_record()
    index = {e.clause_id: e for e in build_clause_index([record], [])}
    assert set(index) == set(load_catalog().clauses)
    mapped = record.clauses[0].id
    assert index[mapped].status == "evidenced" and index[mapped].records == [record.record_id]
    for cid in MUST_BE_ADDRESSED:
        entry = index[cid]
        assert (entry.status == "evidenced") == bool(entry.records or entry.verdicts)
        if cid != mapped:
            assert entry.status == "not evidenced by this dossier"


def test_failed_records_are_not_evidence():
    record = make_record(status="error", metrics=[], error={"type": "X", "message": "boom"})
    index = {e.clause_id: e for e in build_clause_index([record], [])}
    assert index[record.clauses[0].id].status == "not evidenced by this dossier"


def test_every_registered_measurement_maps_onto_catalog_clauses():
    from evidence.measure import registered

    catalog = load_catalog()
    suite = {mid: d for mid, d in registered().items() if not mid.startswith("toy.")}
    assert len(suite) >= 10
    for mid, definition in suite.items():
        assert definition.clauses, f"{mid} declares no clause mapping"
        for ref in definition.clauses:
            assert ref.id in catalog, f"{mid} maps onto unknown clause {ref.id}"
            assert ref.rationale.strip()


def test_default_policy_maps_onto_catalog_clauses():
    from evidence.policy import load_policy
    from evidence.runspec import default_runspec_path, load_runspec

    spec = load_runspec(default_runspec_path())
    policy = load_policy(spec.policy_path)
    catalog = load_catalog()
    for threshold in policy.thresholds:
        assert threshold.measurement in spec.measurements, threshold.id
        for ref in threshold.clauses:
            assert ref.id in catalog, f"{threshold.id} maps onto unknown clause {ref.id}"
