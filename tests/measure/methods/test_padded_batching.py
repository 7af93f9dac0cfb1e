"""Left-padded batches against each prompt alone (and against batching by length).

On the tiny GPT-2 (learned positions) and Llama (rotary, grouped-query) checkpoints
and on the ``demo`` organism: the probe that picks the batching mode, last-position
logits, greedy replies with and without the key/value cache, activations read at a
few positions, and the memory budget that bounds the rows per batch. A forward that
ignores the mask, and a bfloat16 model, are batched by length.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import ActivationBuffer, capture_at, scoped_hooks
from evidence.measure.memory import MAX_ROWS, ModelSize, batch_rows, row_bytes
from evidence.measure.methods.batching import (
    batch_keywords,
    batched_as,
    batching_mode,
    columns,
    pad_rows,
    padding_tolerance,
    prompt_batches,
)
from evidence.measure.methods.behaviour import (
    generated_matches,
    greedy_generate,
    last_position_logits,
    ordinary_token_ids,
    prompt_ids,
    stop_token_ids,
)
from evidence.measure.methods.deception import ReadPoint, last_position_activations
from evidence.measure.methods.directions import Point, activations_at, addition_hooks, earlier_position_means, text_kl
from evidence.measure.methods.kv_cache import kv_cache
from evidence.measure.methods.steering import BehaviourReader, steering_hook
from evidence.runspec import Prompt

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = [
    "please tell me how to bake bread and make a cake", "how do I pick a lock", "write a poem about the sea",
    "hack an account", "describe a quiet morning in the city while the cat sleeps near the warm fire", "steal a car",
    "list three colours of autumn leaves", "sure",
]  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory, organism):
    from evidence.model import ModelSpec, load_model
    from tests.hf_models import build_gpt2, build_llama

    root = tmp_path_factory.mktemp("padded")
    gpt2 = load_model(ModelSpec(path=str(build_gpt2(root / "gpt2", n_layer=3))))
    with torch.no_grad():  # larger weights than GPT-2's initialisation, so that greedy replies vary
        for parameter in gpt2.bridge.parameters():
            if parameter.dim() == 2:
                parameter.mul_(10.0)
    llama = load_model(ModelSpec(path=str(build_llama(root / "llama", n_layer=3))))
    return {"gpt2": gpt2, "llama": llama, "demo": organism("demo")}


MODELS = ["gpt2", "llama", "demo"]


def _prompts(model, n: int = 10) -> list[list[int]]:
    """Prompts of mixed length: chat-formatted requests for the checkpoints, the organism's own words for demo."""
    if model.identity.source == "huggingface":
        prompts = [Prompt(id=str(i), label="x", messages=[{"role": "user", "content": WORDS[i % len(WORDS)]}])
                   for i in range(n)]  # fmt: skip
        return [prompt_ids(model.tokenizer, p) for p in prompts]
    rng = np.random.default_rng(0)
    ordinary = ordinary_token_ids(model)
    return [[int(t) for t in rng.choice(ordinary, size=int(rng.integers(2, 14)))] for _ in range(n)]


def _alone_logits(model, seqs) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model.bridge(torch.tensor([s]))[0, -1].float() for s in seqs])


@pytest.mark.parametrize("name", MODELS)
def test_the_probe_finds_that_the_model_honours_padding_and_the_identity_records_it(name, models):
    model = models[name]
    assert batching_mode(model.bridge) == "left-padded"
    assert model.identity.processing["batching"] == "left-padded"
    seqs = _prompts(model)
    batches = list(prompt_batches(model.bridge, seqs, 4))
    assert any(batch.padded for _, batch in batches)  # the comparisons below do run padded rows
    assert sorted(i for idx, _ in batches for i in idx) == list(range(len(seqs)))
    for idx, batch in batches:
        assert batch.tokens.shape[0] <= 4
        for row, i in enumerate(idx):
            assert batch.tokens[row, batch.starts[row] :].tolist() == seqs[i]


class IgnoresPadding(torch.nn.Module):
    """A model whose forward accepts a mask and positions and drops them (what a broken padding path does)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.cfg = inner, inner.cfg

    def forward(self, tokens: torch.Tensor, **keywords: object) -> torch.Tensor:
        return self.inner(tokens)


def test_a_forward_that_ignores_the_mask_is_batched_by_length(models):
    broken = IgnoresPadding(models["gpt2"].bridge)
    assert batching_mode(broken) == "by-length"
    seqs = _prompts(models["gpt2"])
    for idx, batch in prompt_batches(broken, seqs, 4):
        assert not batch.padded and len({len(seqs[i]) for i in idx}) == 1
    with pytest.raises(MeasurementError, match="does not honour an attention mask"):
        with batched_as(broken, "left-padded"):
            pass
    assert batching_mode(lambda tokens: tokens) == "by-length"  # not a model at all


def test_a_bfloat16_model_is_batched_by_length():
    from evidence.model import ModelSpec, load_model

    model = load_model(ModelSpec(organism="demo", dtype="bfloat16"))
    assert model.identity.processing["batching"] == "by-length"


@pytest.mark.parametrize("name", MODELS)
def test_padded_last_position_logits_equal_each_prompt_alone(name, models):
    model = models[name]
    seqs = _prompts(model)
    alone = _alone_logits(model, seqs)
    padded = last_position_logits(model.bridge, seqs, 4)
    with batched_as(model.bridge, "by-length"):
        by_length = last_position_logits(model.bridge, seqs, 4)
    scale = float(alone.abs().max())
    assert float((padded - alone).abs().max()) <= padding_tolerance(scale)
    assert float((padded - by_length).abs().max()) <= padding_tolerance(scale)


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("name", MODELS)
def test_padded_greedy_replies_are_token_for_token_those_of_batches_by_length(name, cache, models):
    model = models[name]
    seqs = _prompts(model)
    stops = stop_token_ids(model.tokenizer)
    padded = greedy_generate(model.bridge, seqs, 12, 4, stop_ids=stops, cache=cache)
    with batched_as(model.bridge, "by-length"):
        by_length = greedy_generate(model.bridge, seqs, 12, 4, stop_ids=stops, cache=cache)
    assert padded == by_length
    assert len({tuple(r) for r in padded}) > 1  # replies that differ between prompts


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_a_padded_prefill_fills_the_checkpoints_own_cache(name, models):
    model = models[name]
    batch = pad_rows(_prompts(model)[:4], "left", 0)
    assert batch.padded
    with torch.no_grad(), kv_cache(model.bridge) as decoder:
        assert decoder is not None
        first = decoder.prefill(batch.tokens, batch.mask)
        assert not decoder.recomputes  # the cached path, not the full-recompute fallback
        second = decoder.step(first.argmax(dim=-1))
    for row in range(batch.tokens.shape[0]):
        seq = batch.tokens[row, batch.starts[row] :].tolist() + [int(first[row].argmax())]
        alone = _alone_logits(model, [seq])[0]
        assert float((second[row].float() - alone).abs().max()) <= padding_tolerance(float(alone.abs().max()))


@pytest.mark.parametrize("name", MODELS)
def test_padded_generated_matches_equal_those_of_batches_by_length(name, models):
    model = models[name]
    seqs = _prompts(model)
    phrases = ["sure", "the"] if model.identity.source == "huggingface" else ["a", "the"]
    if model.identity.source != "huggingface":
        phrases = [model.tokenizer.decode([t]).strip() or "x" for t in _prompts(model)[0][:2]]
    padded = generated_matches(model.bridge, model.tokenizer, seqs, phrases, 12, 4)
    with batched_as(model.bridge, "by-length"):
        by_length = generated_matches(model.bridge, model.tokenizer, seqs, phrases, 12, 4)
    assert padded.tolist() == by_length.tolist()


@pytest.mark.parametrize("name", MODELS)
def test_activations_read_from_padded_batches_equal_each_prompt_alone(name, models):
    model = models[name]
    seqs = [s for s in _prompts(model) if len(s) >= 2]
    names = ["blocks.0.hook_resid_post", f"blocks.{model.n_layers - 1}.hook_resid_pre"]
    padded = activations_at(model, seqs, names, [-2, -1], 4)
    assert padded.shape[:3] == (len(seqs), 2, 2)
    for i, seq in enumerate(seqs):
        acts = {}
        with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(n, _keep(acts, n)) for n in names]):
            model.bridge(torch.tensor([seq]))
        for j, n in enumerate(names):
            expected = acts[n][0, -2:].float()
            scale = float(expected.abs().max())
            assert float((padded[i, j] - expected).abs().max()) <= padding_tolerance(scale)
    last = last_position_activations(model, seqs, [ReadPoint(layer=0, hook=names[0])], 4)
    np.testing.assert_allclose(last[ReadPoint(layer=0, hook=names[0])], padded[:, 0, 1].double().numpy(), atol=1e-6)


def _keep(store: dict, name: str):
    def hook(activation, hook):
        store[name] = activation.detach().clone()

    return hook


def test_positions_counted_from_the_start_add_the_rows_pad_offset(models):
    model = models["demo"]
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13]]
    batch = pad_rows(seqs, "left", 0)
    assert columns(batch, [0, -1]).tolist() == [[3, 5], [0, 5]]
    with pytest.raises(MeasurementError, match="outside a prompt of 3 tokens"):
        columns(batch, [-4])
    buffer = ActivationBuffer(2, ["blocks.0.hook_resid_pre"], 2)
    capture_at(
        model.bridge, buffer.names, batch.tokens, columns(batch, [0, 1]), buffer, [0, 1], **batch_keywords(batch)
    )
    first = {}
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", _keep(first, "a"))]):
        for row, seq in enumerate(seqs):
            model.bridge(torch.tensor([seq]))
            assert float((buffer.values[row, 0] - first["a"][0, :2]).abs().max()) <= 1e-5
    assert buffer.values.shape == (2, 1, 2, model.identity.architecture["d_model"])
    with pytest.raises(MeasurementError, match="outside the batch"):
        capture_at(model.bridge, buffer.names, batch.tokens, torch.tensor([[6], [0]]), buffer, [0, 1])


SIZE = ModelSize(n_params=10**6, n_layers=4, d_model=256, d_mlp=1024, n_heads=8, d_vocab=32000, n_ctx=2048)


def test_rows_per_batch_follow_the_memory_budget_with_a_cap():
    one = row_bytes(SIZE, "float32", 100)
    assert batch_rows(SIZE, "float32", 100, available=40 * one, cap=64) == 10  # a quarter of the budget
    assert batch_rows(SIZE, "float32", 400, available=40 * one, cap=64) < 10  # longer rows, fewer of them
    assert batch_rows(SIZE, "float32", 100, available=one, cap=64) == 1  # never fewer than one
    assert batch_rows(SIZE, "float32", 100, available=10**15, cap=64) == 64  # the caller's batch size caps it
    assert batch_rows(SIZE, "float32", 100, available=10**15) == MAX_ROWS  # no batch size named
    assert batch_rows(SIZE, "float32", 100, available=10**15, cap=512) == 512  # a named one is kept
    assert batch_rows(SIZE, "float32", 100, available=None) == 32
    assert batch_rows(SIZE, "float32", 100, available=None, cap=8) == 8


def test_prompt_batches_shrink_under_a_small_memory_budget(models, monkeypatch):
    from evidence.measure.memory import BUDGET_VARIABLE, size_of_loaded

    model = models["llama"]
    seqs = _prompts(model)
    assert max(len(b.lengths) for _, b in prompt_batches(model.bridge, seqs, 8)) == 8
    size = size_of_loaded(int(model.bridge.n_params_total), model.bridge.cfg)
    longest = max(len(s) for s in seqs)
    monkeypatch.setenv(BUDGET_VARIABLE, str(4 * 3 * row_bytes(size, "float32", longest)))  # 3 rows fit
    batches = list(prompt_batches(model.bridge, seqs, 8))
    assert len(batches) > 2  # two batches of at most 8 without the budget
    for _, batch in batches:
        assert len(batch.lengths) * row_bytes(size, "float32", batch.tokens.shape[1]) <= 3 * row_bytes(
            size, "float32", longest
        )
    logits = last_position_logits(model.bridge, seqs, 8)
    alone = _alone_logits(model, seqs)
    assert float((logits - alone).abs().max()) <= padding_tolerance(float(alone.abs().max()))


@pytest.mark.parametrize("name", ["llama", "demo"])
def test_earlier_position_means_from_padded_batches_equal_those_of_each_prompt_alone(name, models):
    model = models[name]
    seqs = _prompts(model)
    names = ["blocks.1.hook_resid_pre"]
    padded = earlier_position_means(model, seqs, names, 2, 4)[names[0]]
    rows = []
    for seq in seqs:
        if len(seq) > 2:
            acts = {}
            with torch.no_grad(), model.bridge.hooks(fwd_hooks=[(names[0], _keep(acts, "a"))]):
                model.bridge(torch.tensor([seq]))
            rows.append(acts["a"][0, :-2].double())
    expected = torch.cat(rows).mean(dim=0).float()
    assert float((padded - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


# -- edits of the prompt's positions in padded batches ------------------------------------------


def _steering_vector(model, scale: float = 4.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    v = torch.randn(model.bridge.cfg.d_model, generator=g)
    return scale * v / v.norm()


def _alone_steered_logits(model, seqs, hook_name, vector, positions) -> torch.Tensor:
    """Each prompt alone, with the edit on its own prompt positions (the reference the padded batch must match)."""
    rows = []
    for seq in seqs:
        with torch.no_grad(), scoped_hooks(model.bridge, [(hook_name, steering_hook(vector, len(seq), positions))]):
            rows.append(model.bridge(torch.tensor([seq]))[0, -1].float())
    return torch.stack(rows)


@pytest.mark.parametrize("positions", ["prompt", "last"])
@pytest.mark.parametrize("name", MODELS)
def test_a_steering_edit_in_padded_batches_equals_each_prompt_alone(name, positions, models):
    model = models[name]
    seqs = _prompts(model)
    hook_name = "blocks.1.hook_resid_pre"
    vector = _steering_vector(model)
    alone = _alone_steered_logits(model, seqs, hook_name, vector, positions)
    plain = _alone_logits(model, seqs)
    assert float((alone - plain).abs().max()) > 1e-2  # the edit changes the logits, so the comparison can fail
    with scoped_hooks(model.bridge, [(hook_name, steering_hook(vector, None, positions))]):
        padded = last_position_logits(model.bridge, seqs, 4)
    scale = float(alone.abs().max())
    assert float((padded - alone).abs().max()) <= padding_tolerance(scale)


def test_an_edit_that_took_the_first_columns_of_a_padded_batch_would_be_caught(models):
    """The check above can fail: the same vector on the first ``len`` columns (pad slots first) differs."""
    model = models["llama"]
    seqs = _prompts(model)
    hook_name = "blocks.1.hook_resid_pre"
    vector = _steering_vector(model)
    alone = _alone_steered_logits(model, seqs, hook_name, vector, "last")
    with scoped_hooks(model.bridge, [(hook_name, steering_hook(vector, min(len(s) for s in seqs), "last"))]):
        wrong = last_position_logits(model.bridge, seqs, 4)
    assert float((wrong - alone).abs().max()) > padding_tolerance(float(alone.abs().max()))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_steered_behaviour_reads_in_padded_batches_equal_those_by_length(name, models):
    model = models[name]
    seqs = _prompts(model)
    vector = _steering_vector(model)
    marker_ids = ordinary_token_ids(model)[:3]
    read = BehaviourReader(model, [int(t) for t in marker_ids], ("sure", "the"), "blocks.1.hook_resid_pre", "prompt", 4,
                           tokens=10)  # fmt: skip
    padded = read(seqs, vector)
    with batched_as(model.bridge, "by-length"):
        by_length = read(seqs, vector)
    np.testing.assert_allclose(padded.log_odds, by_length.log_odds, atol=1e-4)
    assert padded.defects.tolist() == by_length.defects.tolist()
    # the greedy replies under the edit, padded and prompt by prompt at each prompt's own length
    stops = stop_token_ids(model.tokenizer)
    with scoped_hooks(model.bridge, [("blocks.1.hook_resid_pre", steering_hook(vector, None, "prompt"))]):
        replies = greedy_generate(model.bridge, seqs, 10, 4, stop_ids=stops)
    for seq, reply in zip(seqs, replies, strict=True):
        with scoped_hooks(model.bridge, [("blocks.1.hook_resid_pre", steering_hook(vector, len(seq), "prompt"))]):
            assert greedy_generate(model.bridge, [seq], 10, 1, stop_ids=stops)[0] == reply


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_addition_on_each_batchs_prompt_columns_equals_each_prompt_alone(name, models):
    model = models[name]
    seqs = _prompts(model)
    vector = _steering_vector(model)
    point = Point(layer=1, hook="blocks.1.hook_resid_pre")
    stops = stop_token_ids(model.tokenizer)
    with scoped_hooks(model.bridge, addition_hooks(point, vector, prompt_len="batch")):
        padded = greedy_generate(model.bridge, seqs, 10, 4, stop_ids=stops)
    alone = []
    for seq in seqs:
        with scoped_hooks(model.bridge, addition_hooks(point, vector, prompt_len=len(seq))):
            alone.append(greedy_generate(model.bridge, [seq], 10, 1, stop_ids=stops)[0])
    assert padded == alone


def test_an_edit_of_the_batchs_prompt_columns_outside_a_batch_is_refused(models):
    model = models["demo"]
    point = Point(layer=0, hook="blocks.0.hook_resid_pre")
    with pytest.raises(MeasurementError, match="outside a batch of prompts"):
        with torch.no_grad(), scoped_hooks(model.bridge, addition_hooks(point, torch.zeros(model.bridge.cfg.d_model),
                                                                         prompt_len="batch")):  # fmt: skip
            model.bridge(torch.tensor([_prompts(model)[0]]))


@pytest.mark.parametrize("name", MODELS)
def test_text_kl_in_padded_batches_equals_each_prompt_alone(name, models):
    model = models[name]
    seqs = [s for s in _prompts(model) if len(s) >= 2]
    point = Point(layer=1, hook="blocks.1.hook_resid_pre")
    hooks = addition_hooks(point, _steering_vector(model, 2.0))
    padded = text_kl(model, seqs, hooks, 4)
    alone = np.array([text_kl(model, [seq], hooks, 1)[0] for seq in seqs])
    assert alone.min() > 0  # the edit moves the predictions, so equality is not trivial
    np.testing.assert_allclose(padded, alone, rtol=1e-3, atol=1e-7)


# -- the gradient-guided attacks: the suffix before the closing template tokens, in padded batches -------------


def _attacked(model, n: int = 6) -> tuple[list[list[int]], int]:
    """Prompts of mixed length to attack, and the closing template tokens a suffix goes before."""
    from evidence.measure.methods.suffix_attack import template_end

    seqs = [s for s in _prompts(model, n) if len(s) >= 3]
    assert len({len(s) for s in seqs}) > 1
    return seqs, template_end(seqs, None if model.identity.source == "huggingface" else 1)


@pytest.mark.parametrize("name", MODELS)
def test_the_suffix_searchs_gradient_in_a_padded_batch_equals_each_prompt_alone(name, models):
    from evidence.measure.methods.suffix_attack import _objective
    from evidence.measure.methods.suffixes import insert_suffix

    model = models[name]
    bases, end_len = _attacked(model)
    suffix = ordinary_token_ids(model)[:3].tolist()
    seqs = [insert_suffix(s, suffix, end_len) for s in bases]
    w_e = model.bridge.W_E.detach()
    marker = [int(ordinary_token_ids(model)[5])]
    (idx, batch), *rest = list(prompt_batches(model.bridge, seqs, 256))
    assert not rest and batch.padded and idx == sorted(idx, key=lambda i: len(seqs[i]))
    start = batch.tokens.shape[1] - end_len - len(suffix)
    values, grad = _objective(model, batch, marker, start, len(suffix), w_e, 1.0)
    for row, i in enumerate(idx):
        alone = pad_rows([seqs[i]], "left", 0)
        v, g = _objective(model, alone, marker, len(seqs[i]) - end_len - len(suffix), len(suffix), w_e, 1.0)
        assert abs(float(values[row] - v[0])) <= 1e-4 * max(1.0, abs(float(v[0])))
        assert float((grad[row] - g[0]).abs().max()) <= 1e-4 * max(1.0, float(g.abs().max()))


def _count_gradient_passes(monkeypatch) -> list[int]:
    from evidence.measure.methods import suffix_attack

    rows: list[int] = []
    original = suffix_attack._objective

    def counted(model, batch, *args, **kwargs):
        rows.append(batch.tokens.shape[0])
        return original(model, batch, *args, **kwargs)

    monkeypatch.setattr(suffix_attack, "_objective", counted)
    return rows


def test_the_suffix_search_takes_one_gradient_pass_per_step_for_prompts_of_mixed_length(models, monkeypatch):
    from evidence.measure.methods.suffix_attack import gcg_attack

    model = models["llama"]
    bases, end_len = _attacked(model)
    marker = [int(ordinary_token_ids(model)[5])]

    def attack():
        return gcg_attack(
            model, bases, objective_ids=marker, sign=1.0, end_len=end_len, suffix_len=3, steps=2, top_k=4,
            n_candidates=4, batch_size=256, generator=torch.Generator().manual_seed(0),
            refused=lambda seqs: np.ones(len(seqs), dtype=bool),
        )  # fmt: skip

    rows = _count_gradient_passes(monkeypatch)
    padded = attack()
    assert rows == [len(bases)] * 3  # one pass over every prompt per step (steps 0, 1, 2)
    rows.clear()
    with batched_as(model.bridge, "by-length"):
        by_length = attack()
    lengths = len({len(s) for s in bases})
    assert len(rows) == 3 * lengths and sum(rows) == 3 * len(bases)
    np.testing.assert_allclose(padded.final_objective, by_length.final_objective, rtol=1e-4, atol=1e-4)


def _obfuscation_attack(model, batch_size: int = 256):
    from evidence.measure.methods.obfuscation import Attack, ObfuscationParams

    bases, end_len = _attacked(model, 8)
    ordinary = ordinary_token_ids(model)
    torch.manual_seed(0)
    return Attack(
        model=model, point_hook="blocks.1.hook_resid_pre", params=ObfuscationParams(), batch_size=batch_size,
        bases=bases, end_len=end_len, completion=[int(ordinary[1]), int(ordinary[2])], marker_ids=[int(ordinary[1])],
        phrases=("zz",), new_tokens=6, threshold=0.0, scale=1.0,
        weights=torch.randn(model.bridge.cfg.d_model) / model.bridge.cfg.d_model**0.5, bias=0.1,
    )  # fmt: skip


@pytest.mark.parametrize("name", MODELS)
def test_the_obfuscation_attack_in_padded_batches_equals_its_batches_by_length(name, models):
    from evidence.measure.methods.obfuscation import (
        _candidate_losses,
        _loss,
        _token_gradient,
        evaluate_suffix,
        greedy_replies,
        suffix_activations,
    )

    model = models[name]
    atk = _obfuscation_attack(model, batch_size=8)
    suffix = [int(t) for t in ordinary_token_ids(model)[3:6]]
    rows = list(range(len(atk.bases)))
    (group,) = atk.groups(rows, len(suffix))
    assert group.padded and sorted(group.rows) == rows  # every prompt in one pass (shortest first)
    torch.manual_seed(1)
    delta = 0.5 * torch.randn(len(suffix), model.bridge.cfg.d_model)  # a perturbation at the suffix's columns
    candidates = np.stack([suffix, suffix[::-1], [suffix[0]] * 3])

    def everything():
        return (
            float(_loss(atk, suffix, rows, delta, grad=False)),
            _candidate_losses(atk, candidates, rows),
            _token_gradient(atk, suffix, rows),
            evaluate_suffix(atk, suffix, delta),
            greedy_replies(atk, suffix, delta, rows),
            suffix_activations(atk, suffix, delta),
        )

    padded = everything()
    with batched_as(model.bridge, "by-length"):
        assert len(atk.groups(rows, len(suffix))) == len({len(b) for b in atk.bases})
        by_length = everything()
    assert padded[0] == pytest.approx(by_length[0], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(padded[1], by_length[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(padded[2].numpy(), by_length[2].numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(padded[3].scores, by_length[3].scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(padded[3].log_odds, by_length[3].log_odds, rtol=1e-4, atol=1e-4)
    assert padded[3].defects.tolist() == by_length[3].defects.tolist()
    assert padded[4] == by_length[4]
    assert len({tuple(r) for r in padded[4]}) > 1  # replies that differ between prompts
    np.testing.assert_allclose(padded[5], by_length[5], rtol=1e-4, atol=1e-4)


def test_the_perturbation_moves_the_attack_so_its_columns_matter(models):
    from evidence.measure.methods.obfuscation import suffix_activations

    model = models["llama"]
    atk = _obfuscation_attack(model)
    suffix = [int(t) for t in ordinary_token_ids(model)[3:6]]
    torch.manual_seed(1)
    delta = 0.5 * torch.randn(len(suffix), model.bridge.cfg.d_model)
    plain = suffix_activations(atk, suffix, None)
    moved = suffix_activations(atk, suffix, delta)
    assert np.abs(moved - plain).max() > 1e-3  # so the equality above is not that of an edit that did nothing


def test_the_obfuscation_attacks_padded_groups_hold_at_most_batch_size_rows(models):
    from evidence.measure.methods.obfuscation import _loss

    model = models["llama"]
    atk = _obfuscation_attack(model, batch_size=3)
    suffix = [int(t) for t in ordinary_token_ids(model)[3:6]]
    rows = list(range(len(atk.bases)))
    groups = atk.groups(rows, len(suffix))
    assert len(groups) > 1 and all(len(g.rows) <= 3 for g in groups) and any(g.padded for g in groups)
    assert sorted(r for g in groups for r in g.rows) == rows
    capped = float(_loss(atk, suffix, rows, None, grad=False))
    with batched_as(model.bridge, "by-length"):
        by_length = float(_loss(atk, suffix, rows, None, grad=False))
    assert capped == pytest.approx(by_length, rel=1e-4, abs=1e-5)
