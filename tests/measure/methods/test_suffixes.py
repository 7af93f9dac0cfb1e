"""Suffix pieces shared by the suffix attacks: where a suffix goes, allowed tokens, the one-hot gradient hook."""

from __future__ import annotations

import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import scoped_hooks
from evidence.measure.methods.suffix_attack import common_suffix_length
from evidence.measure.methods.suffixes import (
    allowed_token_ids,
    allowed_tokens,
    insert_suffix,
    one_hot_gradient_hook,
)
from tests.measure.methods.test_directions import small_model


def test_insert_suffix_goes_before_the_closing_template_tokens():
    ids = [1, 10, 11, 12, 20, 21]
    assert insert_suffix(ids, [7, 8], 2) == [1, 10, 11, 12, 7, 8, 20, 21]
    assert insert_suffix(ids, [7], 0) == [1, 10, 11, 12, 20, 21, 7]
    # the closing tokens are found from the prompts themselves, whatever the template
    assert common_suffix_length([[1, 10, 20, 21], [1, 11, 12, 20, 21], [1, 13, 21]]) == 1
    assert common_suffix_length([[1, 10, 20, 21], [1, 11, 12, 20, 21]]) == 2


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
