"""`run --profile` and `run --limit`: the budget is applied, stated and recorded, and the gate does not pass it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from evidence.cli import main
from evidence.runspec import default_runspec_path

POLICY = """\
name = "standard-budget"
version = "1"
set_by = "tests"
set_at = 2026-01-01T00:00:00Z

[[threshold]]
id = "induction-circuit-present"
measurement = "heads.inventory"
metric = "induction_score_max"
comparator = ">="
threshold = 0.5
rationale = "the induction circuit is found"
"""


def test_a_quick_limited_run_is_recorded_as_such_and_judged_inconclusive(tmp_path: Path, capsys):
    control = default_runspec_path().parent.parent / "organisms" / "data" / "deception.control.jsonl"
    (tmp_path / "policy.toml").write_text(POLICY)
    spec = tmp_path / "budget.toml"
    spec.write_text(
        '[run]\nseed = 0\npolicy = "policy.toml"\nmeasurements = ["heads.inventory", "model.batch_invariance"]\n'
        '[model]\norganism = "demo"\n'
        f'[datasets]\n"deception.control" = "{control}"\n'
        '[measurements."heads.inventory"]\nn_sequences = 8\nbootstrap_resamples = 100\n'
    )
    out = tmp_path / "out"
    code = main(["run", str(spec), "--no-sign", "--out", str(out), "--profile", "quick", "--limit", "8"])
    stdout, err = capsys.readouterr()
    assert code == 1, stdout  # not a pass
    assert "\u2026 profile quick, at most 8 prompts per dataset (--limit)" in err.splitlines()
    progress = [line for line in err.splitlines() if re.match(r"\u2026 (time estimate|\[\d/2\])", line)]
    assert len(progress) == 3, progress
    assert re.fullmatch(r"\u2026 time estimate: about \d+ s \(2 of 2 measurements have one\)", progress[0])
    assert re.fullmatch(r"\u2026 \[1/2\] measuring heads\.inventory \(about \d+ s, an estimate\)", progress[1])
    assert "profile: quick, at most 8 prompts per dataset (--limit)" in stdout.splitlines()
    assert "gate: INCONCLUSIVE" in stdout.splitlines()
    assert (
        "  - induction-circuit-present: the policy's thresholds were set for the standard profile, but "
        "heads.inventory:demo was measured under the quick profile; induction_score_max is not judged against it"
    ) in stdout.splitlines()

    dossier = json.loads((out / "dossier.json").read_bytes())
    assert (dossier["profile"], dossier["prompt_limit"]) == ("quick", 8)
    heads, batch = dossier["records"]
    assert [(r["profile"], r["prompt_limit"]) for r in (heads, batch)] == [("quick", 8), ("quick", 8)]
    # the spec's own parameter wins over the profile; the profile sets the rest
    assert heads["measurement"]["params"]["bootstrap_resamples"] == 100
    assert heads["measurement"]["params"]["random_ablation_draws"] == 8
    assert batch["measurement"]["params"]["bootstrap_resamples"] == 200
    assert [(d["name"], d["count"]) for d in batch["data"]] == [("deception.control", 8)]


def test_bad_budget_options_are_usage_errors(tmp_path: Path, capsys):
    for argv, fragment in [
        (["--limit", "0"], "--limit must be a positive number of prompts, not 0"),
        (["--profile", "fastest"], "invalid choice: 'fastest'"),
    ]:
        code = main(["run", "--no-sign", "--out", str(tmp_path / "out"), *argv])
        _, err = capsys.readouterr()
        assert code == 2 and "Traceback" not in err and fragment in err, err


def test_measurements_shows_each_profile_budget(capsys):
    assert main(["measurements", "heads.inventory"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    at = lines.index("  profiles:")
    assert lines[at + 1 : at + 3] == [
        "    quick: bootstrap_resamples = 200, random_ablation_draws = 8",
        "    thorough: bootstrap_resamples = 4000, random_ablation_draws = 128",
    ]
    assert main(["measurements", "model.batch_invariance", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["model.batch_invariance"]["profiles"] == {
        "quick": {"bootstrap_resamples": 200},
        "thorough": {"bootstrap_resamples": 4000},
    }


def test_the_pdf_states_a_non_standard_budget_and_a_reused_record():
    from evidence import render
    from tests.factories import make_dossier, make_record

    standard = render._render_html(make_dossier(), "0" * 64)
    assert ">Budget</th>" not in standard and ">Reused</th>" not in standard
    record = make_record(profile="quick", prompt_limit=8, reused_cache_key="e" * 64)
    html = render._render_html(make_dossier(records=[record], profile="quick", prompt_limit=8), "0" * 64)
    assert '<tr><th scope="row">Budget</th><td>profile quick, at most 8 prompts per dataset' in html
    assert (
        '<th scope="row">Reused</th><td>from the result cache of an earlier run with the same inputs, key '
        f'<code class="digest">{"e" * 64}</code>' in html
    )


def test_run_refuses_a_bad_limit_or_profile_before_any_work(tmp_path: Path):
    import pytest

    from evidence.errors import ConfigError
    from evidence.run import run
    from evidence.runspec import load_runspec

    spec = load_runspec(default_runspec_path())
    with pytest.raises(ConfigError, match="--limit must be a positive number of prompts, not 0"):
        run(spec, tmp_path / "out", sign=False, limit=0)
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        run(spec, tmp_path / "out", sign=False, profile="fast")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
