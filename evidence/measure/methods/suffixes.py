"""Building blocks of the adversarial suffix searches in ``refusal.stability`` and ``deception.robustness``.

Both searches put a suffix of ordinary tokens into a prompt just before the
tokens that close it (the template tokens every prompt ends with), take the gradient of
their objective with respect to a one-hot encoding of the suffix (GCG, Zou et
al. 2023), and try single-token substitutions among the most promising tokens.
What they optimise differs: ``refusal.stability`` searches one suffix per
prompt against refusal, ``deception.robustness`` one suffix shared by all
prompts against both the behaviour and a probe. The pieces they share live
here: which tokens a suffix may use, where it goes, and how the one-hot
gradient is taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import HookFn
from evidence.model import LoadedModel

__all__ = ["allowed_token_ids", "allowed_tokens", "insert_suffix", "one_hot_gradient_hook"]


def allowed_tokens(model: LoadedModel) -> torch.Tensor:
    """A boolean mask over the vocabulary: ordinary tokens the tokenizer can produce."""
    vocab = model.d_vocab
    mask = torch.ones(vocab, dtype=torch.bool)
    tokenizer = model.tokenizer
    if tokenizer is not None:
        size = len(tokenizer)
        if size < vocab:
            mask[size:] = False
        for i in getattr(tokenizer, "all_special_ids", []) or []:
            if 0 <= int(i) < vocab:
                mask[int(i)] = False
    if int(mask.sum()) < 2:
        raise MeasurementError("the vocabulary has fewer than two ordinary tokens to build a suffix from")
    return mask


def allowed_token_ids(model: LoadedModel) -> np.ndarray:
    """The ids :func:`allowed_tokens` allows, ascending (int64)."""
    ids: np.ndarray = np.flatnonzero(allowed_tokens(model).numpy()).astype(np.int64)
    return ids


def insert_suffix(seq: Sequence[int], suffix: Sequence[int], end_len: int) -> list[int]:
    """``seq`` with ``suffix`` inserted before its last ``end_len`` tokens."""
    cut = len(seq) - end_len
    return [*seq[:cut], *suffix, *seq[cut:]]


def one_hot_gradient_hook(start: int, embedded: torch.Tensor) -> HookFn:
    """A ``hook_embed`` hook through which the suffix rows depend on ``embedded = one_hot @ W_E``.

    ``embedded`` is ``[k, d_model]`` (one suffix for every row) or ``[rows, k,
    d_model]``; its values must equal the embeddings the model looked up for the
    suffix tokens, which is checked, so the forward pass is unchanged and only
    the gradient now reaches the one-hot encoding.
    """
    k = embedded.shape[-2]

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        if activation.shape[1] < start + k:
            raise MeasurementError(f"the suffix does not fit the sequence at {hook.name}")
        rows = activation[:, start : start + k]
        values = embedded.detach().to(activation).expand_as(rows)
        if not torch.allclose(rows, values, atol=1e-5, rtol=1e-4):
            raise MeasurementError(
                "hook_embed does not carry the rows of W_E for the suffix tokens, so the suffix's token "
                "gradient cannot be taken there",
                hint="the adversarial suffix search needs a model whose token embedding is a plain lookup",
            )
        edit = (embedded - embedded.detach()).to(activation).expand_as(rows)
        pad = torch.nn.functional.pad(edit, (0, 0, start, activation.shape[1] - start - k))
        return activation + pad

    return hook
