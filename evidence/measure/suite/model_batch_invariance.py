"""``model.batch_invariance``: the same prompt gives the same logits alone and in a padded batch.

Every other measurement feeds prompts to the model in batches; this one checks
that padding, or the company a prompt keeps in a batch, does not change its
logits at any position. A difference above the tolerance fails the
measurement. Method, parameters and validation:
docs/methods/model.batch_invariance.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from evidence.errors import ConfigError, MeasurementError
from evidence.measure import Expectation, MeasureContext, MeasurementResult, UncertaintyParams, measurement
from evidence.measure.methods.behaviour import bos_token_id, ordinary_token_ids, prompt_ids
from evidence.measure.stats import bootstrap_mean
from evidence.model import LoadedModel
from evidence.records import Baseline, ClauseRef, ConfidenceInterval, Criterion, DataRef, Metric, Table

__all__ = ["CLAUSES", "DATASET_CANDIDATES", "BatchInvarianceParams", "batch_invariance"]

#: Datasets that ``prompts = "auto"`` draws from, first present wins.
DATASET_CANDIDATES = ("refusal.harmless", "deception.control")

CLAUSES = (
    ClauseRef(
        id="EU-AIA/Art15/4@OJ-2024-07-12",
        strength="partial",
        rationale=(
            "Checks that the model's outputs do not change with how inputs are batched and padded, "
            "one source of inconsistency in its interaction with the serving environment."
        ),
    ),
    ClauseRef(
        id="EU-GPAI-CoP/SS/App3.1@2025-07-10",
        strength="partial",
        rationale=(
            "Internal validity and reproducibility of the other measurements: their batched "
            "evaluation gives the same numbers as one prompt at a time."
        ),
    ),
    ClauseRef(
        id="NIST-AI-RMF/1.0/MEASURE/2.5",
        strength="supporting",
        rationale="Part of showing that the measured model behaves reliably under routine variation of its inputs.",
    ),
)


class BatchInvarianceParams(UncertaintyParams):
    """Parameters of ``model.batch_invariance``."""

    prompts: str = Field(default="auto", min_length=1, description='"auto", "random", or a run-spec dataset name')
    n_prompts: int = Field(default=16, ge=2, le=100_000)
    min_length: int = Field(default=4, ge=1, description="shortest random prompt, in tokens")
    max_length: int = Field(default=48, ge=1, description="longest prompt, in tokens (longer ones are cut)")
    batch_size: int = Field(default=8, ge=2)
    padding_side: Literal["right", "left"] = "right"
    attention_mask: Literal["auto", "on", "off"] = "auto"
    tolerance: float = Field(default=1e-4, gt=0.0, description="largest acceptable absolute logit difference")
    noise_floor: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> BatchInvarianceParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} exceeds max_length {self.max_length}")
        if self.padding_side == "left" and self.attention_mask == "off":
            raise ValueError("left padding without an attention mask shifts every position; use right padding")
        return self


@dataclass(frozen=True)
class _Prompts:
    ids: list[str]
    tokens: list[list[int]]
    source: DataRef


def _pad_id(model: LoadedModel) -> int:
    pad = getattr(model.tokenizer, "pad_token_id", None) if model.tokenizer is not None else None
    return int(pad) if pad is not None and 0 <= int(pad) < model.d_vocab else 0


def _digest(tokens: list[list[int]]) -> str:
    """sha256 over the prompts: per prompt, its length then its ids, all int64 little-endian."""
    h = hashlib.sha256()
    for seq in tokens:
        h.update(np.asarray([len(seq), *seq], dtype="<i8").tobytes())
    return h.hexdigest()


def _random_prompts(model: LoadedModel, params: BatchInvarianceParams, rng: np.random.Generator) -> _Prompts:
    allowed = ordinary_token_ids(model)
    if allowed.size < 1:
        raise MeasurementError("the vocabulary has no ordinary tokens")
    top = min(params.max_length, model.n_ctx)
    if params.min_length > top:
        raise MeasurementError(
            f"min_length {params.min_length} exceeds the model's context of {model.n_ctx}",
            hint=f"use min_length <= {model.n_ctx}",
        )
    choices = np.arange(params.min_length, top + 1)
    lengths = rng.choice(choices, size=params.n_prompts, replace=params.n_prompts > choices.size)
    bos = bos_token_id(model)
    tokens = []
    for length in lengths:
        body = allowed[rng.integers(0, allowed.size, size=int(length))].tolist()
        tokens.append(([bos] + body)[: int(length)] if bos is not None else body)
    ref = DataRef(
        name="model.batch_invariance.random_prompts",
        sha256=_digest(tokens),
        count=len(tokens),
        description=(
            f"{len(tokens)} random token sequences of {params.min_length}-{top} tokens"
            + (" (BOS first)" if bos is not None else "")
            + "; digest over int64 little-endian [length, ids...] per prompt"
        ),
    )
    return _Prompts(ids=[f"random-{i}" for i in range(len(tokens))], tokens=tokens, source=ref)


def _dataset_prompts(
    model: LoadedModel, name: str, params: BatchInvarianceParams, ctx: MeasureContext, rng: np.random.Generator
) -> _Prompts:
    dataset = ctx.dataset(name)
    if model.tokenizer is None:
        raise ConfigError(
            f"dataset {name!r} holds text, but this model has no tokenizer",
            hint='use prompts = "random"',
        )
    count = dataset.count
    chosen = np.sort(rng.choice(count, size=min(params.n_prompts, count), replace=False))
    order = rng.permutation(chosen.size)  # mix the lengths within each batch
    ids, tokens = [], []
    limit = min(params.max_length, model.n_ctx)
    for i in chosen[order]:
        prompt = dataset.prompts[int(i)]
        seq = prompt_ids(model.tokenizer, prompt)[:limit]
        if seq:
            ids.append(prompt.id)
            tokens.append(seq)
    if len(tokens) < 2:
        raise MeasurementError(f"dataset {name!r} gave fewer than two non-empty prompts")
    return _Prompts(
        ids=ids, tokens=tokens, source=ctx.data_ref(name, f"{len(tokens)} prompts sampled, cut to {limit} tokens")
    )


def _choose_prompts(
    model: LoadedModel, params: BatchInvarianceParams, ctx: MeasureContext, rng: np.random.Generator
) -> _Prompts:
    if params.prompts == "random":
        return _random_prompts(model, params, rng)
    if params.prompts == "auto":
        if model.tokenizer is not None:
            for name in DATASET_CANDIDATES:
                if name in ctx.datasets:
                    return _dataset_prompts(model, name, params, ctx, rng)
        return _random_prompts(model, params, rng)
    return _dataset_prompts(model, params.prompts, params, ctx, rng)


def _accepts_mask(model: LoadedModel, sample: list[int]) -> bool:
    """Whether the model's forward takes an ``attention_mask`` keyword (tried on one prompt)."""
    tokens = torch.tensor([sample], dtype=torch.long)
    try:
        with torch.no_grad():
            model.bridge(tokens, attention_mask=torch.ones_like(tokens))
    except (TypeError, ValueError, NotImplementedError):
        return False
    return True


def _logits(model: LoadedModel, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    with torch.no_grad():
        out = model.bridge(tokens) if mask is None else model.bridge(tokens, attention_mask=mask)
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != tokens.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise MeasurementError(f"the forward pass returned {shape} for input {tuple(tokens.shape)}; expected logits")
    if not torch.isfinite(out).all():
        raise MeasurementError("the model produced non-finite logits", hint="check the weights and dtype")
    return out.to(torch.float64)


@dataclass(frozen=True)
class _Comparison:
    max_diff: np.ndarray  # [prompts]
    mean_diff: np.ndarray  # [prompts]
    worst_position: np.ndarray  # [prompts]
    padding: np.ndarray  # [prompts]: pad tokens added in its batch
    batch: np.ndarray  # [prompts]


def _compare(
    model: LoadedModel, prompts: _Prompts, params: BatchInvarianceParams, use_mask: bool, ctx: MeasureContext
) -> tuple[_Comparison, list[torch.Tensor]]:
    n = len(prompts.tokens)
    singles = []
    for i, seq in enumerate(prompts.tokens):
        tokens = torch.tensor([seq], dtype=torch.long)
        singles.append(_logits(model, tokens, torch.ones_like(tokens) if use_mask else None)[0])
        ctx.progress(0.5 * (i + 1) / n, "one prompt at a time")
    pad = _pad_id(model)
    max_diff, mean_diff, worst, padding, batch_of = (np.zeros(n) for _ in range(5))
    for b, start in enumerate(range(0, n, params.batch_size)):
        members = list(range(start, min(start + params.batch_size, n)))
        width = max(len(prompts.tokens[i]) for i in members)
        tokens = torch.full((len(members), width), pad, dtype=torch.long)
        mask = torch.zeros((len(members), width), dtype=torch.long)
        spans = []
        for row, i in enumerate(members):
            seq = prompts.tokens[i]
            lo = 0 if params.padding_side == "right" else width - len(seq)
            tokens[row, lo : lo + len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, lo : lo + len(seq)] = 1
            spans.append(lo)
        batched = _logits(model, tokens, mask if use_mask else None)
        for row, i in enumerate(members):
            lo, length = spans[row], len(prompts.tokens[i])
            diff = (batched[row, lo : lo + length] - singles[i]).abs()
            per_position = diff.amax(dim=-1)
            max_diff[i] = float(per_position.max())
            mean_diff[i] = float(diff.mean())
            worst[i] = int(per_position.argmax())
            padding[i] = width - length
            batch_of[i] = b
        ctx.progress(0.5 + 0.3 * min(1.0, (start + params.batch_size) / n), "padded batches")
    return _Comparison(max_diff, mean_diff, worst, padding, batch_of), singles


def _noise_floor(
    model: LoadedModel, prompts: _Prompts, singles: list[torch.Tensor], params: BatchInvarianceParams, use_mask: bool
) -> float:
    """Largest difference when each prompt is batched with copies of itself (nothing padded)."""
    worst = 0.0
    for seq, single in zip(prompts.tokens, singles, strict=True):
        tokens = torch.tensor([seq] * params.batch_size, dtype=torch.long)
        batched = _logits(model, tokens, torch.ones_like(tokens) if use_mask else None)
        worst = max(worst, float((batched - single).abs().max()))
    return worst


def _use_mask(model: LoadedModel, params: BatchInvarianceParams, sample: list[int]) -> bool:
    """Whether the batched passes carry an attention mask; refuse a setting that needs one the model lacks."""
    if params.attention_mask == "off":
        return False
    use_mask = _accepts_mask(model, sample)
    if not use_mask and (params.attention_mask == "on" or params.padding_side == "left"):
        raise MeasurementError(
            "this model's forward does not accept an attention mask",
            hint='use attention_mask = "auto" with padding_side = "right"',
        )
    return use_mask


def _check_tolerance(
    comparison: _Comparison,
    prompts: _Prompts,
    params: BatchInvarianceParams,
    how: str,
    mean_value: float,
    floor: float | None,
) -> None:
    """Fail the measurement, stating the difference, when the largest one exceeds the tolerance."""
    worst = int(np.argmax(comparison.max_diff))
    max_value = float(comparison.max_diff[worst])
    if max_value > params.tolerance:
        floor_text = f"; batching without padding differs by {floor:.3g}" if floor is not None else ""
        raise MeasurementError(
            f"batched ({how}) and one-by-one logits differ by up to {max_value:.6g} (prompt "
            f"{prompts.ids[worst]!r}, position {int(comparison.worst_position[worst])} of "
            f"{len(prompts.tokens[worst])}), above the tolerance {params.tolerance:g}; mean absolute difference "
            f"{mean_value:.3g} over {len(prompts.tokens)} prompts{floor_text}",
            hint="the model's outputs depend on batching or padding; measurements that batch prompts are unreliable",
        )


def _metrics(
    comparison: _Comparison,
    lengths: list[int],
    params: BatchInvarianceParams,
    how: str,
    use_mask: bool,
    mean: tuple[float, ConfidenceInterval],
    floor: float | None,
) -> list[Metric]:
    n, padded = len(lengths), int(np.count_nonzero(comparison.padding))
    baseline = None
    if floor is not None:
        baseline = Baseline(
            name="batching without padding",
            value=floor,
            description=f"largest difference when each prompt is batched with {params.batch_size - 1} copies of itself",
        )
    return [
        Metric(
            name="max_abs_logit_diff",
            value=float(comparison.max_diff.max()),
            unit="logits",
            baseline=baseline,
            description=(
                f"largest |batched - alone| logit difference over every position and vocabulary entry of {n} "
                f"prompts ({how}); tolerance {params.tolerance:g}"
            ),
        ),
        Metric(
            name="mean_abs_logit_diff",
            value=mean[0],
            unit="logits",
            ci=mean[1],
            description="mean over prompts of the mean absolute logit difference at every position",
        ),
        Metric(
            name="n_prompts", value=n, unit="prompts", description=f"prompts of {min(lengths)}-{max(lengths)} tokens"
        ),
        Metric(
            name="n_padded_prompts", value=padded, unit="prompts", description="prompts that were padded in their batch"
        ),
        Metric(
            name="attention_mask_used",
            value=int(use_mask),
            unit="flag",
            description="1 if the batched forward passes carried an attention mask",
        ),
    ]


def _prompt_table(comparison: _Comparison, prompts: _Prompts) -> Table:
    c = comparison
    rows: list[list[str | float | int | None]] = []
    for i, (prompt, seq) in enumerate(zip(prompts.ids, prompts.tokens, strict=True)):
        diffs = [float(c.max_diff[i]), float(c.mean_diff[i]), int(c.worst_position[i])]
        rows.append([prompt, len(seq), int(c.batch[i]), int(c.padding[i]), *diffs])
    return Table(
        name="prompts",
        columns=["prompt", "length", "batch", "pad_tokens", "max_abs_diff", "mean_abs_diff", "worst_position"],
        rows=rows,
        description="per prompt: its batch, the padding it received, and the logit differences",
    )


@measurement(
    "model.batch_invariance",
    version="1.0.0",
    params=BatchInvarianceParams,
    clauses=CLAUSES,
    calibration=(
        Expectation(
            "induction", True, "max_abs_logit_diff", (Criterion(comparator="<=", threshold=1e-4, rule="point"),)
        ),
    ),
)
def batch_invariance(model: LoadedModel, params: BatchInvarianceParams, ctx: MeasureContext) -> MeasurementResult:
    """Compare padded-batch and one-by-one logits at every position of every prompt."""
    prompts_seed, bootstrap_seed = ctx.derive_seed("prompts"), ctx.derive_seed("bootstrap")
    prompts = _choose_prompts(model, params, ctx, np.random.default_rng(prompts_seed))
    lengths = [len(seq) for seq in prompts.tokens]
    use_mask = _use_mask(model, params, prompts.tokens[0])
    comparison, singles = _compare(model, prompts, params, use_mask, ctx)
    n = len(prompts.tokens)
    padded = int(np.count_nonzero(comparison.padding))
    if padded == 0:
        raise MeasurementError(
            f"none of the {n} prompts was padded (all batches held prompts of equal length), so nothing was checked",
            hint="use prompts of varying length or a larger batch_size",
        )
    floor = _noise_floor(model, prompts, singles, params, use_mask) if params.noise_floor else None
    ctx.progress(0.95, "statistics")

    mean_value, mean_ci = bootstrap_mean(
        comparison.mean_diff,
        rng=np.random.default_rng(bootstrap_seed),
        level=params.ci_level,
        resamples=params.bootstrap_resamples,
        name="per-prompt mean absolute logit difference",
    )
    how = f"{params.padding_side}-padded, " + ("with" if use_mask else "without") + " an attention mask"
    _check_tolerance(comparison, prompts, params, how, mean_value, floor)
    metrics = _metrics(comparison, lengths, params, how, use_mask, (mean_value, mean_ci), floor)
    floor_text = f" (batching without padding: {floor:.3g})" if floor is not None else ""
    summary = (
        f"{n} prompts of {min(lengths)}-{max(lengths)} tokens ({prompts.source.name}) were evaluated alone and in "
        f"batches of {params.batch_size} ({how}; {padded} of them padded). At every position the logits agree "
        f"to within {metrics[0].value:.3g}{floor_text}, below the tolerance {params.tolerance:g}; the mean absolute "
        f"difference is {mean_value:.3g} (CI {mean_ci.lower:.3g}-{mean_ci.upper:.3g})."
    )
    ctx.progress(1.0, "done")
    table = _prompt_table(comparison, prompts)
    return MeasurementResult(metrics=metrics, tables=[table], data=[prompts.source], summary=summary)
