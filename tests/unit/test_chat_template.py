"""A model whose tokenizer has no chat template, on prompt sets in chat messages: refused before measuring."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from evidence.check import chat_template_problem
from evidence.cli import main
from evidence.measure import get
from evidence.runspec import load_runspec
from tests.hf_models import build_gpt2


def _chat_set(path, label: str) -> str:
    lines = [
        {"id": f"{label}-{i}", "label": label, "messages": [{"role": "user", "content": f"tell me how to bake {i}"}]}
        for i in range(4)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path.name


def test_chat_messages_without_a_chat_template_is_one_line_naming_what_is_missing(tmp_path, capsys):
    model = build_gpt2(tmp_path / "model")
    (model / "chat_template.jinja").unlink()
    harmful = _chat_set(tmp_path / "harmful.jsonl", "harmful")
    harmless = _chat_set(tmp_path / "harmless.jsonl", "harmless")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[run]\nmeasurements = ["refusal.direction"]\n[model]\npath = "model"\n'
        f'[datasets]\n"refusal.harmful" = "{harmful}"\n"refusal.harmless" = "{harmless}"\n'
        '[markers]\nrefusal = ["sorry"]\n'
    )
    code = main(["run", str(spec), "--no-sign", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[-1] == (
        f"error: Hugging Face directory '{model}' has no chat template, but the prompt sets "
        f"refusal.harmful ({tmp_path / 'harmful.jsonl'}), refusal.harmless ({tmp_path / 'harmless.jsonl'}) are chat "
        "messages (save a tokenizer with a chat template next to the model (tokenizer.chat_template, then "
        "tokenizer.save_pretrained(DIR)), or write those prompts as 'text')"
    )
    assert not (tmp_path / "out").exists()


def test_the_same_sets_pass_the_check_when_the_template_is_there(tmp_path):
    """The check passes a tokenizer that has the template, and refuses the same tokenizer without it."""
    model = build_gpt2(tmp_path / "model")
    harmful = _chat_set(tmp_path / "harmful.jsonl", "harmful")
    harmless = _chat_set(tmp_path / "harmless.jsonl", "harmless")
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        '[run]\nmeasurements = ["refusal.direction"]\n[model]\npath = "model"\n'
        f'[datasets]\n"refusal.harmful" = "{harmful}"\n"refusal.harmless" = "{harmless}"\n'
        '[markers]\nrefusal = ["sorry"]\n'
    )
    spec = load_runspec(spec_path)
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    assert tokenizer.chat_template
    used = [d.name for d in get("refusal.direction").datasets]
    assert chat_template_problem(tokenizer, "m", spec, used) is None
    tokenizer.chat_template = None
    problem = chat_template_problem(tokenizer, "m", spec, used)
    assert problem is not None
    assert (problem.source, problem.severity) == ("datasets", "error")
    assert problem.message.startswith("m has no chat template, but the prompt sets refusal.harmful")
