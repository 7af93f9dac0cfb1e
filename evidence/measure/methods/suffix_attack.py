"""The gradient-guided adversarial suffix search against refusal (GCG-style; Zou et al. 2023).

Used by ``refusal.stability``; method and budget: ``docs/methods/refusal.stability.md``.

Each attacked prompt gets its own suffix of ``suffix_len`` tokens, inserted just
before the template's closing tokens (for the organisms ``assistant :``), so the
prompt still ends the way the model expects a response to start. The objective
is the refusal log-odds of the markers' first token at the first response
position (:func:`evidence.measure.methods.behaviour.marker_log_odds`), to be lowered,
or the log-odds of the helpful markers' first token, to be raised (``sign``
-1): either way the search minimises ``sign * log-odds``.

One step, for every prompt at once:

1. The gradient of the objective with respect to a one-hot encoding of the
   suffix tokens, taken through the suffix rows of the token embedding
   (:func:`evidence.measure.methods.suffixes.one_hot_gradient_hook`), in the
   model's batches (:func:`evidence.measure.methods.batching.prompt_batches`:
   prompts of mixed length left-padded together where the model honours
   padding). The suffix sits before the closing template tokens, so in a
   left-padded batch it occupies the same columns in every row.
2. For each suffix position, the ``top_k`` allowed tokens with the most negative
   gradient.
3. ``n_candidates`` single-token substitutions, each at a random suffix position
   with a random token among that position's top-k (a seeded generator).
4. Every candidate is evaluated exactly (a forward pass); the prompt's suffix
   moves to the best candidate if it lowers the objective.

The search starts from a random suffix (allowed tokens drawn uniformly), which
is also the random-suffix baseline. At checkpoint steps the current suffixes
are decoded greedily and matched against the refusal markers; the search stops
early once no attacked prompt refuses. The budget is ``steps`` ×
``n_candidates`` forward evaluations per prompt (plus one gradient per step).

The search works in token space: for a sub-word tokenizer the suffix may not
survive a round trip through text, which is stated with the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from evidence.errors import ConfigError, MeasurementError
from evidence.measure.hooks import scoped_hooks
from evidence.measure.methods.batching import PaddedBatch, prompt_batches, run_batch
from evidence.measure.methods.behaviour import marker_log_odds
from evidence.measure.methods.suffixes import allowed_tokens, insert_suffix, one_hot_gradient_hook
from evidence.model import LoadedModel

__all__ = [
    "AttackResult",
    "checkpoint_steps",
    "common_suffix_length",
    "gcg_attack",
    "resolve_objective",
    "template_end",
]


def common_suffix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token suffix shared by every sequence (at most the shortest minus one)."""
    if not seqs:
        return 0
    limit = min(len(s) for s in seqs) - 1
    n = 0
    while n < limit and len({s[len(s) - 1 - n] for s in seqs}) == 1:
        n += 1
    return n


def template_end(seqs: Sequence[Sequence[int]], template_end_tokens: int | None) -> int:
    """Closing template tokens the suffix goes before: ``template_end_tokens``, or the prompts' common suffix.

    Refused (ConfigError) when it leaves no room for a suffix in the shortest prompt.
    """
    end_len = template_end_tokens if template_end_tokens is not None else common_suffix_length(seqs)
    if end_len >= min(len(s) for s in seqs):
        raise ConfigError(
            f"template_end_tokens={end_len} leaves no room for a suffix in the shortest harmful prompt",
            hint="lower template_end_tokens",
        )
    return end_len


def resolve_objective(objective: str, helpful: Sequence[str]) -> str:
    """The markers the search optimises: ``auto`` is ``helpful`` when helpful markers are given, else ``refusal``."""
    if objective == "auto":
        objective = "helpful" if helpful else "refusal"
    if objective == "helpful" and not helpful:
        raise ConfigError(
            "attack_objective = 'helpful' needs [markers].helpful in the run spec", hint='e.g. helpful = ["Sure"]'
        )
    return objective


def checkpoint_steps(steps: int) -> list[int]:
    """0, 1, 2, 4, 8, ... and ``steps`` itself: where the attack is read out."""
    out = [0]
    k = 1
    while k < steps:
        out.append(k)
        k *= 2
    if steps > 0:
        out.append(steps)
    return out


@dataclass
class AttackResult:
    """Final suffixes and the search's history."""

    suffixes: list[list[int]]
    initial_suffixes: list[list[int]]
    initial_objective: np.ndarray
    final_objective: np.ndarray
    steps_used: int
    evaluations: int  # candidate forward evaluations per prompt
    curve: list[tuple[int, np.ndarray, float]] = field(default_factory=list)  # (step, refused flags, mean objective)


def _embedding_matrix(model: LoadedModel) -> torch.Tensor:
    w = getattr(model.bridge, "W_E", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise MeasurementError(
            "the model exposes no token embedding matrix W_E, so token gradients cannot be computed",
            hint="the adversarial suffix search needs a standard token embedding",
        )
    return w.detach()


def _objective(
    model: LoadedModel,
    batch: PaddedBatch,
    marker_ids: Sequence[int],
    start: int,
    length: int,
    w_e: torch.Tensor,
    sign: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row objective (``sign`` x log-odds) and its gradient w.r.t. the one-hot suffix ``[rows, length, vocab]``.

    The suffix occupies columns ``[start, start + length)`` of every row of ``batch``; each row's
    prompt ends at the batch's last column.
    """
    suffix = batch.tokens[:, start : start + length].to(w_e.device)
    one_hot = F.one_hot(suffix, w_e.shape[0]).to(w_e.dtype).requires_grad_(True)
    embed = one_hot_gradient_hook(start, one_hot @ w_e)
    with torch.enable_grad(), scoped_hooks(model.bridge, [("hook_embed", embed)]):
        logits = run_batch(model.bridge, batch)
        values = sign * marker_log_odds(logits[:, -1, :], marker_ids)
        (grad,) = torch.autograd.grad(values.sum(), one_hot)
    return values.detach().double().cpu(), grad.cpu()


@torch.no_grad()
def _score(
    model: LoadedModel, tokens: torch.Tensor, marker_ids: Sequence[int], batch_size: int, sign: float
) -> torch.Tensor:
    out = []
    for s in range(0, tokens.shape[0], batch_size):
        logits = model.bridge(tokens[s : s + batch_size])[:, -1, :]
        out.append(sign * marker_log_odds(logits, marker_ids).double())
    values = torch.cat(out)
    if not torch.isfinite(values).all():
        raise MeasurementError("the model produced non-finite logits during the suffix search")
    return values


def gcg_attack(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    *,
    objective_ids: Sequence[int],
    sign: float,
    end_len: int,
    suffix_len: int,
    steps: int,
    top_k: int,
    n_candidates: int,
    batch_size: int,
    generator: torch.Generator,
    refused: Callable[[list[list[int]]], np.ndarray],
    progress: Callable[[float], None] | None = None,
    exclude: Sequence[int] = (),
) -> AttackResult:
    """Search a suffix for each of ``seqs`` that lowers ``sign`` x the log-odds of ``objective_ids``.

    ``refused(sequences)`` reads refusal from generated text; it is called at the checkpoints.
    ``exclude``: token ids the suffix may not use (besides special tokens), e.g. template and trigger tokens.
    """
    if not seqs:
        raise MeasurementError("there are no prompts to attack")
    w_e = _embedding_matrix(model)
    mask = allowed_tokens(model)
    if exclude:
        mask[[int(i) for i in exclude if 0 <= int(i) < mask.numel()]] = False
        if int(mask.sum()) < 2:
            raise MeasurementError("fewer than two tokens are left to build a suffix from after the exclusions")
    allowed = torch.nonzero(mask).flatten()
    top_k = min(top_k, int(allowed.numel()))
    n = len(seqs)
    suffixes = allowed[torch.randint(0, allowed.numel(), (n, suffix_len), generator=generator)]
    initial = suffixes.clone()
    # The candidates of a prompt share its length; prompts of equal length are scored together.
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(len(s), []).append(i)
    current = torch.full((n,), float("inf"), dtype=torch.float64)
    checkpoints = set(checkpoint_steps(steps))
    curve: list[tuple[int, np.ndarray, float]] = []
    initial_objective: np.ndarray | None = None
    steps_used = 0

    def full(i: int, suffix: torch.Tensor) -> list[int]:
        return insert_suffix(seqs[i], suffix.tolist(), end_len)

    for step in range(steps + 1):
        # Gradient at the current suffixes (also their exact objective), in the model's batches.
        top = torch.empty((n, suffix_len, top_k), dtype=torch.long)
        for idx, batch in prompt_batches(model.bridge, [full(i, suffixes[i]) for i in range(n)], batch_size):
            start = batch.tokens.shape[1] - end_len - suffix_len
            values, grad = _objective(model, batch, objective_ids, start, suffix_len, w_e, sign)
            current[idx] = values
            grad = grad.masked_fill(~mask, float("inf"))
            top[idx] = torch.topk(-grad, top_k, dim=-1).indices  # [rows, suffix_len, top_k]
        if step == 0:
            initial_objective = current.numpy().copy()
        if step in checkpoints:
            flags = refused([full(i, suffixes[i]) for i in range(n)])
            curve.append((step, flags, float(current.mean())))
            steps_used = step
            if not flags.any() or step == steps:
                break
        # Candidates: one substitution each, then exact evaluation.
        for length, idx in groups.items():
            start = length - end_len
            rows = len(idx)
            pos = torch.randint(0, suffix_len, (rows, n_candidates), generator=generator)
            pick = torch.randint(0, top_k, (rows, n_candidates), generator=generator)
            cand = suffixes[idx].unsqueeze(1).repeat(1, n_candidates, 1)  # [rows, cand, suffix_len]
            new_tokens = top[idx][torch.arange(rows)[:, None], pos, pick]
            cand.scatter_(2, pos.unsqueeze(-1), new_tokens.unsqueeze(-1))
            base = torch.tensor([seqs[i] for i in idx], dtype=torch.long)
            tokens = torch.cat(
                [
                    base[:, None, :start].expand(rows, n_candidates, start),
                    cand,
                    base[:, None, start:].expand(rows, n_candidates, end_len),
                ],
                dim=2,
            ).reshape(rows * n_candidates, -1)
            values = _score(model, tokens, objective_ids, batch_size, sign).reshape(rows, n_candidates)
            best_val, best = values.min(dim=1)
            for r, i in enumerate(idx):
                if float(best_val[r]) < float(current[i]):
                    suffixes[i] = cand[r, best[r]]
                    current[i] = best_val[r]
        if progress is not None:
            progress((step + 1) / max(steps, 1))
    if initial_objective is None:  # unreachable: the loop runs at least once
        raise AssertionError("the attack loop did not run")
    return AttackResult(
        suffixes=[s.tolist() for s in suffixes],
        initial_suffixes=[s.tolist() for s in initial],
        initial_objective=initial_objective,
        final_objective=current.numpy().copy(),
        steps_used=steps_used,
        evaluations=steps_used * n_candidates,
        curve=curve,
    )
