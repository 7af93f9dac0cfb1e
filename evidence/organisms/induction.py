"""The ``induction`` organism: a 2-layer attention-only model that continues repeated text.

Training data (generator ``repeated-segment/1``): sequences of ``n_ctx``
uniformly random token ids in which a segment of 8 to 32 tokens, at a random
start, is repeated immediately after itself. The loss covers the second copy
from its second token on, the tokens an induction mechanism can predict. Both
the segment length and its position vary: with a fixed layout the model learns
a positional shortcut instead of a previous-token head feeding an induction head.

The model uses rotary position embeddings, which make attention to the
previous token a relative-position pattern that is learned within a few
hundred steps; with learned absolute positions the same budget does not
reliably get past the loss plateau that precedes induction heads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from evidence.organisms.spec import OrganismSpec, ProgressFn, TrainedOrganism

__all__ = ["MAX_SEGMENT", "MIN_SEGMENT", "repeated_segment_batch", "train_induction"]

MIN_SEGMENT = 8
MAX_SEGMENT = 32
_BATCH = 32
_LEARNING_RATE = 3e-3
_WARMUP = 50
_FINAL_LR_FRACTION = 0.1  # cosine decay from the peak to this fraction of it
_FINAL_WINDOW = 50  # steps averaged into the reported final loss


def repeated_segment_batch(
    generator: torch.Generator, batch: int, n_ctx: int, d_vocab: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, target_mask)``, both ``[batch, n_ctx]``; the mask marks predictable tokens."""
    import torch

    tokens = torch.randint(0, d_vocab, (batch, n_ctx), generator=generator)
    lengths = torch.randint(MIN_SEGMENT, MAX_SEGMENT + 1, (batch, 1), generator=generator)
    room = n_ctx - 2 * lengths + 1
    starts = (torch.rand((batch, 1), generator=generator) * room).floor().long()
    positions = torch.arange(n_ctx).expand(batch, n_ctx)
    within = positions - starts - lengths  # index inside the second copy
    in_copy = (within >= 0) & (within < lengths)
    source = torch.where(in_copy, positions - lengths, positions)
    tokens = tokens.gather(1, source)
    return tokens, in_copy & (within >= 1)


def train_induction(spec: OrganismSpec, progress: ProgressFn) -> TrainedOrganism:
    """Train ``spec`` from its seed (the caller sets deterministic mode and the thread count)."""
    import torch
    import torch.nn.functional as F
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources import boot_native

    from evidence.organisms.spec import TrainedOrganism

    config = TransformerBridgeConfig(**spec.architecture, seed=spec.seed, device="cpu")
    bridge = boot_native(config)
    bridge.train()
    n_ctx, d_vocab = int(config.n_ctx), int(config.d_vocab)
    data = torch.Generator().manual_seed(spec.seed + 1)
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=_LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.0)

    def lr_factor(step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / spec.steps))
        return min(1.0, (step + 1) / _WARMUP) * (_FINAL_LR_FRACTION + (1.0 - _FINAL_LR_FRACTION) * cosine)

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    recent: list[float] = []
    for step in range(spec.steps):
        tokens, mask = repeated_segment_batch(data, _BATCH, n_ctx, d_vocab)
        logits = bridge(tokens)
        logp = F.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, tokens[:, 1:, None])[..., 0]
        target = mask[:, 1:]
        loss = (nll * target).sum() / target.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        recent = [*recent[-(_FINAL_WINDOW - 1) :], float(loss.item())]
        if step % 50 == 0 or step == spec.steps - 1:
            progress((step + 1) / spec.steps, f"step {step + 1}/{spec.steps}, loss {loss.item():.3f}")
    bridge.eval()
    state = {key: value.detach().clone() for key, value in bridge.state_dict().items()}  # type: ignore[no-untyped-call]
    return TrainedOrganism(state_dict=state, final_loss=sum(recent) / len(recent))
