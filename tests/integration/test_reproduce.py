"""`interp-dossier reproduce`: a dossier's measurements re-run from its recorded parameters and seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.cli import main

DATA = Path(__file__).resolve().parents[2] / "evidence" / "organisms" / "data"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """An unsigned bundle of two quick measurements on `demo`, one of them reading prompt sets (~20 s)."""
    root = tmp_path_factory.mktemp("reproduce")
    spec = root / "light.toml"
    spec.write_text(
        "[run]\nseed = 0\nmeasurements = [\"heads.inventory\", \"goal.proxy_reliance\"]\n"
        "[model]\norganism = \"demo\"\n[datasets]\n"
        f"\"goal.aligned\" = \"{DATA / 'goal.aligned.jsonl'}\"\n"
        f"\"goal.decorrelated\" = \"{DATA / 'goal.decorrelated.jsonl'}\"\n"
        "[measurements.\"heads.inventory\"]\nn_sequences = 16\nbootstrap_resamples = 200\n"
    )
    out = root / "out"
    assert main(["run", str(spec), "--no-sign", "--out", str(out)]) == 0
    return spec, out


def test_a_dossier_reproduces_exactly_on_the_machine_that_made_it(made, capsys):
    spec, out = made
    capsys.readouterr()
    assert main(["reproduce", str(out), "--runspec", str(spec)]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 records reproduced" in printed and "0 within tolerance, 0 differ" in printed
    record = json.loads((out / "dossier.json").read_text())["records"][0]
    assert record["tolerance"] == {"absolute": 1e-06, "relative": 0.0001}


def test_an_edited_metric_is_reported_as_not_reproduced(made, tmp_path, capsys):
    spec, out = made
    dossier = json.loads((out / "dossier.json").read_text())
    metric = dossier["records"][0]["metrics"][0]
    metric["value"] = metric["value"] + 0.25 if metric.get("ci") is None else metric["ci"]["upper"]
    edited = tmp_path / "dossier.json"
    edited.write_text(json.dumps(dossier))
    capsys.readouterr()
    assert main(["reproduce", str(edited), "--runspec", str(spec), "--measurement", "heads.inventory"]) == 1
    printed = capsys.readouterr().out
    assert f"[DIFFERS] heads.inventory:demo {metric['name']}" in printed
    assert "0 of 1 records reproduced" in printed


def test_another_model_or_prompt_set_is_refused_before_any_work(made, tmp_path, capsys):
    spec, out = made
    capsys.readouterr()
    assert main(["reproduce", str(out), "--runspec", str(spec), "--model", "induction"]) == 2
    assert "weights digest" in capsys.readouterr().err
    other = tmp_path / "aligned.jsonl"
    other.write_text((DATA / "goal.aligned.jsonl").read_text().splitlines()[0] + "\n")
    assert main(["reproduce", str(out), "--runspec", str(spec), "--data", f"goal.aligned={other}"]) == 2
    err = capsys.readouterr().err
    assert "prompt set goal.aligned has sha256" in err and "--data goal.aligned=FILE" in err
    assert main(["reproduce", str(out), "--measurement", "refusal.direction"]) == 2
    assert "records no refusal.direction" in capsys.readouterr().err
