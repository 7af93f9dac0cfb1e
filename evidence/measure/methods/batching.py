"""Padded batches and padded greedy generation, built the way a serving stack builds them.

Used by the behaviour and activation paths to run prompts of mixed length
together, and by ``model.batch_invariance`` to compare a padded batch with each
prompt alone. A padded batch is right- or left-padded with an attention mask; with left
padding the position ids follow the mask (``cumsum(mask) - 1``, pad slots set
to 1 as Hugging Face does), so that every real token keeps the position it has
when the prompt is alone. :func:`greedy_padded` (the batch-invariance reference)
generates without a KV cache: each step re-runs the whole padded batch with the
mask and positions extended by one.

How a model is batched (its *batching mode*, recorded in the model identity as
``processing["batching"]``) is decided once per model by :func:`batching_mode`:

* ``"left-padded"``: prompts sorted by length and cut into batches, each
  left-padded to its longest prompt (:func:`prompt_batches`). Chosen only when
  the forward takes ``attention_mask`` and ``position_ids`` and a probe shows
  that they work: two prompts of different length, left-padded together, give
  at every real position the logits each gives alone, within
  :func:`padding_tolerance`; and only for float32 weights, whose rounding is far
  below that tolerance;
* ``"by-length"``: batches of equal-length prompts only, nothing padded, for
  every other model (and any forward that is not a model, such as a plain callable).

The last real token of a left-padded row is the batch's last column; a position
counted from a prompt's start is ``starts[row] + position``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from weakref import WeakKeyDictionary

import torch

from evidence.errors import MeasurementError

__all__ = [
    "BATCHING_MODES",
    "Batching",
    "PaddedBatch",
    "Side",
    "accepts_keyword",
    "batch_keywords",
    "batched_as",
    "batching_mode",
    "columns",
    "greedy_alone",
    "greedy_padded",
    "mask_positions",
    "pad_rows",
    "padding_tolerance",
    "prompt_batches",
    "run_batch",
    "run_masked",
    "run_padded",
]

Side = Literal["right", "left"]
Batching = Literal["left-padded", "by-length"]
#: The batching modes a model identity can record (``processing["batching"]``).
BATCHING_MODES: tuple[str, ...] = ("left-padded", "by-length")
Forward = Callable[..., torch.Tensor]

_MODES: WeakKeyDictionary[Any, str] = WeakKeyDictionary()


@dataclass(frozen=True)
class PaddedBatch:
    """Token ids, attention mask and position ids of a padded batch; ``starts[r]``: first real slot of row ``r``."""

    tokens: torch.Tensor  # [rows, width] long
    mask: torch.Tensor  # [rows, width] long, 1 on real tokens
    positions: torch.Tensor  # [rows, width] long, cumsum(mask) - 1 on real tokens, 1 on pad slots
    starts: tuple[int, ...]
    lengths: tuple[int, ...]

    @property
    def padded(self) -> bool:
        """Whether any row is shorter than the batch (so the forward needs the mask and positions)."""
        return any(n != self.tokens.shape[1] for n in self.lengths)


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


def padding_tolerance(scale: float) -> float:
    """The largest padded-vs-alone logit difference that :func:`batching_mode` accepts, for logits up to ``scale``.

    ``1e-4`` for logits up to 1, growing with their magnitude (float32 rounding is relative):
    two orders of magnitude above the differences of a forward that honours the mask (at most
    ~1.3e-5 on the organisms, logits up to ~25), far below those of one that does not (0.1 to 25).
    """
    return 1e-4 * max(1.0, scale)


def _probe_rows(d_vocab: int, n_ctx: int) -> list[list[int]] | None:
    """Two token sequences of different length for the padding probe (None when the context is too short)."""
    long = min(9, n_ctx)
    if long < 3 or d_vocab < 2:
        return None
    return [[(7 * i + 3) % d_vocab for i in range(3)], [(5 * i + 11) % d_vocab for i in range(long)]]


def _honours_padding(forward: Any) -> bool:
    """Whether left padding with a mask and positions that follow it leaves every real position's logits as alone."""
    if not isinstance(forward, torch.nn.Module):
        return False
    floating = [p.dtype for p in forward.parameters() if p.is_floating_point()]
    if not floating or any(d != torch.float32 for d in floating):
        return False
    cfg = getattr(forward, "cfg", None)
    d_vocab, n_ctx = getattr(cfg, "d_vocab", 0), getattr(cfg, "n_ctx", 0)
    rows = _probe_rows(int(d_vocab or 0), int(n_ctx or 0))
    if rows is None:
        return False
    batch = pad_rows(rows, "left", 0)
    device = next(forward.parameters()).device
    try:
        with torch.no_grad():
            padded = forward(
                batch.tokens.to(device), attention_mask=batch.mask.to(device), position_ids=batch.positions.to(device)
            )
            alone = [forward(torch.tensor([row], dtype=torch.long, device=device))[0] for row in rows]
    except (TypeError, ValueError, NotImplementedError, RuntimeError, IndexError):
        return False
    if not isinstance(padded, torch.Tensor) or padded.shape[:2] != batch.tokens.shape:
        return False
    worst, scale = 0.0, 0.0
    for row, single in enumerate(alone):
        real = padded[row, batch.starts[row] :].float()
        if not torch.isfinite(real).all() or not torch.isfinite(single).all():
            return False
        worst = max(worst, float((real - single.float()).abs().max()))
        scale = max(scale, float(single.float().abs().max()))
    return worst <= padding_tolerance(scale)


def batching_mode(forward: Any) -> Batching:
    """``"left-padded"`` where padding is shown to leave ``forward``'s logits as they are alone, else ``"by-length"``.

    Decided by a probe on the first call for a model (see the module) and kept for the model's lifetime.
    """
    try:
        known = _MODES.get(forward)
    except TypeError:  # not weakly referenceable: not a model
        return "by-length"
    if known is None:
        known = "left-padded" if _honours_padding(forward) else "by-length"
        _MODES[forward] = known
    return "left-padded" if known == "left-padded" else "by-length"


@contextmanager
def batched_as(forward: Any, mode: Batching) -> Iterator[None]:
    """Batch ``forward`` in ``mode`` while the block runs (``"left-padded"`` only where :func:`batching_mode` allows).

    For comparing the two modes on one model: ``"by-length"`` is always possible; asking for
    ``"left-padded"`` on a model whose probe refused it is an error.
    """
    if mode not in BATCHING_MODES:
        raise MeasurementError(f"unknown batching mode {mode!r}", hint=f"use one of {', '.join(BATCHING_MODES)}")
    probed = batching_mode(forward)
    if mode == "left-padded" and probed != "left-padded":
        raise MeasurementError(
            "this model's forward does not honour an attention mask and position ids, so it is batched by length",
            hint='compare with mode "by-length" only',
        )
    _MODES[forward] = mode
    try:
        yield
    finally:
        _MODES[forward] = probed


def _row_budget(forward: Any, cap: int | None) -> Callable[[int], int]:
    """Rows of a given width per batch under the memory budget (see :func:`evidence.measure.memory.batch_rows`)."""
    from evidence.measure.memory import available_memory, batch_rows, size_of_loaded

    cfg = getattr(forward, "cfg", None)
    if cfg is None or not isinstance(forward, torch.nn.Module):
        fixed = max(1, cap) if cap is not None else 32
        return lambda width: fixed
    first = next(forward.parameters(), None)
    dtype = str(first.dtype).removeprefix("torch.") if first is not None else "float32"
    device = first.device.type if first is not None else "cpu"
    found = available_memory(device if device in ("cpu", "cuda") else "cpu")
    available = found[0] if found is not None else None
    size = size_of_loaded(int(getattr(forward, "n_params_total", 0) or 0), cfg)
    return lambda width: batch_rows(size, dtype, width, available, cap)


def prompt_batches(
    forward: Any, seqs: Sequence[Sequence[int]], batch_size: int | None = None, *, pad_id: int = 0
) -> Iterator[tuple[list[int], PaddedBatch]]:
    """Batches of ``seqs`` as ``forward``'s batching mode runs them: (original indices, batch).

    Sequences are taken shortest first. ``"left-padded"``: each batch left-padded to its longest
    row; ``"by-length"``: equal-length rows only (nothing padded). Rows per batch: as many as fit
    the memory budget for the batch's width, at most ``batch_size`` (see
    :func:`evidence.measure.memory.batch_rows`).
    """
    if any(len(s) == 0 for s in seqs):
        raise MeasurementError("a prompt encodes to no token", hint="remove the empty prompt")
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    padded = batching_mode(forward) == "left-padded"
    rows_of = _row_budget(forward, batch_size)
    start = 0
    while start < len(order):
        first = len(seqs[order[start]])
        rows = rows_of(first)
        chunk = [order[start]]
        while start + len(chunk) < len(order) and len(chunk) < rows:
            nxt = order[start + len(chunk)]
            width = len(seqs[nxt])
            if not padded and width != first:
                break
            if padded and len(chunk) + 1 > rows_of(width):
                break
            chunk.append(nxt)
        start += len(chunk)
        yield chunk, pad_rows([seqs[i] for i in chunk], "left", pad_id)


def batch_keywords(batch: PaddedBatch) -> dict[str, torch.Tensor]:
    """The forward's keywords for ``batch``: its mask and positions when it is padded, none otherwise."""
    if not batch.padded:
        return {}
    return {"attention_mask": batch.mask, "position_ids": batch.positions}


def columns(batch: PaddedBatch, positions: Sequence[int]) -> torch.Tensor:
    """Column of each row's ``positions`` in a left-padded batch, ``[rows, len(positions)]``.

    A negative position counts from the prompt's end (``-1``: its last token, the batch's last
    column); a non-negative one from its start (the row's pad offset added). A position outside
    a row's prompt is an error.
    """
    width = batch.tokens.shape[1]
    out = torch.empty((len(batch.lengths), len(positions)), dtype=torch.long)
    for row, (start, length) in enumerate(zip(batch.starts, batch.lengths, strict=True)):
        for k, p in enumerate(positions):
            if not -length <= p < length:
                raise MeasurementError(
                    f"position {p} lies outside a prompt of {length} tokens",
                    hint="read positions that every prompt has (longer prompts, or positions nearer the end)",
                )
            out[row, k] = width + p if p < 0 else start + p
    return out


def run_batch(forward: Forward, batch: PaddedBatch, **keywords: Any) -> Any:
    """``forward`` on a batch: with its attention mask and positions when it is padded (see :func:`run_masked`)."""
    return run_masked(forward, batch.tokens, batch.mask if batch.padded else None, **keywords)


def run_masked(forward: Forward, tokens: torch.Tensor, mask: torch.Tensor | None, **keywords: Any) -> Any:
    """``forward`` on ``tokens`` (on the model's device); with ``mask``, also the mask and positions following it."""
    device = _device(forward)
    if mask is not None:
        keywords = {
            **keywords, "attention_mask": mask.to(device), "position_ids": mask_positions(mask).to(device)
        }  # fmt: skip
    return forward(tokens.to(device), **keywords)


def _device(forward: Any) -> torch.device:
    if isinstance(forward, torch.nn.Module):
        for p in forward.parameters():
            return p.device
    return torch.device("cpu")
