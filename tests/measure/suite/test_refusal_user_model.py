"""The refusal measurements on a user's model: a tiny random GPT-2 in a local Hugging Face directory.

Nothing is planted here; the point is that both measurements run on a model
loaded the way a user's is (other hook layout, learned position embeddings,
a sub-word-style tokenizer), report what they cannot do, and do not fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from evidence.measure import Task, run_task
from evidence.measure.methods.suffix_attack import gcg_attack
from evidence.model import ModelSpec, load_model
from evidence.runspec import load_dataset

VOCAB = 48


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    words = ["<|endoftext|>"] + [f"w{i}" for i in range(VOCAB - 1)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    GPT2LMHeadModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return load_model(ModelSpec(path=directory))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    out = {}
    for name, label, special in (("refusal.harmful", "harmful", "w40"), ("refusal.harmless", "harmless", "w41")):
        lines = []
        for i in range(24):
            words = [f"w{int(j)}" for j in rng.integers(1, 30, 4)] + [special, "w45", "w46"]
            lines.append(json.dumps({"id": f"{label}-{i}", "label": label, "text": " ".join(words)}))
        path = root / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[name] = load_dataset(name, path)
    return out


def run(model, datasets, measurement_id, **params):
    task = Task(measurement_id, params, 0, model.spec, datasets, {"refusal": ("w7 w8",)})
    record = run_task(task, model)
    assert record.status == "ok", record.error
    return record


def test_direction_runs_on_a_user_model_and_finds_nothing_in_a_random_one(user_model, datasets):
    record = run(user_model, datasets, "refusal.direction", n_random_directions=2, bootstrap_resamples=200)
    assert record.metric("causal_direction_found").value == 0
    rows = next(t for t in record.tables if t.name == "candidates").rows
    assert len(rows) == 3 * 3  # layers 0, 1 and the final stream, three positions


def test_stability_states_what_it_skipped(user_model, datasets):
    record = run(user_model, datasets, "refusal.stability", n_resamples=2, attack_steps=2, bootstrap_resamples=200,
                 n_permutations=20, suffix_len=2, top_k=4, n_candidates=8, restarts=1)
    assert "template_cosine" not in {m.name for m in record.metrics}
    assert "generated rewordings apply only to the reference organisms' language" in record.summary


def test_suffix_search_takes_token_gradients_through_a_user_model(user_model):
    seqs = [[0, 3, 4, 5, 45, 46], [0, 9, 8, 45, 46]]
    result = gcg_attack(
        user_model,
        seqs,
        objective_ids=[7],
        sign=1.0,
        end_len=2,
        suffix_len=2,
        steps=3,
        top_k=4,
        n_candidates=8,
        batch_size=64,
        generator=torch.Generator().manual_seed(0),
        refused=lambda batch: np.ones(len(batch), dtype=bool),
    )
    assert result.final_objective.mean() < result.initial_objective.mean()
    assert all(t != 0 for s in result.suffixes for t in s)  # the special token is never used


def test_template_files_are_used_and_recorded(user_model, datasets, tmp_path):
    files = {}
    for name, ds in datasets.items():
        path = tmp_path / f"{name}.reworded.jsonl"
        lines = []
        for p in ds.prompts:
            words = p.text.split()
            words[0] = "w31"  # a different opening word
            lines.append(json.dumps({"id": p.id, "label": p.label, "text": " ".join(words)}))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[name] = str(path)
    record = run(
        user_model,
        datasets,
        "refusal.stability",
        n_resamples=2,
        attack_steps=1,
        bootstrap_resamples=200,
        template_datasets=[{"harmful": files["refusal.harmful"], "harmless": files["refusal.harmless"]}],
    )
    assert -1.0 <= record.metric("template_cosine").value <= 1.0
    names = {d.name for d in record.data}
    assert {"refusal.harmful.template0", "refusal.harmless.template0"} <= names
    assert Path(files["refusal.harmful"]).is_file()
