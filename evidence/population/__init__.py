"""The calibration population: planted organisms and matched controls, as data (no torch at import).

For every planted behaviour (``induction``, ``refusal``, ``deception``,
``proxy``, ``jailbreak``) the population holds planted members and controls that break only
the mechanism under test, across three architectures (``attn-only``, ``gpt2``,
``llama``), several seeds and three languages (``L1`` the bundled word-level
language, ``L2`` and ``L3`` invented languages with BPE tokenizers), split into
a development part and a held-out part fixed before any tuning. Design,
table and rationale: ``docs/population.md``.

* the table (:func:`members`, :func:`get_member`): ``population.csv``, one row per
  member (:mod:`evidence.population.table`);
* the languages and their prompt sets: :mod:`evidence.population.languages`,
  :mod:`evidence.population.datasets` (``data/<language>/``, each with a
  run-spec fragment, :func:`language_inputs`);
* trained members: ``members/<name>/`` and ``members/manifest.json``;
  :func:`verify_member` checks a member's files against the manifest, and
  :func:`evidence.model.load_model` does so before loading
  ``ModelSpec(organism=NAME)``;
* training: :mod:`evidence.population.build` (``interp-dossier population train``;
  imports torch).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from evidence.errors import ConfigError
from evidence.population.manifest import (
    ENV_POPULATION_DIR,
    MANIFEST_NAME,
    VerifiedMember,
    members_dir,
    read_manifest,
    verify_member,
)
from evidence.population.table import (
    ARCHITECTURES,
    BEHAVIOURS,
    CONTROL_TYPES,
    SPLITS,
    Member,
    get_member,
    members,
)

__all__ = [
    "ARCHITECTURES",
    "BEHAVIOURS",
    "CONTROL_TYPES",
    "ENV_POPULATION_DIR",
    "MANIFEST_NAME",
    "SPLITS",
    "Member",
    "VerifiedMember",
    "get_member",
    "is_member",
    "language_inputs",
    "members",
    "members_dir",
    "read_manifest",
    "verify_member",
]


def is_member(name: str) -> bool:
    """Whether ``name`` is a member of the population table."""
    return any(m.name == name for m in members())


def language_inputs(code: str) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Language ``code``'s prompt sets (dataset name -> file) and markers, from its run-spec fragment."""
    from evidence.population.datasets import FRAGMENT_FILE, data_dir

    directory = data_dir(code)
    path = directory / FRAGMENT_FILE
    try:
        fragment = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the population's run-spec fragment {path} is unreadable: {exc}") from exc
    datasets = {name: directory / file for name, file in fragment["datasets"].items()}
    markers = {kind: list(phrases) for kind, phrases in fragment["markers"].items()}
    return datasets, markers
