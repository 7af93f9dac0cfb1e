"""The result cache: finished records kept on disk, found again by what they were computed from.

A record is stored under its *cache key*, the sha256 of the canonical JSON of
everything the record depends on: the model's identity (weights and tokenizer
digests, architecture, every processing flag), where and in which dtype it ran,
the measurement's id, version and validated parameters, the digest of every
dataset of the task, the markers, the seed, the run's profile and prompt limit,
the versions of this package and of the libraries that compute the numbers, and
a digest of this package's code and data files (:func:`code_digest`; the bundled
weights enter through their manifests' digests), so that an edited measurement
never returns a record of its former self. A change to any of them is a new
key, so a stale record is never found; nothing is ever looked up by name alone.

Entries are written atomically (a temporary file in the same directory, then a
rename), so an interrupted run leaves either a whole entry or none. Each entry
is verified on read (its stored key must equal the key asked for, its record must
parse, be ``ok`` and be of the measurement asked for); an entry that fails is
reported with a one-line warning and treated as absent, never trusted. Records
of failed measurements are not stored.

Where the cache lives: ``--cache-dir``, else ``$INTERP_DOSSIER_CACHE_DIR``, else
``$XDG_CACHE_HOME/interp-dossier/results``, else ``~/.cache/interp-dossier/results``
(:func:`default_cache_dir`). This module imports no torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.datasets import Dataset
from evidence.errors import ConfigError
from evidence.records import EvidenceRecord, MeasurementSpec, ModelIdentity

__all__ = ["CACHE_DIR_ENV", "ResultCache", "cache_key", "code_digest", "default_cache_dir"]

#: The environment variable naming the cache directory (``--cache-dir`` wins over it).
CACHE_DIR_ENV: Final = "INTERP_DOSSIER_CACHE_DIR"

#: The layout of an entry; a change makes every older entry a miss.
_FORMAT: Final = 1
_KEY: Final = re.compile(r"^[0-9a-f]{64}$")


def default_cache_dir() -> Path:
    """Where results are cached when no directory is given (see the module docstring)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "interp-dossier" / "results"


_CODE_SUFFIXES: Final = frozenset({".py", ".json", ".jsonl", ".toml", ".txt"})


@functools.cache
def code_digest() -> str:
    """sha256 over this package's code and data files (path and content digest of each, in path order)."""
    import evidence

    root = Path(evidence.__file__).parent
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _version_of(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def cache_key(
    identity: ModelIdentity,
    placement: Mapping[str, Any],
    measurement: MeasurementSpec,
    datasets: Mapping[str, Dataset],
    markers: Mapping[str, tuple[str, ...]],
    seed: int,
    *,
    budget: Mapping[str, Any] | None = None,
) -> str:
    """The cache key of a task: sha256 of the canonical JSON of everything its record depends on.

    ``placement``: where and how the model ran (device, dtype, number of GPUs);
    ``measurement``: the id, version and *validated* parameters (defaults included);
    ``budget``: the run's profile and prompt limit (the record states both).
    """
    from evidence import __version__

    material = {
        "format": _FORMAT,
        "producer": __version__,
        "code": code_digest(),
        "libraries": {name: _version_of(name) for name in ("torch", "transformer-lens", "transformers", "numpy")},
        "model": identity.model_dump(mode="json", exclude={"numerics"}),
        "placement": dict(placement),
        "measurement": measurement.model_dump(mode="json"),
        "datasets": {name: [dataset.sha256, dataset.count] for name, dataset in sorted(datasets.items())},
        "markers": {kind: list(phrases) for kind, phrases in sorted(markers.items())},
        "seed": seed,
        "budget": dict(budget or {}),
    }
    return sha256_hex(canonical_bytes(material))


def _stderr_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class ResultCache:
    """Finished records in ``directory``, one file per cache key.

    ``warn`` receives one line for each entry that is ignored (unreadable,
    corrupt, or not the record asked for); by default it goes to stderr.
    """

    def __init__(self, directory: Path, *, warn: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self._warn = warn or _stderr_warning

    def path_for(self, key: str) -> Path:
        """The file an entry with ``key`` is kept in."""
        if not _KEY.match(key):
            raise ConfigError(f"not a cache key: {key!r}")
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str, measurement: MeasurementSpec) -> EvidenceRecord | None:
        """The record stored under ``key`` if there is a sound one, else None (with a warning if one was unsound)."""
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # no entry (or no cache yet)
            return None
        except OSError as exc:
            self._warn(f"cached result {path} cannot be read ({exc.strerror or exc}); measuring again")
            return None
        problem = _entry_problem(data, key, measurement)
        if isinstance(problem, str):
            self._warn(f"cached result {path} is ignored: {problem}; measuring again")
            return None
        return problem

    def put(self, key: str, record: EvidenceRecord) -> Path | None:
        """Store a finished ``ok`` record under ``key`` (atomically); error records are not stored.

        A cache that cannot be written is not an error of the run: a warning says so
        and the record is returned to the caller all the same.
        """
        if record.status != "ok":
            return None
        path = self.path_for(key)
        entry = canonical_bytes({"format": _FORMAT, "key": key, "record": record.model_dump(mode="json")})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(entry)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            self._warn(f"the result cache {self.directory} cannot be written ({exc.strerror or exc}); not cached")
            return None
        return path


def _entry_problem(data: bytes, key: str, measurement: MeasurementSpec) -> EvidenceRecord | str:
    """The entry's record, or what is wrong with the entry (a short phrase)."""
    try:
        entry = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return "it is not JSON"
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT:
        return "it is not an entry of this format"
    if entry.get("key") != key:
        return "its stored key differs from its name"
    try:
        record = EvidenceRecord.model_validate(entry.get("record"))
    except ValidationError as exc:
        return f"its record does not parse ({exc.error_count()} errors)"
    if record.status != "ok" or record.reused_cache_key is not None:
        return "it holds no finished record"
    if record.measurement != measurement:
        return f"it holds {record.measurement.id} {record.measurement.version}, not the measurement asked for"
    return record
