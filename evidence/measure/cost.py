"""Time estimates: counted forward passes times a measured forward pass of the loaded model.

A measurement may declare its cost on its decorator (``cost=``): a function of
its parameters and the sizes of the run-spec datasets that returns the forward
(and backward) passes it makes, as :class:`Passes` — calls and tokens.
:func:`time_forward` times forward passes of the loaded model at two sizes and
fits seconds per call plus seconds per token; :func:`estimate_seconds` multiplies.

These are estimates, not measurements: they leave out everything but the model's
passes (bootstrap resampling, tokenizing, optimiser steps) and assume every pass
costs what a pass of random tokens costs. A backward pass is counted as two
forward passes. Measurements that declare no cost have no estimate (None).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from evidence.measure.registry import MeasurementDef
    from evidence.model import LoadedModel

__all__ = ["CostFn", "ForwardTiming", "Passes", "estimate_seconds", "format_seconds", "time_forward"]


@dataclass(frozen=True)
class Passes:
    """The passes through the model a measurement makes: forward calls and tokens, and those run backward too."""

    calls: int
    tokens: int
    backward_calls: int = 0
    backward_tokens: int = 0

    def __add__(self, other: Passes) -> Passes:
        return Passes(
            self.calls + other.calls,
            self.tokens + other.tokens,
            self.backward_calls + other.backward_calls,
            self.backward_tokens + other.backward_tokens,
        )

    @classmethod
    def batched(cls, sequences: int, length: int, batch_size: int, *, times: int = 1) -> Passes:
        """``times`` passes over ``sequences`` sequences of ``length`` tokens in batches of ``batch_size``."""
        calls = math.ceil(sequences / max(1, batch_size)) if sequences > 0 else 0
        return cls(calls=times * calls, tokens=times * sequences * length)


#: ``cost(params, dataset_sizes) -> Passes``: declared on a measurement's decorator.
CostFn = Callable[[Any, Mapping[str, int]], Passes]


@dataclass(frozen=True)
class ForwardTiming:
    """Measured cost of a forward pass of one loaded model: a fixed part per call and a part per token."""

    per_call: float
    per_token: float

    def seconds(self, passes: Passes) -> float:
        """Estimated seconds for ``passes`` (a backward pass counted as two forward passes)."""
        forward = passes.calls * self.per_call + passes.tokens * self.per_token
        backward = passes.backward_calls * self.per_call + passes.backward_tokens * self.per_token
        return forward + 2.0 * backward


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: the first call pays for allocation and dispatch caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_forward(model: LoadedModel, *, repeats: int = 3) -> ForwardTiming:
    """Time no-grad forward passes of ``model`` on random tokens (1 x 8 and 8 x 32, within its context)."""
    import torch

    device = next(model.bridge.parameters()).device
    vocab = int(model.bridge.cfg.d_vocab)
    small_len = min(8, model.n_ctx)
    large_len = min(32, model.n_ctx)
    generator = torch.Generator().manual_seed(0)
    small = torch.randint(0, vocab, (1, small_len), generator=generator).to(device)
    large = torch.randint(0, vocab, (8, large_len), generator=generator).to(device)

    def forward(tokens: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return model.bridge(tokens)

        return run

    t_small = _median_seconds(forward(small), repeats)
    t_large = _median_seconds(forward(large), repeats)
    per_token = max(0.0, (t_large - t_small) / (large.numel() - small.numel()))
    return ForwardTiming(per_call=max(0.0, t_small - per_token * small.numel()), per_token=per_token)


def estimate_seconds(
    definition: MeasurementDef, params: BaseModel, dataset_sizes: Mapping[str, int], timing: ForwardTiming
) -> float | None:
    """An estimate of the seconds ``definition`` takes with ``params``; None when it declares no cost."""
    if definition.cost is None:
        return None
    return timing.seconds(definition.cost(params, dataset_sizes))


def format_seconds(seconds: float) -> str:
    """``"4 s"``, ``"3 min"``, ``"1.5 h"``: rounded, for a progress line."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
