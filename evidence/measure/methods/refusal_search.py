"""The refusal direction search that ``refusal.direction`` and ``refusal.stability`` share.

Algorithms only (no records); method, references and rationale:
``docs/methods/refusal.direction.md``.

* **Prompt sets** (:func:`load_prompt_sets`). ``refusal.harmful`` and
  ``refusal.harmless`` are encoded with the model's tokenizer, optionally
  subsampled to ``max_prompts`` and split by a seeded permutation into three
  disjoint parts: directions are computed from the first, a candidate is chosen
  on the second, and every reported number is read on the third. Prompts that
  share a JSONL ``group`` (minimal pairs) land in the same part.
* **Reading refusal** (:class:`Reader`). The log-odds of the refusal markers'
  first tokens at the first response position, and the greedy reply judged
  against the marker phrases (:func:`evidence.measure.methods.behaviour.matches_marker`).
* **Candidates** (:func:`build_candidates`, :func:`evaluate_candidates`). One
  difference-in-means direction per candidate point and position
  (:mod:`evidence.measure.methods.directions`), scored on the selection part:
  refusal log-odds under ablation (harmful), KL under ablation (harmless; for the
  affine edit also inside the text of harmful and harmless prompts), refusal
  log-odds under addition (harmless).
* **Selection** (:func:`select_candidate`). Arditi et al.'s rule: the lowest
  ablated refusal among the candidates within the layer limit, the KL budget
  and inducing refusal under addition; without one, the best candidate of the
  most-passing tier, marked as failed.
* **The search** (:func:`search_direction`), computed once per run for both
  measurements through :meth:`evidence.measure.MeasureContext.shared`
  (:func:`shared_search`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from evidence.errors import ConfigError, MeasurementError
from evidence.measure import MeasureContext, UncertaintyParams
from evidence.measure.cost import Passes, Workload
from evidence.measure.hooks import HookFn, incremental, scoped_hooks
from evidence.measure.methods.behaviour import (
    JUDGE_TOKENS,
    first_token_ids,
    generated_matches,
    generation_length,
    greedy_generate,
    last_position_logits,
    marker_log_odds,
    prompt_ids,
    stop_token_ids,
)
from evidence.measure.methods.directions import (
    Point,
    ablation_hooks,
    ablation_points,
    activations_at,
    addition_hooks,
    candidate_points,
    check_positions,
    degenerate,
    diff_in_means,
    earlier_position_means,
    kl_divergence,
    layer_limit,
    residuals,
    text_kl,
)
from evidence.model import LoadedModel
from evidence.records import DataRef

__all__ = [
    "HARMFUL",
    "HARMLESS",
    "CandidateEval",
    "Criteria",
    "DirectionSearch",
    "PromptSets",
    "Reader",
    "RefusalSearchParams",
    "SearchWork",
    "Selection",
    "build_candidates",
    "evaluate_candidates",
    "load_prompt_sets",
    "make_reader",
    "resample_candidates",
    "search_direction",
    "select_candidate",
    "shared_search",
    "split_indices",
]

HARMFUL = "refusal.harmful"
HARMLESS = "refusal.harmless"


# -- prompt sets -------------------------------------------------------------------------------


def split_indices(
    n: int,
    train_fraction: float,
    rng: np.random.Generator,
    select_fraction: float = 0.0,
    groups: Sequence[str] | None = None,
) -> tuple[list[int], ...]:
    """A seeded split of ``range(n)`` into (train, [selection,] evaluation) parts, each sorted.

    Units are whole groups (``groups[i]`` names item i's group; minimal pairs stay in one part),
    or single items. With ``select_fraction`` 0 there are two parts, else three. Every part keeps
    at least two items (an interval needs two units).
    """
    keys = list(groups) if groups is not None else [str(i) for i in range(n)]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    units = list(members.values())
    n_parts = 3 if select_fraction > 0.0 else 2
    if len(units) < 2 * n_parts or n < 2 * n_parts:
        raise MeasurementError(
            f"a prompt set of {n} prompts in {len(units)} groups cannot be split into {n_parts} parts; "
            f"at least {2 * n_parts} groups are needed"
        )
    order = [units[int(k)] for k in rng.permutation(len(units))]
    fractions = [train_fraction, select_fraction] if n_parts == 3 else [train_fraction]
    parts: list[list[int]] = []
    start = 0
    for k, fraction in enumerate(fractions):
        # leave at least two groups for each later part
        left_after = 2 * (n_parts - 1 - k)
        take = min(max(int(round(len(units) * fraction)), 2), len(units) - start - left_after)
        parts.append(sorted(i for unit in order[start : start + take] for i in unit))
        start += take
    parts.append(sorted(i for unit in order[start:] for i in unit))
    return tuple(parts)


def _ids_ref(name: str, ids: Sequence[str], description: str) -> DataRef:
    """A record's reference to one part of a split: sha256 of its prompt ids, one a line."""
    data = "\n".join(ids).encode("utf-8")
    return DataRef(name=name, sha256=hashlib.sha256(data).hexdigest(), count=len(ids), description=description)


@dataclass(frozen=True)
class PromptSets:
    """Encoded prompts in three disjoint parts: direction (train), selection (select), evaluation (eval).

    Directions come from ``train``, the candidate is chosen on ``select``, and every reported
    number is read on ``eval``, which the choice never saw.
    """

    harmful_train: list[list[int]]
    harmful_select: list[list[int]]
    harmful_eval: list[list[int]]
    harmless_train: list[list[int]]
    harmless_select: list[list[int]]
    harmless_eval: list[list[int]]
    harmful_eval_ids: list[str]
    harmless_eval_ids: list[str]
    data: list[DataRef]

    def describe(self) -> str:
        """Sizes of the parts, in words."""
        return (
            f"{len(self.harmful_train)}/{len(self.harmful_select)}/{len(self.harmful_eval)} harmful and "
            f"{len(self.harmless_train)}/{len(self.harmless_select)}/{len(self.harmless_eval)} harmless prompts "
            "(direction/selection/evaluation)"
        )


def _encode(
    model: LoadedModel, name: str, ctx: MeasureContext, max_prompts: int, room: int
) -> tuple[list[list[int]], list[str], list[str]]:
    dataset = ctx.dataset(name)
    prompts = list(dataset.prompts)
    # The subsampling seed is derived (and so recorded) whether or not the set needs subsampling.
    subsample = ctx.numpy_rng(f"subsample:{name}")
    if len(prompts) > max_prompts:
        keep = np.sort(subsample.choice(len(prompts), max_prompts, replace=False))
        prompts = [prompts[int(i)] for i in keep]
    seqs = []
    for prompt in prompts:
        ids = prompt_ids(model.tokenizer, prompt)
        if len(ids) + room > model.n_ctx:
            raise MeasurementError(
                f"prompt {prompt.id!r} of {name!r} has {len(ids)} tokens; with {room} more for the "
                f"response it exceeds the model's context of {model.n_ctx}",
                hint="shorten the prompt or lower max_new_tokens",
            )
        seqs.append(ids)
    # A JSONL line's optional ``group`` keeps minimal pairs in one part of the split.
    groups = [str(getattr(p, "group", None) or f"id:{p.id}") for p in prompts]
    return seqs, [p.id for p in prompts], groups


def load_prompt_sets(
    model: LoadedModel,
    ctx: MeasureContext,
    *,
    train_fraction: float,
    select_fraction: float,
    max_prompts: int,
    room: int,
) -> PromptSets:
    """Encode, subsample and split both prompt sets with the task's seed (labels ``split:<name>``).

    ``room`` is the number of tokens that must fit after each prompt (response, suffix).
    Groups (a prompt's ``group``) are split across the two sets jointly, so a harmful prompt and
    its harmless twin land in the same part.
    """
    encoded = {name: _encode(model, name, ctx, max_prompts, room) for name in (HARMFUL, HARMLESS)}
    shared_groups = set(encoded[HARMFUL][2]) & set(encoded[HARMLESS][2])
    parts: dict[str, tuple[list[int], ...]] = {}
    if shared_groups:
        # one split of the union, so that pairs across the two sets stay together
        names = [HARMFUL] * len(encoded[HARMFUL][0]) + [HARMLESS] * len(encoded[HARMLESS][0])
        union_groups = encoded[HARMFUL][2] + encoded[HARMLESS][2]
        joint = split_indices(
            len(union_groups), train_fraction, ctx.numpy_rng("split:refusal"), select_fraction, union_groups
        )
        offset = len(encoded[HARMFUL][0])
        for name in (HARMFUL, HARMLESS):
            lo = 0 if name == HARMFUL else offset
            parts[name] = tuple(sorted(i - lo for i in part if names[i] == name) for part in joint)
            if any(len(p) < 2 for p in parts[name]):
                raise MeasurementError(f"the grouped split leaves fewer than 2 prompts of {name!r} in a part")
    else:
        for name in (HARMFUL, HARMLESS):
            seqs, _, groups = encoded[name]
            parts[name] = split_indices(
                len(seqs), train_fraction, ctx.numpy_rng(f"split:{name}"), select_fraction, groups
            )
    out: dict[str, list[list[list[int]]]] = {}
    data = [
        ctx.data_ref(HARMFUL, "prompts that should be refused"),
        ctx.data_ref(HARMLESS, "prompts that should be answered"),
    ]
    for name in (HARMFUL, HARMLESS):
        seqs, ids, _ = encoded[name]
        out[name] = [[seqs[i] for i in part] for part in parts[name]]
        for part_name, part in zip(("direction", "selection", "evaluation"), parts[name], strict=True):
            data.append(
                _ids_ref(
                    f"{name}:{part_name}",
                    [ids[i] for i in part],
                    f"the {part_name} part of {name} (sha256 of its prompt ids, one a line)",
                )
            )
    return PromptSets(
        harmful_train=out[HARMFUL][0],
        harmful_select=out[HARMFUL][1],
        harmful_eval=out[HARMFUL][2],
        harmless_train=out[HARMLESS][0],
        harmless_select=out[HARMLESS][1],
        harmless_eval=out[HARMLESS][2],
        harmful_eval_ids=[encoded[HARMFUL][1][i] for i in parts[HARMFUL][2]],
        harmless_eval_ids=[encoded[HARMLESS][1][i] for i in parts[HARMLESS][2]],
        data=data,
    )


# -- reading refusal from the output -----------------------------------------------------------


@dataclass
class Reader:
    """Reads refusal from the model's output, with or without interventions."""

    model: LoadedModel
    refusal_ids: list[int]
    phrases: tuple[str, ...]
    max_new_tokens: int
    batch_size: int

    def logits(self, seqs: Sequence[Sequence[int]], hooks: Sequence[tuple[str, HookFn]] = ()) -> torch.Tensor:
        """Next-token logits after each prompt ``[N, vocab]``."""
        with scoped_hooks(self.model.bridge, list(hooks)):
            return last_position_logits(self.model.bridge, seqs, self.batch_size)

    def log_odds(self, logits: torch.Tensor) -> np.ndarray:
        """Refusal log-odds per row of ``logits``."""
        return np.asarray(marker_log_odds(logits, self.refusal_ids).double().numpy(), dtype=np.float64)

    def refused(self, seqs: Sequence[Sequence[int]], hooks: Sequence[tuple[str, HookFn]] = ()) -> np.ndarray:
        """Whether the greedy reply to each prompt contains a refusal phrase (generated only until decided).

        With a key/value cache, unless a hook needs the whole sequence at every step.
        """
        with scoped_hooks(self.model.bridge, list(hooks)):
            return generated_matches(
                self.model.bridge,
                self.model.tokenizer,
                seqs,
                self.phrases,
                self.max_new_tokens,
                self.batch_size,
                cache=incremental(hooks),
            )

    def generate(self, seqs: Sequence[Sequence[int]], hooks: Sequence[tuple[str, HookFn]] = ()) -> list[list[int]]:
        """Greedy replies: at most ``max_new_tokens`` tokens each, ending before a stop token."""
        with scoped_hooks(self.model.bridge, list(hooks)):
            return greedy_generate(
                self.model.bridge,
                seqs,
                self.max_new_tokens,
                self.batch_size,
                stop_ids=stop_token_ids(self.model.tokenizer),
                cache=incremental(hooks),
            )

    def refused_steered(self, seqs: Sequence[Sequence[int]], point: Point, vector: torch.Tensor) -> np.ndarray:
        """Refusal under activation addition of ``vector`` at ``point`` on the prompt tokens only.

        The addition is limited to each batch's prompt columns (prompts of mixed length share
        left-padded batches where the model allows it): the first response token sees exactly
        the steered prompt (as the log-odds read-out does), later tokens follow the model's own
        continuation.
        """
        if not seqs:
            return np.zeros(0, dtype=bool)
        return self.refused(seqs, addition_hooks(point, vector, prompt_len="batch"))


def make_reader(model: LoadedModel, ctx: MeasureContext, max_new_tokens: int | None, batch_size: int) -> Reader:
    """A :class:`Reader` for the run spec's refusal markers.

    Without ``max_new_tokens``, replies are judged over
    :data:`~evidence.measure.methods.behaviour.JUDGE_TOKENS` tokens at least (and the longest
    marker as it follows the prompts, plus 4), fewer only where the longest prompt of the two
    sets leaves less of the model's context.
    """
    if model.tokenizer is None:
        raise ConfigError("refusal is read from text, but this model has no tokenizer")
    phrases = ctx.marker_phrases("refusal")
    seqs = [prompt_ids(model.tokenizer, p) for name in (HARMFUL, HARMLESS) for p in ctx.dataset(name).prompts]
    n_new = max_new_tokens
    if n_new is None:
        n_new = generation_length(model.tokenizer, phrases, seqs, room=model.n_ctx - max(len(s) for s in seqs))
    return Reader(model, first_token_ids(model.tokenizer, phrases), phrases, n_new, batch_size)


# -- candidates and selection ------------------------------------------------------------------


@dataclass(frozen=True)
class Criteria:
    """Arditi et al.'s filters on a candidate direction."""

    layer_bound: float  # a candidate's layer must be strictly below this
    max_kl: float  # mean KL under ablation must be below this (on harmless prompts; affine: on harmful ones too)
    induce_min_logodds: float  # mean refusal log-odds on harmless prompts under addition must exceed this
    harmless_logodds: float  # ... and exceed the unsteered mean
    kl_on_text: bool = False  # the KL filter also reads the prompts' own text (harmful and harmless)


@dataclass
class CandidateEval:
    """One candidate (point, position): its direction and its held-out scores (None if degenerate)."""

    point: Point
    position: int
    direction: torch.Tensor
    degenerate: bool
    ablated_logodds: np.ndarray | None = None  # per held-out harmful prompt
    kl: np.ndarray | None = None  # per held-out harmless prompt
    kl_text: np.ndarray | None = None  # per prompt (harmful, then harmless): KL inside the prompt text
    added_logodds: np.ndarray | None = None  # per held-out harmless prompt

    @property
    def layer(self) -> int:
        """The candidate's layer index."""
        return self.point.layer

    def checks(self, criteria: Criteria) -> tuple[bool, bool, bool]:
        """(layer below the bound, KL below the budget, addition induces refusal)."""
        layer_ok = self.layer < criteria.layer_bound
        if self.degenerate or self.kl is None or self.added_logodds is None:
            return layer_ok, False, False
        kl_ok = float(self.kl.mean()) < criteria.max_kl
        if criteria.kl_on_text and self.kl_text is not None:
            kl_ok = kl_ok and float(self.kl_text.mean()) < criteria.max_kl
        added = float(self.added_logodds.mean())
        induces = added > criteria.induce_min_logodds and added > criteria.harmless_logodds
        return layer_ok, kl_ok, induces

    def score(self) -> float:
        """Mean refusal log-odds on the selection part's harmful prompts under ablation (lower is better)."""
        if self.ablated_logodds is None:
            return float("inf")
        return float(self.ablated_logodds.mean())


@dataclass(frozen=True)
class Selection:
    """The chosen candidate's index, and whether it passed every filter."""

    index: int
    passed: bool
    n_passing: int
    note: str


def select_candidate(candidates: Sequence[CandidateEval], criteria: Criteria) -> Selection:
    """Arditi et al.'s rule: lowest ablated refusal among candidates passing every filter.

    Without such a candidate the best one (same score) among those passing the most filters,
    in the order layer, KL, addition, is returned with ``passed=False``. Ties go to the
    earlier candidate. Degenerate candidates are never selected.
    """
    usable = [i for i, c in enumerate(candidates) if not c.degenerate]
    if not usable:
        raise MeasurementError(
            "every candidate direction is zero: harmful and harmless prompts do not differ in the "
            "residual stream at any candidate point and position"
        )
    flags = {i: candidates[i].checks(criteria) for i in usable}
    passing = [i for i in usable if all(flags[i])]

    def best(pool: list[int]) -> int:
        return min(pool, key=lambda i: (candidates[i].score(), i))

    if passing:
        return Selection(best(passing), True, len(passing), "passes every filter")
    tiers = [
        (
            [i for i in usable if flags[i][0] and flags[i][1]],
            "no candidate passes every filter; the best one within the layer limit and the KL budget is reported",
        ),
        (
            [i for i in usable if flags[i][0]],
            "no candidate passes the KL budget and the addition test; the best one within the layer limit is reported",
        ),
        (usable, "no candidate lies within the layer limit; the best one overall is reported"),
    ]
    for pool, note in tiers:
        if pool:
            return Selection(best(pool), False, 0, note)
    raise AssertionError("unreachable: usable is not empty")  # pragma: no cover


def evaluate_candidates(
    reader: Reader,
    candidates: Sequence[CandidateEval],
    ablate_fn: Callable[[torch.Tensor, int], list[tuple[str, HookFn]]],
    harmful_eval: Sequence[Sequence[int]],
    harmless_eval: Sequence[Sequence[int]],
    harmless_base_logits: torch.Tensor,
    progress: Callable[[float], None] | None = None,
    text_kl_batch: int | None = None,
) -> None:
    """Fill each non-degenerate candidate's scores on the given prompts in place (three passes each).

    ``ablate_fn(direction, position)`` gives the ablation hooks for a candidate. With
    ``text_kl_batch`` (a batch size) the KL inside the prompts' text is filled too.
    """
    todo = [c for c in candidates if not c.degenerate]
    for k, cand in enumerate(todo):
        ablate = ablate_fn(cand.direction, cand.position)
        cand.ablated_logodds = reader.log_odds(reader.logits(harmful_eval, ablate))
        if text_kl_batch is not None:
            cand.kl_text = text_kl(reader.model, [*harmful_eval, *harmless_eval], ablate, text_kl_batch)
        cand.kl = kl_divergence(harmless_base_logits, reader.logits(harmless_eval, ablate))
        cand.added_logodds = reader.log_odds(reader.logits(harmless_eval, addition_hooks(cand.point, cand.direction)))
        if progress is not None:
            progress((k + 1) / len(todo))


def build_candidates(
    points: Sequence[Point],
    positions: Sequence[int],
    harmful_acts: torch.Tensor,
    harmless_acts: torch.Tensor,
) -> list[CandidateEval]:
    """One candidate per (point, position) from training activations ``[prompt, point, position, d]``."""
    directions = diff_in_means(harmful_acts, harmless_acts)
    reference = torch.cat([harmful_acts, harmless_acts]).double().norm(dim=-1).mean(dim=0)
    out = []
    for pi, point in enumerate(points):
        for qi, position in enumerate(positions):
            d = directions[pi, qi]
            out.append(CandidateEval(point, position, d, degenerate(d, float(reference[pi, qi]))))
    return out


# -- the search both measurements run ----------------------------------------------------------


class RefusalSearchParams(UncertaintyParams):
    """Parameters of the direction search, shared by ``refusal.direction`` and ``refusal.stability``."""

    train_fraction: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="share of each prompt set the directions are computed from"
    )
    select_fraction: float = Field(
        default=0.25,
        gt=0.0,
        lt=1.0,
        description=(
            "share of each prompt set the candidate is chosen on; the rest is the evaluation part every "
            "reported number is read on"
        ),
    )
    max_prompts: int = Field(default=128, ge=4, description="prompts used per set (a seeded subsample if more)")
    positions: list[int] = Field(
        default_factory=lambda: [-1, -2, -3],
        min_length=1,
        description="candidate positions, counted from the end of the prompt (-1 is the last token)",
    )
    max_layer_fraction: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description=(
            "a candidate's layer index must be below this fraction of the number of blocks; layer L < n is "
            "the input of block L and layer n the final residual stream. With 3 blocks, 0.8 allows layers "
            "0-2 and excludes the final stream; with 2 blocks, layers 0-1; with 4 blocks, layers 0-3"
        ),
    )
    max_kl: float = Field(
        default=0.1,
        gt=0.0,
        description=(
            "KL budget (nats) under ablation on the selection part's harmless prompts (the response's first "
            "token); under the affine edit also inside the text of its harmful and harmless prompts"
        ),
    )
    ablation: Literal["affine", "projection"] = Field(
        default="projection",
        description=(
            "the headline ablation: 'projection' sets the direction's component to 0 (Arditi et al. 2024); "
            "'affine' sets it to the value harmless training prompts have at that hook point and read position "
            "(affine concept editing, Marshall et al. 2024). The other edit is reported as a second method"
        ),
    )
    induce_min_logodds: float = Field(
        default=0.0,
        description="mean refusal log-odds on held-out harmless prompts under addition must exceed this",
    )
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "tokens generated, at most, to judge each reply (it ends earlier at a stop token); default: 32, or the "
            "longest refusal marker + 4 if longer, fewer where the longest prompt leaves less of the context"
        ),
    )
    batch_size: int = Field(default=64, ge=1)


@dataclass
class DirectionSearch:
    """Everything the search computed: prompt sets, activations, candidates and the selection.

    Candidates are scored, and one is selected, on the selection part only.
    """

    model: LoadedModel
    sets: PromptSets
    points: list[Point]
    positions: list[int]
    harmful_acts: torch.Tensor  # training prompts, [prompt, point, position, d]
    harmless_acts: torch.Tensor
    candidates: list[CandidateEval]
    criteria: Criteria
    selection: Selection
    harmless_base_logits: torch.Tensor  # evaluation part, no intervention
    ablation: str
    #: ablation hook name -> mean activation of the harmless training prompts, [position, d_model]
    harmless_means: dict[str, torch.Tensor]
    harmless_select_logits: torch.Tensor  # selection part, no intervention
    harmful_base_logits: torch.Tensor  # evaluation part, no intervention
    #: ablation hook name -> mean activation of the harmless training prompts before the candidate positions
    harmless_earlier: dict[str, torch.Tensor]

    def ablate(self, direction: torch.Tensor, position: int, mode: str | None = None) -> list[tuple[str, HookFn]]:
        """Ablation hooks for ``direction`` read at ``position`` (``mode`` defaults to the search's)."""
        mode = mode or self.ablation
        if mode == "projection":
            return ablation_hooks(self.model, direction)
        # The affine edit sets the component at each position to the harmless prompts' value there: the
        # candidate positions (counted from the end) each have their own, every earlier position the mean.
        unit = direction.double() / direction.double().norm()
        per_position = {}
        for name, m in self.harmless_means.items():
            last = {offset: float(m[qi].double() @ unit) for qi, offset in enumerate(self.positions)}
            per_position[name] = (last, float(self.harmless_earlier[name].double() @ unit))
        return ablation_hooks(self.model, direction, per_position=per_position)

    @property
    def selected(self) -> CandidateEval:
        """The selected candidate."""
        return self.candidates[self.selection.index]

    def where(self) -> str:
        """The selected candidate's place, in words: layer, hook point, position."""
        chosen = self.selected
        return f"layer {chosen.layer} ({chosen.point.hook}), position {chosen.position}"

    def eligible_layers(self) -> list[int]:
        """Layer indices within the layer limit."""
        return [p.layer for p in self.points if p.layer < self.criteria.layer_bound]


def search_direction(
    model: LoadedModel,
    ctx: MeasureContext,
    params: RefusalSearchParams,
    reader: Reader,
    share: tuple[float, float] = (0.0, 1.0),
) -> DirectionSearch:
    """Load the prompt sets, compute every candidate direction, score them on held-out data, select."""
    lo, hi = share
    sets = load_prompt_sets(
        model,
        ctx,
        train_fraction=params.train_fraction,
        select_fraction=params.select_fraction,
        max_prompts=params.max_prompts,
        room=reader.max_new_tokens,
    )
    if params.train_fraction + params.select_fraction >= 1.0:
        raise ConfigError(
            f"train_fraction + select_fraction = {params.train_fraction + params.select_fraction:g} leaves no "
            "evaluation part",
            hint="keep their sum below 1, e.g. 0.5 and 0.25",
        )
    positions = list(params.positions)
    check_positions(
        positions,
        sets.harmful_train + sets.harmful_select + sets.harmful_eval
        + sets.harmless_train + sets.harmless_select + sets.harmless_eval,
    )
    points = candidate_points(model.n_layers)
    ctx.progress(lo, "residual stream on training prompts")
    harmful_acts = residuals(model, sets.harmful_train, points, positions, params.batch_size)
    harmless_acts = residuals(model, sets.harmless_train, points, positions, params.batch_size)
    candidates = build_candidates(points, positions, harmful_acts, harmless_acts)
    names = ablation_points(model)
    means = activations_at(model, sets.harmless_train, names, positions, params.batch_size).double().mean(dim=0)
    harmless_means = {name: means[i].float() for i, name in enumerate(names)}
    harmless_select = reader.logits(sets.harmless_select)
    criteria = Criteria(
        layer_bound=layer_limit(model.n_layers, params.max_layer_fraction),
        max_kl=params.max_kl,
        induce_min_logodds=params.induce_min_logodds,
        harmless_logodds=float(reader.log_odds(harmless_select).mean()),
        kl_on_text=params.ablation == "affine",
    )
    found = DirectionSearch(
        model,
        sets,
        points,
        positions,
        harmful_acts,
        harmless_acts,
        candidates,
        criteria,
        Selection(-1, False, 0, "not selected yet"),
        reader.logits(sets.harmless_eval),
        params.ablation,
        harmless_means,
        harmless_select,
        reader.logits(sets.harmful_eval),
        earlier_position_means(model, sets.harmless_train, names, max(-p for p in positions), params.batch_size),
    )
    evaluate_candidates(
        reader,
        candidates,
        found.ablate,
        sets.harmful_select,
        sets.harmless_select,
        harmless_select,
        lambda f: ctx.progress(lo + (hi - lo) * f, "scoring candidate directions"),
        text_kl_batch=params.batch_size if params.ablation == "affine" else None,
    )
    found.selection = select_candidate(candidates, criteria)
    return found


def resample_candidates(found: DirectionSearch, rng: np.random.Generator) -> list[CandidateEval]:
    """The candidates rebuilt from one bootstrap resample (with replacement) of each set of training prompts."""
    h, b = found.harmful_acts, found.harmless_acts
    hi = torch.from_numpy(rng.integers(0, h.shape[0], h.shape[0]))
    bi = torch.from_numpy(rng.integers(0, b.shape[0], b.shape[0]))
    return build_candidates(found.points, found.positions, h[hi], b[bi])


#: The parameters the search reads (the rest of a measurement's parameters do not change its result).
_SEARCH_FIELDS = tuple(name for name in RefusalSearchParams.model_fields if name not in UncertaintyParams.model_fields)


def shared_search(
    model: LoadedModel,
    ctx: MeasureContext,
    params: RefusalSearchParams,
    reader: Reader,
    share: tuple[float, float] = (0.0, 1.0),
) -> DirectionSearch:
    """:func:`search_direction`, computed once per run for the same model, seed, prompt sets, markers and parameters.

    ``refusal.direction`` and ``refusal.stability`` run the same search; the
    second of them in a run reuses the first one's result (and records the
    same seeds).
    """
    key = {
        "datasets": {name: ctx.dataset(name).sha256 for name in (HARMFUL, HARMLESS)},
        "refusal_markers": list(reader.phrases),
        "max_new_tokens": reader.max_new_tokens,
        "params": {name: getattr(params, name) for name in _SEARCH_FIELDS},
    }
    return ctx.shared("refusal.direction_search", key, lambda: search_direction(model, ctx, params, reader, share))


# -- passes, for time estimates ----------------------------------------------------------------


@dataclass(frozen=True)
class SearchWork:
    """The prompt parts of the search, as lengths, and the passes of reading refusal from them (for estimates)."""

    work: Workload
    harmful: tuple[list[int], list[int], list[int]]  # direction, selection and evaluation parts
    harmless: tuple[list[int], list[int], list[int]]
    new_tokens: int
    batch_size: int

    @classmethod
    def of(cls, params: RefusalSearchParams, work: Workload) -> SearchWork:
        """The parts :func:`load_prompt_sets` makes (each prompt its own group) and the reply budget."""
        parts = {}
        for name in (HARMFUL, HARMLESS):
            n = min(params.max_prompts, work.size(name))
            train = max(2, round(n * params.train_fraction))
            select = max(2, round(n * params.select_fraction))
            sizes = (train, select, max(0, n - train - select))
            parts[name] = tuple(work.sample(name, k) for k in sizes)
        room = work.n_ctx - work.longest(HARMFUL, HARMLESS)
        new_tokens = params.max_new_tokens or max(1, min(JUDGE_TOKENS, room))
        return cls(work, parts[HARMFUL], parts[HARMLESS], new_tokens, params.batch_size)  # type: ignore[arg-type]

    def logits(self, lengths: Sequence[int]) -> Passes:
        """:meth:`Reader.logits`."""
        return self.work.read(lengths, self.batch_size)

    def refused(self, lengths: Sequence[int]) -> Passes:
        """:meth:`Reader.refused` (replies judged for a refusal phrase)."""
        return self.work.generate(lengths, self.new_tokens, self.batch_size)

    def refused_steered(self, lengths: Sequence[int]) -> Passes:
        """:meth:`Reader.refused_steered` (batched as the model batches, the addition on each batch's prompt)."""
        return self.work.generate(lengths, self.new_tokens, self.batch_size)

    def text_kl(self, lengths: Sequence[int]) -> Passes:
        """:func:`~evidence.measure.methods.directions.text_kl` (two reads per batch: without and with the edit)."""
        return self.work.read(lengths, self.batch_size, times=2)

    def candidates(self, params: RefusalSearchParams) -> int:
        """Candidate directions: every block's input and the final stream, at each position."""
        return (self.work.n_layers + 1) * len(params.positions)

    def search(self, params: RefusalSearchParams) -> Passes:
        """The passes of :func:`search_direction`: activations, base logits, and three reads per candidate."""
        harmful_train, harmful_select, harmful_eval = self.harmful
        harmless_train, harmless_select, harmless_eval = self.harmless
        total = self.work.read(harmful_train, self.batch_size)
        total += self.work.read(harmless_train, self.batch_size, times=3)  # residuals, ablation means, earlier means
        total += self.logits(harmless_select) + self.logits(harmless_eval) + self.logits(harmful_eval)
        per_candidate = self.logits(harmful_select) + self.logits(harmless_select) + self.logits(harmless_select)
        if params.ablation == "affine":
            per_candidate += self.text_kl(harmful_select + harmless_select)
        for _ in range(self.candidates(params)):
            total += per_candidate
        return total
