"""Reference organisms: small transformers with planted behaviour, retrained from fixed seeds.

The registry below is data: one :class:`OrganismSpec` per organism (name,
seed, TransformerBridgeConfig keyword arguments, training function, data
generator version, steps). The trained weights ship inside the package, in
``evidence/organisms/weights/``, next to ``manifest.json``, which records for
each organism how it was trained and the sha256 of its weights (and tokenizer,
if it has one). :func:`evidence.model.load_model` refuses weights whose digest
does not match the manifest.

:func:`train` retrains one organism from its seed and rewrites its files and
its manifest entry (and nothing else). Training is deterministic: fixed
seeds, ``torch.use_deterministic_algorithms(True)`` and one CPU thread, so
retraining on the same software stack and the same family of CPU kernels (the
manifest records both) reproduces the committed bytes; on another CPU (e.g.
AVX512 kernels where the weights were trained with AVX2) float rounding differs
in the last bits, and retrained weights agree with the committed ones only
numerically (for `induction`: largest weight difference about 1e-5).

To add an organism: write a module with a training function
``fn(spec, progress) -> TrainedOrganism`` (import torch inside the function,
so that listing organisms stays cheap) and add its spec to ``_SPECS``.

Importing this package does not import torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from evidence.errors import ConfigError, ModelLoadError
from evidence.files import write_file_atomically
from evidence.organisms.spec import OrganismSpec, ProgressFn, TrainedOrganism

__all__ = [
    "ENV_WEIGHTS_DIR",
    "MANIFEST_NAME",
    "ORGANISM_NAMES",
    "OrganismSpec",
    "ProgressFn",
    "TrainResult",
    "TrainedOrganism",
    "get_spec",
    "read_manifest",
    "train",
    "weights_dir",
]

#: Environment variable that overrides where organism weights are read from and written to.
ENV_WEIGHTS_DIR = "INTERP_DOSSIER_ORGANISMS_DIR"
#: File name of the manifest inside the weights directory.
MANIFEST_NAME = "manifest.json"
_MANIFEST_FORMAT = 1

_SPECS: tuple[OrganismSpec, ...] = (
    OrganismSpec(
        name="induction",
        seed=20240712,
        architecture={
            "d_model": 64,
            "d_head": 16,
            "n_heads": 4,
            "n_layers": 2,
            "n_ctx": 96,
            "d_vocab": 128,
            "attn_only": True,
            "normalization_type": "LN",
            "positional_embedding_type": "rotary",
            "init_mode": "gpt2",
        },
        trainer="evidence.organisms.induction:train_induction",
        generator_version="repeated-segment/1",
        steps=800,
        description=(
            "2-layer attention-only transformer trained to continue repeated random token "
            "segments: a previous-token head in layer 0 and an induction head in layer 1"
        ),
    ),
)

# -- The chat organisms: recipes and training in evidence/organisms/chat.py (no torch at import).
from evidence.organisms.chat import (  # noqa: E402
    CHAT_GENERATOR_VERSION,
    CHAT_ORGANISMS,
    CHAT_TOKENIZER_FILE,
    CHAT_TOKENIZER_LOADER,
    SPECIAL_TOKENS,
)

_SPECS += tuple(
    OrganismSpec(
        name=organism.name,
        seed=organism.seed,
        architecture=organism.architecture,
        trainer="evidence.organisms.chat:train_chat",
        generator_version=CHAT_GENERATOR_VERSION,
        steps=organism.steps,
        description=organism.description,
        special_tokens=SPECIAL_TOKENS,
        tokenizer_file=CHAT_TOKENIZER_FILE,
        tokenizer_loader=CHAT_TOKENIZER_LOADER,
    )
    for organism in CHAT_ORGANISMS.values()
)

#: Names of the bundled organisms, in registry order.
ORGANISM_NAMES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`."""

    name: str
    weights_path: Path
    weights_sha256: str
    final_loss: float
    steps: int
    seconds: float
    tokenizer_sha256: str | None = None


def get_spec(name: str) -> OrganismSpec:
    """The registered spec called ``name``; ConfigError if there is none."""
    for spec in _SPECS:
        if spec.name == name:
            return spec
    raise ConfigError(
        f"there is no organism called {name!r}",
        hint="bundled organisms: " + ", ".join(ORGANISM_NAMES),
    )


def weights_dir() -> Path:
    """Where organism weights live: ``$INTERP_DOSSIER_ORGANISMS_DIR`` or the package's ``weights/``."""
    return _default_weights_dir()


def _default_weights_dir() -> Path:
    override = os.environ.get(ENV_WEIGHTS_DIR)
    if override:
        return Path(override)
    return Path(str(resources.files(__name__) / "weights"))


def read_manifest(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Organism name -> manifest entry (empty if there is no manifest yet)."""
    path = (directory if directory is not None else _default_weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"the organism manifest {path} is unreadable: {exc}",
            hint="interp-dossier organisms train",
        ) from exc
    organisms = data.get("organisms") if isinstance(data, dict) else None
    if not isinstance(organisms, dict) or data.get("format") != _MANIFEST_FORMAT:
        raise ModelLoadError(
            f"the organism manifest {path} is not in format {_MANIFEST_FORMAT}",
            hint="interp-dossier organisms train",
        )
    return organisms


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, data)  # mode 0644: these files are package data


def _no_progress(fraction: float, message: str) -> None:
    """Default progress callback: ignore."""


def train(
    name: str, *, weights_dir: Path | None = None, progress: ProgressFn | None = None, seed: int | None = None
) -> TrainResult:
    """Retrain organism ``name`` from its seed; write its weights and its manifest entry.

    ``seed`` trains a replicate from another seed instead (same recipe, data and
    architecture); its manifest entry records that seed.
    """
    from evidence.organisms._training import deterministic, finite_state

    spec = get_spec(name)
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    directory = weights_dir if weights_dir is not None else _default_weights_dir()
    fn = spec.train_fn()
    started = time.perf_counter()
    with deterministic(spec.seed):
        trained = fn(spec, progress or _no_progress)
    seconds = time.perf_counter() - started
    blob = finite_state(trained.state_dict, name=name, generator_version=spec.generator_version)
    weights_file = f"{name}.safetensors"
    weights_sha = hashlib.sha256(blob).hexdigest()
    _write_atomic(directory / weights_file, blob)

    tokenizer_file: str | None = None
    tokenizer_sha: str | None = None
    if trained.tokenizer_json is not None:
        tokenizer_file = spec.tokenizer_file or f"{name}.tokenizer.json"
        tokenizer_bytes = trained.tokenizer_json.encode("utf-8")
        tokenizer_sha = hashlib.sha256(tokenizer_bytes).hexdigest()
        _write_atomic(directory / tokenizer_file, tokenizer_bytes)

    import torch

    entry: dict[str, Any] = {
        "name": name,
        "seed": spec.seed,
        "config": dict(spec.architecture),
        "generator_version": spec.generator_version,
        "steps": spec.steps,
        "final_loss": float(trained.final_loss),
        "weights_file": weights_file,
        "weights_sha256": weights_sha,
        "tokenizer_file": tokenizer_file,
        "tokenizer_sha256": tokenizer_sha,
        "trained_with": {
            "torch": torch.__version__,
            "transformer_lens": metadata.version("transformer-lens"),
            # Float training is bit-reproducible only on the same family of CPU kernels.
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(),
        },
    }
    if spec.seed != get_spec(name).seed:
        entry["replicate"] = True  # trained from another seed than the registered one
    # Read-modify-write of this organism's entry only: the others survive.
    organisms = read_manifest(directory)
    organisms[name] = entry
    manifest = {"format": _MANIFEST_FORMAT, "organisms": organisms}
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _write_atomic(directory / MANIFEST_NAME, text.encode("utf-8"))
    return TrainResult(
        name=name,
        weights_path=directory / weights_file,
        weights_sha256=weights_sha,
        final_loss=float(trained.final_loss),
        steps=spec.steps,
        seconds=seconds,
        tokenizer_sha256=tokenizer_sha,
    )
