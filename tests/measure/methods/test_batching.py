"""Padded batches: layout, mask-following positions, and padded generation against generation alone."""

from __future__ import annotations

import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.methods.batching import (
    accepts_keyword,
    greedy_alone,
    greedy_padded,
    mask_positions,
    pad_rows,
    run_padded,
)


def test_left_padding_gives_each_real_token_the_position_it_has_alone():
    batch = pad_rows([[5, 6], [7, 8, 9, 10]], "left", 0)
    assert batch.tokens.tolist() == [[0, 0, 5, 6], [7, 8, 9, 10]]
    assert batch.mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert batch.positions.tolist() == [[1, 1, 0, 1], [0, 1, 2, 3]]
    assert batch.starts == (2, 0) and batch.lengths == (2, 4)
    right = pad_rows([[5, 6], [7, 8, 9]], "right", 3)
    assert right.tokens.tolist() == [[5, 6, 3], [7, 8, 9]] and right.positions.tolist() == [[0, 1, 1], [0, 1, 2]]
    assert mask_positions(torch.tensor([[0, 1, 0, 1]])).tolist() == [[1, 0, 1, 1]]
    with pytest.raises(MeasurementError):
        pad_rows([[1], []], "left", 0)


@pytest.fixture(scope="module")
def bridge():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    config = TransformerBridgeConfig(
        d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=64, d_vocab=40, attn_only=False, d_mlp=64,
        normalization_type="LN", positional_embedding_type="standard", seed=3, device="cpu",
    )  # fmt: skip
    model = TransformerBridge.boot_native(config)
    model.eval()
    return model


def test_positions_decide_left_padding_on_learned_positions(bridge):
    seqs = [[3, 4, 5], [6, 7, 8, 9, 10, 11]]
    alone = run_padded(bridge, pad_rows([seqs[0]], "left", 0), mask=False)[0]
    batch = pad_rows(seqs, "left", 0)
    good = run_padded(bridge, batch, mask=True, positions="mask")[0, 3:]
    wrong = run_padded(bridge, batch, mask=True, positions="default")[0, 3:]
    assert float((good - alone).abs().max()) < 1e-5
    assert float((wrong - alone).abs().max()) > 1e-2
    assert accepts_keyword(bridge, seqs[0], attention_mask=torch.ones((1, 3), dtype=torch.long))


def test_padded_greedy_generation_matches_generation_alone(bridge):
    seqs = [[3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13]]
    padded, steps = greedy_padded(bridge, seqs, 5, 0, positions=True)
    assert steps.shape == (5, 3, 40)
    for row, seq in enumerate(seqs):
        tokens, alone_steps = greedy_alone(bridge, seq, 5)
        assert padded[row] == tokens
        assert float((steps[:, row] - alone_steps).abs().max()) < 1e-5
