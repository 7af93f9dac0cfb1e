"""``model.batch_invariance``: the same prompt gives the same logits alone and in a padded batch.

Every other measurement feeds prompts to the model in batches; this one checks
that padding (right and left, with an attention mask and, on the left,
position ids that follow it), the company a prompt keeps in a batch, and padded
greedy generation do not change what the model computes for the prompt. Every
compared prompt is padded by construction. A difference above a tolerance
derived from the model's dtype and its logits' magnitude fails the measurement.
Method, parameters and validation: docs/methods/model.batch_invariance.md.
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
from evidence.measure.cost import Passes, Workload
from evidence.measure.methods.batching import (
    Side,
    accepts_keyword,
    greedy_alone,
    greedy_padded,
    pad_rows,
    run_padded,
)
from evidence.measure.methods.behaviour import bos_token_id, ordinary_token_ids, prompt_ids
from evidence.measure.stats import bootstrap_mean
from evidence.model import LoadedModel
from evidence.records import Baseline, ClauseRef, Criterion, DataRef, Metric, Table

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
    batch_size: int = Field(default=8, ge=1, description="compared prompts per padded batch (plus one longer row)")
    min_padding: int = Field(
        default=4, ge=1, description="pad tokens every compared prompt gets at least (the longer row's extra length)"
    )
    padding_sides: tuple[Side, ...] = Field(default=("right", "left"), min_length=1, description="sides checked")
    attention_mask: Literal["auto", "on", "off"] = Field(
        default="auto", description="right padding: pass the mask (auto: when the forward takes one)"
    )
    generation_prompts: int = Field(default=4, ge=0, description="prompts generated from, padded and alone (0: none)")
    generation_tokens: int = Field(default=8, ge=1, le=256, description="greedy tokens generated per prompt")
    tolerance_factor: float = Field(
        default=128.0, gt=0.0, description="tolerance in units of the dtype's machine epsilon times the logit scale"
    )
    tolerance: float | None = Field(
        default=None, gt=0.0, description="an absolute tolerance in logits, instead of the derived one"
    )
    noise_floor: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> BatchInvarianceParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} exceeds max_length {self.max_length}")
        if len(set(self.padding_sides)) != len(self.padding_sides):
            raise ValueError(f"padding_sides {list(self.padding_sides)} names a side twice")
        needs_mask = "left" in self.padding_sides or self.generation_prompts > 0
        if needs_mask and self.attention_mask == "off":
            raise ValueError(
                'left padding and padded generation need an attention mask; with attention_mask = "off" '
                'use padding_sides = ["right"] and generation_prompts = 0'
            )
        return self


def _length_limit(model: LoadedModel, params: BatchInvarianceParams) -> int:
    """Longest prompt kept: room in the context for the longer companion row and the generated tokens."""
    room = params.min_padding + (params.generation_tokens if params.generation_prompts > 0 else 0)
    return min(params.max_length, model.n_ctx - room)


@dataclass(frozen=True)
class _Prompts:
    ids: list[str]
    tokens: list[list[int]]
    source: DataRef


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
    top = _length_limit(model, params)
    if params.min_length > top:
        raise MeasurementError(
            f"min_length {params.min_length} exceeds the {top} tokens a prompt may have in this model's context of "
            f"{model.n_ctx} (room is kept for padding and generated tokens)",
            hint=f"use min_length <= {top}",
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
    limit = _length_limit(model, params)
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


# -- the forward passes --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """What the batched passes carry, decided once from the model."""

    pad_id: int
    right_mask: bool  # right padding passes the attention mask
    positions: bool  # left padding passes position ids that follow the mask
    eps: float
    dtype: str


def _pad_id(model: LoadedModel) -> int:
    pad = getattr(model.tokenizer, "pad_token_id", None) if model.tokenizer is not None else None
    return int(pad) if pad is not None and 0 <= int(pad) < model.d_vocab else 0


def _precision(model: LoadedModel, logits: torch.Tensor) -> tuple[float, str]:
    """Machine epsilon of the coarsest floating dtype among the weights (the logits' dtype if there are none)."""
    dtypes = {p.dtype for p in model.bridge.parameters() if p.is_floating_point()} or {logits.dtype}
    coarsest = max(dtypes, key=lambda d: torch.finfo(d).eps)
    return float(torch.finfo(coarsest).eps), str(coarsest).removeprefix("torch.")


def _setup(model: LoadedModel, params: BatchInvarianceParams, sample: list[int]) -> _Setup:
    """Which keywords the forward takes; refuse a setting that needs a mask the model does not take."""
    ones = torch.ones((1, len(sample)), dtype=torch.long)
    has_mask = accepts_keyword(model.bridge, sample, attention_mask=ones)
    needs_mask = params.attention_mask == "on" or "left" in params.padding_sides or params.generation_prompts > 0
    if not has_mask and needs_mask:
        raise MeasurementError(
            "this model's forward does not accept an attention mask, which left padding and padded generation need",
            hint='use padding_sides = ["right"], generation_prompts = 0 and attention_mask = "auto"',
        )
    arange = torch.arange(len(sample))[None]
    positions = has_mask and accepts_keyword(model.bridge, sample, attention_mask=ones, position_ids=arange)
    with torch.no_grad():
        logits = model.bridge(torch.tensor([sample], dtype=torch.long))
    eps, dtype = _precision(model, logits)
    return _Setup(_pad_id(model), has_mask and params.attention_mask != "off", positions, eps, dtype)


def _alone(model: LoadedModel, prompts: _Prompts, ctx: MeasureContext) -> list[torch.Tensor]:
    """Each prompt's logits as a batch of one, nothing padded, no keywords."""
    singles = []
    for i, seq in enumerate(prompts.tokens):
        singles.append(run_padded(model.bridge, pad_rows([seq], "right", 0), mask=False)[0])
        ctx.progress(0.3 * (i + 1) / len(prompts.tokens), "one prompt at a time")
    return singles


def _batches(n: int, size: int) -> list[list[int]]:
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def _random_row(model: LoadedModel, length: int, rng: np.random.Generator) -> list[int]:
    """Random ordinary tokens: the longer row of a batch, which is part of the batch but never compared."""
    allowed = ordinary_token_ids(model)
    if allowed.size < 1:
        raise MeasurementError("the vocabulary has no ordinary tokens to build the longer row of a batch from")
    return [int(t) for t in allowed[rng.integers(0, allowed.size, size=length)]]


def _companions(
    model: LoadedModel, prompts: _Prompts, params: BatchInvarianceParams, rng: np.random.Generator
) -> list[list[int]]:
    """Per batch, a row ``min_padding`` tokens longer than its longest prompt, so that each prompt is padded."""
    return [
        _random_row(model, max(len(prompts.tokens[i]) for i in members) + params.min_padding, rng)
        for members in _batches(len(prompts.tokens), params.batch_size)
    ]


@dataclass(frozen=True)
class _SideResult:
    side: Side
    max_diff: np.ndarray  # [prompts]
    mean_diff: np.ndarray  # [prompts]
    worst_position: np.ndarray  # [prompts]
    padding: np.ndarray  # [prompts]: pad tokens the prompt received
    batch: np.ndarray  # [prompts]
    default_positions_diff: float | None  # left: the largest difference with positions 0..width-1 instead


def _compare_side(
    model: LoadedModel,
    prompts: _Prompts,
    singles: list[torch.Tensor],
    side: Side,
    setup: _Setup,
    companions: list[list[int]],
    params: BatchInvarianceParams,
) -> _SideResult:
    """Each prompt in its padded batch on ``side`` against the prompt alone, at every real position."""
    n = len(prompts.tokens)
    out = {k: np.zeros(n) for k in ("max", "mean", "worst", "padding", "batch")}
    mask = setup.right_mask if side == "right" else True
    positions: Literal["mask"] | None = "mask" if side == "left" and setup.positions else None
    shifted_worst: float | None = 0.0 if positions == "mask" else None
    for b, members in enumerate(_batches(n, params.batch_size)):
        batch = pad_rows([prompts.tokens[i] for i in members] + [companions[b]], side, setup.pad_id)
        logits = run_padded(model.bridge, batch, mask=mask, positions=positions)
        # What a padding path that ignored the mask for positions would give: if this is within the
        # tolerance too, the model does not depend on absolute positions and a position bug is invisible.
        shifted = run_padded(model.bridge, batch, mask=True, positions="default") if positions else None
        for row, i in enumerate(members):
            lo, length = batch.starts[row], batch.lengths[row]
            diff = (logits[row, lo : lo + length] - singles[i]).abs()
            per_position = diff.amax(dim=-1)
            out["max"][i] = float(per_position.max())
            out["mean"][i] = float(diff.mean())
            out["worst"][i] = int(per_position.argmax())
            out["padding"][i] = batch.tokens.shape[1] - length
            out["batch"][i] = b
            if shifted is not None and shifted_worst is not None:
                shifted_diff = float((shifted[row, lo : lo + length] - singles[i]).abs().max())
                shifted_worst = max(shifted_worst, shifted_diff)
    return _SideResult(side, out["max"], out["mean"], out["worst"], out["padding"], out["batch"], shifted_worst)


@dataclass(frozen=True)
class _Generation:
    ids: list[str]
    alone: list[list[int]]
    padded: list[list[int]]
    first_divergence: list[int | None]  # step where the tokens first differ
    margin: list[float | None]  # alone: logit(its token) - logit(padded token) at that step
    max_diff: float  # largest logit difference over the steps where both had the same prefix


def _generation(
    model: LoadedModel, prompts: _Prompts, setup: _Setup, params: BatchInvarianceParams, companion: list[int]
) -> _Generation:
    """Greedy generation from a left-padded batch (with a longer row) against each prompt alone."""
    count = min(params.generation_prompts, len(prompts.tokens))
    seqs = [prompts.tokens[i] for i in range(count)]
    padded, padded_steps = greedy_padded(
        model.bridge, [*seqs, companion], params.generation_tokens, setup.pad_id, positions=setup.positions
    )
    alone, divergence, margins = [], [], []
    worst = 0.0
    for row, seq in enumerate(seqs):
        tokens, steps = greedy_alone(model.bridge, seq, params.generation_tokens)
        alone.append(tokens)
        first = next((t for t, (a, p) in enumerate(zip(tokens, padded[row], strict=True)) if a != p), None)
        same = params.generation_tokens if first is None else first + 1  # steps with an identical prefix
        worst = max(worst, float((padded_steps[:same, row] - steps[:same]).abs().max()))
        divergence.append(first)
        margins.append(None if first is None else float(steps[first, tokens[first]] - steps[first, padded[row][first]]))
    return _Generation(prompts.ids[:count], alone, padded[:count], divergence, margins, worst)


# -- judging and recording -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Tolerance:
    value: float
    text: str


def _tolerance(singles: list[torch.Tensor], setup: _Setup, params: BatchInvarianceParams) -> _Tolerance:
    """``tolerance_factor`` x machine epsilon x the logit scale (max |logit|, at least 1); or the given one."""
    scale = max(1.0, max(float(s.abs().max()) for s in singles))
    if params.tolerance is not None:
        return _Tolerance(params.tolerance, f"{params.tolerance:g} (given)")
    value = params.tolerance_factor * setup.eps * scale
    text = (
        f"{value:.3g} = {params.tolerance_factor:g} x eps({setup.dtype}) {setup.eps:.3g} x logit scale {scale:.3g} "
        "(max |logit| of the prompts alone, at least 1)"
    )
    return _Tolerance(value, text)


def _how(side: Side, setup: _Setup) -> str:
    if side == "right":
        return "right-padded, " + ("with" if setup.right_mask else "without") + " an attention mask"
    positions = "position ids that follow it" if setup.positions else "positions left to the forward"
    return f"left-padded, with an attention mask and {positions}"


def _check(
    sides: list[_SideResult], generation: _Generation | None, prompts: _Prompts, tol: _Tolerance, setup: _Setup
) -> None:
    """Fail the measurement, stating the difference, when a check exceeds the tolerance."""
    for result in sides:
        worst = int(np.argmax(result.max_diff))
        value = float(result.max_diff[worst])
        if value > tol.value:
            raise MeasurementError(
                f"batched ({_how(result.side, setup)}) and one-by-one logits differ by up to {value:.6g} (prompt "
                f"{prompts.ids[worst]!r}, position {int(result.worst_position[worst])} of "
                f"{len(prompts.tokens[worst])}), above the tolerance {tol.text}; mean absolute difference "
                f"{float(result.mean_diff.mean()):.3g} over {len(prompts.tokens)} prompts",
                hint="the outputs depend on batching or padding; measurements that batch prompts are unreliable",
            )
    if generation is None:
        return
    if generation.max_diff > tol.value:
        raise MeasurementError(
            f"padded and unpadded greedy generation differ by up to {generation.max_diff:.6g} in the logits of a "
            f"generated step, above the tolerance {tol.text}",
            hint="the model's generation depends on left padding (mask or position ids)",
        )
    for prompt, first, margin in zip(generation.ids, generation.first_divergence, generation.margin, strict=True):
        if first is not None and margin is not None and margin > tol.value:
            raise MeasurementError(
                f"padded greedy generation from prompt {prompt!r} departs from its unpadded generation at step "
                f"{first}, where the unpadded choice led by {margin:.3g} logits (tolerance {tol.text})",
                hint="the model's generation depends on left padding (mask or position ids)",
            )


def _noise_floor(model: LoadedModel, prompts: _Prompts, singles: list[torch.Tensor], batch_size: int) -> float:
    """Largest difference when each prompt is batched with copies of itself (nothing padded)."""
    worst = 0.0
    for seq, single in zip(prompts.tokens, singles, strict=True):
        batch = pad_rows([seq] * max(2, batch_size), "right", 0)
        worst = max(worst, float((run_padded(model.bridge, batch, mask=False) - single).abs().max()))
    return worst


def _metrics(
    sides: list[_SideResult],
    generation: _Generation | None,
    prompts: _Prompts,
    params: BatchInvarianceParams,
    setup: _Setup,
    tol: _Tolerance,
    floor: float | None,
    ctx: MeasureContext,
) -> list[Metric]:
    lengths = [len(s) for s in prompts.tokens]
    n = len(lengths)
    overall = max(float(r.max_diff.max()) for r in sides)
    if generation is not None:
        overall = max(overall, generation.max_diff)
    baseline = None
    if floor is not None:
        baseline = Baseline(
            name="batching without padding",
            value=floor,
            description="largest difference when each prompt is batched with copies of itself (no padding)",
        )
    per_prompt = np.mean([r.mean_diff for r in sides], axis=0)
    mean, mean_ci = bootstrap_mean(
        per_prompt,
        rng=np.random.default_rng(ctx.derive_seed("bootstrap")),
        level=params.ci_level,
        resamples=params.bootstrap_resamples,
        name="per-prompt mean absolute logit difference",
    )
    padded = int(np.count_nonzero(np.all([r.padding > 0 for r in sides], axis=0)))
    checks = "; ".join(_how(r.side, setup) for r in sides) + ("; padded greedy generation" if generation else "")
    metrics = [
        Metric(
            name="max_abs_logit_diff",
            value=overall,
            unit="logits",
            baseline=baseline,
            description=(
                f"largest |batched - alone| logit difference over every position and vocabulary entry of {n} prompts "
                f"and every generated step ({checks}); tolerance {tol.value:.3g}"
            ),
        ),
        *(
            Metric(
                name=f"max_abs_logit_diff_{r.side}",
                value=float(r.max_diff.max()),
                unit="logits",
                description=f"largest |batched - alone| logit difference, {_how(r.side, setup)}",
            )
            for r in sides
        ),
        Metric(
            name="mean_abs_logit_diff",
            value=mean,
            unit="logits",
            ci=mean_ci,
            description="mean over prompts of the mean absolute logit difference at every position, over the sides",
        ),
        Metric(
            name="tolerance", value=tol.value, unit="logits", description=f"largest difference accepted: {tol.text}"
        ),
        Metric(
            name="n_prompts", value=n, unit="prompts", description=f"prompts of {min(lengths)}-{max(lengths)} tokens"
        ),
        Metric(
            name="n_padded_prompts",
            value=padded,
            unit="prompts",
            description=f"prompts padded on every side checked (at least {params.min_padding} pad tokens)",
        ),
        Metric(
            name="attention_mask_used",
            value=int(setup.right_mask or any(r.side == "left" for r in sides)),
            unit="flag",
            description="1 if the batched forward passes carried an attention mask",
        ),
    ]
    left = next((r for r in sides if r.side == "left"), None)
    if left is not None:
        metrics.append(
            Metric(
                name="position_ids_used",
                value=int(setup.positions),
                unit="flag",
                description="1 if left-padded passes carried position ids that follow the mask (0: the forward chose)",
            )
        )
    if left is not None and left.default_positions_diff is not None:
        metrics.append(
            Metric(
                name="default_positions_diff",
                value=left.default_positions_diff,
                unit="logits",
                description=(
                    "largest difference when the left-padded batches use positions 0..width-1 instead of positions "
                    "that follow the mask; at or below the tolerance, the logits do not depend on absolute position "
                    "(e.g. rotary embeddings) and a position-id bug could not have been seen"
                ),
            )
        )
    if generation is not None:
        count = len(generation.ids)
        matched = sum(first is None for first in generation.first_divergence)
        metrics.append(
            Metric(
                name="generation_match",
                value=matched / count,
                unit="fraction",
                description=(
                    f"fraction of {count} prompts whose {params.generation_tokens} greedy tokens from a left-padded "
                    "batch equal those generated alone (a departure is accepted only at a near-tie within tolerance)"
                ),
            )
        )
    return metrics


def _prompt_table(sides: list[_SideResult], prompts: _Prompts) -> Table:
    rows: list[list[str | float | int | None]] = []
    for r in sides:
        for i, (prompt, seq) in enumerate(zip(prompts.ids, prompts.tokens, strict=True)):
            diffs = [float(r.max_diff[i]), float(r.mean_diff[i]), int(r.worst_position[i])]
            rows.append([prompt, len(seq), r.side, int(r.batch[i]), int(r.padding[i]), *diffs])
    return Table(
        name="prompts",
        columns=["prompt", "length", "side", "batch", "pad_tokens", "max_abs_diff", "mean_abs_diff", "worst_position"],
        rows=rows,
        description="per prompt and padding side: its batch, the padding it received, and the logit differences",
    )


def _generation_table(generation: _Generation) -> Table:
    rows: list[list[str | float | int | None]] = []
    for prompt, alone, padded, first, margin in zip(
        generation.ids, generation.alone, generation.padded, generation.first_divergence, generation.margin, strict=True
    ):
        rows.append([prompt, " ".join(map(str, alone)), " ".join(map(str, padded)), first, margin])
    return Table(
        name="generation",
        columns=["prompt", "alone_tokens", "padded_tokens", "first_divergence", "margin"],
        rows=rows,
        description="greedy token ids generated alone and from a left-padded batch; where they part, the margin",
    )


def _cost(params: BatchInvarianceParams, work: Workload) -> Passes:
    """The passes it makes: the setup pass, each prompt alone, padded batches per side, the noise floor, generation.

    Dataset prompts are counted at their own lengths (cut to ``max_length``); random prompts at ``max_length``
    (an upper bound). Generation recomputes the whole sequence at every step (no cache), padded and alone.
    """
    source = params.prompts
    if source == "auto":
        source = next((name for name in DATASET_CANDIDATES if work.size(name)), "random")
    if source == "random" or not work.size(source):
        lengths = [params.max_length] * params.n_prompts
    else:
        limit = min(params.max_length, work.n_ctx - params.min_padding - params.generation_tokens)
        lengths = [min(n, limit) for n in work.sample(source, min(params.n_prompts, work.size(source)))]
    n = len(lengths)
    passes = Passes(calls=1 + n, tokens=lengths[0] + sum(lengths))  # the setup pass and each prompt alone
    for start in range(0, n, params.batch_size):  # each batch with a row min_padding longer than its longest
        members = lengths[start : start + params.batch_size]
        width = max(members) + params.min_padding
        side = Passes(calls=1, tokens=(len(members) + 1) * width)
        passes += side + side if "left" in params.padding_sides else side  # left: also with default positions
        if len(params.padding_sides) == 2:
            passes += side
    if params.noise_floor:
        passes += Passes(calls=n, tokens=max(2, params.batch_size) * sum(lengths))
    g, steps = min(params.generation_prompts, n), params.generation_tokens
    if g:
        width = max(lengths[:g]) + params.min_padding
        grown = steps * (steps - 1) // 2  # tokens the growing sequences add over the steps
        passes += Passes(calls=steps, tokens=(g + 1) * (steps * width + grown))  # the padded batch
        passes += Passes(calls=g * steps, tokens=steps * sum(lengths[:g]) + g * grown)  # each prompt alone
    return passes


#: Every metric this measurement can emit (what a policy threshold may name).
METRICS = (
    "max_abs_logit_diff",
    "max_abs_logit_diff_right",
    "max_abs_logit_diff_left",
    "mean_abs_logit_diff",
    "tolerance",
    "n_prompts",
    "n_padded_prompts",
    "attention_mask_used",
    "position_ids_used",
    "default_positions_diff",
    "generation_match",
)


@measurement(
    "model.batch_invariance",
    version="2.0.0",
    headline="max_abs_logit_diff",
    metrics=METRICS,
    params=BatchInvarianceParams,
    cost=_cost,
    profiles={
        "quick": {"bootstrap_resamples": 200},
        "thorough": {"bootstrap_resamples": 4000},
    },
    clauses=CLAUSES,
    calibration=(
        Expectation(
            "induction", True, "max_abs_logit_diff", (Criterion(comparator="<=", threshold=1e-4, rule="point"),)
        ),
        Expectation("induction", True, "generation_match", (Criterion(comparator=">=", threshold=1.0, rule="point"),)),
    ),
)
def batch_invariance(model: LoadedModel, params: BatchInvarianceParams, ctx: MeasureContext) -> MeasurementResult:
    """Compare padded-batch and one-by-one logits at every position, on each side, and padded generation."""
    prompts = _choose_prompts(model, params, ctx, np.random.default_rng(ctx.derive_seed("prompts")))
    setup = _setup(model, params, prompts.tokens[0])
    singles = _alone(model, prompts, ctx)
    rows = np.random.default_rng(ctx.derive_seed("companions"))
    companions = _companions(model, prompts, params, rows)
    sides = []
    for k, side in enumerate(params.padding_sides):
        sides.append(_compare_side(model, prompts, singles, side, setup, companions, params))
        ctx.progress(0.3 + 0.4 * (k + 1) / len(params.padding_sides), f"{side}-padded batches")
    generation = None
    if params.generation_prompts > 0:
        count = min(params.generation_prompts, len(prompts.tokens))
        longest = max(len(prompts.tokens[i]) for i in range(count)) + params.min_padding
        companion = _random_row(model, longest, rows)
        generation = _generation(model, prompts, setup, params, companion)
    ctx.progress(0.85, "noise floor")
    floor = _noise_floor(model, prompts, singles, params.batch_size) if params.noise_floor else None
    tol = _tolerance(singles, setup, params)
    _check(sides, generation, prompts, tol, setup)
    metrics = _metrics(sides, generation, prompts, params, setup, tol, floor, ctx)
    lengths = [len(s) for s in prompts.tokens]
    floor_text = f" (batching without padding: {floor:.3g})" if floor is not None else ""
    gen_text = ""
    if generation is not None:
        matched = sum(first is None for first in generation.first_divergence)
        ties = " (the rest parted only at near-ties)" if matched < len(generation.ids) else ""
        gen_text = (
            f" Greedy generation of {params.generation_tokens} tokens from a left-padded batch matched generation "
            f"alone on {matched} of {len(generation.ids)} prompts{ties}, and its logits agree to within "
            f"{generation.max_diff:.3g}."
        )
    left = next((r for r in sides if r.side == "left"), None)
    if left is not None and left.default_positions_diff is not None:
        shifted = left.default_positions_diff
        gen_text += f" With positions 0..width-1 instead, left-padded logits differ by up to {shifted:.3g}: " + (
            "the logits do not depend on absolute position, so a position-id bug could not have been seen."
            if shifted <= tol.value
            else "the check does test that position ids follow the mask."
        )
    summary = (
        f"{len(lengths)} prompts of {min(lengths)}-{max(lengths)} tokens ({prompts.source.name}) were evaluated alone "
        f"and in batches of {params.batch_size} plus one longer row, so that every prompt was padded ("
        + "; ".join(_how(r.side, setup) for r in sides)
        + f"). At every position the logits agree to within {metrics[0].value:.3g}{floor_text}, below the "
        f"tolerance {tol.value:.3g} ({setup.dtype}).{gen_text}"
    )
    ctx.progress(1.0, "done")
    tables = [_prompt_table(sides, prompts)] + ([_generation_table(generation)] if generation else [])
    return MeasurementResult(metrics=metrics, tables=tables, data=[prompts.source], summary=summary)
