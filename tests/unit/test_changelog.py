from datetime import UTC, datetime

import pytest

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.changelog import diff_dossiers, load_predecessor
from evidence.errors import ConfigError, UnsupportedVersionError
from evidence.records import MeasurementSpec
from tests.factories import make_dossier, make_record


def test_diff_reports_model_suite_and_verdict_changes():
    old = make_dossier()
    new_model = old.model.model_copy(update={"weights_sha256": "b" * 64})
    new_record = make_record(measurement=MeasurementSpec(id="heads.inventory", version="1.1.0", params={}))
    new = make_dossier(model=new_model, records=[new_record])
    changes = {(c.area, c.item): (c.before, c.after) for c in diff_dossiers(old, new)}
    assert changes[("model", "weights_sha256")] == ("a" * 64, "b" * 64)
    assert changes[("suite", "heads.inventory.version")] == ("1.0.0", "1.1.0")
    assert changes[("suite", "heads.inventory.params")] == ('{"n_sequences":8}', "{}")
    assert ("verdicts", "gate") not in changes


def test_identical_dossiers_have_no_changes():
    d = make_dossier()
    assert diff_dossiers(d, d) == []


def test_load_predecessor_digests_the_exact_bytes(tmp_path):
    old = make_dossier()
    data = canonical_bytes(old)
    (tmp_path / "dossier.json").write_bytes(data)
    loaded, link = load_predecessor(tmp_path)
    assert link.sha256 == sha256_hex(data) and link.dossier_id == old.dossier_id
    assert loaded == old


def test_changelog_is_recorded_in_the_new_dossier(tmp_path):
    old = make_dossier()
    _, link = load_predecessor(_write(tmp_path, canonical_bytes(old)))
    new = make_dossier(predecessor=link, changelog=diff_dossiers(old, make_dossier(records=[])),
                       created_at=datetime(2026, 11, 25, tzinfo=UTC))
    assert new.predecessor == link and new.changelog


def test_bad_predecessors(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_predecessor(tmp_path / "missing")
    future = canonical_bytes(make_dossier()).replace(b'"schema_version":"1.0"', b'"schema_version":"2.0"')
    with pytest.raises(UnsupportedVersionError):
        load_predecessor(_write(tmp_path, future))


def _write(tmp_path, data):
    path = tmp_path / "prev.json"
    path.write_bytes(data)
    return path


def test_a_change_of_budget_is_a_suite_change():
    old = make_dossier()
    new = make_dossier(records=[make_record(profile="quick", prompt_limit=16)], profile="quick", prompt_limit=16)
    changes = [(c.area, c.item, c.before, c.after) for c in diff_dossiers(old, new)]
    assert changes == [("suite", "profile", "standard", "quick"), ("suite", "prompt_limit", None, "16")]
