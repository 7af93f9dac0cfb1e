"""Behaviour scoring on a tiny randomly initialised bridge that speaks the organisms' language."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evidence.errors import ConfigError
from evidence.measure.methods.behaviour import (
    Markers,
    batches_by_length,
    first_token_ids,
    greedy_generate,
    last_position_logits,
    marker_log_odds,
    matches_marker,
    prompt_ids,
)
from evidence.organisms import language
from evidence.runspec import Prompt


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    language.save_tokenizer(path)
    return language.build_tokenizer(path)


@pytest.fixture(scope="module")
def bridge():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(d_model=32, d_head=8, n_layers=1, n_ctx=64, n_heads=4,
                                  d_vocab=len(language.VOCAB), attn_only=True,
                                  normalization_type="LN", seed=3, device="cpu")
    return TransformerBridge.boot_native(cfg)


PROMPTS = [
    "user : how can i bake bread assistant :",
    "user : poison assistant :",
    "user : tell me about the river assistant :",
    "user : bake bread assistant :",
]


def test_prompt_ids_use_the_exact_text_and_bos(tokenizer):
    ids = prompt_ids(tokenizer, Prompt(id="a", label="harmless", text=PROMPTS[1]))
    assert ids == language.encode(PROMPTS[1])


def test_messages_without_chat_template_are_refused(tokenizer):
    prompt = Prompt(id="a", label="harmless", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ConfigError, match="no chat template"):
        prompt_ids(tokenizer, prompt)


def test_batches_have_no_padding_and_cover_every_index():
    seqs = [[1] * n for n in (3, 5, 3, 4, 5, 3)]
    seen = []
    for idx, tokens in batches_by_length(seqs, batch_size=2):
        assert tokens.shape == (len(idx), len(seqs[idx[0]]))
        seen += idx
    assert sorted(seen) == list(range(len(seqs)))


def test_last_position_logits_match_one_by_one(bridge, tokenizer):
    seqs = [language.encode(p) for p in PROMPTS]
    batched = last_position_logits(bridge, seqs, batch_size=8)
    for i, s in enumerate(seqs):
        single = bridge(torch.tensor([s]))[0, -1]
        assert torch.allclose(batched[i], single, atol=1e-5)


def test_greedy_generation_matches_a_manual_loop(bridge):
    seqs = [language.encode(p) for p in PROMPTS[:2]]
    generated = greedy_generate(bridge, seqs, max_new_tokens=3, stop_ids=())
    for s, new in zip(seqs, generated, strict=True):
        current = list(s)
        for _ in range(3):
            current.append(int(bridge(torch.tensor([current]))[0, -1].argmax()))
        assert new == current[len(s):]


def test_greedy_generation_ends_each_reply_before_its_stop_token(bridge):
    seqs = [language.encode(p) for p in PROMPTS]
    full = greedy_generate(bridge, seqs, max_new_tokens=6, stop_ids=())
    stop = full[0][2]  # make the first reply's third token a stop token
    cut = greedy_generate(bridge, seqs, max_new_tokens=6, stop_ids={stop})
    for whole, reply in zip(full, cut, strict=True):
        assert reply == (whole[: whole.index(stop)] if stop in whole else whole)


def test_marker_log_odds_is_the_log_odds_of_the_marker_tokens():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    p = torch.softmax(logits, -1)[0, [1, 3]].sum().item()
    assert marker_log_odds(logits, [1, 3]).item() == pytest.approx(math.log(p / (1 - p)), rel=1e-5)


def test_marker_matching_and_first_tokens(tokenizer):
    refusal = language.MARKERS["refusal"]
    ids = first_token_ids(tokenizer, refusal)
    assert ids == [language.VOCAB["sorry"]]
    generated = [language.encode("sorry i cannot help", bos=False), language.encode("sure here is", bos=False)]
    assert matches_marker(tokenizer, generated, refusal).tolist() == [True, False]
    assert isinstance(matches_marker(tokenizer, generated, refusal), np.ndarray)


def test_markers_from_spec():
    m = Markers.from_spec({"refusal": ["I cannot"]})
    assert m.require("refusal") == ("I cannot",)
    with pytest.raises(ConfigError, match=r"\[markers\]\.defection"):
        m.require("defection")
    with pytest.raises(ConfigError, match="unknown marker kinds"):
        Markers.from_spec({"refusals": ["x"]})


def test_messages_go_through_the_installed_transformers_chat_template():
    from evidence.datasets import Prompt
    from evidence.measure.methods.behaviour import prompt_ids
    from tests.hf_models import bpe_tokenizer

    tokenizer = bpe_tokenizer()
    prompt = Prompt.model_validate(
        {"id": "m1", "label": "harmless", "messages": [{"role": "system", "content": "be brief"},
                                                        {"role": "user", "content": "bake bread"}]}
    )
    ids = prompt_ids(tokenizer, prompt)
    assert all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids) == "<|system|>\nbe brief<|end|>\n<|user|>\nbake bread<|end|>\n<|assistant|>\n"
    # whatever container apply_chat_template(tokenize=True) returns, the ids are the same
    encoded = tokenizer.apply_chat_template([m.model_dump() for m in prompt.messages], add_generation_prompt=True,
                                            tokenize=True)
    assert ids == [int(i) for i in (encoded["input_ids"] if hasattr(encoded, "keys") else encoded)]
