"""The whole suite of the natural-language spec, end to end, on tiny sub-word GPT-2 and Llama chat models.

The run spec is ``evidence/specs/natural-language.toml`` itself (its measurements, prompt sets
and markers), with cheap parameters appended so that each run takes about a minute on two
cores. The models have random weights: a measurement that cannot apply to such a model must
say why in words, and the test names each such reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from evidence import chatsets
from evidence.cli import main
from evidence.runspec import natural_language_runspec_path
from tests.hf_models import build_gpt2, build_llama

pytestmark = pytest.mark.slow

# Cheap parameters: few prompts, steps and resamples. The prompt sets are the shipped ones.
CHEAP = """
[measurements."heads.inventory"]
bootstrap_resamples = 100
n_sequences = 16
random_ablation_draws = 4

[measurements."circuit.faithfulness"]
bootstrap_resamples = 100
n_examples = 16
ig_steps = 2
refusal_max_pairs = 16
max_patched_nodes = 8
max_patched_edges = 8
random_rankings = 1

[measurements."model.batch_invariance"]
bootstrap_resamples = 100
n_prompts = 4
generation_prompts = 1

[measurements."refusal.direction"]
bootstrap_resamples = 100
max_prompts = 16
n_random_directions = 2
max_new_tokens = 8

[measurements."refusal.stability"]
bootstrap_resamples = 100
max_prompts = 16
max_new_tokens = 8
n_resamples = 2
n_template_variants = 0
n_random_directions = 2
n_permutations = 20
n_splits = 2
attack_prompts = 2
suffix_len = 2
attack_steps = 2
top_k = 4
n_candidates = 4
restarts = 1
judge_tokens = 8

[measurements."deception.probe"]
bootstrap_resamples = 200
n_steering_random = 8
behaviour_tokens = 8
cv_folds = 2
n_random_directions = 2

[measurements."probe.causality"]
bootstrap_resamples = 200
n_steering_random = 8
behaviour_tokens = 8
cv_folds = 2
n_random_directions = 2
max_prompts = 8

[measurements."deception.robustness"]
bootstrap_resamples = 200
attack_steps = 2
attack_prompts = 2
eval_every = 1
min_new_tokens = 8
cv_folds = 2
n_random_directions = 2

[measurements."goal.proxy_reliance"]
bootstrap_resamples = 100
random_directions = 2

[measurements."calibration.organisms"]
spot_check = 0
measurements = ["heads.inventory"]
params = { "heads.inventory" = { bootstrap_resamples = 100, n_sequences = 16, random_ablation_draws = 4 } }
"""

# The reasons a random-weight model may give instead of a result, per measurement, by model.
# With random weights the last prompt position of the tiny GPT-2 (the same template token on
# every prompt) carries too little of the instruction for a linear read-out.
NO_SEPARATION = "no read point separates the training pairs"
EXPECTED_ERRORS = {
    "gpt2": {m: NO_SEPARATION for m in ("deception.probe", "probe.causality", "deception.robustness")},
    "llama": {},
}

#: Corpus for the tiny tokenizers, so that the goal task's answers are one token each after a prompt.
ANSWER_WORDS = " \nsame \ndifferent" * 40 + " same different" * 40

BUNDLE = {
    "dossier.cdx.json",
    "dossier.dsse.json",
    "dossier.json",
    "dossier.pdf",
    "model-index.yaml",
    "signer.pem",
    "validation-report.json",
}


def cheap_spec(directory: Path) -> Path:
    """The natural-language spec with absolute dataset paths and the cheap parameters appended."""
    shipped = natural_language_runspec_path()
    text = shipped.read_text().replace('= "natural-language/', f'= "{shipped.parent}/natural-language/')
    # A table the shipped spec already has takes the cheap parameters under its own header.
    for table in CHEAP.strip().split("\n\n"):
        header, _, body = table.partition("\n")
        if header in text:
            text = text.replace(header + "\n", table + "\n", 1)
        else:
            text += "\n" + table + "\n"
    path = directory / "chat-suite.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_natural_language_suite_runs_end_to_end(family: str, tmp_path: Path, capsys):
    build = {"gpt2": build_gpt2, "llama": build_llama}[family]
    # The goal task's answers ("same", "different") follow a line break; a tokenizer trained on this tiny
    # corpus spells them in pieces unless it has seen them there (a real vocabulary holds them whole).
    model = build(tmp_path / f"tiny-{family}", words=ANSWER_WORDS)
    out = tmp_path / "out"
    code = main(["run", str(cheap_spec(tmp_path)), "--model", str(model), "--out", str(out)])
    stdout = capsys.readouterr().out
    expected = EXPECTED_ERRORS[family]
    assert code == (1 if expected else 0), stdout  # a failed measurement makes the run exit 1, bundle written
    assert stdout.count("measurement failed:") == len(expected), stdout
    assert {p.name for p in out.iterdir()} == BUNDLE

    dossier = json.loads((out / "dossier.json").read_bytes())
    assert dossier["model"]["source"] != "organism"
    records = {r["measurement"]["id"]: r for r in dossier["records"]}
    spec_text = natural_language_runspec_path().read_text()
    assert all(f'"{m}"' in spec_text for m in records) and len(records) == 10
    # The records cite the shipped prompt sets by digest (calibration.organisms cites the organisms' own).
    shipped = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in chatsets.data_dir().glob("*.jsonl")}
    cited = {
        (ref["name"], ref["sha256"])
        for mid, r in records.items()
        if mid != "calibration.organisms"
        for ref in r["data"]
        if ref["name"] in shipped
    }
    assert {"refusal.harmful", "refusal.harmless", "goal.aligned", "goal.decorrelated"} <= {n for n, _ in cited}
    assert all(shipped[name] == digest for name, digest in cited)
    for measurement_id, record in records.items():
        if measurement_id in expected:
            assert record["status"] == "error", measurement_id
            assert expected[measurement_id] in record["error"]["message"], record["error"]
        else:
            assert record["status"] == "ok", (measurement_id, record.get("error"))

    code = main(["verify", str(out), "--trust", str(out / "signer.pem")])
    verified = capsys.readouterr().out
    assert code == 0, verified
