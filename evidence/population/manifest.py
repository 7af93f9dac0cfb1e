"""The population's manifest and the digest check every load goes through (no torch).

Trained members live in ``evidence/population/members/`` (or
``$INTERP_DOSSIER_POPULATION_DIR``): one directory per member, named after it,
and ``manifest.json``, which records for each member its table row, the sha256
of every file of its directory, its final training loss, time and steps, the
numbers of its behaviour check and what it was trained with (torch,
transformers, TransformerLens, the CPU kernels, the machine).

:func:`verify_member` is called before a member is loaded: the member must be
in the table, have a manifest entry trained for exactly its current table row,
and its directory must hold exactly the files the entry lists, each with the
recorded sha256; anything else is a :class:`~evidence.errors.ModelLoadError`
whose remedy is retraining the member.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from evidence.errors import ModelLoadError
from evidence.files import write_file_atomically
from evidence.population.architectures import NATIVE_CONFIG_FILE, NATIVE_FORMAT
from evidence.population.table import Member, get_member

__all__ = [
    "ENV_POPULATION_DIR",
    "MANIFEST_NAME",
    "VerifiedMember",
    "file_digests",
    "members_dir",
    "read_manifest",
    "verify_member",
    "write_manifest_entry",
]

#: Environment variable that overrides where member directories and the manifest are read and written.
ENV_POPULATION_DIR = "INTERP_DOSSIER_POPULATION_DIR"
MANIFEST_NAME = "manifest.json"
_FORMAT = 1
_CHUNK = 1 << 20


def members_dir() -> Path:
    """Where trained members live: ``$INTERP_DOSSIER_POPULATION_DIR`` or the package's ``members/``."""
    override = os.environ.get(ENV_POPULATION_DIR)
    if override:
        return Path(override)
    return Path(str(resources.files("evidence.population") / "members"))


def _remedy(name: str) -> str:
    return f"interp-dossier population train --member {name}"


def read_manifest(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Member name -> manifest entry (empty if there is no manifest yet)."""
    path = (directory if directory is not None else members_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"the population manifest {path} is unreadable: {exc}", hint="interp-dossier population train"
        ) from exc
    entries = data.get("members") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or data.get("format") != _FORMAT:
        raise ModelLoadError(
            f"the population manifest {path} is not in format {_FORMAT}", hint="interp-dossier population train"
        )
    return entries


def write_manifest_entry(directory: Path, name: str, entry: dict[str, Any]) -> None:
    """Set member ``name``'s entry (read-modify-write of that entry only; written atomically)."""
    entries = read_manifest(directory)
    entries[name] = entry
    text = json.dumps({"format": _FORMAT, "members": entries}, indent=2, sort_keys=True, ensure_ascii=False)
    write_file_atomically(directory / MANIFEST_NAME, (text + "\n").encode("utf-8"))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digests(directory: Path) -> dict[str, str]:
    """File name -> sha256 for every file of a member directory."""
    return {p.name: _sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


@dataclass(frozen=True)
class VerifiedMember:
    """A member whose directory matches its manifest entry, file by file."""

    member: Member
    directory: Path
    #: file name -> sha256, as checked
    files: dict[str, str]
    #: ``TransformerBridgeConfig`` keyword arguments for an attention-only member; None for a HF directory
    native_architecture: dict[str, Any] | None


def verify_member(name: str, directory: Path | None = None) -> VerifiedMember:
    """Check member ``name``'s files against the manifest in ``directory`` (default :func:`members_dir`)."""
    member = get_member(name)
    base = directory if directory is not None else members_dir()
    entry = read_manifest(base).get(name)
    remedy = _remedy(name)
    if entry is None:
        raise ModelLoadError(f"population member {name!r} has no entry in {base / MANIFEST_NAME}", hint=remedy)
    if entry.get("member") != member.as_dict():
        raise ModelLoadError(
            f"population member {name!r} was trained for another table row than the table now declares",
            hint=remedy,
        )
    expected = entry.get("files")
    if not isinstance(expected, dict) or not expected:
        raise ModelLoadError(f"the manifest entry of population member {name!r} lists no files", hint=remedy)
    path = base / name
    if not path.is_dir():
        raise ModelLoadError(f"population member directory {path} is missing", hint=remedy)
    actual = file_digests(path)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing or extra:
        detail = "; ".join(
            part for part in (f"missing {', '.join(missing)}" if missing else "",
                              f"not in the manifest: {', '.join(extra)}" if extra else "") if part
        )  # fmt: skip
        raise ModelLoadError(f"population member directory {path} does not hold the manifest's files ({detail})",
                             hint=remedy)  # fmt: skip
    for file, digest in sorted(expected.items()):
        if actual[file] != digest:
            raise ModelLoadError(
                f"population member file {path / file} has sha256 {actual[file]}, but the manifest expects {digest}",
                hint=remedy,
            )
    native: dict[str, Any] | None = None
    if NATIVE_CONFIG_FILE in actual:
        config = json.loads((path / NATIVE_CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(config, dict) or config.get("format") != NATIVE_FORMAT:
            raise ModelLoadError(f"{path / NATIVE_CONFIG_FILE} is not in format {NATIVE_FORMAT}", hint=remedy)
        native = dict(config["architecture"])
    return VerifiedMember(member=member, directory=path, files=dict(actual), native_architecture=native)
