"""Prompt sets: JSONL files of prompts with labels, identified by their sha256.

The loader is told which dataset names and labels are known
(:func:`evidence.runspec.load_dataset` asks the measurement registry); this
module knows nothing of measurements, so that both the run spec and the
measurement framework can build on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from evidence.errors import ConfigError, config_error_from_validation

__all__ = ["Dataset", "Prompt", "group_keys", "limit_prompts", "read_dataset"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Message(_Strict):
    role: Literal["system", "user"]
    content: str


class Prompt(_Strict):
    """One line of a dataset: an exact prompt string or chat messages, with a label.

    ``group`` names a unit that splits keep together: prompts that share it (a minimal
    pair, a prompt and its rewording; within one set or across the sets a measurement
    reads together) always land on the same side of every split (see :func:`group_keys`).
    """

    id: Annotated[str, StringConstraints(min_length=1)]
    label: str
    group: Annotated[str, StringConstraints(min_length=1)] | None = None
    text: str | None = None
    messages: list[_Message] | None = None
    goal: bool | None = None  # goal tasks: whether the goal holds (the correct answer is answers[0])
    proxy: bool | None = None  # goal tasks: whether the proxy points to answers[0]
    answers: tuple[str, str] | None = None  # goal tasks: [answer when the goal holds, answer when it does not]


@dataclass(frozen=True)
class Dataset:
    """A loaded prompt set, identified by the sha256 of its file."""

    name: str
    path: Path
    sha256: str
    prompts: tuple[Prompt, ...]

    @property
    def count(self) -> int:
        """Number of prompts."""
        return len(self.prompts)


def group_keys(prompts: Sequence[Prompt]) -> list[str] | None:
    """The unit each prompt belongs to when splitting, or None when no prompt names a ``group``.

    When at least one prompt has a ``group``, prompts that share one share a key and every
    prompt without one is a unit of its own (keys ``group:<group>`` and ``id:<id>``, which
    never collide). None tells the caller that the prompts carry no grouping, so that it
    keeps the convention it documents for that case.
    """
    if all(p.group is None for p in prompts):
        return None
    return [f"group:{p.group}" if p.group is not None else f"id:{p.id}" for p in prompts]


def _units(prompts: Sequence[Prompt]) -> list[str]:
    """The unit each prompt is kept or dropped with: its ``group``; else a pair read from the ids; else itself.

    Without ``group`` fields, ids of the form ``KEY-SUFFIX`` (``pair-0007-bad``, ``pair-0007-good``) are
    taken as pairs when every key holds two or more prompts, each of another label; otherwise every prompt
    is a unit of its own.
    """
    keys = group_keys(prompts)
    if keys is not None:
        return keys
    stems = [p.id.rsplit("-", 1)[0] if "-" in p.id else p.id for p in prompts]
    labels: dict[str, list[str]] = {}
    for stem, p in zip(stems, prompts, strict=True):
        labels.setdefault(stem, []).append(p.label)
    if all(len(v) >= 2 and len(set(v)) == len(v) for v in labels.values()):
        return [f"group:{stem}" for stem in stems]
    return [f"id:{p.id}" for p in prompts]


_Stratum = tuple[str, ...]


def _quotas(sizes: Mapping[_Stratum, int], first_unit: Mapping[_Stratum, int], limit: int) -> dict[_Stratum, int]:
    """Prompts per stratum: proportional to its size (largest remainder), at least its first unit."""
    total = sum(sizes.values())
    exact = {s: limit * n / total for s, n in sizes.items()}
    quota = {s: int(x) for s, x in exact.items()}
    for s in sorted(exact, key=lambda s: (quota[s] - exact[s], s))[: limit - sum(quota.values())]:
        quota[s] += 1
    for s in sorted(quota):  # every class keeps at least one unit, paid for by the largest strata
        while quota[s] < first_unit[s]:
            donor = max(quota, key=lambda d: (quota[d] - first_unit[d], d))
            if quota[donor] - first_unit[donor] <= 0:
                raise ValueError(s)
            quota[donor] -= 1
            quota[s] += 1
    return quota


def limit_prompts(dataset: Dataset, limit: int, seed: int) -> Dataset:
    """At most ``limit`` prompts of ``dataset``: a seeded subset that keeps every label and every pair.

    Prompts are kept or dropped by unit (a ``group``, or a pair read from the ids, see
    :func:`_units`); units are stratified by the labels they hold, each stratum keeps a share of
    ``limit`` proportional to its size (at least one unit), and within a stratum units are taken
    in an order derived from ``seed`` and the unit's key alone, so that a group spread over
    several datasets (``refusal-0001`` in the harmful and the harmless set) is kept in all of them
    alike. The kept prompts stay in file order; the dataset keeps its file's sha256.
    """
    if limit >= dataset.count:
        return dataset
    units = _units(dataset.prompts)
    members: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        members.setdefault(unit, []).append(i)

    def rank(unit: str) -> str:
        return hashlib.sha256(f"{seed}:{unit}".encode()).hexdigest()

    strata: dict[tuple[str, ...], list[str]] = {}
    for unit, idx in members.items():
        strata.setdefault(tuple(sorted(dataset.prompts[i].label for i in idx)), []).append(unit)
    for ranked in strata.values():
        ranked.sort(key=rank)
    sizes = {s: sum(len(members[u]) for u in ranked) for s, ranked in strata.items()}
    first = {s: len(members[ranked[0]]) for s, ranked in strata.items()}
    try:
        quotas = _quotas(sizes, first, limit)
    except ValueError:
        raise ConfigError(
            f"--limit {limit} cannot keep every label of {dataset.name} ({dataset.path}): it needs at least "
            f"{sum(first.values())} prompts",
            hint=f"pass --limit {sum(first.values())} or more",
        ) from None
    kept: set[int] = set()
    for s, ranked in strata.items():
        room = quotas[s]
        for unit in ranked:
            if len(members[unit]) <= room:
                kept.update(members[unit])
                room -= len(members[unit])
    return replace(dataset, prompts=tuple(p for i, p in enumerate(dataset.prompts) if i in kept))


def read_dataset(name: str, path: Path, known: Mapping[str, frozenset[str]]) -> Dataset:
    """Load a JSONL prompt set; ``known`` maps each dataset name to the labels it accepts.

    Any problem names the file and the line.
    """
    allowed = known.get(name)
    if allowed is None:
        raise ConfigError(
            f"unknown dataset name {name!r}",
            hint=f"known datasets: {', '.join(sorted(known))}",
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"dataset {name!r}: file {path} does not exist",
            hint="check the path, or write the prompt set there: JSONL, one prompt a line, "
            f"labels {', '.join(sorted(allowed))}",
        ) from None
    except OSError as exc:
        raise ConfigError(f"dataset {name!r}: file {path} cannot be read: {exc.strerror}") from None
    prompts: list[Prompt] = []
    seen: set[str] = set()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"dataset {name!r}: file {path} is not UTF-8 (byte {exc.start})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            prompt = Prompt.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"dataset {name!r}, {where}: not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            raise config_error_from_validation(exc, source=f"dataset {name!r}, {where}") from None
        if (prompt.text is None) == (prompt.messages is None):
            raise ConfigError(f"dataset {name!r}, {where}: give exactly one of 'text' or 'messages'")
        if prompt.label not in allowed:
            raise ConfigError(
                f"dataset {name!r}, {where}: unknown label {prompt.label!r}",
                hint=f"allowed labels: {', '.join(sorted(allowed))}",
            )
        if prompt.id in seen:
            raise ConfigError(f"dataset {name!r}, {where}: duplicate id {prompt.id!r}")
        seen.add(prompt.id)
        prompts.append(prompt)
    if not prompts:
        raise ConfigError(f"dataset {name!r}: file {path} holds no prompts", hint="an empty set measures nothing")
    return Dataset(name=name, path=path, sha256=hashlib.sha256(raw).hexdigest(), prompts=tuple(prompts))
