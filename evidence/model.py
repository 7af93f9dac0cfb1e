"""Load the model under measurement and pin down exactly which model it is.

Two kinds of subject, one result type:

* a bundled reference organism (``ModelSpec(organism="induction")``): a
  TransformerLens-native model built with ``TransformerBridge.boot_native``
  (``transformer_lens.model_bridge.sources.boot_native``)
  from the configuration in the organism registry, with the committed
  safetensors weights loaded strictly after their sha256 has been checked
  against the committed manifest;
* a local Hugging Face directory (``ModelSpec(path=Path(...))``): loaded with
  ``TransformerBridge.boot_transformers`` with the hub switched off, the
  tokenizer read from the same directory;
* a member of the calibration population (``ModelSpec(organism=NAME)`` with a
  name from ``evidence/population/population.csv``): every file of its
  directory is checked against the population manifest first; an
  attention-only member is then built with ``boot_native`` like a bundled
  organism, any other member is loaded from its directory exactly as a local
  Hugging Face directory is.

Weights are used raw: no LayerNorm folding, no centring, no compatibility
mode. :class:`evidence.records.ModelIdentity` records each of those choices
explicitly, so two dossiers can be compared knowing what was measured.

Device and dtype (``ModelSpec.device``, ``ModelSpec.dtype``; ``--device`` and
``--dtype`` on the command line) are recorded in ``ModelIdentity.processing``.
The default is the CPU in float32. ``cuda`` and ``mps`` are refused with the
remedy when the machine has no such device; float16 on the CPU is refused
(slow, and no more faithful than bfloat16, which the CPU runs natively).
On any device, tensors passed to the model's forward follow the model's device
(a forward pre-hook moves them), so measurements may build their inputs on the
CPU; on a device other than the CPU the logits come back to the CPU (a forward
hook), and :func:`evidence.measure.hooks.capture` stores activations there, so
the measurements' numpy code runs unchanged. ``ModelSpec.n_gpus`` > 1 spreads
a Hugging Face model over that many CUDA devices (``boot_transformers``'
``n_devices``, accelerate's balanced ``device_map``), recorded with each
module's device. None of the GPU paths runs in the test suite (no GPU there).

How prompts of mixed length are batched is recorded as ``processing["batching"]``:
``"left-padded"`` where a probe at load time shows that the model's forward honours an
attention mask and position ids (padded rows give the logits of the rows alone), else
``"by-length"`` (see :func:`evidence.measure.methods.batching.batching_mode`).

``--model NAME`` that is neither a directory nor an organism is looked up in the
local Hugging Face cache (:func:`resolve_cached_model`), offline.

The weights digest (``ModelIdentity.weights_sha256``) covers every weight file:
it is the sha256 of the concatenation, over the files sorted by name, of the
lines ``<file name> NUL <sha256 of the file> LF`` (UTF-8, no spaces). Each file and its own
digest are listed in ``ModelIdentity.weight_files``; the tokenizer digest is
built the same way over the tokenizer files.

torch, transformers and TransformerLens are imported when a model is loaded,
not when this module is imported, so specs can be handled without them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.errors import ConfigError, ModelLoadError
from evidence.records import ModelIdentity, WeightFile

if TYPE_CHECKING:
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    from evidence.population import VerifiedMember

__all__ = [
    "DEVICES",
    "DTYPES",
    "LoadedModel",
    "ModelSpec",
    "PROCESSING",
    "check_device",
    "hub_cache_dir",
    "load_model",
    "random_twin",
    "resolve_cached_model",
    "resolve_model_name",
    "weights_digest",
]

#: How the weights are processed before measuring: not at all. Recorded verbatim
#: in every ModelIdentity (with the dtype and device added).
PROCESSING: Mapping[str, bool] = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
    "refactor_factored_attn_matrices": False,
    "compatibility_mode": False,
}

#: Devices a model can be measured on (``--device``).
DEVICES: tuple[str, ...] = ("cpu", "cuda", "mps")
#: Floating-point formats a model can be measured in (``--dtype``).
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")

_CHUNK = 1 << 20

# Tokenizer files that transformers may read from a model directory.
_TOKENIZER_FILES = (
    "added_tokens.json",
    "chat_template.jinja",
    "merges.txt",
    "special_tokens_map.json",
    "spiece.model",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to measure: exactly one of a bundled organism or a local directory."""

    organism: str | None = None
    path: Path | None = None
    device: str = "cpu"
    dtype: str = "float32"
    #: Spread the model over this many GPUs (accelerate's balanced ``device_map``); 1: one device.
    n_gpus: int = 1

    def __post_init__(self) -> None:
        if (self.organism is None) == (self.path is None):
            raise ConfigError(
                "a model is named either by organism or by path, not both and not neither",
                hint='pass --model, or use [model] organism = "induction" or [model] path = "DIR" in the run spec',
            )
        if self.organism is not None and not self.organism:
            raise ConfigError("the organism name is empty", hint="name one of the bundled organisms")
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}", hint=f"use one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
        if self.dtype == "float16" and self.device == "cpu":
            raise ConfigError(
                "float16 is not offered on the CPU: it is slow there and no more faithful than bfloat16",
                hint="pass --dtype bfloat16 (or float32) on the CPU, or --device cuda for float16",
            )
        if not isinstance(self.n_gpus, int) or self.n_gpus < 1:
            raise ConfigError(f"--n-gpus must be a positive number of GPUs, not {self.n_gpus!r}")
        if self.n_gpus > 1 and self.device != "cuda":
            raise ConfigError("--n-gpus spreads the model over several CUDA devices", hint="add --device cuda")
        if self.n_gpus > 1 and self.path is None:
            raise ConfigError(
                "the organisms are loaded on one device; --n-gpus is for Hugging Face model directories",
                hint="drop --n-gpus",
            )

    def describe(self) -> str:
        """A short human description, e.g. ``organism 'induction'``."""
        device = self.device if self.n_gpus == 1 else f"{self.n_gpus} {self.device} devices"
        where = "" if (self.device, self.dtype) == ("cpu", "float32") else f" on {device} in {self.dtype}"
        if self.organism is not None:
            return f"organism {self.organism!r}{where}"
        return f"Hugging Face directory {str(self.path)!r}{where}"


@dataclass
class LoadedModel:
    """A model ready to measure: the bridge, who it is, and its tokenizer (if any)."""

    bridge: TransformerBridge
    identity: ModelIdentity
    tokenizer: Any | None
    spec: ModelSpec

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.bridge.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        """Attention heads per block."""
        return int(self.bridge.cfg.n_heads)

    @property
    def d_vocab(self) -> int:
        """Vocabulary size (rows of the embedding)."""
        return int(self.bridge.cfg.d_vocab)

    @property
    def n_ctx(self) -> int:
        """Maximum context length."""
        return int(self.bridge.cfg.n_ctx)


def load_model(
    spec: ModelSpec, *, organisms_dir: Path | None = None, population_dir: Path | None = None
) -> LoadedModel:
    """Load ``spec`` on its device in its dtype, raw weights, evaluation mode.

    ``organisms_dir`` overrides where organism weights and their manifest are
    read from (default: :func:`evidence.organisms.weights_dir`); ``population_dir``
    where population members and their manifest are (default:
    :func:`evidence.population.members_dir`).
    """
    check_device(spec.device, spec.n_gpus)
    try:
        if spec.organism is not None:
            from evidence import organisms, population

            if spec.organism not in organisms.ORGANISM_NAMES and population.is_member(spec.organism):
                return _load_member(spec, population.verify_member(spec.organism, population_dir))
            return _load_organism(spec, organisms_dir)
        return _load_huggingface(spec)
    except MemoryError as exc:
        raise ModelLoadError(
            f"out of memory while loading {spec.describe()}",
            hint="free memory or measure a smaller model",
        ) from exc


def random_twin(model: LoadedModel, seed: int) -> LoadedModel:
    """A randomly initialised model of the same architecture (the untrained baseline).

    Organisms are rebuilt with ``boot_native`` and the library's own
    initialisation seeded with ``seed``; Hugging Face models with
    ``boot_transformers(load_weights=False)`` under ``torch.manual_seed(seed)``.
    """
    import torch

    if model.spec.organism is not None:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources import boot_native

        architecture: dict[str, Any] = dict(model.identity.architecture)
        config = TransformerBridgeConfig(**architecture, seed=seed, device="cpu")
        bridge = boot_native(config, tokenizer=model.tokenizer)
    else:
        from transformer_lens.model_bridge import TransformerBridge

        directory = model.spec.path
        if directory is None:  # unreachable: a ModelSpec names an organism or a path
            raise ConfigError(f"{model.spec.describe()} names no directory")
        with _offline(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            bridge = TransformerBridge.boot_transformers(
                str(directory),
                device="cpu",
                dtype=torch.float32,
                tokenizer=model.tokenizer,
                load_weights=False,
            )
    # Initialised in float32 on the CPU (the same numbers on every machine), then placed like the model.
    if model.spec.n_gpus > 1 and _dispatched(model.bridge):
        bridge = _dispatch_like(bridge, model)
    bridge = _place(bridge, model.spec)
    digest, size = _state_digest(bridge.state_dict())  # type: ignore[no-untyped-call]
    name = f"{model.identity.name}-random-init-{seed}"
    identity = ModelIdentity(
        name=name[:200],
        source=model.identity.source,
        path=model.identity.path,
        architecture=model.identity.architecture,
        weights_sha256=weights_digest({"random-init (in memory)": digest}),
        weight_files=[WeightFile(name="random-init (in memory)", sha256=digest, bytes=size)],
        tokenizer_sha256=model.identity.tokenizer_sha256,
        n_parameters=int(bridge.n_params_total),
        processing={**model.identity.processing, "batching": _batching(bridge), "random_init_seed": seed},
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=model.tokenizer, spec=model.spec)


def _dispatch_like(bridge: TransformerBridge, model: LoadedModel) -> TransformerBridge:
    """``bridge`` (a twin of ``model``) cast to the model's dtype and spread over the GPUs by the model's device map.

    A model that needs several GPUs does not fit on the first one, and neither does its twin.
    """
    from accelerate import dispatch_model

    if model.spec.dtype != "float32":
        bridge = bridge.to(dtype=_torch_dtype(model.spec.dtype), print_details=False)
    hf_device_map: Any = model.bridge.original_model.hf_device_map  # set by accelerate when it spread the model
    device_map = dict(hf_device_map)
    dispatch_model(bridge.original_model, device_map=device_map)
    return bridge


def weights_digest(file_digests: Mapping[str, str]) -> str:
    """The aggregate digest over weight files: sha256 of the sorted lines ``name NUL sha256 LF``."""
    lines = "".join(f"{name}\0{digest}\n" for name, digest in sorted(file_digests.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _state_digest(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """sha256 over an in-memory state dict: per sorted key, a header line, then the raw bytes."""
    import torch

    h = hashlib.sha256()
    size = 0
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        data = tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        h.update(f"{key}\0{tensor.dtype}\0{list(tensor.shape)}\n".encode())
        h.update(data)
        size += len(data)
    return h.hexdigest(), size


def _processing(spec: ModelSpec, bridge: TransformerBridge) -> dict[str, Any]:
    """The processing flags, dtype, device, and how prompts are batched (``"left-padded"`` or ``"by-length"``)."""
    from evidence.measure.methods.batching import batching_mode

    return {**PROCESSING, "dtype": spec.dtype, "device": spec.device, "batching": batching_mode(bridge)}


def _batching(bridge: TransformerBridge) -> str:
    from evidence.measure.methods.batching import batching_mode

    return batching_mode(bridge)


def check_device(device: str, n_gpus: int = 1) -> None:
    """Refuse, with the remedy, a device this machine does not have (or not ``n_gpus`` of them)."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("CUDA is not available on this machine", hint="pass --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("MPS (Apple GPU) is not available on this machine", hint="pass --device cpu")
    if n_gpus > 1 and torch.cuda.device_count() < n_gpus:
        raise ModelLoadError(
            f"--n-gpus {n_gpus} asks for more GPUs than this machine has ({torch.cuda.device_count()})",
            hint=f"pass --n-gpus {max(torch.cuda.device_count(), 1)} or fewer",
        )


def _torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name`` (one of :data:`DTYPES`)."""
    import torch

    dtype = getattr(torch, name)
    if not isinstance(dtype, torch.dtype):  # unreachable: ModelSpec admits only DTYPES
        raise ConfigError(f"unknown dtype {name!r}")
    return dtype


def _place(bridge: TransformerBridge, spec: ModelSpec) -> TransformerBridge:
    """Move and cast ``bridge`` as ``spec`` asks, in evaluation mode, with its inputs following its device."""
    import torch

    if spec.n_gpus > 1 and _dispatched(bridge):
        # Placed across the GPUs and cast by accelerate at load: inputs go where the embedding is.
        first = bridge._input_device()
        device = first if isinstance(first, torch.device) else torch.device("cuda", 0)
    else:
        if spec.dtype != "float32":
            bridge = bridge.to(dtype=_torch_dtype(spec.dtype), print_details=False)
        if spec.device != "cpu":
            bridge = bridge.to(device=spec.device, print_details=False)
        device = torch.device(spec.device)
    bridge.eval()

    def inputs_follow(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and not _same_device(value.device, device):
                return value.to(device)
            return value

        return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}

    def outputs_to_cpu(_module: Any, _args: Any, output: Any) -> Any:
        # The measurements read logits with numpy: on another device they come back to the CPU
        # (a differentiable copy, so gradients still reach the model).
        return output.to("cpu") if isinstance(output, torch.Tensor) else output

    if not getattr(bridge, "_interp_dossier_inputs_follow", False):
        bridge.register_forward_pre_hook(inputs_follow, with_kwargs=True)
        if device.type != "cpu":
            bridge.register_forward_hook(outputs_to_cpu)
        bridge._interp_dossier_inputs_follow = True  # attached once
    return bridge


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when 0 is the current one; compare by type and index."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index is None or b.index is None:
        return True
    return bool(a.index == b.index)


def _dispatched(bridge: TransformerBridge) -> bool:
    """Whether accelerate spread the model's modules over devices (``hf_device_map``)."""
    return isinstance(getattr(getattr(bridge, "original_model", None), "hf_device_map", None), dict)


def _device_map(bridge: TransformerBridge) -> dict[str, Any]:
    """Where accelerate put each module, as text (recorded in the identity)."""
    mapping = getattr(getattr(bridge, "original_model", None), "hf_device_map", None) or {}
    return {str(k): str(v) for k, v in sorted(mapping.items())}


def _check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    import torch

    bad = sorted(
        name for name, tensor in state.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    )
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ModelLoadError(
            f"{what} has non-finite weights (NaN or Inf) in {shown}",
            hint="the checkpoint is corrupt or diverged in training; measure a healthy checkpoint",
        )


def _load_organism(spec: ModelSpec, organisms_dir: Path | None) -> LoadedModel:
    from evidence import organisms

    name = spec.organism
    if name is None:  # unreachable: the caller dispatches on spec.organism
        raise ConfigError(f"{spec.describe()} is not an organism")
    organism = organisms.get_spec(name)
    directory = organisms_dir if organisms_dir is not None else organisms.weights_dir()
    remedy = f"interp-dossier organisms train {name}"
    entry = organisms.read_manifest(directory).get(name)
    if entry is None:
        raise ModelLoadError(
            f"organism {name!r} has no entry in {directory / organisms.MANIFEST_NAME}",
            hint=remedy,
        )
    seed = entry.get("seed")
    replicate = entry.get("replicate") is True and isinstance(seed, int) and seed != organism.seed
    if entry.get("config") != dict(organism.architecture) or not (seed == organism.seed or replicate):
        raise ModelLoadError(
            f"the weights of organism {name!r} were trained for a different configuration "
            "than the registry now declares",
            hint=remedy,
        )
    weights = directory / str(entry["weights_file"])
    if not weights.is_file():
        raise ModelLoadError(f"organism weights file {weights} is missing", hint=remedy)
    expected = str(entry["weights_sha256"])
    actual = _sha256_file(weights)
    if actual != expected:
        raise ModelLoadError(
            f"organism weights file {weights} has sha256 {actual}, but the manifest expects {expected}",
            hint=remedy,
        )

    tokenizer = None
    tokenizer_sha: str | None = None
    if entry.get("tokenizer_file"):
        tokenizer_path = directory / str(entry["tokenizer_file"])
        if not tokenizer_path.is_file():
            raise ModelLoadError(f"organism tokenizer file {tokenizer_path} is missing", hint=remedy)
        file_sha = _sha256_file(tokenizer_path)
        if file_sha != entry.get("tokenizer_sha256"):
            raise ModelLoadError(
                f"organism tokenizer file {tokenizer_path} has sha256 {file_sha}, but the "
                f"manifest expects {entry.get('tokenizer_sha256')}",
                hint=remedy,
            )
        try:
            tokenizer = organism.load_tokenizer(tokenizer_path)
        except Exception as exc:
            raise ModelLoadError(f"cannot read organism tokenizer {tokenizer_path}: {exc}", hint=remedy) from exc
        tokenizer_sha = weights_digest({tokenizer_path.name: file_sha})

    bridge = _boot_native(organism.architecture, organism.seed, weights, tokenizer, what=f"organism {name!r}",
                          remedy=remedy, spec=spec)  # fmt: skip
    identity = ModelIdentity(
        name=f"{name} (replicate from seed {seed})" if replicate else name,
        source="organism",
        path=None,
        architecture=dict(organism.architecture),
        weights_sha256=weights_digest({weights.name: actual}),
        weight_files=[WeightFile(name=weights.name, sha256=actual, bytes=weights.stat().st_size)],
        tokenizer_sha256=tokenizer_sha,
        n_parameters=int(bridge.n_params_total),
        processing=_processing(spec, bridge),
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=tokenizer, spec=spec)


def _boot_native(
    architecture: Mapping[str, Any],
    seed: int,
    weights: Path,
    tokenizer: Any,
    *,
    what: str,
    remedy: str,
    spec: ModelSpec,
) -> TransformerBridge:
    """A TransformerLens-native model of ``architecture`` with the (already verified) weights file loaded."""
    import torch
    from safetensors.torch import load_file
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources import boot_native

    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"cannot read the weights of {what} ({weights}): {exc}", hint=remedy) from exc
    _check_finite(state, what)
    config = TransformerBridgeConfig(**architecture, seed=seed, device="cpu")
    with torch.random.fork_rng(devices=[]):
        bridge = boot_native(config, tokenizer=tokenizer)
    try:
        bridge.load_state_dict(state, strict=True)  # type: ignore[no-untyped-call]
    except RuntimeError as exc:
        raise ModelLoadError(f"the weights {weights} do not fit the architecture of {what}: {exc}",
                             hint=remedy) from exc  # fmt: skip
    return _place(bridge, spec)


def _load_member(spec: ModelSpec, verified: VerifiedMember) -> LoadedModel:
    """A population member whose files were just checked against the manifest."""
    directory = verified.directory
    if verified.native_architecture is None:
        return _load_huggingface(ModelSpec(path=directory, device=spec.device, dtype=spec.dtype))
    name = verified.member.name
    remedy = f"interp-dossier population train --member {name}"
    with _offline():
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the tokenizer of population member {name!r}: {_one_line(exc)}",
                                 hint=remedy) from exc  # fmt: skip
    weights = directory / "model.safetensors"
    bridge = _boot_native(verified.native_architecture, verified.member.seed, weights, tokenizer,
                          what=f"population member {name!r}", remedy=remedy, spec=spec)  # fmt: skip
    tokenizer_files = {f: d for f, d in verified.files.items() if f in _TOKENIZER_FILES}
    identity = ModelIdentity(
        name=name,
        source="organism",
        path=str(directory),
        architecture=dict(verified.native_architecture),
        weights_sha256=weights_digest({weights.name: verified.files[weights.name]}),
        weight_files=[WeightFile(name=weights.name, sha256=verified.files[weights.name],
                                 bytes=weights.stat().st_size)],  # fmt: skip
        tokenizer_sha256=weights_digest(tokenizer_files),
        n_parameters=int(bridge.n_params_total),
        processing=_processing(spec, bridge),
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=tokenizer, spec=spec)


@contextmanager
def _offline() -> Iterator[None]:
    """Switch the Hugging Face hub off for the duration of a load."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {key: os.environ.get(key) for key in keys}
    for key in keys:
        os.environ[key] = "1"
    import huggingface_hub.constants as hub_constants

    saved_flag = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# The files a tokenizer's vocabulary can come from: one of these sets must be complete.
_VOCABULARIES: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),
    ("vocab.json", "merges.txt"),
    ("tokenizer.model",),
    ("spiece.model",),
    ("vocab.txt",),
)


def _require_vocabulary(directory: Path, present: set[str]) -> None:
    """Refuse, naming what is missing, tokenizer files that hold settings but no vocabulary.

    A file of another vocabulary format (``*.model``, ``*.tiktoken``, ``*.spm``, a name with
    ``vocab`` or ``merges``) lets the tokenizer library decide.
    """
    if any(all(name in present for name in files) for files in _VOCABULARIES):
        return
    known = {name for files in _VOCABULARIES for name in files}
    if any(
        p.suffix in {".model", ".tiktoken", ".spm"} or "vocab" in p.name or "merges" in p.name
        for p in directory.iterdir()
        if p.is_file() and p.name not in known
    ):
        return
    partial = [files for files in _VOCABULARIES if any(name in present for name in files)]
    if partial:
        missing = ", ".join(name for name in partial[0] if name not in present)
        what = f"{' with '.join(partial[0])} is incomplete: {missing} is missing"
    else:
        what = (f"it has {', '.join(sorted(present))} but no vocabulary file (tokenizer.json, vocab.json and "
                "merges.txt, tokenizer.model, spiece.model or vocab.txt)")  # fmt: skip
    raise ModelLoadError(
        f"the tokenizer in {directory} cannot be loaded: {what}",
        hint="save the tokenizer next to the model with tokenizer.save_pretrained(DIR)",
    )


def _one_line(exc: BaseException) -> str:
    """A library's exception message on one line (some span several)."""
    return " ".join(str(exc).split())


def _weight_files(directory: Path) -> list[Path]:
    safetensors = sorted(p for p in directory.glob("*.safetensors") if p.is_file())
    if safetensors:
        return safetensors
    return sorted(p for p in directory.glob("pytorch_model*.bin") if p.is_file())


def _load_huggingface(spec: ModelSpec) -> LoadedModel:
    directory = spec.path
    if directory is None:  # unreachable: the caller dispatches on spec.organism
        raise ConfigError(f"{spec.describe()} names no directory")
    if not directory.exists():
        raise ModelLoadError(
            f"there is no model directory at {directory}",
            hint="point [model] path (or --model) at a local Hugging Face model directory",
        )
    if not directory.is_dir():
        raise ModelLoadError(
            f"{directory} is a file, not a model directory",
            hint="point [model] path (or --model) at the directory that holds config.json",
        )
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{directory} has no config.json, so it is not a Hugging Face model directory",
            hint="save the model with model.save_pretrained(DIR) and point at DIR",
        )
    try:
        architecture = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"{config_path} is not readable JSON: {exc}",
            hint="save the model again with model.save_pretrained(DIR)",
        ) from exc
    if not isinstance(architecture, dict):
        raise ModelLoadError(f"{config_path} does not hold a JSON object", hint="save the model again")
    weight_paths = _weight_files(directory)
    if not weight_paths:
        raise ModelLoadError(
            f"{directory} has no weight files (*.safetensors or pytorch_model*.bin)",
            hint="save the weights with model.save_pretrained(DIR)",
        )
    tokenizer_paths = sorted(p for p in (directory / n for n in _TOKENIZER_FILES) if p.is_file())
    if not tokenizer_paths:
        raise ModelLoadError(
            f"{directory} has no tokenizer files (e.g. tokenizer.json)",
            hint="save the tokenizer next to the model with tokenizer.save_pretrained(DIR)",
        )
    _require_vocabulary(directory, {p.name for p in tokenizer_paths})

    file_digests = {p.name: _sha256_file(p) for p in weight_paths}
    weight_files = [WeightFile(name=p.name, sha256=file_digests[p.name], bytes=p.stat().st_size) for p in weight_paths]
    tokenizer_sha = weights_digest({p.name: _sha256_file(p) for p in tokenizer_paths})

    with _offline():
        from transformer_lens.model_bridge import TransformerBridge
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load the tokenizer from {directory}: {_one_line(exc)}",
                hint="save the tokenizer next to the model with tokenizer.save_pretrained(DIR)",
            ) from exc
        try:
            placement: dict[str, Any] = (
                {"n_devices": spec.n_gpus} if spec.n_gpus > 1 else {"device": spec.device}
            )  # device and a device map are exclusive
            bridge = TransformerBridge.boot_transformers(
                str(directory), dtype=_torch_dtype(spec.dtype), tokenizer=tokenizer, **placement
            )
        except MemoryError:
            raise
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower() or "can't allocate" in str(exc).lower():
                raise ModelLoadError(
                    f"out of memory while loading {directory}",
                    hint="free memory or measure a smaller model",
                ) from exc
            raise ModelLoadError(
                f"TransformerLens cannot load {directory}: {_one_line(exc)}",
                hint="check that the directory holds a complete checkpoint of a supported architecture",
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"TransformerLens cannot load {directory}: {_one_line(exc)}",
                hint="check that the directory holds a complete checkpoint of a supported architecture",
            ) from exc
    bridge = _place(bridge, spec)
    _check_finite(bridge.original_model.state_dict(), f"the model in {directory}")
    identity = ModelIdentity(
        name=directory.resolve().name or "model",
        source="huggingface",
        path=str(directory),
        architecture=architecture,
        weights_sha256=weights_digest(file_digests),
        weight_files=weight_files,
        tokenizer_sha256=tokenizer_sha,
        n_parameters=int(bridge.n_params_total),
        processing={
            **_processing(spec, bridge),
            "attn_implementation": "eager",
            **({"n_gpus": spec.n_gpus, "device_map": _device_map(bridge)} if spec.n_gpus > 1 else {}),
        },
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=tokenizer, spec=spec)


# --- models named by a Hugging Face id, read from the local cache -------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, where ``huggingface_hub`` keeps it.

    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else (
        Path.home() / ".cache")  # fmt: skip
    return base / "huggingface" / "hub"


def resolve_cached_model(name: str) -> Path | None:
    """The snapshot directory of model ``name`` (``org/name`` or ``name``) in the local hub cache, if it is there.

    The cache keeps ``models--org--name/snapshots/<revision>/`` and ``refs/main`` naming the
    revision downloaded last; with no ``refs/main``, a single snapshot is taken as it is. Several
    snapshots and no ``refs/main`` are ambiguous: a ConfigError asking for the directory.
    """
    if not _HUB_ID.match(name):
        return None
    repo = hub_cache_dir() / ("models--" + name.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text(encoding="utf-8").strip()
        if (snapshots / revision).is_dir():
            return snapshots / revision
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) == 1:
        return found[0]
    if not found:
        return None
    raise ConfigError(
        f"model {name!r} has {len(found)} snapshots in the local Hugging Face cache ({snapshots}) and no refs/main",
        hint="pass the snapshot directory you mean with --model DIR",
    )


def resolve_model_name(model: str, *, known_organisms: Sequence[str], is_organism: Callable[[str], bool]) -> Path | str:
    """What ``--model MODEL`` names: a directory (returned as its resolved path) or an organism (its name).

    In this order: an existing directory or file; an organism (``is_organism``); a model in the
    local Hugging Face cache. Anything else is a ConfigError that suggests the nearest directory
    or organism name, and says how to bring a hub model into the cache.
    """
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    if is_organism(model):
        return model
    cached = resolve_cached_model(model)
    if cached is not None:
        return cached.resolve()
    parent = path.parent if str(path.parent) else Path(".")
    siblings = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    near_dirs = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.75)
    near_organisms = difflib.get_close_matches(model, list(known_organisms), n=1, cutoff=0.75)
    if near_dirs:
        suggestion = str(parent / near_dirs[0]) if str(parent) != "." else near_dirs[0]
        raise ConfigError(
            f"there is no model directory {model!r}; did you mean {suggestion!r}?",
            hint=f"pass --model {suggestion}",
        )
    if near_organisms:
        raise ConfigError(
            f"there is no organism or model directory {model!r}; did you mean the organism {near_organisms[0]!r}?",
            hint=f"pass --model {near_organisms[0]}",
        )
    if _HUB_ID.match(model) and not model.startswith("."):
        where = hub_cache_dir() / ("models--" + model.replace("/", "--"))
        raise ConfigError(
            f"model {model!r} is not a directory, an organism, or in the local Hugging Face cache ({where})",
            hint=f"download it on a connected machine with `huggingface-cli download {model}` and copy the cache "
            "(or set HF_HUB_CACHE to where it is), or pass a local directory",
        )
    raise ConfigError(
        f"there is no model directory at {model}",
        hint="point --model at a local Hugging Face model directory, an organism name, or a cached hub model",
    )
