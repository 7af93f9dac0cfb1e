"""Difference-in-means directions and the interventions along them, on a small random model."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.errors import ConfigError, MeasurementError
from evidence.measure.hooks import capture, scoped_hooks
from evidence.measure.methods.directions import (
    Point,
    ablation_hooks,
    ablation_points,
    addition_hooks,
    affine_reference,
    candidate_points,
    check_positions,
    cosine,
    diff_in_means,
    direction_ref,
    kl_divergence,
    layer_limit,
    projections,
    random_unit_vectors,
)
from evidence.measure.methods.refusal_search import build_candidates
from evidence.model import LoadedModel, ModelSpec
from evidence.records import ModelIdentity, WeightFile

# -- points, positions ---------------------------------------------------------------------------


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


def test_projections_read_the_residual_along_the_unit_direction():
    model = small_model()
    name = "blocks.1.hook_resid_pre"
    seqs = [row.tolist() for row in TOKENS]
    direction = torch.arange(16, dtype=torch.float32)
    got = projections(model, seqs, Point(1, name), -2, 3.0 * direction, batch_size=2)
    acts = capture(model.bridge, [name], TOKENS)[name][:, -2].double()
    want = (acts @ (direction.double() / direction.double().norm())).numpy()
    assert got.dtype == np.float64 and np.allclose(got, want, atol=1e-5)
