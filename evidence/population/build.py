"""Train, check and write population members (imports torch; ``interp-dossier population train``).

:func:`build_member` trains one member from its seed (deterministically: seeded
torch, deterministic kernels, one thread), writes its directory and a manifest
entry into a staging directory beside the members, loads it from there through
:func:`evidence.model.load_model` (the digest check and the loading code every
later use goes through), checks its behaviour on held-out prompts
(:mod:`evidence.population.checks`) and only then writes the directory into
place (atomically, replacing any previous one) and its manifest entry, with the
check's numbers. A member that does not behave as planted is never written:
:class:`MemberBehaviourError`, and the previous files (if any) stay.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.errors import ModelLoadError
from evidence.files import write_directory_atomically
from evidence.population.checks import CheckResult, check_member
from evidence.population.manifest import file_digests, members_dir, write_manifest_entry
from evidence.population.recipes import RECIPE_VERSION
from evidence.population.table import Member, get_member

if TYPE_CHECKING:
    from evidence.population.training import Trained

__all__ = ["BuildResult", "MemberBehaviourError", "build_member", "train_files"]


class MemberBehaviourError(ModelLoadError):
    """A trained member does not behave as planted; it is not written."""

    exit_code = 1


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_member` wrote."""

    member: Member
    directory: Path
    files: dict[str, str]
    size_bytes: int
    final_loss: float
    seconds: float
    cpu_seconds: float
    checks: CheckResult


def _no_progress(fraction: float, message: str) -> None:
    """Default progress callback: ignore."""


def train_files(member: Member, *, steps: int | None = None, progress: Any = None) -> Trained:
    """Train ``member`` deterministically (``steps`` overrides the table's, e.g. for a quick test)."""
    from evidence.organisms._training import deterministic
    from evidence.population.training import train

    with deterministic(member.seed):
        return train(member, progress or _no_progress, steps=steps)


def _trained_with() -> dict[str, str]:
    import torch

    return {
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
        "transformer_lens": metadata.version("transformer-lens"),
        "tokenizers": metadata.version("tokenizers"),
        # Float training is bit-reproducible only on the same family of CPU kernels.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def build_member(name: str, *, directory: Path | None = None, progress: Any = None) -> BuildResult:
    """Train member ``name``, check it, and write it with its manifest entry into ``directory``."""
    from evidence.model import ModelSpec, load_model

    member = get_member(name)
    target = directory if directory is not None else members_dir()
    target.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    trained = train_files(member, progress=progress)
    files = trained.files
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=target))
    try:
        write_directory_atomically(files, staging / name)
        digests = file_digests(staging / name)
        entry: dict[str, Any] = {
            "member": member.as_dict(),
            "recipe_version": RECIPE_VERSION,
            "architecture": trained.architecture,
            "files": digests,
            "size_bytes": sum(len(b) for b in files.values()),
            "final_loss": float(trained.final_loss),
            # wall-clock and CPU time of the training alone (the machine may be shared)
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "trained_with": _trained_with(),
        }
        write_manifest_entry(staging, name, entry)
        loaded = load_model(ModelSpec(organism=name), population_dir=staging)
        checks = check_member(member, loaded)
        if not checks.passed:
            raise MemberBehaviourError(
                f"population member {name!r} does not behave as planted: {'; '.join(checks.failed)} "
                f"(measured {', '.join(f'{k} {v:.3g}' for k, v in sorted(checks.numbers.items()))})",
                hint="nothing was written; change the recipe or the step count in the development split only",
            )
        entry["checks"] = checks.to_json()
        write_directory_atomically(files, target / name)
        write_manifest_entry(target, name, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(
        member=member,
        directory=target / name,
        files=digests,
        size_bytes=int(entry["size_bytes"]),
        final_loss=float(trained.final_loss),
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        checks=checks,
    )
