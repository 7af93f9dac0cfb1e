"""Difference-in-means directions in the residual stream, and the two interventions along them.

Algorithms only (no records, no prompt sets, no selection); the refusal
measurements build on them through :mod:`evidence.measure.methods.refusal_search`.
Method and references: ``docs/methods/refusal.direction.md``.

* **Candidate points.** The residual stream entering each block
  (``blocks.{L}.hook_resid_pre``, called layer ``L``) and the final residual
  stream (``blocks.{n-1}.hook_resid_post``, called layer ``n``), read at
  positions counted from the end of the prompt.
* **Directions.** Difference in means of the residual at one point and
  position, one set of prompts minus another (:func:`diff_in_means`).
* **Directional ablation** (:func:`ablation_hooks`). The direction ``r`` is
  removed from every block's residual input and every attention and MLP output
  (``hook_resid_pre``, ``hook_attn_out``, ``hook_mlp_out`` of every block, at
  every position), so no component can write it back: by ``projection``,
  ``x - (x . r) r`` (Arditi et al. 2024), or by the ``affine`` edit
  ``x - ((x . r) - c) r``, which sets the component to a reference value ``c``
  (Marshall, Scherlis and Belrose 2024).
* **Activation addition** (:func:`addition_hooks`). A vector added to the
  residual stream at one point, at every position or at the prompt positions only.

All interventions go through :func:`evidence.measure.hooks.scoped_hooks`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from evidence.errors import ConfigError, MeasurementError
from evidence.measure.hooks import (
    ActivationBuffer,
    HookFn,
    capture_at,
    position_offset,
    prompt_width,
    prompts_of_width,
    scoped_hooks,
    whole_sequence,
)
from evidence.measure.methods.batching import batch_keywords, columns, prompt_batches, run_batch
from evidence.model import LoadedModel
from evidence.records import DataRef

__all__ = [
    "Point",
    "ablation_hooks",
    "ablation_points",
    "activations_at",
    "addition_hooks",
    "affine_reference",
    "earlier_position_means",
    "candidate_points",
    "check_positions",
    "cosine",
    "degenerate",
    "diff_in_means",
    "direction_ref",
    "kl_divergence",
    "permute_labels",
    "split_half_cosines",
    "text_kl",
    "layer_limit",
    "projections",
    "random_unit_vectors",
    "residuals",
]

# A direction whose norm is below this fraction of the mean residual norm at its point is
# treated as absent (e.g. two sets whose tokens at that point coincide in the embedding).
_DEGENERATE_RELATIVE_NORM = 1e-6


# -- candidate points and directions -----------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """A place in the residual stream: layer ``L`` < n is the input of block L; ``n`` the final stream."""

    layer: int
    hook: str


def candidate_points(n_layers: int) -> list[Point]:
    """Every block's residual input, then the final residual stream."""
    points = [Point(layer, f"blocks.{layer}.hook_resid_pre") for layer in range(n_layers)]
    points.append(Point(n_layers, f"blocks.{n_layers - 1}.hook_resid_post"))
    return points


def layer_limit(n_layers: int, fraction: float) -> float:
    """The exclusive upper bound on a selectable layer index: ``fraction * n_layers``."""
    return fraction * n_layers


def check_positions(positions: Sequence[int], seqs: Sequence[Sequence[int]]) -> None:
    """Positions are distinct negative offsets that every prompt is long enough to have."""
    if not positions:
        raise ConfigError("positions must name at least one position")
    if any(p >= 0 for p in positions) or len(set(positions)) != len(positions):
        raise ConfigError(
            f"positions {list(positions)} must be distinct negative offsets from the end of the prompt",
            hint="e.g. [-1, -2, -3] for the last three prompt tokens",
        )
    shortest = min(len(s) for s in seqs)
    if shortest < max(-p for p in positions):
        raise MeasurementError(f"the shortest prompt has {shortest} tokens, too few for positions {list(positions)}")


@torch.no_grad()
def residuals(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    points: Sequence[Point],
    positions: Sequence[int],
    batch_size: int,
) -> torch.Tensor:
    """Residual activations ``[prompt, point, position, d_model]`` (float32), in input order."""
    return activations_at(model, seqs, [p.hook for p in points], positions, batch_size)


@torch.no_grad()
def activations_at(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    names: Sequence[str],
    positions: Sequence[int],
    batch_size: int,
) -> torch.Tensor:
    """Activations at hook points ``names`` and ``positions``: ``[prompt, name, position, d_model]``.

    ``positions`` count from the prompt's end (``-1`` its last token). Prompts run in the model's
    batches (:func:`~evidence.measure.methods.batching.prompt_batches`); only those positions
    are kept, picked inside the hooks.
    """
    buffer = ActivationBuffer(len(seqs), names, len(positions))
    for idx, batch in prompt_batches(model.bridge, seqs, batch_size):
        cols = columns(batch, positions)
        capture_at(model.bridge, names, batch.tokens, cols, buffer, idx, **batch_keywords(batch))
    result = buffer.values
    if not torch.isfinite(result).all():
        raise MeasurementError("the model's activations hold non-finite values")
    return result


@torch.no_grad()
def projections(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    point: Point,
    position: int,
    direction: torch.Tensor,
    batch_size: int,
) -> np.ndarray:
    """Per prompt, the residual at ``point`` and ``position`` projected onto the unit ``direction`` (float64)."""
    acts = residuals(model, seqs, [point], [position], batch_size)[:, 0, 0]
    unit = direction.double() / direction.double().norm()
    return np.asarray((acts.double() @ unit).numpy())


def diff_in_means(harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """Mean over prompts (dim 0) of ``harmful`` minus that of ``harmless`` (float64 accumulation)."""
    return (harmful.double().mean(dim=0) - harmless.double().mean(dim=0)).float()


def degenerate(direction: torch.Tensor, reference_norm: float) -> bool:
    """Whether ``direction`` is too small, relative to the residual norm, to define a direction."""
    return float(direction.norm()) <= _DEGENERATE_RELATIVE_NORM * max(reference_norm, 1e-30)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two vectors (0 if either is zero)."""
    na, nb = float(a.double().norm()), float(b.double().norm())
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a.double() @ b.double()) / (na * nb)


def random_unit_vectors(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` directions drawn uniformly from the unit sphere in ``d`` dimensions, ``[n, d]``."""
    v = torch.randn(n, d, generator=generator, dtype=torch.float64)
    out: torch.Tensor = (v / v.norm(dim=1, keepdim=True)).float()
    return out


def direction_ref(name: str, vector: torch.Tensor, description: str) -> DataRef:
    """A record's reference to a vector: sha256 of its float32 little-endian bytes."""
    data = vector.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
    return DataRef(
        name=name, sha256=hashlib.sha256(data).hexdigest(), count=int(vector.numel()), description=description
    )


# -- interventions -----------------------------------------------------------------------------


def ablation_points(model: LoadedModel) -> list[str]:
    """Every block's residual input, attention output and (if the model has MLPs) MLP output."""
    available = model.bridge.hook_dict
    names = []
    has_mlp = not bool(getattr(model.bridge.cfg, "attn_only", False))
    for layer in range(model.n_layers):
        kinds = ["hook_resid_pre", "hook_attn_out"] + (["hook_mlp_out"] if has_mlp else [])
        for kind in kinds:
            name = f"blocks.{layer}.{kind}"
            if name not in available:
                raise MeasurementError(
                    f"the model has no hook point {name!r}, so the direction cannot be ablated everywhere",
                    hint="directional ablation needs every block's residual input, attention and MLP outputs",
                )
            names.append(name)
    return names


def _project_out(unit: torch.Tensor) -> HookFn:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        r = unit.to(activation)
        return activation - (activation @ r)[..., None] * r

    return hook


def _clamp(unit: torch.Tensor, value: float) -> HookFn:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        r = unit.to(activation)
        return activation - ((activation @ r) - value)[..., None] * r

    return hook


def _clamp_per_position(unit: torch.Tensor, last: Mapping[int, float], rest: float) -> HookFn:
    # The reference of a position depends on its distance from the end of the sequence, so every step of a
    # generation edits the earlier positions anew: it cannot run one new position at a time.
    @whole_sequence
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        if position_offset():
            raise MeasurementError(
                f"the per-position edit at {hook.name} needs the whole sequence at every step",
                hint="generate with cache=False under this edit",
            )
        r = unit.to(activation)
        n = activation.shape[-2]
        c = torch.full((n,), rest, dtype=activation.dtype, device=activation.device)
        for offset, value in last.items():
            if -offset <= n:
                c[n + offset] = value
        return activation - ((activation @ r) - c)[..., None] * r

    return hook


#: Per hook point: the reference at each offset from the end of the sequence, and at every earlier position.
PositionReference = Mapping[str, tuple[Mapping[int, float], float]]


def ablation_hooks(
    model: LoadedModel,
    direction: torch.Tensor,
    reference: Mapping[str, float] | None = None,
    per_position: PositionReference | None = None,
) -> list[tuple[str, HookFn]]:
    """Hooks that remove ``direction`` (any norm) from the residual stream everywhere.

    Without a reference: projection, ``x - (x . r) r`` (Arditi et al.). With ``reference``: the
    affine edit ``x - ((x . r) - c) r``, where ``c = reference[hook name]`` is the component along
    ``r`` that harmless prompts have there (affine concept editing, Marshall et al. 2024). With
    ``per_position``: the affine edit with a reference value per position, counted from the end of
    the sequence (``per_position[hook] = ({-1: c1, -2: c2, ...}, c_earlier)``).
    """
    norm = float(direction.norm())
    if norm == 0.0:
        raise MeasurementError("cannot ablate a zero direction")
    unit = direction / norm
    names = ablation_points(model)
    if per_position is not None:
        return [(name, _clamp_per_position(unit, *per_position[name])) for name in names]
    if reference is None:
        fn = _project_out(unit)
        return [(name, fn) for name in names]
    return [(name, _clamp(unit, float(reference[name]))) for name in names]


def affine_reference(means: Mapping[str, torch.Tensor], direction: torch.Tensor) -> dict[str, float]:
    """Per hook point, the component along ``direction`` of the harmless mean activation ``means[name]``."""
    unit = direction.double() / direction.double().norm()
    return {name: float(mean.double() @ unit) for name, mean in means.items()}


@torch.no_grad()
def earlier_position_means(
    model: LoadedModel, seqs: Sequence[Sequence[int]], names: Sequence[str], last: int, batch_size: int
) -> dict[str, torch.Tensor]:
    """Per hook point, the mean activation over every prompt position before the last ``last`` ones, ``[d]``.

    Prompts run in the model's batches; each hook adds up its positions as it fires (pad slots
    and the last ``last`` positions weighted 0), so no whole activation is kept.
    """
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for _, batch in prompt_batches(model.bridge, seqs, batch_size):
        width = batch.tokens.shape[1]
        if width <= last:
            continue
        weights = batch.mask.clone()
        weights[:, width - last :] = 0
        count += int(weights.sum())
        hooks = [(name, _summing(name, weights, sums)) for name in names]
        with scoped_hooks(model.bridge, hooks):
            model.bridge(batch.tokens, **batch_keywords(batch))
    if count == 0:
        raise MeasurementError(f"no prompt is longer than {last} tokens, so earlier positions have no reference")
    return {name: (total / count).float() for name, total in sums.items()}


def _summing(name: str, weights: torch.Tensor, sums: dict[str, torch.Tensor]) -> HookFn:
    """A hook that adds the activation's positions, weighted by ``weights [batch, pos]``, to ``sums[name]``."""

    def hook(activation: torch.Tensor, hook: Any) -> None:
        w = weights.to(device=activation.device, dtype=torch.float64)
        part = torch.einsum("bp,bpd->d", w, activation.detach().double()).cpu()
        sums[name] = sums[name] + part if name in sums else part

    return hook


def addition_hooks(
    point: Point, vector: torch.Tensor, prompt_len: int | Literal["batch"] | None = None
) -> list[tuple[str, HookFn]]:
    """A hook that adds ``vector`` to the residual stream at ``point``.

    At every position, or, with ``prompt_len``, at the first ``prompt_len`` positions only (the
    prompt), so that generated tokens follow from the steered prompt without being steered
    (positions are absolute: a cached generation step, which sees only new positions, edits none).
    ``prompt_len="batch"``: the prompt columns of the batch being run
    (:func:`~evidence.measure.hooks.prompt_width`), for left-padded batches of prompts of mixed
    length, whose prompts all end at that column (pad slots are hidden by the attention mask).
    """

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        v = vector.to(activation)
        if prompt_len is None:
            return activation + v
        length = prompt_width() if prompt_len == "batch" else prompt_len
        end = length - position_offset()  # the prompt's end among the positions this pass sees
        if end <= 0:
            return activation
        out = activation.clone()
        out[:, :end] += v
        return out

    return [(point.hook, hook)]


# -- comparing outputs -------------------------------------------------------------------------


def kl_divergence(base_logits: torch.Tensor, new_logits: torch.Tensor) -> np.ndarray:
    """Per row, KL(P_base || P_new) of the next-token distributions, in nats."""
    p = torch.log_softmax(base_logits.double(), dim=-1)
    q = torch.log_softmax(new_logits.double(), dim=-1)
    kl = (p.exp() * (p - q)).sum(dim=-1).clamp(min=0.0)
    return np.asarray(kl.numpy(), dtype=np.float64)



@torch.no_grad()
def text_kl(
    model: LoadedModel, seqs: Sequence[Sequence[int]], hooks: Sequence[tuple[str, HookFn]], batch_size: int
) -> np.ndarray:
    """Per prompt, the mean KL (nats) of the next-token predictions inside the prompt, without vs with ``hooks``.

    Every position but the last (the response's first token) is read: the model predicting the
    prompt's own text. An edit that is meant to change only the response decision should leave
    these predictions alone, on harmful and harmless prompts alike.
    """
    if any(len(s) < 2 for s in seqs):
        raise MeasurementError("a prompt of one token has no text positions to read the KL on")
    out = np.zeros(len(seqs))
    for idx, batch in prompt_batches(model.bridge, seqs, batch_size):
        # The predictions read: every real position but the last (pad slots are never read).
        read = batch.mask[:, :-1].bool() & batch.mask[:, 1:].bool()
        with prompts_of_width(batch.tokens.shape[1]):
            base = run_batch(model.bridge, batch)[:, :-1, :]
            with scoped_hooks(model.bridge, list(hooks)):
                edited = run_batch(model.bridge, batch)[:, :-1, :]
        base, edited = base[read.to(base.device)], edited[read.to(edited.device)]
        kl = kl_divergence(base, edited)
        rows = read.sum(dim=1).tolist()
        for row, (i, part) in enumerate(zip(idx, np.split(kl, np.cumsum(rows)[:-1]), strict=True)):
            if len(part) != rows[row]:  # unreachable: the split follows the counts
                raise AssertionError("per-prompt KL split mismatch")
            out[i] = float(part.mean())
    return out

def split_half_cosines(
    harmful: torch.Tensor, harmless: torch.Tensor, n_splits: int, rng: np.random.Generator
) -> np.ndarray:
    """Cosines between difference-in-means directions from two disjoint halves of the prompts.

    ``harmful`` and ``harmless`` are ``[prompt, d_model]``; each split halves both sets at random
    (each half keeps both classes), computes one direction per half and their cosine.
    """
    out = np.zeros(n_splits)
    for k in range(n_splits):
        h = torch.from_numpy(rng.permutation(harmful.shape[0]))
        b = torch.from_numpy(rng.permutation(harmless.shape[0]))
        hh, bh = harmful.shape[0] // 2, harmless.shape[0] // 2
        first = diff_in_means(harmful[h[:hh]], harmless[b[:bh]])
        second = diff_in_means(harmful[h[hh:]], harmless[b[bh:]])
        out[k] = cosine(first, second)
    return out


def permute_labels(
    harmful: torch.Tensor, harmless: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pooled prompts dealt back into two sets of the same sizes at random: the label-permutation null."""
    pooled = torch.cat([harmful, harmless])
    order = torch.from_numpy(rng.permutation(pooled.shape[0]))
    return pooled[order[: harmful.shape[0]]], pooled[order[harmful.shape[0] :]]
