"""``heads.inventory``: previous-token, duplicate-token and induction heads, with an ablation check.

Every head's attention pattern on repeated random sequences is scored for the
three roles; the best head of each is reported against a randomly initialised
twin, and the top induction heads are zero-ablated to check that the loss on
repeated tokens rises (against ablating random heads). Method, parameters and
validation: docs/methods/heads.inventory.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from evidence.errors import MeasurementError
from evidence.measure import Expectation, MeasureContext, MeasurementResult, UncertaintyParams, measurement
from evidence.measure.hooks import HookFn, capture, scoped_hooks
from evidence.measure.methods.behaviour import bos_token_id, ordinary_token_ids
from evidence.measure.stats import bootstrap_mean
from evidence.model import LoadedModel, random_twin
from evidence.records import Baseline, ClauseRef, ConfidenceInterval, Criterion, DataRef, Metric, Table

__all__ = ["CLAUSES", "HeadsInventoryParams", "inventory"]

_SCORES = ("prev_token", "duplicate_token", "induction")

CLAUSES = (
    ClauseRef(
        id="EU-AIA/AnnexIV/2/b@OJ-2024-07-12",
        strength="supporting",
        rationale=(
            "Names the attention heads that copy earlier context, a measured part of the "
            "model's internal logic that the design description can cite."
        ),
    ),
    ClauseRef(
        id="EU-AIA/AnnexXI/S2/2@OJ-2024-07-12",
        strength="partial",
        rationale=(
            "Ablating the identified heads is an internal test of the model under a targeted "
            "intervention; it covers one part of the testing the provider must describe."
        ),
    ),
    ClauseRef(
        id="NIST-AI-RMF/1.0/MEASURE/2.9",
        strength="supporting",
        rationale=(
            "Explains one in-context copying mechanism and validates it causally, against an untrained baseline."
        ),
    ),
)


class HeadsInventoryParams(UncertaintyParams):
    """Parameters of ``heads.inventory``."""

    n_sequences: int = Field(default=64, ge=2, le=100_000)
    seq_len: int = Field(default=24, ge=2, description="length of the segment that is repeated")
    batch_size: int = Field(default=16, ge=1)
    top_k: int = Field(default=1, ge=1, description="induction heads ablated in the check")
    random_ablation_draws: int = Field(default=4, ge=1, description="random head sets ablated for the baseline")


@dataclass(frozen=True)
class _Layout:
    offset: int  # 1 if a BOS token is prepended, else 0
    seq_len: int

    @property
    def length(self) -> int:
        return self.offset + 2 * self.seq_len


def _repeated_tokens(
    model: LoadedModel, n_sequences: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``(tokens, offset)``: int64 ``[n, offset + 2 * seq_len]`` sequences ``[BOS] + s + s``."""
    allowed = ordinary_token_ids(model)
    if allowed.size < 2:
        raise MeasurementError("the vocabulary has fewer than two ordinary tokens")
    segment = allowed[rng.integers(0, allowed.size, size=(n_sequences, seq_len))]
    parts = [segment, segment]
    bos = bos_token_id(model)
    if bos is not None:
        parts.insert(0, np.full((n_sequences, 1), bos, dtype=np.int64))
    tokens = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.int64)
    return tokens, (1 if bos is not None else 0)


def _pattern_scores(pattern: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """Scores ``[batch, head, 3]`` from one layer's pattern ``[batch, head, query, key]``."""
    off, n = layout.offset, layout.seq_len
    prev_q = torch.arange(off + 1, layout.length)
    rep_q = torch.arange(off + n, layout.length)
    prev = pattern[:, :, prev_q, prev_q - 1].mean(dim=-1)
    dup = pattern[:, :, rep_q, rep_q - n].mean(dim=-1)
    ind = pattern[:, :, rep_q, rep_q - n + 1].mean(dim=-1)
    return torch.stack([prev, dup, ind], dim=-1)


def _head_scores(
    model: LoadedModel,
    tokens: np.ndarray,
    layout: _Layout,
    batch_size: int,
    ctx: MeasureContext | None = None,
    share: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Per-sequence scores ``[n, layer, head, (prev_token, duplicate_token, induction)]``."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.n_layers)]
    out = np.zeros((tokens.shape[0], model.n_layers, model.n_heads, len(_SCORES)), dtype=np.float64)
    for start in range(0, tokens.shape[0], batch_size):
        batch = torch.from_numpy(tokens[start : start + batch_size])
        acts = capture(model.bridge, names, batch)
        for layer, name in enumerate(names):
            pattern = acts[name]
            expected = (batch.shape[0], model.n_heads, layout.length, layout.length)
            if tuple(pattern.shape) != expected:
                raise MeasurementError(
                    f"{name} has shape {tuple(pattern.shape)}, expected {expected} [batch, head, query, key]"
                )
            scores = _pattern_scores(pattern.to(torch.float64), layout)
            out[start : start + batch.shape[0], layer] = scores.numpy()
        if ctx is not None:
            done = min(start + batch_size, tokens.shape[0]) / tokens.shape[0]
            ctx.progress(share[0] + done * (share[1] - share[0]), "attention patterns")
    if not np.all(np.isfinite(out)):
        raise MeasurementError("attention patterns contain non-finite values")
    return out


def _zero_heads_hook(heads: list[int], n_heads: int) -> HookFn:
    def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
        if z.dim() != 4 or z.shape[2] != n_heads:
            raise MeasurementError(f"hook_z has shape {tuple(z.shape)}; expected [batch, pos, {n_heads}, d_head]")
        z = z.clone()
        z[:, :, heads, :] = 0.0
        return z

    return hook


def _repeat_loss(
    model: LoadedModel,
    tokens: np.ndarray,
    layout: _Layout,
    batch_size: int,
    ablate: list[tuple[int, int]],
) -> np.ndarray:
    """Per-sequence mean next-token loss (nats) on the second copy, tokens 2..n of it."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablate:
        by_layer.setdefault(layer, []).append(head)
    hooks = [
        (f"blocks.{layer}.attn.hook_z", _zero_heads_hook(sorted(heads), model.n_heads))
        for layer, heads in sorted(by_layer.items())
    ]
    # Predictions made at positions off+n .. off+2n-2 of tokens off+n+1 .. off+2n-1.
    pred = torch.arange(layout.offset + layout.seq_len, layout.length - 1)
    losses = []
    for start in range(0, tokens.shape[0], batch_size):
        batch = torch.from_numpy(tokens[start : start + batch_size])
        with torch.no_grad(), scoped_hooks(model.bridge, hooks):
            logits = model.bridge(batch)
        logp = F.log_softmax(logits[:, pred].float(), dim=-1)
        target = batch[:, pred + 1]
        nll = -logp.gather(-1, target[..., None])[..., 0].to(torch.float64)
        losses.append(nll.mean(dim=-1).numpy())
    result = np.concatenate(losses)
    if not np.all(np.isfinite(result)):
        raise MeasurementError("the loss on repeated tokens is not finite")
    return result


def _top(mean_scores: np.ndarray, index: int) -> tuple[int, int]:
    """(layer, head) with the highest mean score; ties go to the lowest (layer, head)."""
    flat = int(np.argmax(mean_scores[:, :, index]))
    layer, head = divmod(flat, mean_scores.shape[1])
    return layer, head


def _ci_metric(
    name: str,
    values: np.ndarray,
    rng: np.random.Generator,
    params: HeadsInventoryParams,
    unit: str,
    description: str,
    baseline: Baseline | None = None,
) -> tuple[Metric, float, ConfidenceInterval]:
    value, ci = bootstrap_mean(values, rng=rng, level=params.ci_level, resamples=params.bootstrap_resamples, name=name)
    metric = Metric(name=name, value=value, unit=unit, ci=ci, baseline=baseline, description=description)
    return metric, value, ci


def _table(name: str, mean_scores: np.ndarray, description: str) -> Table:
    rows: list[list[str | float | int | None]] = []
    for layer in range(mean_scores.shape[0]):
        for head in range(mean_scores.shape[1]):
            rows.append([layer, head, *(float(x) for x in mean_scores[layer, head])])
    return Table(name=name, columns=["layer", "head", *_SCORES], rows=rows, description=description)


_LABELS = {"prev_token": "previous-token", "duplicate_token": "duplicate-token", "induction": "induction"}


@dataclass(frozen=True)
class _Best:
    """The best head of one role, its mean score and interval, and the twin's best head's score."""

    layer: int
    head: int
    value: float
    ci: ConfidenceInterval
    twin_value: float


def _score_metrics(
    scores: np.ndarray,
    twin_scores: np.ndarray,
    params: HeadsInventoryParams,
    boot: np.random.Generator,
    twin_seed: int,
) -> tuple[list[Metric], dict[str, _Best]]:
    """Per role, the best head's mean score against the twin's best head; then where the best heads are."""
    means, twin_means = scores.mean(axis=0), twin_scores.mean(axis=0)
    metrics: list[Metric] = []
    best: dict[str, _Best] = {}
    for index, key in enumerate(_SCORES):
        layer, head = _top(means, index)
        t_layer, t_head = _top(twin_means, index)
        t_value, t_ci = bootstrap_mean(
            twin_scores[:, t_layer, t_head, index],
            rng=boot,
            level=params.ci_level,
            resamples=params.bootstrap_resamples,
            name=f"twin {key} score",
        )
        baseline = Baseline(
            name="random-init twin",
            value=t_value,
            ci=t_ci,
            description=(
                f"best {_LABELS[key]} head (L{t_layer}H{t_head}) of a randomly initialised model "
                f"of the same architecture (init seed {twin_seed}), same sequences"
            ),
        )
        description = f"mean {_LABELS[key]} attention of the best head, L{layer}H{head}"
        values = scores[:, layer, head, index]
        metric, value, ci = _ci_metric(f"{key}_score_max", values, boot, params, "score", description, baseline)
        metrics.append(metric)
        best[key] = _Best(layer, head, value, ci, t_value)
    for key in _SCORES:
        where = best[key]
        metrics += [
            Metric(
                name=f"{key}_head_layer",
                value=where.layer,
                unit="layer index",
                description=f"layer of the best {_LABELS[key]} head",
            ),
            Metric(
                name=f"{key}_head_index",
                value=where.head,
                unit="head index",
                description=f"index within its layer of the best {_LABELS[key]} head",
            ),
        ]
    return metrics, best


@dataclass(frozen=True)
class _Ablation:
    """Per-sequence repeat losses: unablated, with the top induction heads ablated, and the random-head increase."""

    top: list[tuple[int, int]]
    clean: np.ndarray
    ablated: np.ndarray
    random_increase: np.ndarray  # mean over the random draws
    random_sets: list[list[tuple[int, int]]]


def _ablation(
    model: LoadedModel,
    tokens: np.ndarray,
    layout: _Layout,
    means: np.ndarray,
    params: HeadsInventoryParams,
    pick: np.random.Generator,
    ctx: MeasureContext,
) -> _Ablation:
    """Zero-ablate the ``top_k`` induction heads, and ``random_ablation_draws`` sets of as many other heads."""
    ctx.progress(0.6, "ablation check")
    order = np.argsort(-means[:, :, 2], axis=None, kind="stable")
    top = [divmod(int(i), model.n_heads) for i in order[: params.top_k]]
    clean = _repeat_loss(model, tokens, layout, params.batch_size, [])
    ablated = _repeat_loss(model, tokens, layout, params.batch_size, top)
    others = [divmod(int(i), model.n_heads) for i in order[params.top_k :]]
    random_increase = np.zeros_like(clean)
    random_sets = []
    for draw in range(params.random_ablation_draws):
        chosen = sorted(others[int(j)] for j in pick.choice(len(others), params.top_k, replace=False))
        random_sets.append(chosen)
        random_increase += _repeat_loss(model, tokens, layout, params.batch_size, chosen) - clean
        ctx.progress(0.6 + 0.4 * (draw + 1) / params.random_ablation_draws, "ablation baseline")
    random_increase /= params.random_ablation_draws
    return _Ablation(top, clean, ablated, random_increase, random_sets)


def _ablation_metrics(
    ablation: _Ablation, params: HeadsInventoryParams, boot: np.random.Generator
) -> tuple[list[Metric], str]:
    """The repeat loss clean, ablated, and its increase against random heads; and the ablation sentence."""
    heads_text = ", ".join(f"L{layer}H{head}" for layer, head in ablation.top)
    clean_metric, clean_value, _ = _ci_metric(
        "repeat_loss_clean",
        ablation.clean,
        boot,
        params,
        "nats",
        "mean next-token loss on the second copy, unablated model",
    )
    ablated_metric, ablated_value, _ = _ci_metric(
        "repeat_loss_ablated",
        ablation.ablated,
        boot,
        params,
        "nats",
        f"mean next-token loss on the second copy with {heads_text} zero-ablated",
    )
    r_value, r_ci = bootstrap_mean(
        ablation.random_increase,
        rng=boot,
        level=params.ci_level,
        resamples=params.bootstrap_resamples,
        name="random-head ablation increase",
    )
    increase_metric, increase_value, increase_ci = _ci_metric(
        "repeat_loss_increase",
        ablation.ablated - ablation.clean,
        boot,
        params,
        "nats",
        f"loss increase on the second copy when {heads_text} are zero-ablated (paired)",
        Baseline(
            name="random heads ablated",
            value=r_value,
            ci=r_ci,
            description=(
                f"mean increase when {params.top_k} other head(s) chosen at random are "
                f"zero-ablated, over {params.random_ablation_draws} draws: "
                + "; ".join(",".join(f"L{a}H{b}" for a, b in s) for s in ablation.random_sets)
            ),
        ),
    )
    sentence = (
        f"Zero-ablating {heads_text} changes the loss on repeated tokens from "
        f"{clean_value:.3f} to {ablated_value:.3f} nats (increase {increase_value:.3f}, CI "
        f"{increase_ci.lower:.3f}-{increase_ci.upper:.3f}; random heads {r_value:.3f})."
    )
    return [clean_metric, ablated_metric, increase_metric], sentence


def _tokens_ref(tokens: np.ndarray, offset: int, params: HeadsInventoryParams) -> DataRef:
    digest = hashlib.sha256(tokens.astype("<i8", copy=False).tobytes(order="C")).hexdigest()
    return DataRef(
        name="heads.repeated_random_tokens",
        sha256=digest,
        count=int(tokens.shape[0]),
        description=(
            f"int64 array of shape {list(tokens.shape)} (little-endian, row-major): "
            + ("BOS, then " if offset else "")
            + f"{params.seq_len} random token ids, then the same ids again"
        ),
    )


def _check_fits(model: LoadedModel, layout: _Layout, params: HeadsInventoryParams) -> None:
    if layout.length > model.n_ctx:
        raise MeasurementError(
            f"sequences of {layout.length} tokens exceed the model's context of {model.n_ctx}",
            hint=f"use seq_len <= {(model.n_ctx - layout.offset) // 2}",
        )
    n_heads_total = model.n_layers * model.n_heads
    if params.top_k >= n_heads_total:
        raise MeasurementError(
            f"top_k={params.top_k} leaves no other heads for the random baseline (the model has {n_heads_total} heads)"
        )


@measurement(
    "heads.inventory",
    version="1.0.0",
    params=HeadsInventoryParams,
    clauses=CLAUSES,
    calibration=(
        Expectation(
            "induction", True, "induction_score_max", (Criterion(comparator=">=", threshold=0.5, rule="ci-bound"),)
        ),
        Expectation(
            "induction#untrained",
            False,
            "induction_score_max",
            (Criterion(comparator="<", threshold=0.2, rule="ci-bound"),),
        ),
    ),
)
def inventory(model: LoadedModel, params: HeadsInventoryParams, ctx: MeasureContext) -> MeasurementResult:
    """Find previous-token, duplicate-token and induction heads; check the top ones causally."""
    token_seed, twin_seed = ctx.derive_seed("tokens"), ctx.derive_seed("twin")
    bootstrap_seed, random_heads_seed = ctx.derive_seed("bootstrap"), ctx.derive_seed("random_heads")
    tokens, offset = _repeated_tokens(model, params.n_sequences, params.seq_len, np.random.default_rng(token_seed))
    layout = _Layout(offset=offset, seq_len=params.seq_len)
    _check_fits(model, layout, params)

    ctx.progress(0.0, "scoring heads")
    scores = _head_scores(model, tokens, layout, params.batch_size, ctx, (0.0, 0.35))
    ctx.progress(0.35, "building the randomly initialised twin")
    twin = random_twin(model, twin_seed)
    twin_scores = _head_scores(twin, tokens, layout, params.batch_size, ctx, (0.35, 0.6))
    del twin
    boot = np.random.default_rng(bootstrap_seed)
    metrics, best = _score_metrics(scores, twin_scores, params, boot, twin_seed)
    means = scores.mean(axis=0)
    ablation = _ablation(model, tokens, layout, means, params, np.random.default_rng(random_heads_seed), ctx)
    ablation_metrics, ablation_text = _ablation_metrics(ablation, params, boot)
    metrics += ablation_metrics

    induction, prev = best["induction"], best["prev_token"]
    summary = (
        f"On {params.n_sequences} repeated random sequences (segment length {params.seq_len}), "
        f"the strongest induction head is L{induction.layer}H{induction.head} (score {induction.value:.3f}, "
        f"{params.ci_level:.0%} CI {induction.ci.lower:.3f}-{induction.ci.upper:.3f}; random-init twin "
        f"{induction.twin_value:.3f}) and the "
        f"strongest previous-token head is L{prev.layer}H{prev.head} (score {prev.value:.3f}, CI {prev.ci.lower:.3f}-"
        f"{prev.ci.upper:.3f}). " + ablation_text
    )
    twin_description = "the same scores on the randomly initialised twin (baseline)"
    tables = [
        _table("head_scores", means, "mean score of every head over the sequences"),
        _table("twin_head_scores", twin_scores.mean(axis=0), twin_description),
    ]
    data = [_tokens_ref(tokens, offset, params)]
    ctx.progress(1.0, "done")
    return MeasurementResult(metrics=metrics, tables=tables, data=data, summary=summary)
