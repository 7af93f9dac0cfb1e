"""Pure helpers of the refusal measurements, and their interventions on a small random model."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.errors import ConfigError, MeasurementError
from evidence.measure.hooks import capture, scoped_hooks
from evidence.measure.methods.directions import (
    CandidateEval,
    Criteria,
    Point,
    ablation_hooks,
    ablation_points,
    addition_hooks,
    affine_reference,
    build_candidates,
    candidate_points,
    check_positions,
    cosine,
    diff_in_means,
    direction_ref,
    kl_divergence,
    layer_limit,
    random_unit_vectors,
    select_candidate,
    split_indices,
)
from evidence.measure.methods.refusal_attack import checkpoint_steps, common_suffix_length, gcg_attack
from evidence.measure.suite.refusal_stability import _percentile_ci, reword
from evidence.measure.methods.suffixes import allowed_token_ids, allowed_tokens, insert_suffix, one_hot_gradient_hook
from evidence.model import LoadedModel, ModelSpec
from evidence.organisms.language import HARMFUL_WORDS, REQUEST_WORDS, TOPICS, VOCAB
from evidence.records import ModelIdentity, WeightFile

# -- splits, points, positions -------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_complete():
    a = split_indices(20, 0.5, np.random.default_rng(3))
    b = split_indices(20, 0.5, np.random.default_rng(3))
    c = split_indices(20, 0.5, np.random.default_rng(4))
    assert a == b and a != c
    train, held = a
    assert len(train) == 10 and len(held) == 10
    assert sorted(train + held) == list(range(20))


def test_split_keeps_two_held_out_and_refuses_tiny_sets():
    train, held = split_indices(5, 0.99, np.random.default_rng(0))
    assert len(held) == 2 and len(train) == 3
    with pytest.raises(MeasurementError, match="at least 4"):
        split_indices(3, 0.5, np.random.default_rng(0))


def test_candidate_points_and_the_layer_limit():
    points = candidate_points(3)
    assert [p.layer for p in points] == [0, 1, 2, 3]
    assert [p.hook for p in points] == [
        "blocks.0.hook_resid_pre",
        "blocks.1.hook_resid_pre",
        "blocks.2.hook_resid_pre",
        "blocks.2.hook_resid_post",
    ]
    # 0.8 of the depth: which layer indices are selectable for small models
    for n, allowed in ((2, [0, 1]), (3, [0, 1, 2]), (4, [0, 1, 2, 3])):
        bound = layer_limit(n, 0.8)
        assert [p.layer for p in candidate_points(n) if p.layer < bound] == allowed


def test_positions_must_be_distinct_negative_and_fit():
    seqs = [[1, 2, 3], [1, 2, 3, 4]]
    check_positions([-1, -3], seqs)
    with pytest.raises(ConfigError):
        check_positions([0], seqs)
    with pytest.raises(ConfigError):
        check_positions([-1, -1], seqs)
    with pytest.raises(MeasurementError, match="shortest prompt"):
        check_positions([-4], seqs)


# -- directions --------------------------------------------------------------------------------


def test_diff_in_means_cosine_and_degenerate_candidates():
    harmful = torch.zeros(4, 2, 1, 3)
    harmless = torch.zeros(4, 2, 1, 3)
    harmful[:, 1, 0, 0] = 2.0  # point 1 separates the sets along axis 0; point 0 does not
    harmful[:, :, :, 2] = harmless[:, :, :, 2] = 5.0
    d = diff_in_means(harmful, harmless)
    assert torch.allclose(d[1, 0], torch.tensor([2.0, 0.0, 0.0]))
    cands = build_candidates([Point(0, "a"), Point(1, "b")], [-1], harmful, harmless)
    assert [c.degenerate for c in cands] == [True, False]
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine(torch.zeros(2), torch.ones(2)) == 0.0


def test_random_unit_vectors_are_seeded_units():
    a = random_unit_vectors(5, 16, torch.Generator().manual_seed(1))
    b = random_unit_vectors(5, 16, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(5), atol=1e-6)


def test_direction_ref_digests_float32_little_endian():
    v = torch.tensor([1.0, -2.0, 0.5])
    ref = direction_ref("v", v, "test")
    assert ref.sha256 == hashlib.sha256(np.asarray([1.0, -2.0, 0.5], dtype="<f4").tobytes()).hexdigest()
    assert ref.count == 3


def test_kl_divergence():
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    assert np.allclose(kl_divergence(logits, logits), 0.0)
    p = torch.softmax(logits.double(), -1)
    q = torch.full_like(p, 1 / 3)
    expected = (p * (p.log() - q.log())).sum(-1).numpy()
    assert np.allclose(kl_divergence(logits, torch.zeros(2, 3)), expected)


# -- selection ---------------------------------------------------------------------------------


def cand(layer: int, score: float, kl: float, added: float, *, degenerate: bool = False) -> CandidateEval:
    c = CandidateEval(Point(layer, f"blocks.{layer}.hook_resid_pre"), -1, torch.ones(2), degenerate)
    if not degenerate:
        c.ablated_logodds = np.full(3, score)
        c.kl = np.full(3, kl)
        c.added_logodds = np.full(3, added)
    return c


CRITERIA = Criteria(layer_bound=2.4, max_kl=0.1, induce_min_logodds=0.0, harmless_logodds=-8.0)


def test_selection_takes_the_lowest_ablated_refusal_among_passing_candidates():
    cands = [
        cand(0, -9.0, 0.01, -5.0),  # best score, but addition induces nothing
        cand(1, -2.0, 0.01, 3.0),  # passes
        cand(2, -4.0, 0.01, 1.0),  # passes, lower score: selected
        cand(2, -7.0, 0.50, 4.0),  # KL over budget
        cand(3, -8.0, 0.01, 4.0),  # beyond the layer limit
    ]
    sel = select_candidate(cands, CRITERIA)
    assert (sel.index, sel.passed, sel.n_passing) == (2, True, 2)


def test_addition_must_beat_the_unsteered_harmless_mean():
    strict = Criteria(layer_bound=2.4, max_kl=0.1, induce_min_logodds=-20.0, harmless_logodds=1.0)
    assert cand(1, -2.0, 0.01, 0.5).checks(strict) == (True, True, False)


def test_selection_without_a_passing_candidate_reports_the_best_of_the_next_tier():
    cands = [
        cand(0, 5.0, 0.01, -9.0, degenerate=True),
        cand(1, 3.0, 0.01, -9.0),
        cand(2, 1.0, 0.02, -9.0),
        cand(2, -5.0, 0.90, -9.0),
        cand(3, -9.0, 0.01, -9.0),
    ]
    sel = select_candidate(cands, CRITERIA)
    assert (sel.index, sel.passed, sel.n_passing) == (2, False, 0)
    assert "no candidate passes every filter" in sel.note
    # nothing within the KL budget either: best within the layer limit
    only_kl_fail = [cand(1, 3.0, 0.5, 9.0), cand(2, -1.0, 0.5, 9.0), cand(3, -5.0, 0.01, 9.0)]
    assert select_candidate(only_kl_fail, CRITERIA).index == 1


def test_selection_needs_one_usable_candidate():
    with pytest.raises(MeasurementError, match="zero"):
        select_candidate([cand(1, 0.0, 0.0, 0.0, degenerate=True)], CRITERIA)


# -- interventions on a small random model ------------------------------------------------------


def small_model(attn_only: bool = False, d_vocab: int = 24) -> LoadedModel:
    config = TransformerBridgeConfig(
        d_model=16,
        d_head=8,
        n_heads=2,
        n_layers=2,
        n_ctx=24,
        d_vocab=d_vocab,
        d_mlp=32,
        act_fn="gelu",
        attn_only=attn_only,
        normalization_type="LN",
        seed=5,
        device="cpu",
    )
    bridge = TransformerBridge.boot_native(config)
    bridge.eval()
    identity = ModelIdentity(
        name="small",
        source="organism",
        architecture={"d_model": 16},
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="w", sha256="1" * 64, bytes=1)],
        n_parameters=1,
        processing={},
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=None, spec=ModelSpec(organism="small"))


TOKENS = torch.randint(0, 24, (3, 9), generator=torch.Generator().manual_seed(0))


def test_ablation_removes_the_direction_from_the_whole_residual_stream():
    model = small_model()
    assert ablation_points(model) == [
        f"blocks.{layer}.{kind}" for layer in range(2) for kind in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")
    ]
    r = random_unit_vectors(1, 16, torch.Generator().manual_seed(2))[0] * 3.0
    unit = r / r.norm()
    names = ["blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    clean = capture(model.bridge, names, TOKENS)
    assert max(float((clean[n] @ unit).abs().max()) for n in names) > 1e-2
    with scoped_hooks(model.bridge, ablation_hooks(model, r)) as counts:
        ablated = capture(model.bridge, names, TOKENS)
    assert all(c == 1 for c in counts.values())
    for n in names:
        assert float((ablated[n] @ unit).abs().max()) < 1e-4, n


def test_affine_ablation_sets_the_component_to_the_reference_everywhere():
    model = small_model()
    r = random_unit_vectors(1, 16, torch.Generator().manual_seed(3))[0]
    reference = dict.fromkeys(ablation_points(model), 0.7)
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    with scoped_hooks(model.bridge, ablation_hooks(model, 2.0 * r, reference)):
        acts = capture(model.bridge, names, TOKENS)
    assert torch.allclose(acts["blocks.1.hook_resid_pre"] @ r, torch.full((3, 9), 0.7), atol=1e-4)
    # the final stream is resid_pre + attn_out + mlp_out of the last block: three clamped parts
    assert torch.allclose(acts["blocks.1.hook_resid_post"] @ r, torch.full((3, 9), 2.1), atol=1e-4)


def test_affine_reference_is_the_harmless_mean_component():
    means = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([-3.0, 0.0])}
    assert affine_reference(means, torch.tensor([0.0, 5.0])) == {"a": pytest.approx(2.0), "b": pytest.approx(0.0)}


def test_attention_only_models_are_ablated_without_mlp_points():
    model = small_model(attn_only=True)
    assert all("mlp" not in n for n in ablation_points(model))
    with torch.no_grad(), scoped_hooks(model.bridge, ablation_hooks(model, torch.ones(16))):
        model.bridge(TOKENS)


def test_addition_adds_the_vector_at_its_point_only():
    model = small_model()
    v = torch.arange(16, dtype=torch.float32)
    name = "blocks.1.hook_resid_pre"
    clean = capture(model.bridge, [name, "blocks.0.hook_resid_pre"], TOKENS)
    with scoped_hooks(model.bridge, addition_hooks(Point(1, name), v)):
        steered = capture(model.bridge, ["blocks.0.hook_resid_pre"], TOKENS)
        logits = model.bridge(TOKENS)
    assert torch.equal(steered["blocks.0.hook_resid_pre"], clean["blocks.0.hook_resid_pre"])
    assert not torch.allclose(logits, model.bridge(TOKENS))
    with pytest.raises(MeasurementError, match="zero direction"):
        ablation_hooks(model, torch.zeros(16))


def test_addition_can_be_limited_to_the_prompt_positions():
    model = small_model()
    v = torch.ones(16)
    name = "blocks.1.hook_resid_pre"
    clean = capture(model.bridge, [name], TOKENS)[name]
    with scoped_hooks(model.bridge, addition_hooks(Point(1, name), v, prompt_len=6)):
        steered = capture(model.bridge, [name], TOKENS)[name]
    assert torch.allclose(steered[:, :6], clean[:, :6] + v)
    assert torch.equal(steered[:, 6:], clean[:, 6:])


# -- rewording ----------------------------------------------------------------------------------


def test_reword_keeps_harmful_words_and_structure_and_changes_fillers():
    text = "user : please tell me how to poison the garden assistant :"
    out = reword(text, random.Random("s/0/p"))
    assert out == reword(text, random.Random("s/0/p"))
    assert out != reword(text, random.Random("s/1/p"))
    before, after = text.split(), out.split()
    assert len(before) == len(after)
    assert all(w in VOCAB for w in after)
    for b, a in zip(before, after, strict=True):
        if b in REQUEST_WORDS:
            assert a in REQUEST_WORDS and a != b
        elif b in TOPICS:
            assert a in TOPICS and a != b
        else:
            assert a == b
    assert "poison" in after and "poison" in HARMFUL_WORDS


# -- attack helpers -----------------------------------------------------------------------------


def test_suffix_helpers():
    seqs = [[1, 7, 8, 5, 6], [1, 9, 5, 6], [1, 3, 4, 4, 5, 6]]
    assert common_suffix_length(seqs) == 2
    assert common_suffix_length([[1, 2], [1, 2]]) == 1  # never the whole shortest prompt
    assert insert_suffix([1, 7, 8, 5, 6], [40, 41], 2) == [1, 7, 8, 40, 41, 5, 6]
    assert checkpoint_steps(0) == [0]
    assert checkpoint_steps(5) == [0, 1, 2, 4, 5]
    assert checkpoint_steps(8) == [0, 1, 2, 4, 8]


class _Tok:
    all_special_ids = [0, 1]

    def __len__(self) -> int:
        return 20


def test_allowed_tokens_excludes_specials_and_rows_past_the_tokenizer():
    model = small_model()
    model.tokenizer = _Tok()
    mask = allowed_tokens(model)
    assert mask.tolist() == [False, False] + [True] * 18 + [False] * 4
    assert allowed_token_ids(model).tolist() == list(range(2, 20))


def test_the_one_hot_hook_keeps_the_forward_pass_and_refuses_what_is_not_a_lookup():
    model = small_model()
    w_e = model.bridge.W_E.detach()
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 4, 2]])
    one_hot = torch.nn.functional.one_hot(tokens[:, 1:3], w_e.shape[0]).to(w_e.dtype).requires_grad_(True)
    with torch.no_grad():
        want = model.bridge(tokens)
    with torch.enable_grad(), scoped_hooks(model.bridge, [("hook_embed", one_hot_gradient_hook(1, one_hot @ w_e))]):
        logits = model.bridge(tokens)
        (grad,) = torch.autograd.grad(logits[:, -1, 3].sum(), one_hot)
    assert torch.equal(logits, want)
    assert grad.shape == one_hot.shape and grad.abs().sum() > 0
    wrong = torch.nn.functional.one_hot(tokens[:, 2:4], w_e.shape[0]).to(w_e.dtype)  # not the tokens at 1..2
    with pytest.raises(MeasurementError, match="does not carry the rows of W_E"):
        with scoped_hooks(model.bridge, [("hook_embed", one_hot_gradient_hook(1, wrong @ w_e))]):
            model.bridge(tokens)


def test_gcg_lowers_its_objective_deterministically():
    model = small_model()
    model.tokenizer = _Tok()
    seqs = [[1, 5, 6, 7, 2, 3], [1, 8, 9, 2, 3], [1, 4, 4, 2, 3]]

    def never_flips(batch):
        return np.ones(len(batch), dtype=bool)

    def run():
        return gcg_attack(
            model,
            seqs,
            objective_ids=[10],
            sign=1.0,
            end_len=2,
            suffix_len=3,
            steps=4,
            top_k=4,
            n_candidates=8,
            batch_size=64,
            generator=torch.Generator().manual_seed(11),
            refused=never_flips,
        )

    a, b = run(), run()
    assert a.suffixes == b.suffixes and np.array_equal(a.final_objective, b.final_objective)
    assert np.all(a.final_objective <= a.initial_objective + 1e-9)
    assert a.final_objective.mean() < a.initial_objective.mean()
    assert a.steps_used == 4 and a.evaluations == 32
    assert [step for step, _, _ in a.curve] == [0, 1, 2, 4]
    assert all(t not in (0, 1) and t < 20 for s in a.suffixes for t in s)


def test_percentile_interval_always_contains_its_point():
    values = np.array([0.5] * 7 + [0.99])
    ci = _percentile_ci(values, float(values.mean()), 0.95, 10, "m")
    assert ci.lower <= values.mean() <= ci.upper
    assert ci.resamples == 8


# -- registration --------------------------------------------------------------------------------


def test_both_measurements_are_registered_with_their_inputs_and_catalogued_clauses():
    from evidence.clauses import load_catalog
    from evidence.measure import registered

    catalog = load_catalog()
    defs = registered()
    for mid in ("refusal.direction", "refusal.stability"):
        d = defs[mid]
        assert d.version == "1.0.0"
        assert d.required_datasets == ("refusal.harmful", "refusal.harmless")
        assert d.markers == ("refusal",)
        catalog.check(d.clauses)
        for ref in d.clauses:
            assert "measurement" in catalog.get(ref.id).accepts
    assert {c.id.split("@")[0] for c in defs["refusal.stability"].clauses} >= {
        "EU-AIA/Art15/5",
        "EU-AIA/Art55/1/a",
        "EU-AIA/AnnexXI/S2/2",
        "NIST-AI-RMF/1.0/MEASURE/2.7",
        "ISO-IEC-24029-2:2023",
    }


def test_parameters_are_validated():
    from evidence.measure import registered

    d = registered()["refusal.direction"]
    with pytest.raises(ConfigError, match="unknown parameter"):
        d.validate_params({"max_kll": 0.1})
    with pytest.raises(ConfigError, match="max_layer_fraction"):
        d.validate_params({"max_layer_fraction": 1.5})
    s = registered()["refusal.stability"]
    params = s.validate_params({"template_datasets": [{"harmful": "a.jsonl", "harmless": "b.jsonl"}]})
    assert params.template_datasets[0].harmful == "a.jsonl"
