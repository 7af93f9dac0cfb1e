"""Steering: add a vector to the residual stream at the prompt's positions, and read the behaviour that follows.

Used by ``probe.causality`` (activation addition along a probe direction,
Marks & Tegmark 2024). Behaviour is read from the model's own output: the
log-odds of the first token of the marker phrases at the first response
position, and greedy generated text matched against the phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import HookFn, scoped_hooks
from evidence.measure.methods.behaviour import greedy_generate, last_position_logits, marker_log_odds, matches_marker
from evidence.measure.methods.deception import marker_length
from evidence.model import LoadedModel

__all__ = ["Behaviour", "BehaviourReader", "steering_hook"]


def steering_hook(vector: torch.Tensor, prompt_length: int, positions: str) -> HookFn:
    """Add ``vector`` to the residual stream at the prompt's positions (all, or the last one).

    Positions after ``prompt_length`` (tokens generated since) are left alone:
    the edit is an intervention on how the prompt is processed, and the model's
    continuation is its own.
    """
    start = prompt_length - 1 if positions == "last" else 0

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        if activation.dim() != 3 or activation.shape[-1] != vector.shape[0] or activation.shape[1] < prompt_length:
            raise MeasurementError(
                f"cannot steer {hook.name}: shape {tuple(activation.shape)}, expected "
                f"[batch, >= {prompt_length}, {vector.shape[0]}]"
            )
        out = activation.clone()
        out[:, start:prompt_length, :] = out[:, start:prompt_length, :] + vector.to(activation.dtype)
        return out

    return hook


@dataclass
class Behaviour:
    """Per prompt: the markers' log-odds at the first response position, and whether generated text opens with one."""

    log_odds: np.ndarray
    defects: np.ndarray


@dataclass(frozen=True)
class BehaviourReader:
    """Reads the marked behaviour of prompts (e.g. defection), with an additive edit or without."""

    model: LoadedModel
    marker_ids: list[int]
    phrases: tuple[str, ...]
    hook_name: str
    positions: str
    batch_size: int

    def __call__(self, seqs: Sequence[Sequence[int]], vector: torch.Tensor | None, generate: bool = True) -> Behaviour:
        """Marker log-odds at the first response position and (``generate``) marker matches in generated text."""
        log_odds = np.zeros(len(seqs), dtype=np.float64)
        defects = np.zeros(len(seqs), dtype=bool)
        steps = marker_length(self.model.tokenizer, self.phrases)
        by_length: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_length.setdefault(len(s), []).append(i)
        for length, idx in sorted(by_length.items()):
            group = [seqs[i] for i in idx]
            hooks = [] if vector is None else [(self.hook_name, steering_hook(vector, length, self.positions))]
            with scoped_hooks(self.model.bridge, hooks):
                logits = last_position_logits(self.model.bridge, group, self.batch_size)
                log_odds[idx] = marker_log_odds(logits, self.marker_ids).to(torch.float64).numpy()
                if generate:
                    generated = greedy_generate(self.model.bridge, group, steps, self.batch_size)
                    defects[idx] = matches_marker(self.model.tokenizer, generated, self.phrases)
        return Behaviour(log_odds=log_odds, defects=defects)
