"""Node activation patching: components, the induction examples, the task metric, patched runs.

A *node* is an attention head (its output before the output projection,
``blocks.{L}.attn.hook_z``) or a layer's MLP (``blocks.{L}.hook_mlp_out``).
*Patching* a node replaces its activation in the clean run by its activation
on the corrupted input (``ablation = "corrupted"``) or by the mean of the
corrupted activations over the examples, per position (``ablation = "mean"``).
Patching runs on any :class:`~evidence.measure.methods.circuit_tasks.CircuitTask`;
:func:`induction_task` builds the induction one (in-context copying:
``[BOS] + s + s`` against ``[BOS] + r + s``; the metric is read on the second copy).
See docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import HookFn, capture, scoped_hooks
from evidence.measure.methods.behaviour import bos_token_id, ordinary_token_ids
from evidence.measure.methods.circuit_tasks import CircuitTask, InductionTask, Rows
from evidence.model import LoadedModel

__all__ = [
    "InductionTask",
    "Node",
    "PatchingInputs",
    "activation_patching_effects",
    "check_shape",
    "default_seq_len",
    "hook_names",
    "induction_task",
    "model_nodes",
    "patch_hooks",
    "patched_metrics",
    "task_metric",
    "unpatched_metrics",
]


@dataclass(frozen=True)
class Node:
    """One component: an attention head (``head`` set) or a layer's MLP (``head`` None)."""

    layer: int
    head: int | None

    @property
    def hook(self) -> str:
        """The hook point whose activation stands for this node."""
        if self.head is None:
            return f"blocks.{self.layer}.hook_mlp_out"
        return f"blocks.{self.layer}.attn.hook_z"

    @property
    def label(self) -> str:
        """``L1H3`` or ``L0MLP``."""
        return f"L{self.layer}MLP" if self.head is None else f"L{self.layer}H{self.head}"

    @property
    def kind(self) -> str:
        """``head`` or ``mlp``."""
        return "mlp" if self.head is None else "head"


# -- inputs and nodes --------------------------------------------------------------------------


def default_seq_len(model: LoadedModel) -> int:
    """16, or the longest segment that fits twice into the context (after a BOS token, if any)."""
    room = (model.n_ctx - (1 if bos_token_id(model) is not None else 0)) // 2
    if room < 2:
        raise MeasurementError(f"the model's context of {model.n_ctx} tokens cannot hold a repeated segment")
    return min(16, room)


def induction_task(model: LoadedModel, n_examples: int, seq_len: int, rng: np.random.Generator) -> InductionTask:
    """Repeated random segments and their corrupted twins, drawn from the model's ordinary tokens."""
    allowed = ordinary_token_ids(model)
    if allowed.size < 2:
        raise MeasurementError("the vocabulary has fewer than two ordinary tokens")
    segment = allowed[rng.integers(0, allowed.size, size=(n_examples, seq_len))]
    fresh = allowed[rng.integers(0, allowed.size, size=(n_examples, seq_len))]
    bos = bos_token_id(model)
    prefix = [np.full((n_examples, 1), bos, dtype=np.int64)] if bos is not None else []
    clean = np.concatenate([*prefix, segment, segment], axis=1)
    corrupted = np.concatenate([*prefix, fresh, segment], axis=1)
    task = InductionTask(
        clean=np.ascontiguousarray(clean, dtype=np.int64),
        corrupted=np.ascontiguousarray(corrupted, dtype=np.int64),
        offset=len(prefix),
        seq_len=seq_len,
    )
    if task.length > model.n_ctx:
        raise MeasurementError(
            f"examples of {task.length} tokens exceed the model's context of {model.n_ctx}",
            hint=f"use seq_len <= {(model.n_ctx - task.offset) // 2}",
        )
    return task


def model_nodes(model: LoadedModel) -> list[Node]:
    """Every attention head, and every MLP when the model has MLPs, in layer order."""
    available = set(getattr(model.bridge, "hook_dict", {}))
    has_mlp = not bool(getattr(model.bridge.cfg, "attn_only", False))
    nodes: list[Node] = []
    for layer in range(model.n_layers):
        z = f"blocks.{layer}.attn.hook_z"
        if z not in available:
            raise MeasurementError(
                f"the model has no hook point {z!r}", hint="circuit.faithfulness needs per-head outputs"
            )
        nodes += [Node(layer, head) for head in range(model.n_heads)]
        if has_mlp:
            mlp = Node(layer, None)
            if mlp.hook not in available:
                raise MeasurementError(f"the model has MLPs but no hook point {mlp.hook!r}")
            nodes.append(mlp)
    return nodes


def task_metric(
    logits: torch.Tensor, targets: torch.Tensor, task: CircuitTask, kind: str, rows: Rows | None = None
) -> torch.Tensor:
    """Per-example task metric, float64 ``[batch]``; differentiable (:meth:`CircuitTask.metric`).

    ``rows``: which of the task's examples the batch holds (as :meth:`CircuitTask.batches` yields them).
    """
    return task.metric(logits, targets, kind, rows)


# -- patching ----------------------------------------------------------------------------------


def hook_names(nodes: Iterable[Node]) -> list[str]:
    """The hook points the ``nodes`` stand at, sorted and without repeats."""
    return sorted({node.hook for node in nodes})


def check_shape(name: str, activation: torch.Tensor, expected: torch.Tensor) -> None:
    """Refuse a patch source whose shape differs from the activation it replaces."""
    if activation.shape != expected.shape:
        raise MeasurementError(
            f"{name} has shape {tuple(activation.shape)} in the clean run but {tuple(expected.shape)} "
            "in the patch source"
        )


def _patch_hook(name: str, heads: list[int], whole: bool, source: torch.Tensor) -> HookFn:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        value = source.expand_as(activation) if source.shape[0] == 1 else source
        check_shape(name, activation, value)
        if whole:
            return value.to(activation)
        patched = activation.clone()
        patched[:, :, heads] = value[:, :, heads].to(activation)
        return patched

    return hook


def patch_hooks(
    nodes: Sequence[Node], chosen: Iterable[int], sources: dict[str, torch.Tensor]
) -> list[tuple[str, HookFn]]:
    by_hook: dict[str, tuple[list[int], bool]] = {}
    for index in sorted(chosen):
        node = nodes[index]
        heads, whole = by_hook.get(node.hook, ([], False))
        if node.head is None:
            whole = True
        else:
            heads.append(node.head)
        by_hook[node.hook] = (heads, whole)
    return [(name, _patch_hook(name, heads, whole, sources[name])) for name, (heads, whole) in sorted(by_hook.items())]


@dataclass
class PatchingInputs:
    """What patching runs on: model, nodes, examples, metric and the source of patched activations."""

    model: LoadedModel
    nodes: list[Node]
    task: CircuitTask
    metric: str
    ablation: str
    batch_size: int
    means: dict[str, torch.Tensor] | None = None

    def batches(self) -> Iterable[tuple[Rows, torch.Tensor, torch.Tensor]]:
        """``(rows, clean tokens, corrupted tokens)`` per batch of equal-length examples."""
        return self.task.batches(self.batch_size)

    def sources(self, corrupted: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per hook point, what a patched node takes its activation from, for one batch."""
        names = hook_names(self.nodes)
        if self.ablation == "corrupted":
            return capture(self.model.bridge, names, corrupted)
        if self.means is None:
            if not self.task.uniform_length:
                raise MeasurementError(
                    "mean ablation averages each position over the examples, but these examples differ in length",
                    hint="use ablation = 'corrupted'",
                )
            sums: dict[str, torch.Tensor] = {}
            for _, _, batch in self.batches():
                for name, value in capture(self.model.bridge, names, batch).items():
                    total = value.to(torch.float64).sum(dim=0, keepdim=True)
                    sums[name] = sums[name] + total if name in sums else total
            n = float(self.task.n)
            self.means = {name: (total / n).to(torch.float32) for name, total in sums.items()}
        return self.means


def patched_metrics(
    inputs: PatchingInputs, patch_sets: Sequence[frozenset[int]], progress: Callable[[float], None]
) -> np.ndarray:
    """Task metric ``[sets, n]`` with each set of nodes patched (an empty set is the clean run)."""
    n = inputs.task.n
    out = np.zeros((len(patch_sets), n), dtype=np.float64)
    done, total = 0, max(1, len(patch_sets) * n)
    for part, clean, corrupted in inputs.batches():
        sources = inputs.sources(corrupted)
        for i, chosen in enumerate(patch_sets):
            with torch.no_grad(), scoped_hooks(inputs.model.bridge, patch_hooks(inputs.nodes, chosen, sources)):
                logits = inputs.model.bridge(clean)
            out[i, part] = task_metric(logits, clean, inputs.task, inputs.metric, part).numpy()
            done += clean.shape[0]
            progress(done / total)
    if not np.all(np.isfinite(out)):
        raise MeasurementError("the task metric is not finite under patching")
    return out


def activation_patching_effects(
    inputs: PatchingInputs, verified: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(effects [n, len(verified)], clean [n], all_patched [n])``: each node patched alone."""
    everything = frozenset(range(len(inputs.nodes)))
    sets = [frozenset(), *(frozenset({j}) for j in verified), everything]
    values = patched_metrics(inputs, sets, lambda _: None)
    clean, alone, none_clean = values[0], values[1:-1], values[-1]
    return (alone - clean).T, clean, none_clean


@torch.no_grad()
def unpatched_metrics(inputs: PatchingInputs) -> tuple[np.ndarray, np.ndarray]:
    """``(m on the clean inputs [n], m on the corrupted inputs [n])``, nothing patched.

    The metric is read from each run's logits on that run's own tokens.
    """
    n = inputs.task.n
    out = np.zeros((2, n), dtype=np.float64)
    for part, clean, corrupted in inputs.batches():
        for i, tokens in enumerate((clean, corrupted)):
            logits = inputs.model.bridge(tokens)
            out[i, part] = task_metric(logits, tokens, inputs.task, inputs.metric, part).numpy()
    if not np.all(np.isfinite(out)):
        raise MeasurementError("the task metric is not finite")
    return out[0], out[1]
