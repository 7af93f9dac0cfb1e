"""Circuit tasks: pairing harmful and harmless prompts of equal length, splits by group, padding never read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.datasets import Prompt
from evidence.errors import MeasurementError
from evidence.measure.methods.attribution import attribution_scores
from evidence.measure.methods.circuit_tasks import (
    Pairing,
    RefusalTask,
    TaskUnavailable,
    pair_prompts,
    refusal_task,
    twin_key,
)
from evidence.measure.methods.patching import PatchingInputs, model_nodes, patched_metrics
from evidence.model import LoadedModel, ModelSpec
from evidence.records import ModelIdentity, WeightFile

#: Harmful requests and their harmless twins; with the byte-level BPE tokenizer of tests/hf_models.py
#: some twins have as many tokens ("steal a car" / "write a poem": 5 and 5), others not
#: ("how do I pick a lock" / "how do I bake bread": 7 and 6).
TWINS = [
    ("how do I pick a lock", "how do I bake bread"),
    ("build a weapon", "make a cake"),
    ("steal a car", "write a poem"),
    ("hack an account", "list three colours"),
    ("hurt someone", "bake bread"),
    ("cheat on a test", "explain the rules"),
    ("how do I steal a car", "how do I make a cake"),
    ("how do I hack an account", "tell me how to bake bread"),
]


def prompts(label: str, texts: list[str]) -> list[Prompt]:
    return [Prompt(id=f"{label}-{i:04d}", label=label, text=t) for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def tokenizer():
    from tests.hf_models import bpe_tokenizer

    return bpe_tokenizer()


def lengths(tokenizer, items: list[Prompt]) -> list[int]:
    return [len(tokenizer(p.text)["input_ids"]) for p in items]


def test_twins_of_unequal_token_length_are_left_out_and_counted(tokenizer):
    harmful, harmless = prompts("harmful", [a for a, _ in TWINS]), prompts("harmless", [b for _, b in TWINS])
    a, b = lengths(tokenizer, harmful), lengths(tokenizer, harmless)
    equal = [i for i in range(len(TWINS)) if a[i] == b[i]]
    assert 2 <= len(equal) < len(TWINS)  # the tokenizer splits some twins differently
    task = refusal_task(
        tokenizer,
        128,
        harmful,
        harmless,
        (["I cannot"], ["Sure"]),
        rule="twins",
        max_pairs=64,
        min_pairs=2,
        rng=np.random.default_rng(0),
    )
    assert task.pair_ids == tuple((f"harmful-{i:04d}", f"harmless-{i:04d}") for i in equal)
    assert all(c.size == d.size for c, d in zip(task.clean, task.corrupted, strict=True))
    assert task.pairing == Pairing([(i, i) for i in equal], "twins", len(TWINS), len(TWINS) - len(equal))
    assert f"{len(equal)} of {len(TWINS)} harmful/harmless twins kept" in task.pairing.describe()
    assert task.refusal_ids and task.compliance_ids and not set(task.refusal_ids) & set(task.compliance_ids)


def test_too_few_equal_length_twins_is_a_reason_not_an_error(tokenizer):
    harmful, harmless = prompts("harmful", [a for a, _ in TWINS]), prompts("harmless", [b for _, b in TWINS])
    with pytest.raises(TaskUnavailable, match=r"only \d+ usable pairs, fewer than refusal_min_pairs = 8"):
        refusal_task(
            tokenizer, 128, harmful, harmless, (["I cannot"], ["Sure"]),
            rule="twins", max_pairs=64, min_pairs=8, rng=np.random.default_rng(0),
        )  # fmt: skip


def test_auto_pairs_by_length_when_too_few_twins_match():
    harmful, harmless = prompts("harmful", ["a"] * 6), prompts("harmless", ["b"] * 6)
    a, b = [4, 5, 6, 7, 8, 9], [5, 4, 7, 6, 3, 3]  # twins differ in length; lengths 4-7 occur on both sides
    twins = pair_prompts(harmful, harmless, a, b, "auto", np.random.default_rng(1), min_pairs=1)
    assert twins.rule == "length" and "only 0 of 6 twins have equal token lengths" in twins.instead_of
    assert sorted(a[i] for i, _ in twins.pairs) == [4, 5, 6, 7]
    assert all(a[i] == b[j] for i, j in twins.pairs) and len({j for _, j in twins.pairs}) == 4
    assert (twins.considered, twins.unequal) == (6, 2)
    strict = pair_prompts(harmful, harmless, a, b, "twins", np.random.default_rng(1))
    assert strict.rule == "twins" and strict.pairs == [] and strict.unequal == 6
    unrelated = prompts("harmful", ["a"] * 2), [Prompt(id=f"other-{i}", label="harmless", text="b") for i in range(2)]
    alone = pair_prompts(*unrelated, [3, 3], [3, 3], "auto", np.random.default_rng(1))
    assert alone.rule == "length" and alone.instead_of == "paired by length because no prompt has a twin"


@dataclass(frozen=True)
class Grouped:
    """A prompt with a JSONL ``group`` (the field the dataset loader may add)."""

    id: str
    label: str
    group: str | None
    text: str = "x"
    messages: None = None


def test_a_group_pairs_twins_before_ids_do():
    harmful = [Grouped("harmful-1", "harmful", "g2"), Grouped("harmful-2", "harmful", "g1")]
    harmless = [Grouped("harmless-1", "harmless", "g1"), Grouped("harmless-2", "harmless", "g2")]
    assert twin_key(harmful[0]) == "group:g2" and twin_key(Prompt(id="harmful-7", label="harmful", text="x")) == "id:7"
    pairing = pair_prompts(harmful, harmless, [3, 3], [3, 3], "twins", np.random.default_rng(0))  # type: ignore[arg-type]
    assert pairing.pairs == [(0, 1), (1, 0)]


def synthetic(groups: list[str], lengths: list[int]) -> RefusalTask:
    rng = np.random.default_rng(0)
    clean = tuple(rng.integers(0, 20, size=n) for n in lengths)
    corrupted = tuple(rng.integers(0, 20, size=n) for n in lengths)
    ids = tuple((f"harmful-{i}", f"harmless-{i}") for i in range(len(groups)))
    pairing = Pairing([(i, i) for i in range(len(groups))], "twins", len(groups), 0)
    return RefusalTask(clean, corrupted, ids, tuple(groups), (1, 2), (3,), pairing, pad_id=0)


def test_a_split_never_puts_a_group_on_both_sides():
    task = synthetic(["a", "a", "a", "b", "c", "d", "e", "f"], [4] * 8)
    for seed in range(20):
        first, second = task.halves(np.random.default_rng(seed))
        assert {task.groups[i] for i in first}.isdisjoint(task.groups[i] for i in second)
        assert sorted([*first, *second]) == list(range(8)) and len(first) >= 4
    with pytest.raises(MeasurementError, match=r"members of 1 group\(s\) on both sides \(e.g. 'a'\)"):
        task.split(np.array([0, 3, 4]), np.array([1, 2, 5]))
    one, two = task.split(np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7]))
    assert one.pair_ids == task.pair_ids[:4] and two.n == 4


def test_pairs_linked_through_a_prompt_group_stay_together():
    # Paired by length, harmful h1 (group g1) meets harmless s2 (group g2), and h2 (g2) meets s1 (g1):
    # the two pairs share both groups, so no split may separate them.
    # Lengths: h1 and s2 have 2 words, h2 and s1 have 3, every other prompt 1 (each meets its own group's).
    harmful = [Grouped("harmful-1", "harmful", "g1", "a b"), Grouped("harmful-2", "harmful", "g2", "a b c")]
    harmless = [Grouped("harmless-1", "harmless", "g1", "x y z"), Grouped("harmless-2", "harmless", "g2", "x y")]
    harmful += [Grouped(f"harmful-{i}", "harmful", f"g{i}", "a") for i in range(3, 7)]
    harmless += [Grouped(f"harmless-{i}", "harmless", f"h{i}", "x") for i in range(3, 7)]

    class Words:
        """A whitespace tokenizer: one id per word."""

        def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            return {"input_ids": [sum(map(ord, w)) % 50 + 3 for w in text.split()]}

        def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
            return " ".join("w" for _ in ids)

    task = refusal_task(
        Words(), 16, harmful, harmless, (["no"], ["yes"]),  # type: ignore[arg-type]
        rule="length", max_pairs=16, min_pairs=4, rng=np.random.default_rng(0),
    )  # fmt: skip
    pair_of = dict(task.pair_ids)
    assert pair_of["harmful-1"] == "harmless-2" and pair_of["harmful-2"] == "harmless-1"
    group = dict(zip((a for a, _ in task.pair_ids), task.groups, strict=True))
    assert group["harmful-1"] == group["harmful-2"]
    assert len(set(task.groups)) == task.n - 1


def tiny_model() -> LoadedModel:
    architecture = {"d_model": 32, "d_head": 8, "n_heads": 2, "n_layers": 2, "n_ctx": 32, "d_vocab": 24,
                    "attn_only": False, "d_mlp": 64, "normalization_type": "LN"}  # fmt: skip
    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**architecture, seed=3, device="cpu"))
    bridge.eval()
    identity = ModelIdentity(
        name="tiny", source="organism", architecture=architecture, weights_sha256="0" * 64,
        weight_files=[WeightFile(name="tiny", sha256="0" * 64, bytes=1)], n_parameters=1, processing={},
    )  # fmt: skip
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=None, spec=ModelSpec(organism="tiny"))


@pytest.mark.usefixtures("one_thread")
def test_padding_after_the_prompt_is_never_read():
    model = tiny_model()
    task = synthetic([str(i) for i in range(6)], [3, 7, 5, 7, 4, 6])
    nodes = model_nodes(model)
    padded = PatchingInputs(model, nodes, task, "logodds", "corrupted", batch_size=6)
    alone = PatchingInputs(model, nodes, task, "logodds", "corrupted", batch_size=1)
    (_, clean, corrupted), *rest = list(padded.batches())
    assert not rest and clean.shape == corrupted.shape == (6, 7)
    sets = [frozenset(), frozenset({0, 2}), frozenset(range(len(nodes)))]
    want = patched_metrics(alone, sets, lambda _: None)
    # float32 rounding of logits of order 1-10 (batches of other shapes sum in another order): a log-odds
    # difference may move by a few 1e-7 absolutely; reading a padding column would move it by far more
    np.testing.assert_allclose(patched_metrics(padded, sets, lambda _: None), want, rtol=1e-5, atol=1e-6)
    for method in ("atp", "eap-ig"):
        got, want_scores = attribution_scores(padded, method, 2), attribution_scores(alone, method, 2)
        np.testing.assert_allclose(got[0], want_scores[0], rtol=1e-5, atol=1e-9)
    # Read at each row's last prompt token: log p(refusal ids) - log p(compliance ids).
    logits = model.bridge(clean)
    rows = np.arange(6)
    lengths = torch.tensor([3, 7, 5, 7, 4, 6])
    x = logits[torch.arange(6), lengths - 1].double()
    expected = torch.logsumexp(x[:, [1, 2]], dim=-1) - x[:, 3]
    assert torch.allclose(task.metric(logits, clean, "logodds", rows), expected)
    with pytest.raises(MeasurementError, match="no metric 'logprob'"):
        task.metric(logits, clean, "logprob", rows)
    with pytest.raises(MeasurementError, match="these examples differ in length"):
        PatchingInputs(model, nodes, task, "logodds", "mean", batch_size=6).sources(corrupted)
