"""Tasks a circuit is found for: clean inputs, counterfactual twins of the same length, and a metric.

A task holds ``n`` examples; each is a clean token sequence and a *corrupted*
one of the same length (the counterfactual whose activations a patched
component takes), and the task metric ``m`` is read from the logits of the
clean run. Examples carry a *group*: a discovery/evaluation split keeps each
group on one side (:meth:`CircuitTask.halves`, :meth:`CircuitTask.split`).

* :class:`InductionTask` — in-context copying: ``[BOS] + s + s`` against
  ``[BOS] + r + s``; the metric is read on the second copy (built by
  :func:`evidence.measure.methods.patching.induction_task`). Every example is
  its own group.
* :class:`RefusalTask` — a harmful prompt (clean) against a harmless prompt of
  the same token length (corrupted); the metric is the log-odds of a refusal
  against compliance at the first response position: the log-probability of
  the refusal markers' first tokens minus that of the compliance markers'
  first tokens, both tokenized in context
  (:func:`evidence.measure.methods.behaviour.first_token_ids`). Built by
  :func:`refusal_task`, which pairs the prompts (:func:`pair_prompts`).

See docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import torch

from evidence.datasets import Prompt
from evidence.errors import ConfigError, MeasurementError
from evidence.measure.methods.behaviour import first_token_ids, prompt_ids

__all__ = [
    "CircuitTask",
    "InductionTask",
    "Pairing",
    "RefusalTask",
    "Rows",
    "TaskUnavailable",
    "pair_prompts",
    "refusal_task",
    "twin_key",
]

#: Which of a task's examples a batch holds: consecutive ones, or their indices.
Rows = slice | np.ndarray
#: ``(rows of the task, clean tokens [b, length], corrupted tokens [b, length])``.
Batch = tuple[Rows, torch.Tensor, torch.Tensor]


class TaskUnavailable(MeasurementError):
    """The task cannot be posed on this model or these data (no prompts, no pairs, no behaviour): a reason."""


class CircuitTask(ABC):
    """Examples (clean and corrupted inputs of equal length, in groups) and the task metric."""

    #: metric kinds :meth:`metric` accepts; the first is the default
    kinds: tuple[str, ...] = ()

    @property
    @abstractmethod
    def n(self) -> int:
        """Number of examples."""

    @property
    @abstractmethod
    def groups(self) -> Sequence[str]:
        """Per example, its group: examples of one group are never split across two parts."""

    @property
    def uniform_length(self) -> bool:
        """Whether every example has the same length (mean ablation averages per position)."""
        return True

    @abstractmethod
    def rows(self, index: np.ndarray) -> Self:
        """The examples at ``index``, in that order."""

    @abstractmethod
    def batches(self, batch_size: int) -> Iterator[Batch]:
        """The examples in batches of at most ``batch_size`` rows, each row exactly once."""

    @abstractmethod
    def metric(self, logits: torch.Tensor, tokens: torch.Tensor, kind: str, rows: Rows | None = None) -> torch.Tensor:
        """Per-example task metric of ``logits`` on ``tokens`` (the run's clean inputs), float64 ``[batch]``.

        ``rows``: the examples the batch holds, as :meth:`batches` yields them (None: a batch of
        examples that were not padded).
        """

    @abstractmethod
    def digest(self) -> str:
        """sha256 identifying the examples (how: :meth:`describe`)."""

    @abstractmethod
    def describe(self) -> str:
        """What the examples are and what :meth:`digest` is computed over, for a record."""

    def sample(self, k: int) -> torch.Tensor:
        """Up to ``k`` clean inputs of one length (the first batch)."""
        return next(iter(self.batches(k)))[1]

    def check_kind(self, kind: str) -> None:
        """Refuse a metric kind this task does not define."""
        if kind not in self.kinds:
            raise MeasurementError(
                f"the {type(self).__name__} has no metric {kind!r}", hint=f"use one of {', '.join(self.kinds)}"
            )

    def split(self, first: np.ndarray, second: np.ndarray) -> tuple[Self, Self]:
        """The examples at ``first`` and at ``second``; refused if a group has members on both sides."""
        groups = self.groups
        shared = {groups[int(i)] for i in first} & {groups[int(i)] for i in second}
        if shared:
            raise MeasurementError(
                f"a split puts members of {len(shared)} group(s) on both sides (e.g. {sorted(shared)[0]!r})",
                hint="split by group: a pair, or prompts that share a group, stay on one side",
            )
        return self.rows(first), self.rows(second)

    def halves(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A seeded split into two parts by whole groups: the first gets groups until it holds half the examples.

        Groups are taken in the order of a permutation of the distinct groups (numbered by first
        appearance); with one example per group this is the first ``n // 2`` of a permutation of
        the examples. Both parts are sorted and hold at least two examples.
        """
        members: dict[str, list[int]] = {}
        for i, group in enumerate(self.groups):
            members.setdefault(group, []).append(i)
        units = list(members.values())
        order = rng.permutation(len(units))
        half, first = self.n // 2, list[int]()
        for u in order:
            if len(first) >= half:
                break
            first += units[int(u)]
        taken = set(first)
        second = [i for i in range(self.n) if i not in taken]
        if len(first) < 2 or len(second) < 2:
            raise TaskUnavailable(
                f"{self.n} examples in {len(units)} groups cannot be split into two parts of at least 2 examples"
            )
        return np.array(sorted(first), dtype=np.int64), np.array(second, dtype=np.int64)


# -- induction ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InductionTask(CircuitTask):
    """Clean and corrupted token arrays ``[n, offset + 2 * seq_len]`` (int64) and their layout."""

    clean: np.ndarray
    corrupted: np.ndarray
    offset: int
    seq_len: int

    kinds = ("logprob", "logit_diff")

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.clean.shape[0])

    @property
    def groups(self) -> Sequence[str]:
        """Every example is its own group."""
        return [str(i) for i in range(self.n)]

    @property
    def length(self) -> int:
        """Tokens per example."""
        return self.offset + 2 * self.seq_len

    @property
    def positions(self) -> torch.Tensor:
        """Positions whose next token is scored: the second copy, its first token to its penultimate."""
        return torch.arange(self.offset + self.seq_len, self.length - 1)

    def rows(self, index: np.ndarray) -> InductionTask:
        """The examples at ``index``, same layout."""
        return InductionTask(
            clean=np.ascontiguousarray(self.clean[index]),
            corrupted=np.ascontiguousarray(self.corrupted[index]),
            offset=self.offset,
            seq_len=self.seq_len,
        )

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Consecutive rows."""
        for start in range(0, self.n, batch_size):
            part = slice(start, min(start + batch_size, self.n))
            yield part, torch.from_numpy(self.clean[part]), torch.from_numpy(self.corrupted[part])

    def metric(self, logits: torch.Tensor, tokens: torch.Tensor, kind: str, rows: Rows | None = None) -> torch.Tensor:
        """Mean over the second copy: the next token's log-probability, or its logit minus the mean logit."""
        self.check_kind(kind)
        pos = self.positions
        x = logits[:, pos].to(torch.float64)
        target = tokens[:, pos + 1, None]
        if kind == "logprob":
            return torch.log_softmax(x, dim=-1).gather(-1, target)[..., 0].mean(dim=-1)
        return (x.gather(-1, target)[..., 0] - x.mean(dim=-1)).mean(dim=-1)

    def digest(self) -> str:
        """sha256 over the clean then the corrupted array (int64 little-endian, row-major)."""
        h = hashlib.sha256()
        for array in (self.clean, self.corrupted):
            h.update(array.astype("<i8", copy=False).tobytes(order="C"))
        return h.hexdigest()

    def describe(self) -> str:
        """The arrays' shape and layout."""
        return (
            f"two int64 arrays of shape {list(self.clean.shape)} (little-endian, row-major), clean then "
            "corrupted: "
            + ("BOS, then " if self.offset else "")
            + f"{self.seq_len} random token ids and the same ids again; corrupted: fresh ids, then the segment"
        )


# -- refusal -----------------------------------------------------------------------------------


def twin_key(prompt: Prompt) -> str | None:
    """The key that pairs a prompt with its twin in the other set, or None.

    A JSONL ``group`` when the prompt has one; else the id after its label
    (``harmful-0007`` and ``harmless-0007`` share ``0007``).
    """
    group = getattr(prompt, "group", None)
    if group:
        return f"group:{group}"
    if prompt.id.startswith(prompt.label):
        rest = prompt.id[len(prompt.label) :].lstrip("-_.:")
        if rest:
            return f"id:{rest}"
    return None


def _group_of(prompt: Prompt) -> str:
    """A prompt's split group: its JSONL ``group``, else its twin key, else its id."""
    group = getattr(prompt, "group", None)
    return f"group:{group}" if group else (twin_key(prompt) or f"prompt:{prompt.label}:{prompt.id}")


@dataclass(frozen=True)
class Pairing:
    """Which harmful prompt is run against which harmless one (indices into the two sets)."""

    pairs: list[tuple[int, int]]  # (harmful, harmless), equal token length, by harmful index
    rule: Literal["twins", "length"]
    considered: int  # twin pairs found (twins) or harmful prompts (length)
    unequal: int  # of those, left out: the twins' lengths differ (twins) / no harmless prompt of that length
    instead_of: str = ""  # why twins were not used, when ``auto`` fell back to pairing by length

    def describe(self) -> str:
        """The rule and the counts, in words."""
        if self.rule == "twins":
            return (
                f"{len(self.pairs)} of {self.considered} harmful/harmless twins kept ({self.unequal} left out: "
                "the twins' token lengths differ)"
            )
        return (
            f"{len(self.pairs)} of {self.considered} harmful prompts paired with a harmless prompt of the same "
            f"token length ({self.unequal} had none)" + (f"; {self.instead_of}" if self.instead_of else "")
        )


def pair_prompts(
    harmful: Sequence[Prompt],
    harmless: Sequence[Prompt],
    harmful_lengths: Sequence[int],
    harmless_lengths: Sequence[int],
    rule: Literal["auto", "twins", "length"],
    rng: np.random.Generator,
    min_pairs: int = 1,
) -> Pairing:
    """Pair harmful prompts with harmless ones of the same token length.

    ``twins``: each harmful prompt with its twin (:func:`twin_key`; within one key, in file
    order), kept only when both have the same number of tokens. ``length``: the harmful
    prompts in a seeded random order, each with a harmless prompt of the same length drawn
    at random from those not yet used. ``auto``: ``twins`` when at least ``min_pairs`` twins
    have the same length, else ``length``.
    """
    by_key: dict[str, list[int]] = {}
    for j, prompt in enumerate(harmless):
        key = twin_key(prompt)
        if key is not None:
            by_key.setdefault(key, []).append(j)
    twins: list[tuple[int, int]] = []
    for i, prompt in enumerate(harmful):
        key = twin_key(prompt)
        if key is not None and by_key.get(key):
            twins.append((i, by_key[key].pop(0)))
    kept = [(i, j) for i, j in twins if harmful_lengths[i] == harmless_lengths[j]]
    if rule == "twins" or (rule == "auto" and len(kept) >= min_pairs):
        return Pairing(kept, "twins", len(twins), len(twins) - len(kept))
    instead = ""
    if rule == "auto":
        instead = (
            f"paired by length because only {len(kept)} of {len(twins)} twins have equal token lengths"
            if twins
            else "paired by length because no prompt has a twin"
        )
    pool: dict[int, list[int]] = {}
    for j in rng.permutation(len(harmless)):
        pool.setdefault(harmless_lengths[int(j)], []).append(int(j))
    pairs = []
    for i in rng.permutation(len(harmful)):
        candidates = pool.get(harmful_lengths[int(i)])
        if candidates:
            pairs.append((int(i), candidates.pop()))
    pairs.sort()
    return Pairing(pairs, "length", len(harmful), len(harmful) - len(pairs), instead)


@dataclass(frozen=True)
class RefusalTask(CircuitTask):
    """Harmful prompts (clean) against harmless prompts of the same token length (corrupted)."""

    clean: tuple[np.ndarray, ...]  # per pair, the harmful prompt's ids (int64)
    corrupted: tuple[np.ndarray, ...]  # per pair, the harmless prompt's ids, same length
    pair_ids: tuple[tuple[str, str], ...]  # per pair, (harmful id, harmless id)
    pair_groups: tuple[str, ...]  # per pair, its split group
    refusal_ids: tuple[int, ...]  # first tokens of the refusal markers, in context
    compliance_ids: tuple[int, ...]  # first tokens of the compliance markers, in context
    pairing: Pairing
    pad_id: int = 0  # fills a batch's shorter rows after their last token (never read)
    selection: str = ""  # how the pairs were chosen, in words


    kinds = ("logodds",)

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.clean)

    @property
    def groups(self) -> Sequence[str]:
        """Per pair, its group (pairs that share a prompt group stay together)."""
        return self.pair_groups

    @property
    def uniform_length(self) -> bool:
        """Whether every pair has the same length."""
        return len({a.size for a in self.clean}) <= 1

    def rows(self, index: np.ndarray) -> RefusalTask:
        """The pairs at ``index``."""
        pick = [int(i) for i in index]
        return RefusalTask(
            clean=tuple(self.clean[i] for i in pick),
            corrupted=tuple(self.corrupted[i] for i in pick),
            pair_ids=tuple(self.pair_ids[i] for i in pick),
            pair_groups=tuple(self.pair_groups[i] for i in pick),
            refusal_ids=self.refusal_ids,
            compliance_ids=self.compliance_ids,
            pairing=self.pairing,
            pad_id=self.pad_id,
            selection=self.selection,
        )

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per pair (both prompts of a pair have as many)."""
        return np.array([a.size for a in self.clean], dtype=np.int64)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Pairs from the shortest to the longest, each batch right-padded to its longest prompt.

        Padding goes after the prompt, with one token for both rows of a pair, so that in a
        causal model no prompt position sees it: the metric is read at each row's last prompt
        token (:meth:`metric` with the batch's ``rows``), and patching or attributing the padded
        positions changes nothing there.
        """
        lengths = self.lengths
        order = np.argsort(lengths, kind="stable")
        for start in range(0, self.n, batch_size):
            part = np.asarray(order[start : start + batch_size], dtype=np.int64)
            width = int(lengths[part].max())
            clean = np.full((part.size, width), self.pad_id, dtype=np.int64)
            corrupted = clean.copy()
            for row, i in enumerate(part):
                clean[row, : lengths[i]] = self.clean[int(i)]
                corrupted[row, : lengths[i]] = self.corrupted[int(i)]
            yield part, torch.from_numpy(clean), torch.from_numpy(corrupted)

    def metric(self, logits: torch.Tensor, tokens: torch.Tensor, kind: str, rows: Rows | None = None) -> torch.Tensor:
        """``log p(refusal first tokens) - log p(compliance first tokens)`` after each row's last prompt token."""
        self.check_kind(kind)
        if rows is None:
            last = torch.full((logits.shape[0],), logits.shape[1] - 1)
        else:
            last = torch.from_numpy(self.lengths[rows] - 1)
        x = logits[torch.arange(logits.shape[0]), last].to(torch.float64)
        refusal = torch.logsumexp(x[:, list(self.refusal_ids)], dim=-1)
        return refusal - torch.logsumexp(x[:, list(self.compliance_ids)], dim=-1)

    def digest(self) -> str:
        """sha256 of the pairs' prompt ids, one pair a line: harmful id, a tab, harmless id."""
        lines = "".join(f"{a}\t{b}\n" for a, b in self.pair_ids)
        return hashlib.sha256(lines.encode("utf-8")).hexdigest()

    def describe(self) -> str:
        """What the pairs are."""
        lengths = sorted({int(a.size) for a in self.clean})
        span = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
        against = "its harmless twin" if self.pairing.rule == "twins" else "a harmless prompt of the same length"
        return (
            f"{self.n} pairs of prompts of {span} tokens, each a harmful prompt (clean) and {against} "
            "(corrupted); sha256 of the pairs' prompt ids, one pair a line (harmful id, tab, harmless id)"
        )


def _linked_groups(
    harmful: Sequence[Prompt], harmless: Sequence[Prompt], pairs: Sequence[tuple[int, int]]
) -> tuple[str, ...]:
    """Per pair, its split group: pairs linked through a shared prompt group stay together.

    A pair joins the groups of its two prompts (:func:`_group_of`); pairs whose prompts share a
    group, directly or through other pairs, get one group (the smallest key among them).
    """
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for i, j in pairs:
        a, b = root(_group_of(harmful[i])), root(_group_of(harmless[j]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return tuple(root(_group_of(harmful[i])) for i, _ in pairs)


def _encode(tokenizer: object, prompts: Sequence[Prompt]) -> list[list[int]]:
    try:
        return [prompt_ids(tokenizer, p) for p in prompts]
    except (ConfigError, MeasurementError) as exc:
        raise TaskUnavailable(f"the prompts cannot be encoded: {exc.message}", hint=exc.hint) from None


def refusal_task(
    tokenizer: object,
    n_ctx: int,
    harmful: Sequence[Prompt],
    harmless: Sequence[Prompt],
    markers: tuple[Sequence[str], Sequence[str]],
    *,
    rule: Literal["auto", "twins", "length"],
    max_pairs: int,
    min_pairs: int,
    rng: np.random.Generator,
) -> RefusalTask:
    """Pair the prompts (:func:`pair_prompts`), keep those that fit ``n_ctx``, at most ``max_pairs`` of them.

    ``markers`` are the refusal and the compliance phrases; their first tokens are read as they
    follow the kept prompts. Raises :class:`TaskUnavailable` when the task cannot be posed: no
    tokenizer, fewer than ``min_pairs`` pairs, or markers that begin with the same token.
    """
    if tokenizer is None:
        raise TaskUnavailable("the model has no tokenizer, so the prompts cannot be encoded")
    harmful_seqs, harmless_seqs = _encode(tokenizer, harmful), _encode(tokenizer, harmless)
    lengths = [len(s) for s in harmful_seqs], [len(s) for s in harmless_seqs]
    pairing = pair_prompts(harmful, harmless, lengths[0], lengths[1], rule, rng, min_pairs)
    fitting = [(i, j) for i, j in pairing.pairs if len(harmful_seqs[i]) <= n_ctx]
    too_long = len(pairing.pairs) - len(fitting)
    if len(fitting) < min_pairs:
        longer = f"; {too_long} longer than the model's context of {n_ctx} tokens" if too_long else ""
        raise TaskUnavailable(
            f"only {len(fitting)} usable pairs, fewer than refusal_min_pairs = {min_pairs}: "
            f"{pairing.describe()}{longer}",
            hint="give more harmful and harmless prompts of equal token length",
        )
    selection = pairing.describe()
    if too_long:
        selection += f"; {too_long} longer than the model's context of {n_ctx} tokens left out"
    if len(fitting) > max_pairs:
        selection += f"; a seeded sample of {max_pairs} of the {len(fitting)} used (refusal_max_pairs)"
        keep = np.sort(rng.choice(len(fitting), max_pairs, replace=False))
        fitting = [fitting[int(k)] for k in keep]
    contexts = [harmful_seqs[i] for i, _ in fitting] + [harmless_seqs[j] for _, j in fitting]
    refusal, compliance = (first_token_ids(tokenizer, list(phrases), contexts) for phrases in markers)
    common = sorted(set(refusal) & set(compliance))
    if common:
        raise TaskUnavailable(
            f"the refusal and compliance markers begin with the same token in context (ids {common})",
            hint="choose [markers].refusal and [markers].helpful phrases that start differently",
        )
    return RefusalTask(
        clean=tuple(np.asarray(harmful_seqs[i], dtype=np.int64) for i, _ in fitting),
        corrupted=tuple(np.asarray(harmless_seqs[j], dtype=np.int64) for _, j in fitting),
        pair_ids=tuple((harmful[i].id, harmless[j].id) for i, j in fitting),
        pair_groups=_linked_groups(harmful, harmless, fitting),
        refusal_ids=tuple(refusal),
        compliance_ids=tuple(compliance),
        pairing=pairing,
        pad_id=int(harmful_seqs[fitting[0][0]][0]),  # any id of the vocabulary: padding is never read
        selection=selection,
    )
