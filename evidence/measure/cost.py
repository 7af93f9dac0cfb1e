"""Time estimates: counted forward passes times a measured forward pass of the loaded model.

A measurement declares its cost on its decorator (``cost=``): a function of its
parameters and of the run's :class:`Workload` (every prompt set's token lengths
as the model's tokenizer encodes them, the model's batching mode and shape) that
returns the forward (and backward) passes it makes, as :class:`Passes` — calls
and tokens. :meth:`Workload.read` and :meth:`Workload.generate` count passes
over prompts the way :func:`evidence.measure.methods.batching.prompt_batches`
batches them. :func:`time_forward` times forward passes of the loaded model at
two sizes and fits seconds per call plus seconds per token;
:func:`estimate_seconds` multiplies.

These are estimates, not measurements: they leave out everything but the model's
passes (bootstrap resampling, tokenizing, optimiser steps) and assume every pass
costs what a pass of random tokens costs. A backward pass is counted as two
forward passes. Greedy generation that is judged for a marker phrase stops a
reply at its first stop token, or once the phrase shows: it is counted as a
prefill and then one call per new token until :data:`REPLY_TOKENS` tokens (or
the budget, if smaller), every row kept. Replies that run to a long budget make
more calls than that; the organisms' replies are decided within a few tokens. A measurement that
never runs the subject (``model_copies=0``: ``calibration.organisms``) counts
passes on the reference organisms, and its estimate times a forward pass of an
organism instead. Measurements that declare no cost have no estimate (None).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from evidence.datasets import Dataset
    from evidence.measure.registry import MeasurementDef
    from evidence.model import LoadedModel

__all__ = [
    "CostFn",
    "REPLY_TOKENS",
    "ForwardTiming",
    "Passes",
    "Workload",
    "estimate_seconds",
    "format_seconds",
    "organism_timing",
    "organism_workload",
    "time_forward",
]


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


#: Tokens a judged reply is counted at (fewer when the generation budget is smaller): see the module docstring.
REPLY_TOKENS = 8


@dataclass(frozen=True)
class Workload:
    """What a measurement's passes are counted from: the run's prompt sets as the model encodes them, and its shape.

    ``prompts``: per dataset name, every prompt's ``(token count, label)``, shortest first. ``padded``:
    the model's batching mode (:func:`evidence.measure.methods.batching.batching_mode`): left-padded
    batches, or batches of equal-length prompts only.
    """

    prompts: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)
    padded: bool = False
    n_layers: int = 1
    n_heads: int = 1
    n_ctx: int = 1024
    has_mlp: bool = True
    #: The model is a reference organism (some measurements reword only the organisms' language).
    organism: bool = False
    #: ``run --limit``: at most this many prompts per dataset (those of ``prompts`` are already cut).
    prompt_limit: int | None = None

    @classmethod
    def of(cls, model: LoadedModel, datasets: Mapping[str, Dataset], prompt_limit: int | None = None) -> Workload:
        """The workload of ``datasets`` on ``model``: each prompt encoded as the measurements encode it."""
        from evidence.measure.methods.batching import batching_mode
        from evidence.measure.methods.behaviour import prompt_ids

        prompts: dict[str, tuple[tuple[int, str], ...]] = {}
        for name, dataset in datasets.items():
            try:
                encoded = [(len(prompt_ids(model.tokenizer, p)), str(p.label or "")) for p in dataset.prompts]
            except Exception:  # a prompt the model cannot encode is the check's to report: the set is not counted
                continue
            prompts[name] = tuple(sorted(encoded, key=lambda item: item[0]))
        return cls(
            prompts=prompts,
            padded=batching_mode(model.bridge) == "left-padded",
            n_layers=model.n_layers,
            n_heads=model.n_heads,
            n_ctx=model.n_ctx,
            has_mlp=not bool(getattr(model.bridge.cfg, "attn_only", False)),
            organism=model.spec.organism is not None,
            prompt_limit=prompt_limit,
        )

    def size(self, name: str, label: str | None = None) -> int:
        """Prompts in the dataset ``name`` (with ``label``, those of that label); 0 when the run has none."""
        return len(self.lengths(name, label))

    def lengths(self, name: str, label: str | None = None) -> list[int]:
        """The token counts of the prompts of ``name`` (of ``label``), shortest first."""
        return [n for n, lab in self.prompts.get(name, ()) if label is None or lab == label]

    def longest(self, *names: str) -> int:
        """The longest prompt of the datasets ``names`` (0 when they have none)."""
        return max((n for name in names for n in self.lengths(name)), default=0)

    def sample(self, name: str, n: int | None = None, *, label: str | None = None) -> list[int]:
        """Lengths of ``n`` prompts of ``name`` (of ``label``) spread evenly over its lengths (None: every prompt)."""
        lengths = self.lengths(name, label)
        if not lengths or n is None:
            return lengths
        return [lengths[min(len(lengths) - 1, int((i + 0.5) * len(lengths) / n))] for i in range(max(0, n))]

    def batches(self, lengths: Sequence[int], batch_size: int, *, equal: bool = False) -> list[tuple[int, int]]:
        """``(rows, width)`` of each batch :func:`~evidence.measure.methods.batching.prompt_batches` makes.

        ``equal``: equal-length groups whatever the model's mode (a caller that groups prompts by length).
        """
        out: list[tuple[int, int]] = []
        ordered = sorted(lengths)
        padded = self.padded and not equal
        start, rows_cap = 0, max(1, batch_size)
        while start < len(ordered):
            end = start + 1
            while end < len(ordered) and end - start < rows_cap and (padded or ordered[end] == ordered[start]):
                end += 1
            out.append((end - start, ordered[end - 1]))
            start = end
        return out

    def read(self, lengths: Sequence[int], batch_size: int, *, times: int = 1, equal: bool = False) -> Passes:
        """``times`` no-grad passes over prompts of ``lengths``, batched as the model batches them."""
        batches = self.batches(lengths, batch_size, equal=equal)
        return Passes(calls=times * len(batches), tokens=times * sum(rows * width for rows, width in batches))

    def generate(
        self,
        lengths: Sequence[int],
        new_tokens: int,
        batch_size: int,
        *,
        times: int = 1,
        equal: bool = False,
        judged: bool = True,
        reply_tokens: int = REPLY_TOKENS,
    ) -> Passes:
        """``times`` greedy generations of up to ``new_tokens`` tokens after prompts of ``lengths``, with a cache.

        Each batch: a prefill over its prompts, then one call per later token with one new token per row.
        ``judged``: replies end at a stop token or once judged, counted at ``reply_tokens`` tokens (a
        batch runs until its longest reply is decided: a measurement whose replies are decided later than
        :data:`REPLY_TOKENS` says so); otherwise every reply runs to ``new_tokens``.
        """
        steps = max(0, (min(new_tokens, reply_tokens) if judged else new_tokens) - 1)
        batches = self.batches(lengths, batch_size, equal=equal)
        calls = len(batches) * (1 + steps)
        tokens = sum(rows * (width + steps) for rows, width in batches)
        return Passes(calls=times * calls, tokens=times * tokens)


#: ``cost(params, workload) -> Passes``: declared on a measurement's decorator.
CostFn = Callable[[Any, Workload], Passes]


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
    definition: MeasurementDef, params: BaseModel, workload: Workload, timing: ForwardTiming
) -> float | None:
    """An estimate of the seconds ``definition`` takes with ``params``; None when it declares no cost or cannot count.

    A measurement that never runs the subject (``model_copies=0``) counts its passes on the
    reference organisms, and they are timed on an organism (:func:`organism_timing`), not with ``timing``.
    """
    if definition.cost is None:
        return None
    try:
        passes = definition.cost(params, workload)
    except (LookupError, ValueError, ArithmeticError):  # prompt sets it cannot count: "not estimated", never a stop
        return None
    return (organism_timing() if definition.model_copies == 0 else timing).seconds(passes)


@cache
def organism_timing() -> ForwardTiming:
    """A forward pass of the ``demo`` organism, timed once per process (the organisms share its size)."""
    return time_forward(_demo())


@cache
def _demo() -> LoadedModel:
    from evidence.model import ModelSpec, load_model

    return load_model(ModelSpec(organism="demo"))


def organism_workload(datasets: Mapping[str, Dataset], prompt_limit: int | None = None) -> Workload:
    """The workload of the organisms' own ``datasets`` (the organisms share ``demo``'s tokenizer and batching)."""
    return Workload.of(_demo(), datasets, prompt_limit)


def format_seconds(seconds: float) -> str:
    """``"4 s"``, ``"3 min"``, ``"1.5 h"``: rounded, for a progress line."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
