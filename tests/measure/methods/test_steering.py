"""Steering edits (evidence.measure.methods.steering): only the prompt's positions are changed."""

from __future__ import annotations

import pytest
import torch

from evidence.measure.hooks import scoped_hooks
from evidence.measure.methods.steering import steering_hook


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


def test_remove_span_leaves_the_orthogonal_part_and_nothing_of_a_direction_inside():
    import numpy as np

    from evidence.measure.methods.steering import remove_span

    basis = np.linalg.qr(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))[0]
    assert remove_span(np.array([3.0, -2.0, 0.0, 0.0]), basis) is None
    rest = remove_span(np.array([1.0, 1.0, 1.0, 0.0]), basis)
    assert rest is not None and np.allclose(rest, [0.0, 0.0, 1.0, 0.0])
