"""Padded batches and padded greedy generation, built the way a serving stack builds them.

Used by ``model.batch_invariance`` to compare a padded batch with each prompt
alone. A padded batch is right- or left-padded with an attention mask; with left
padding the position ids follow the mask (``cumsum(mask) - 1``, pad slots set
to 1 as Hugging Face does), so that every real token keeps the position it has
when the prompt is alone. Generation is greedy, without a KV cache: each step
re-runs the whole padded batch with the mask and positions extended by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from evidence.errors import MeasurementError

__all__ = [
    "PaddedBatch",
    "Side",
    "accepts_keyword",
    "greedy_alone",
    "greedy_padded",
    "mask_positions",
    "pad_rows",
    "run_padded",
]

Side = Literal["right", "left"]
Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class PaddedBatch:
    """Token ids, attention mask and position ids of a padded batch; ``starts[r]``: first real slot of row ``r``."""

    tokens: torch.Tensor  # [rows, width] long
    mask: torch.Tensor  # [rows, width] long, 1 on real tokens
    positions: torch.Tensor  # [rows, width] long, cumsum(mask) - 1 on real tokens, 1 on pad slots
    starts: tuple[int, ...]
    lengths: tuple[int, ...]


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that follow an attention mask: ``cumsum(mask) - 1`` on real tokens, 1 on pad slots."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def pad_rows(seqs: Sequence[Sequence[int]], side: Side, pad_id: int) -> PaddedBatch:
    """The sequences padded with ``pad_id`` to the longest one, on ``side``."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise MeasurementError("a padded batch needs at least one sequence and no empty one")
    width = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    starts = []
    for row, seq in enumerate(seqs):
        lo = 0 if side == "right" else width - len(seq)
        tokens[row, lo : lo + len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, lo : lo + len(seq)] = 1
        starts.append(lo)
    return PaddedBatch(tokens, mask, mask_positions(mask), tuple(starts), tuple(len(s) for s in seqs))


def accepts_keyword(forward: Forward, sample: Sequence[int], **keywords: torch.Tensor) -> bool:
    """Whether ``forward`` takes these keywords (tried on one sequence whose keyword tensors are all-ones / arange)."""
    tokens = torch.tensor([list(sample)], dtype=torch.long)
    try:
        with torch.no_grad():
            forward(tokens, **keywords)
    except (TypeError, ValueError, NotImplementedError):
        return False
    return True


def _logits(forward: Forward, tokens: torch.Tensor, **keywords: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = forward(tokens, **keywords)
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != tokens.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise MeasurementError(f"the forward pass returned {shape} for input {tuple(tokens.shape)}; expected logits")
    if not torch.isfinite(out).all():
        raise MeasurementError("the model produced non-finite logits", hint="check the weights and dtype")
    return out


def run_padded(
    forward: Forward, batch: PaddedBatch, *, mask: bool, positions: Literal["mask", "default"] | None = None
) -> torch.Tensor:
    """Logits of a padded batch (as float64), with its attention mask when asked, and position ids.

    ``positions``: ``"mask"`` passes the ids that follow the mask, ``"default"``
    passes ``0 .. width-1`` on every row (what a padding path that ignores the
    mask would use), ``None`` passes none (the forward chooses).
    """
    keywords: dict[str, torch.Tensor] = {}
    if mask:
        keywords["attention_mask"] = batch.mask
    if positions == "mask":
        keywords["position_ids"] = batch.positions
    elif positions == "default":
        keywords["position_ids"] = torch.arange(batch.tokens.shape[1]).expand_as(batch.tokens)
    return _logits(forward, batch.tokens, **keywords).to(torch.float64)


def greedy_alone(forward: Forward, seq: Sequence[int], new_tokens: int) -> tuple[list[int], torch.Tensor]:
    """Greedy continuation of one unpadded sequence, and the last-position logits of each step ``[steps, vocab]``."""
    current = torch.tensor([list(seq)], dtype=torch.long)
    steps = []
    for _ in range(new_tokens):
        last = _logits(forward, current)[0, -1].to(torch.float64)
        steps.append(last)
        current = torch.cat([current, last.argmax().view(1, 1)], dim=1)
    return current[0, len(seq) :].tolist(), torch.stack(steps)


def greedy_padded(
    forward: Forward, seqs: Sequence[Sequence[int]], new_tokens: int, pad_id: int, *, positions: bool
) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy continuations of a left-padded batch (mask, and position ids when asked), and each step's logits.

    Returns the new tokens of every row and the last-position logits ``[steps, rows, vocab]``.
    """
    batch = pad_rows(seqs, "left", pad_id)
    tokens, mask = batch.tokens, batch.mask
    steps = []
    for _ in range(new_tokens):
        keywords = {"attention_mask": mask}
        if positions:
            keywords["position_ids"] = mask_positions(mask)
        last = _logits(forward, tokens, **keywords)[:, -1].to(torch.float64)
        steps.append(last)
        tokens = torch.cat([tokens, last.argmax(dim=-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype)], dim=1)
    width = batch.tokens.shape[1]
    return tokens[:, width:].tolist(), torch.stack(steps)
