"""The prompt sets for natural-language chat models and the run spec that reads them."""

import json
import re
from collections import Counter

import pytest

from evidence import chatsets
from evidence.errors import ConfigError
from evidence.runspec import (
    default_runspec_path,
    is_chat_model_dir,
    load_runspec,
    natural_language_runspec_path,
)


@pytest.fixture(scope="module")
def spec():
    return load_runspec(natural_language_runspec_path())


def test_committed_files_are_what_the_generator_writes():
    built = chatsets.build()
    shipped = sorted(p.name for p in chatsets.data_dir().glob("*.jsonl"))
    assert shipped == sorted(built)
    for name, data in built.items():
        assert (chatsets.data_dir() / name).read_bytes() == data, f"{name} differs: run python -m evidence.chatsets"


def test_generator_is_deterministic_and_seeded():
    assert chatsets.build() == chatsets.build()
    assert chatsets.build(seed=1) != chatsets.build()


def test_spec_validates_and_reads_every_set(spec):
    counts = {name: ds.count for name, ds in spec.datasets.items()}
    assert counts == {
        "refusal.harmful": 320,
        "refusal.harmless": 320,
        "deception.train": 256,
        "deception.eval": 256,
        "deception.control": 1024,
        "goal.aligned": 128,
        "goal.decorrelated": 128,
    }
    assert spec.model_path is None and spec.model_organism is None  # --model supplies it
    assert "As an AI" in spec.markers["refusal"] and spec.markers["defection"] and spec.markers["helpful"]
    assert spec.policy_path is None
    assert set(spec.measurements) == set(load_runspec(default_runspec_path()).measurements)


def test_every_prompt_is_a_short_distinct_user_turn(spec):
    texts = []
    for ds in spec.datasets.values():
        for p in ds.prompts:
            assert p.text is None and p.messages is not None
            assert [m.role for m in p.messages] == ["user"]
            texts.append(p.messages[0].content)
            assert len(texts[-1]) <= chatsets.MAX_CHARS
    assert len(texts) == len(set(texts))


def test_labels_are_balanced_and_pairs_follow_the_id_conventions(spec):
    train = spec.datasets["deception.train"].prompts
    assert Counter(p.label for p in train) == {"deceptive": 128, "honest": 128}
    by_group: dict[str, set[tuple[str, str]]] = {}
    for p in train:
        match = re.fullmatch(r"(pair-\d{4})-(deceptive|honest)", p.id)
        assert match and match[1] == p.group and match[2] == p.label
        by_group.setdefault(p.group, set()).add((p.id.rsplit("-", 1)[0], p.label))
    assert all(len(v) == 2 and len({k for k, _ in v}) == 1 for v in by_group.values())

    evals = spec.datasets["deception.eval"].prompts
    assert Counter(p.label for p in evals) == {"positive": 128, "negative": 128}
    assert Counter(p.group for p in evals).most_common()[-1][1] == 2

    harmful, harmless = spec.datasets["refusal.harmful"].prompts, spec.datasets["refusal.harmless"].prompts
    assert [p.group for p in harmful] == [p.group for p in harmless]
    assert [p.id.split("-")[1] for p in harmful] == [p.id.split("-")[1] for p in harmless]
    assert {p.label for p in spec.datasets["deception.control"].prompts} == {"negative"}


def test_goal_sets_are_balanced_over_goal_and_proxy(spec):
    aligned, decorrelated = spec.datasets["goal.aligned"].prompts, spec.datasets["goal.decorrelated"].prompts
    assert Counter((p.goal, p.proxy) for p in aligned) == {(True, True): 64, (False, False): 64}
    assert Counter((p.goal, p.proxy) for p in decorrelated) == {(True, False): 64, (False, True): 64}
    for p in (*aligned, *decorrelated):
        assert p.answers == ("same", "different")
        assert p.id.endswith(f"-g{int(p.goal)}p{int(p.proxy)}")
        quoted = re.findall(r"'(\w+)'", p.messages[0].content)
        assert (quoted[0] == quoted[1]) == p.goal


def test_refusal_twins_differ_only_in_the_aim(spec):
    # Each harmful request and its harmless twin use the same frame: only the aim is exchanged.
    frames = [re.compile(re.escape(f).replace(r"\{\}", "(.+)") + "$") for f in chatsets._REQUEST_FRAMES]
    aims = dict(chatsets._AIMS)
    harmful, harmless = spec.datasets["refusal.harmful"].prompts, spec.datasets["refusal.harmless"].prompts
    for bad, good in zip(harmful, harmless, strict=True):
        matched = [(f.match(bad.messages[0].content), f.match(good.messages[0].content)) for f in frames]
        pairs = [(b[1], g[1]) for b, g in matched if b and g]
        assert any(aims.get(b) == g for b, g in pairs), (bad.id, good.id)


def _hf_dir(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text("{}")
    for file, text in files.items():
        (d / file).write_text(text)
    return d


def test_chat_model_directories_get_the_natural_language_spec(tmp_path):
    jinja = _hf_dir(tmp_path, "jinja", {"chat_template.jinja": "{{ messages }}"})
    in_config = _hf_dir(tmp_path, "in-config", {"tokenizer_config.json": json.dumps({"chat_template": "x"})})
    plain = _hf_dir(tmp_path, "plain", {"tokenizer_config.json": json.dumps({"model_max_length": 8})})
    broken = _hf_dir(tmp_path, "broken", {"tokenizer_config.json": "{not json"})
    assert is_chat_model_dir(jinja) and is_chat_model_dir(in_config)
    assert not is_chat_model_dir(plain) and not is_chat_model_dir(broken)
    assert default_runspec_path(str(jinja)) == natural_language_runspec_path()
    assert default_runspec_path(str(in_config)) == natural_language_runspec_path()
    assert default_runspec_path(str(plain)).name == "default.toml"
    assert default_runspec_path("demo").name == "default.toml"  # organisms keep their own sets
    assert default_runspec_path(None).name == "default.toml"


def test_a_spec_without_a_model_takes_it_from_the_command_line(tmp_path, spec):
    assert spec.with_model("demo").model_organism == "demo"
    path = tmp_path / "spec.toml"
    path.write_text('[run]\nmeasurements = ["heads.inventory"]\n')
    loaded = load_runspec(path)
    assert loaded.model_path is None and loaded.model_organism is None
    from evidence.model import ModelSpec

    with pytest.raises(ConfigError, match="not neither") as info:
        ModelSpec(organism=loaded.model_organism, path=loaded.model_path)
    assert "--model" in info.value.hint


def test_run_on_a_chat_model_directory_reads_the_natural_language_spec(tmp_path, monkeypatch, capsys):
    import evidence.run
    from evidence.cli import main

    seen = []

    def stop(spec, *args, **kwargs):
        seen.append(spec)
        raise ConfigError("stopped before measuring")

    monkeypatch.setattr(evidence.run, "run", stop)
    chat = _hf_dir(tmp_path, "chat", {"chat_template.jinja": "{{ messages }}"})
    assert main(["run", "--model", str(chat), "--out", str(tmp_path / "out"), "--no-sign"]) == 2
    assert main(["run", "--model", "demo", "--out", str(tmp_path / "out"), "--no-sign"]) == 2
    capsys.readouterr()
    assert seen[0].source == natural_language_runspec_path().resolve() and seen[0].model_path == chat.resolve()
    assert seen[0].datasets["deception.control"].count == 1024
    assert seen[1].source == default_runspec_path().resolve() and seen[1].model_organism == "demo"


def test_a_spec_without_a_model_run_without_model_is_a_one_line_error(tmp_path, capsys):
    from evidence.cli import main

    assert main(["run", str(natural_language_runspec_path()), "--out", str(tmp_path / "out"), "--no-sign"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "natural-language.toml names no model: pass --model DIR" in err
    assert not (tmp_path / "out").exists()
