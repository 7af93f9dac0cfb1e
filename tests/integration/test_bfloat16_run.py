"""A whole run in bfloat16 on the CPU: recorded, gated honestly, verified, and reproduced in the recorded dtype."""

from __future__ import annotations

import json

from evidence.cli import main
from signing.verify import verify_bundle

POLICY = """
name = "float32 policy"
version = "1"
set_by = "Risk board"
set_at = 2026-01-01T00:00:00Z
dtype = "float32"

[[threshold]]
id = "induction-present"
measurement = "heads.inventory"
metric = "induction_score_max"
comparator = ">="
threshold = 0.5
rationale = "the planted induction head must be found"
"""


def test_a_bfloat16_run_is_recorded_gated_verified_and_reproduced(tmp_path, capsys):
    (tmp_path / "policy.toml").write_text(POLICY)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[run]\nseed = 0\nmeasurements = ["heads.inventory"]\npolicy = "policy.toml"\n'
        '[model]\norganism = "induction"\n'
        '[measurements."heads.inventory"]\nn_sequences = 16\nbootstrap_resamples = 200\n'
    )
    out = tmp_path / "out"
    # the threshold was set for float32: the gate cannot pass on a bfloat16 run (exit 1), and says why
    assert main(["run", str(spec), "--dtype", "bfloat16", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "gate: INCONCLUSIVE" in printed
    assert "the policy's thresholds were set for float32, but induction was measured in bfloat16" in printed
    dossier = json.loads((out / "dossier.json").read_text())
    assert dossier["model"]["processing"]["dtype"] == "bfloat16"
    assert dossier["model"]["processing"]["device"] == "cpu"
    assert dossier["policy"]["dtype"] == "float32"
    (record,) = dossier["records"]
    assert record["status"] == "ok"
    # the verifier recomputes the INCONCLUSIVE verdict in the dtype the dossier records
    report = verify_bundle(out, [out / "signer.pem"])
    assert report.bottom_line, report.first_failure()
    # reproduce re-runs in bfloat16 by default (the recorded dtype) and gets the same numbers
    assert main(["reproduce", str(out), "--runspec", str(spec)]) == 0
    assert "1 of 1 records reproduced" in capsys.readouterr().out
    # asked for float32, the same record differs beyond its tolerance: the dtype matters and is not ignored
    assert main(["reproduce", str(out), "--runspec", str(spec), "--dtype", "float32"]) == 1
    printed = capsys.readouterr().out
    assert "[DIFFERS] heads.inventory:induction induction_score_max" in printed
    assert "0 of 1 records reproduced" in printed
