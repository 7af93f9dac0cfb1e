"""Memory preflight: each measurement's peak memory, estimated before any work, against what is available.

The estimate is an order of magnitude from the model's shape and parameter count, not a
measurement; it is meant to refuse, in the first seconds, a run that cannot fit (and to say what
would make it fit) instead of one that dies half-way. For one measurement, with ``e`` bytes per
element of the run's dtype, ``B`` sequences per forward pass (its ``batch_size`` parameter, else
:data:`DEFAULT_BATCH`) and ``T`` tokens per sequence (below):

* weights: parameters x ``e``, once per model copy the measurement holds (a randomly
  initialised twin as baseline makes two);
* activations: one block's working set, ``B*T*(12*d_model + 3*d_mlp) + 2*B*n_heads*T^2``
  elements, plus the residual stream kept at every block (``B*T*d_model*(n_layers+1)``), plus the
  logits ``B*T*d_vocab`` at ``e`` bytes and once more in float64 (measurements read logits in
  float64); a measurement that backpropagates keeps every block's working set and the logits'
  gradient as well;
* gradients: a measurement that backpropagates through the model also gets a gradient for every
  weight (the weights keep ``requires_grad``): parameters x ``e``;
* what a measurement keeps of its own, declared on its decorator (``memory=``, an
  :data:`ExtraFn`) and counted with the activations: e.g. edge scoring
  (:func:`edge_scoring_bytes`), whose sender changes and per-example edge scores grow with the
  number of edges.

``T`` is the longest prompt the measurement reads, counted in characters (a sub-word token
covers at least one character, so this bounds the token count from above) plus 64 for a chat
template and generated tokens; a measurement without prompt sets uses ``2 * seq_len + 8`` when it
has a ``seq_len`` parameter, else 64; always at most the model's context.

Available memory: ``$INTERP_DOSSIER_MEMORY_BUDGET`` when set (bytes, or a number with KB, MB,
GB, KiB, MiB or GiB); on ``cuda`` the device's free memory (of all ``n_gpus`` together);
otherwise the system's available memory (psutil when installed, else ``MemAvailable`` in
``/proc/meminfo``), lowered to a cgroup v2 limit when the process runs under one. When none can
be read the preflight says so and does not refuse.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence.datasets import Dataset
from evidence.errors import ConfigError

__all__ = [
    "BATCH_SHARE",
    "BUDGET_VARIABLE",
    "DEFAULT_BATCH",
    "ExtraFn",
    "MAX_ROWS",
    "SCORE_CHUNK_BYTES",
    "SENDER_BATCH_BYTES",
    "MemoryEstimate",
    "ModelSize",
    "available_memory",
    "batch_rows",
    "check_fits",
    "edge_count",
    "edge_scoring_bytes",
    "estimate",
    "format_bytes",
    "parse_size",
    "row_bytes",
    "safetensors_parameters",
    "size_before_loading",
    "size_from_config",
    "size_of_loaded",
]

#: The environment variable that sets the memory budget instead of what the machine reports.
BUDGET_VARIABLE = "INTERP_DOSSIER_MEMORY_BUDGET"
#: Sequences per forward pass assumed for a measurement without a ``batch_size`` parameter.
DEFAULT_BATCH = 32
#: The most sequences :func:`batch_rows` puts in one forward pass when the caller names no batch size.
MAX_ROWS = 256
#: The share of the available memory that one forward pass's activations may take (:func:`batch_rows`).
BATCH_SHARE = 0.25

#: The memory edge scoring forms its float64 products in, a block of senders at a time
#: (:meth:`evidence.measure.methods.edges.EdgeModel.edge_scores`).
SCORE_CHUNK_BYTES = 64 * 2**20

#: The most that every sender's output on one batch of edge scoring may take (``[senders, b, pos,
#: d_model]`` in the run's dtype): a larger batch is scored a part at a time
#: (:class:`evidence.measure.methods.edges.EdgePatchingInputs`).
SENDER_BATCH_BYTES = 512 * 2**20

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_TEMPLATE_AND_GENERATION = 64


@dataclass(frozen=True)
class ModelSize:
    """What the estimate needs to know about a model: its parameter count and shape."""

    n_params: int
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    d_vocab: int
    n_ctx: int
    #: Key/value heads under grouped-query attention; 0: as many as query heads.
    n_kv_heads: int = 0


@dataclass(frozen=True)
class MemoryEstimate:
    """One measurement's estimated peak, in bytes, by part."""

    measurement: str
    weights: int
    activations: int
    gradients: int
    batch: int
    tokens: int

    @property
    def total(self) -> int:
        """Weights, activations and gradients together."""
        return self.weights + self.activations + self.gradients

    def describe(self) -> str:
        """E.g. ``about 1.2 GiB (weights 500 MiB, activations 700 MiB, gradients 0 B; 16 x 56 tokens)``."""
        return (
            f"about {format_bytes(self.total)} (weights {format_bytes(self.weights)}, activations "
            f"{format_bytes(self.activations)}, gradients {format_bytes(self.gradients)}; "
            f"{self.batch} x {self.tokens} tokens per pass)"
        )


#: ``extra(params, size, dtype, batch, tokens) -> bytes``: what a measurement keeps beyond one forward
#: (or backward) pass's working set, for ``batch`` sequences of ``tokens`` tokens per pass.
ExtraFn = Callable[[Mapping[str, object], "ModelSize", str, int, int], int]


def estimate(
    measurement: str,
    params: Mapping[str, object],
    size: ModelSize,
    dtype: str,
    *,
    backprop: bool,
    model_copies: int,
    datasets: Iterable[Dataset] = (),
    extra: ExtraFn | None = None,
) -> MemoryEstimate:
    """The estimated peak of ``measurement`` with ``params`` on a model of ``size`` in ``dtype`` (see the module).

    ``model_copies`` 0: the measurement never runs the subject (its own models are the small organisms).
    ``extra``: what the measurement keeps of its own (counted with the activations).
    """
    e = _BYTES[dtype]
    batch = params.get("batch_size")
    b = batch if isinstance(batch, int) and batch > 0 else DEFAULT_BATCH
    t = _tokens(params, datasets, size.n_ctx)
    if model_copies == 0:
        return MemoryEstimate(measurement=measurement, weights=0, activations=0, gradients=0, batch=b, tokens=t)
    n = b * t
    block = n * (12 * size.d_model + 3 * size.d_mlp) + 2 * b * size.n_heads * t * t
    stream = n * size.d_model * (size.n_layers + 1)
    logits = n * size.d_vocab
    if backprop:
        activations = (size.n_layers * block + stream + 2 * logits) * e + logits * 8
        gradients = size.n_params * e
    else:
        activations = (block + stream + logits) * e + logits * 8
        gradients = 0
    if extra is not None:
        activations += extra(params, size, dtype, b, t)
    return MemoryEstimate(
        measurement=measurement,
        weights=size.n_params * e * model_copies,
        activations=activations,
        gradients=gradients,
        batch=b,
        tokens=t,
    )


def edge_count(size: ModelSize) -> int:
    """Edges of the model's graph (:class:`evidence.measure.methods.edges.EdgeModel`), from its shape alone.

    Senders: the input, each head, each MLP. Receivers: each head's query, each key/value head's
    key and value, each MLP, the logits. Every receiver reads every sender of earlier layers and
    the input; an MLP also reads its own layer's heads; the logits read every sender.
    """
    h, layers = size.n_heads, size.n_layers
    kv = size.n_kv_heads or h
    mlp = 1 if size.d_mlp > 0 else 0
    per_layer = h + mlp  # senders each layer adds
    edges = 1 + layers * per_layer  # the logits read every sender
    for layer in range(layers):
        before = 1 + layer * per_layer
        edges += (h + 2 * kv) * before + mlp * (before + h)
    return edges


def edge_scoring_bytes(params: Mapping[str, object], size: ModelSize, dtype: str, batch: int, tokens: int) -> int:
    """What scoring and verifying a model's edges keeps (``circuit.faithfulness``); 0 when edges are not scored.

    Edges are scored when ``params["edges"]`` (default true) and the model has at most
    ``params["max_edges"]`` (default 4,096). Per batch of ``batch`` x ``tokens`` (fewer rows
    where every sender's output would exceed :data:`SENDER_BATCH_BYTES`): every sender's
    output on the clean and on the source run and their difference, in the run's dtype; the
    receivers' gradients, at once in float64 when they fit :data:`SCORE_CHUNK_BYTES`, else one
    layer's heads at a time plus the chunk and their products; and the per-example scores of every
    edge in float64 for ``params["n_examples"]`` (default 128) examples.
    """
    max_edges = params.get("max_edges", 4096)
    edges = edge_count(size)
    if params.get("edges", True) is False or (isinstance(max_edges, int) and edges > max_edges):
        return 0
    e = _BYTES[dtype]
    h = size.n_heads
    mlp = 1 if size.d_mlp > 0 else 0
    senders = 1 + size.n_layers * (h + mlp)
    receivers = size.n_layers * (h + 2 * (size.n_kv_heads or h) + mlp) + 1
    # a batch whose senders' outputs exceed SENDER_BATCH_BYTES is scored a part at a time
    batch = max(1, min(batch, SENDER_BATCH_BYTES // max(1, senders * tokens * size.d_model * e)))
    stream = batch * tokens * size.d_model  # one sender's (or receiver's) values for the batch
    outputs = 3 * senders * stream * e
    if receivers * stream * 8 <= SCORE_CHUNK_BYTES:
        gradients = receivers * stream * 8 + batch * senders * receivers * 8
    else:
        gradients = h * stream * (e + 8) + SCORE_CHUNK_BYTES + batch * senders * h * 8
    n = params.get("n_examples", 128)
    examples = n if isinstance(n, int) and n > 0 else 128
    return outputs + gradients + (examples + batch) * edges * 8


def _tokens(params: Mapping[str, object], datasets: Iterable[Dataset], n_ctx: int) -> int:
    longest = 0
    for dataset in datasets:
        for prompt in dataset.prompts:
            text = prompt.text if prompt.text is not None else "".join(m.content for m in prompt.messages or [])
            longest = max(longest, len(text))
    if longest:
        tokens = longest + _TEMPLATE_AND_GENERATION
    else:
        seq_len = params.get("seq_len")
        tokens = 2 * seq_len + 8 if isinstance(seq_len, int) and seq_len > 0 else 64
    return max(1, min(tokens, n_ctx)) if n_ctx > 0 else max(1, tokens)


def parse_size(text: str) -> int:
    """Bytes from ``"2GiB"``, ``"500 MB"`` or ``"123456"``; ConfigError for anything else."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"{BUDGET_VARIABLE}={text!r} is not a size",
            hint="give bytes, or a number with KB, MB, GB, KiB, MiB or GiB, e.g. 8GiB",
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(n: int) -> str:
    """``n`` bytes for a person: ``512 B``, ``3.4 MiB``, ``1.2 GiB``."""
    if n < 1024:
        return f"{n} B"
    exponent = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"


def row_bytes(size: ModelSize, dtype: str, tokens: int) -> int:
    """Bytes of one sequence of ``tokens`` in a no-gradient forward pass (the activation terms of :func:`estimate`)."""
    e = _BYTES.get(dtype, 4)
    t = max(tokens, 1)
    block = t * (12 * size.d_model + 3 * size.d_mlp) + 2 * size.n_heads * t * t
    stream = t * size.d_model * (size.n_layers + 1)
    logits = t * size.d_vocab
    return (block + stream + logits) * e + logits * 8


def batch_rows(size: ModelSize, dtype: str, tokens: int, available: int | None, cap: int | None = None) -> int:
    """Sequences of ``tokens`` per forward pass: as many as fit :data:`BATCH_SHARE` of ``available`` bytes.

    At least one, and at most ``cap`` (the caller's batch size: a measurement's ``batch_size``
    parameter), or :data:`MAX_ROWS` when the caller names none; with ``available`` None (memory
    unknown), ``cap`` or :data:`DEFAULT_BATCH`.
    """
    limit = max(cap, 1) if cap is not None else MAX_ROWS
    if available is None:
        return limit if cap is not None else DEFAULT_BATCH
    fits = int(available * BATCH_SHARE) // row_bytes(size, dtype, tokens)
    return max(1, min(limit, fits))


def available_memory(device: str, n_gpus: int = 1) -> tuple[int, str] | None:
    """``(bytes available to the run, where that figure comes from)``, or None when it cannot be read.

    On ``cuda`` with ``n_gpus`` > 1: the free memory of the first ``n_gpus`` devices together.
    """
    budget = os.environ.get(BUDGET_VARIABLE)
    if budget:
        return parse_size(budget), f"the budget {BUDGET_VARIABLE}"
    if device == "cuda":
        import torch

        free = sum(int(torch.cuda.mem_get_info(i)[0]) for i in range(n_gpus))
        return free, "free CUDA memory" if n_gpus == 1 else f"free memory of {n_gpus} CUDA devices"
    system = _system_available()
    if system is None:
        return None
    limit = _cgroup_room()
    if limit is not None and limit < system:
        return limit, "room under the cgroup memory limit"
    return system, "available system memory"


def _system_available() -> int | None:
    try:
        import psutil
    except ModuleNotFoundError:
        try:
            for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None
    return int(psutil.virtual_memory().available)


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        current = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
    except OSError:
        return None
    if not limit.isdigit() or not current.isdigit():
        return None  # "max": no limit
    return max(int(limit) - int(current), 0)


def check_fits(
    estimates: Iterable[MemoryEstimate],
    available: tuple[int, str] | None,
    *,
    dtype: str,
    device: str,
    batched: Iterable[str] = (),
) -> MemoryEstimate | None:
    """The largest estimate, after refusing (ConfigError, with the remedies) a run whose largest does not fit.

    ``batched``: the measurements that take a ``batch_size`` parameter (a smaller batch is a remedy for them).
    """
    largest = max(estimates, key=lambda m: m.total, default=None)
    if largest is None or available is None:
        return largest
    room, source = available
    if largest.total <= room:
        return largest
    remedies = []
    if largest.measurement in set(batched):
        remedies.append(f'a smaller batch_size in [measurements."{largest.measurement}"]')
    if dtype == "float32":
        remedies.append("--dtype bfloat16 (half the memory)")
    if device == "cpu":
        remedies.append("--device cuda on a machine with a large enough GPU")
    remedies.append("more free memory" if not source.startswith("the budget") else f"a larger {BUDGET_VARIABLE}")
    raise ConfigError(
        f"{largest.measurement} would need {largest.describe()}, more than the {format_bytes(room)} of {source}; "
        "nothing was measured",
        hint="try " + ", or ".join(remedies),
    )


_KEYS = {
    "n_layers": ("n_layers", "num_hidden_layers", "n_layer"),
    "d_model": ("d_model", "hidden_size", "n_embd"),
    "n_heads": ("n_heads", "num_attention_heads", "n_head"),
    "d_mlp": ("d_mlp", "intermediate_size", "n_inner", "ffn_dim"),
    "d_vocab": ("d_vocab", "vocab_size"),
    "n_ctx": ("n_ctx", "max_position_embeddings", "n_positions"),
}


def size_from_config(config: Mapping[str, object], n_params: int) -> ModelSize | None:
    """A ModelSize from a Hugging Face ``config.json`` or a TransformerLens configuration; None if a key is missing."""
    found: dict[str, int] = {}
    for field_name, keys in _KEYS.items():
        value = next((config[k] for k in keys if isinstance(config.get(k), int)), None)
        if value is None and field_name == "d_mlp" and "d_model" in found:
            value = 4 * found["d_model"]  # GPT-2's n_inner = None
        if not isinstance(value, int):
            return None
        found[field_name] = value
    kv = next((v for k in ("n_key_value_heads", "num_key_value_heads") if isinstance(v := config.get(k), int)), 0)
    return ModelSize(n_params=n_params, **found, n_kv_heads=kv)


def safetensors_parameters(path: Path) -> int:
    """The number of elements in a safetensors file, read from its header (the weights are not read)."""
    import json

    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if not 0 < length < 1 << 28:
            raise ValueError(f"{path} has no safetensors header")
        header = json.loads(f.read(length))
    return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")


def size_before_loading(organism: str | None, path: Path | None) -> ModelSize | None:
    """The size of a bundled organism or a local Hugging Face directory from its files, without loading it.

    None when the files do not say (a population member, an unusual configuration, pickled
    weights): the caller then sizes the loaded model instead.
    """
    import json

    try:
        if path is not None:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            files = sorted(path.glob("*.safetensors"))
            if not isinstance(config, dict) or not files:
                return None
            return size_from_config(config, sum(safetensors_parameters(f) for f in files))
        from evidence import organisms

        if organism is None or organism not in organisms.ORGANISM_NAMES:
            return None
        directory = organisms.weights_dir()
        entry = organisms.read_manifest(directory).get(organism)
        if entry is None:
            return None
        weights = directory / str(entry["weights_file"])
        return size_from_config(dict(organisms.get_spec(organism).architecture), safetensors_parameters(weights))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the loader reports unreadable files with the remedy


def size_of_loaded(n_params: int, cfg: object) -> ModelSize:
    """The size of a loaded model from its bridge configuration (``bridge.cfg``) and parameter count."""

    def get(name: str, default: int = 0) -> int:
        value = getattr(cfg, name, None)
        return value if isinstance(value, int) else default

    d_model = get("d_model", 1)
    return ModelSize(
        n_params=n_params,
        n_layers=get("n_layers", 1),
        d_model=d_model,
        d_mlp=get("d_mlp", 4 * d_model) or 4 * d_model,
        n_heads=get("n_heads", 1),
        d_vocab=get("d_vocab", 1),
        n_ctx=get("n_ctx"),
        n_kv_heads=get("n_key_value_heads"),
    )
