"""`interp-dossier verify` in-process: the human lines, and `--json` as one object that fits its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from evidence.cli import main
from evidence.schema import load_schema
from signing.bundle import DOSSIER_JSON, SIGNER_PEM
from tests.helpers_bundle import dossier_bytes, dossier_data, make_bundle, signer_for, write_files


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    signer = signer_for()
    return make_bundle(signer, dossier_bytes(dossier_data(signer)))


@pytest.fixture()
def bundle(tmp_path, files) -> Path:
    return write_files(files, tmp_path / "bundle")


@pytest.fixture()
def tampered(tmp_path, files) -> Path:
    """dossier.json changed after signing: step 3 fails, steps 4-7 are not evaluated."""
    return write_files({**files, DOSSIER_JSON: files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)}, tmp_path / "t")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify_json(capsys, *argv: str) -> tuple[int, dict]:
    """Run ``verify --json``: stdout must be exactly one JSON object valid against the committed schema."""
    code, out, _ = run(capsys, "verify", *argv, "--json")
    data = json.loads(out)
    jsonschema.Draft202012Validator(load_schema("verify-output.schema.json")).validate(data)
    return code, data


def test_the_committed_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(load_schema("verify-output.schema.json"))


def test_json_of_a_bundle_that_verifies(capsys, bundle):
    code, data = verify_json(capsys, str(bundle), "--trust", str(bundle / SIGNER_PEM))
    assert code == 0 and data["bottom_line"] is True and data["error"] is None
    assert [s["status"] for s in data["steps"]] == ["pass"] * 7


def test_json_of_a_failed_bundle_marks_dependent_steps_not_evaluated(capsys, bundle, tampered):
    code, data = verify_json(capsys, str(tampered), "--trust", str(bundle / SIGNER_PEM))
    assert code == 1 and data["bottom_line"] is False and data["error"] is None
    assert [s["status"] for s in data["steps"]] == ["pass", "pass", "fail"] + ["not evaluated"] * 4
    assert data["steps"][3]["detail"] == "not evaluated (step 3 failed)"


def test_human_output_shows_not_evaluated_steps(capsys, bundle, tampered):
    code, out, _ = run(capsys, "verify", str(tampered), "--trust", str(bundle / SIGNER_PEM))
    assert code == 1
    lines = out.splitlines()
    assert lines[2].startswith("[FAIL] (3) ")
    assert lines[3] == (
        "[NOT EVALUATED] (4) dossier.json is canonical, validates, and agrees with the signed statement and signer: "
        "not evaluated (step 3 failed)"
    )
    assert lines[-1].startswith(f"FAILED: {tampered} did not verify, first failure at step (3)")


def test_json_without_a_trust_anchor_is_an_error_object(capsys, bundle):
    code, data = verify_json(capsys, str(bundle))
    assert code == 2 and data["bottom_line"] is False and data["steps"] == []
    assert data["error"]["kind"] == "error" and data["error"]["exit_code"] == 2
    assert data["error"]["message"].startswith("no trust anchor given")
    assert "signer.pem" in data["error"]["hint"]


def test_json_of_a_missing_bundle_directory_is_an_error_object(capsys, tmp_path, bundle):
    code, data = verify_json(capsys, str(tmp_path / "nope"), "--trust", str(bundle / SIGNER_PEM))
    assert code == 2 and data["bottom_line"] is False
    assert data["error"]["message"] == f"bundle directory {tmp_path / 'nope'} does not exist"


def test_json_of_an_unreadable_trust_anchor_is_an_error_object(capsys, tmp_path, bundle):
    code, data = verify_json(capsys, str(bundle), "--trust", str(tmp_path / "none.pem"))
    assert code == 2 and data["error"]["message"].startswith("cannot read trust anchor")


@pytest.mark.parametrize(
    ("attack", "argv"),
    [("no_bundle_argument", []), ("unknown_option", ["BUNDLE", "--tru", "x.pem", "--bogus"])],
)
def test_json_on_a_usage_error_is_an_error_object(capsys, attack, argv):
    code, data = verify_json(capsys, *argv)
    assert code == 2 and data["bottom_line"] is False and data["steps"] == []
    assert data["error"]["kind"] == "usage" and data["error"]["exit_code"] == 2
    assert data["error"]["message"].endswith("--help`)")


def test_usage_error_without_json_prints_nothing_on_stdout(capsys):
    code, out, err = run(capsys, "verify")
    assert code == 2 and out == "" and err.startswith("error: ")
