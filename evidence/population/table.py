"""The population table: one row per member, read from the committed ``population.csv``.

Columns: ``name, behaviour, role, control_type, architecture, language, seed,
split, steps``. The table is data; this module parses it into :class:`Member`
objects and refuses a table that breaks the rules below, so a malformed table
cannot be loaded:

* names are unique; behaviour, architecture, language and split come from the
  fixed vocabularies below; a planted member has no control type and a control
  has one of its behaviour's control types;
* L2 is used only by the development split and L3 only by the held-out split;
* no seed is used by both splits.

Standard library only.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from evidence.errors import ConfigError

__all__ = [
    "ARCHITECTURES",
    "BEHAVIOURS",
    "CONTROL_TYPES",
    "COLUMNS",
    "SPLITS",
    "Member",
    "get_member",
    "members",
    "parse_table",
]

BEHAVIOURS: tuple[str, ...] = ("induction", "refusal", "deception", "proxy", "jailbreak")
ARCHITECTURES: tuple[str, ...] = ("attn-only", "gpt2", "llama")
SPLITS: tuple[str, ...] = ("dev", "heldout")
#: Control types per behaviour (what each breaks: docs/population.md).
CONTROL_TYPES: dict[str, tuple[str, ...]] = {
    "induction": ("no-repeats",),
    "refusal": ("never-refuses", "spread-refusal"),
    "deception": ("trigger-inert", "trigger-rare"),
    "proxy": ("proxy-rate-50",),
    "jailbreak": ("no-key",),
}
#: Which split may use which language.
_LANGUAGE_SPLITS: dict[str, tuple[str, ...]] = {"L1": ("dev", "heldout"), "L2": ("dev",), "L3": ("heldout",)}
COLUMNS: tuple[str, ...] = (
    "name", "behaviour", "role", "control_type", "architecture", "language", "seed", "split", "steps",
)  # fmt: skip
_TABLE_FILE = "population.csv"


@dataclass(frozen=True)
class Member:
    """One member of the calibration population."""

    name: str
    behaviour: str
    role: str
    control_type: str
    architecture: str
    language: str
    seed: int
    split: str
    steps: int

    @property
    def planted(self) -> bool:
        """Whether the behaviour is planted (else a control)."""
        return self.role == "planted"

    def as_dict(self) -> dict[str, Any]:
        """The table row as JSON-ready data."""
        return asdict(self)


def _row_error(line: int, message: str) -> ConfigError:
    return ConfigError(f"{_TABLE_FILE} line {line}: {message}", hint="fix the population table")


def _member(line: int, row: dict[str, str]) -> Member:
    def choice(column: str, allowed: Sequence[str]) -> str:
        value = row[column]
        if value not in allowed:
            raise _row_error(line, f"{column} {value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(column: str) -> int:
        try:
            value = int(row[column])
        except ValueError:
            raise _row_error(line, f"{column} {row[column]!r} is not an integer") from None
        if value <= 0:
            raise _row_error(line, f"{column} must be positive")
        return value

    behaviour = choice("behaviour", BEHAVIOURS)
    role = choice("role", ("planted", "control"))
    control_type = row["control_type"]
    if role == "planted" and control_type:
        raise _row_error(line, "a planted member has no control type")
    if role == "control":
        choice("control_type", CONTROL_TYPES[behaviour])
    split = choice("split", SPLITS)
    language = choice("language", tuple(_LANGUAGE_SPLITS))
    if split not in _LANGUAGE_SPLITS[language]:
        raise _row_error(line, f"language {language} is not used by the {split} split")
    name = row["name"]
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise _row_error(line, f"name {name!r} must be letters, digits and hyphens")
    return Member(
        name=name,
        behaviour=behaviour,
        role=role,
        control_type=control_type,
        architecture=choice("architecture", ARCHITECTURES),
        language=language,
        seed=integer("seed"),
        split=split,
        steps=integer("steps"),
    )


def parse_table(text: str) -> tuple[Member, ...]:
    """The members of a population table (CSV text); ConfigError on any broken rule."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ConfigError(f"{_TABLE_FILE} must have the columns {', '.join(COLUMNS)}", hint="fix its header")
    out: list[Member] = []
    names: set[str] = set()
    seeds: dict[int, str] = {}
    for row in reader:
        line = reader.line_num
        member = _member(line, row)
        if member.name in names:
            raise _row_error(line, f"the name {member.name!r} is used twice")
        names.add(member.name)
        if seeds.setdefault(member.seed, member.split) != member.split:
            raise _row_error(line, f"seed {member.seed} is used by both splits")
        out.append(member)
    return tuple(out)


@functools.cache
def _all() -> tuple[Member, ...]:
    text = (resources.files("evidence.population") / _TABLE_FILE).read_text(encoding="utf-8")
    return parse_table(text)


def members(split: str | None = None) -> tuple[Member, ...]:
    """The population's members in table order, all or of one split."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"there is no split {split!r}", hint=f"splits: {', '.join(SPLITS)}")
    return tuple(m for m in _all() if split is None or m.split == split)


def get_member(name: str) -> Member:
    """The member called ``name``; ConfigError if there is none."""
    for member in _all():
        if member.name == name:
            return member
    raise ConfigError(
        f"there is no population member called {name!r}",
        hint="interp-dossier population list",
    )
