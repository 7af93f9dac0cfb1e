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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from evidence.errors import ConfigError, config_error_from_validation

__all__ = ["Dataset", "Prompt", "group_keys", "read_dataset"]


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
