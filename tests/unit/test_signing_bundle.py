"""Sealing a bundle, and writing it all at once or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

import evidence.files
from signing import BundleError, seal, write_bundle_atomically
from signing.bundle import BUNDLE_FILES, DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE, SIGNER_PEM
from signing.dsse import parse_envelope, parse_statement, statement_subjects
from tests.helpers_bundle import dossier_bytes, dossier_data, render_pdf, signer_for


@pytest.fixture(scope="module")
def dossier_json() -> bytes:
    return dossier_bytes(dossier_data(signer_for()))


@pytest.fixture(scope="module")
def files(dossier_json) -> dict[str, bytes]:
    return seal(dossier_json, render_pdf(dossier_json), signer_for(), {"purpose": "test"})


def test_seal_returns_the_four_files(files, dossier_json):
    assert set(files) == set(BUNDLE_FILES)
    assert files[DOSSIER_JSON] == dossier_json
    assert b"PRIVATE KEY" not in files[SIGNER_PEM]
    assert files[SIGNER_PEM].startswith(b"-----BEGIN CERTIFICATE-----")


def test_statement_names_the_signed_pdf(files):
    statement = parse_statement(parse_envelope(files[DSSE_ENVELOPE]).payload)
    assert statement_subjects(statement) == {
        DOSSIER_JSON: hashlib.sha256(files[DOSSIER_JSON]).hexdigest(),
        DOSSIER_PDF: hashlib.sha256(files[DOSSIER_PDF]).hexdigest(),
    }
    assert statement["predicate"] == {"purpose": "test"}
    assert b"/ByteRange" in files[DOSSIER_PDF]


def _small() -> dict[str, bytes]:
    return {"dossier.json": b"{}", "dossier.pdf": b"%PDF", "note.txt": b"n"}


def test_write_into_new_directory(tmp_path):
    out = tmp_path / "out"
    write_bundle_atomically(_small(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == _small()
    assert stat.S_IMODE(os.stat(out / "dossier.json").st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replaces_a_previous_bundle_only_when_asked_and_keeps_what_is_not_its_own(tmp_path):
    out = tmp_path / "out"
    write_bundle_atomically({"dossier.json": b"old", "dossier.pdf": b"%PDF"}, out)
    with pytest.raises(BundleError, match="refusing to replace the bundle"):
        write_bundle_atomically(_small(), out)
    assert write_bundle_atomically(_small(), out, replace=True) is None  # only bundle files: removed
    assert sorted(p.name for p in out.iterdir()) == sorted(_small())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (out / "stale.txt").write_bytes(b"s")
    kept = write_bundle_atomically(_small(), out, replace=True)
    assert kept is not None and (kept / "stale.txt").read_bytes() == b"s"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", kept.name])


def test_writes_into_an_empty_existing_directory(tmp_path):
    (tmp_path / "out").mkdir()
    write_bundle_atomically(_small(), tmp_path / "out")
    assert (tmp_path / "out" / "dossier.json").read_bytes() == b"{}"


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(BundleError, match="does not look like a dossier bundle"):
        write_bundle_atomically(_small(), out)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        write_bundle_atomically(_small(), tmp_path / "out")


def test_missing_parent_is_a_bundle_error_with_remedy(tmp_path):
    with pytest.raises(BundleError, match="does not exist") as info:
        write_bundle_atomically(_small(), tmp_path / "missing" / "out")
    assert info.value.hint and info.value.exit_code == 2


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".."])
def test_refuses_file_names_outside_the_bundle(tmp_path, name):
    with pytest.raises(BundleError, match="invalid bundle file name"):
        write_bundle_atomically({name: b"x"}, tmp_path / "out")


def test_failure_while_writing_leaves_nothing_and_keeps_the_previous_bundle(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_bundle_atomically({"dossier.json": b"previous"}, out)
    real_write = evidence.files._write_file
    calls = []

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(evidence.files, "_write_file", failing_write)
    with pytest.raises(BundleError, match="No space left on device"):
        write_bundle_atomically(_small(), out, replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["dossier.json"]
    assert (out / "dossier.json").read_bytes() == b"previous"


def test_failure_at_the_final_rename_restores_the_previous_bundle(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_bundle_atomically({"dossier.json": b"previous"}, out)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the first moves the previous bundle aside, the second installs
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(BundleError, match="Input/output error"):
        write_bundle_atomically(_small(), out, replace=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "dossier.json").read_bytes() == b"previous"


def test_failure_of_any_kind_cleans_up(tmp_path, monkeypatch):
    def boom(path, data):
        raise RuntimeError("injected")

    monkeypatch.setattr(evidence.files, "_write_file", boom)
    with pytest.raises(RuntimeError):
        write_bundle_atomically(_small(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_sealed_envelope_is_json(files):
    assert set(json.loads(files[DSSE_ENVELOPE])) == {"payload", "payloadType", "signatures"}
