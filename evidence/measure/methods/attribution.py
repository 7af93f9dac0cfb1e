"""Attribution of nodes: first-order estimates of every node's patching effect at once.

``atp`` is attribution patching (AtP, Kramár et al. 2024), ``atp*`` adds AtP*'s
QK fix (attention patterns recomputed exactly under each patch), and
``eap-ig`` integrates the gradient along the path from the clean to the
corrupted token embeddings (EAP-IG, Hanna et al. 2024). :func:`path_hooks`
gives that path to the edge attribution too. See
docs/methods/circuit.faithfulness.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import HookFn, capture, keep_graph, record, scoped_hooks
from evidence.measure.methods.circuit_tasks import Rows
from evidence.measure.methods.patching import (
    PatchingInputs,
    check_shape,
    hook_names,
    patch_hooks,
    task_metric,
)

__all__ = ["attribution_scores", "path_hooks"]


def _freeze(name: str, stored: dict[str, torch.Tensor]) -> HookFn:
    """A hook that cuts the graph at an attention pattern: the pattern becomes a leaf of its own."""

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        leaf = activation.detach().requires_grad_(True)
        stored[name] = leaf
        return leaf

    return hook


def _pattern_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


_EMBED_HOOK = "hook_embed"


def _interpolating(clean: torch.Tensor, corrupted: torch.Tensor, alpha: float) -> HookFn:
    """A hook on the token embeddings that moves them a fraction ``alpha`` of the way to the corrupted ones."""

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        check_shape(_EMBED_HOOK, activation, corrupted)
        return clean + alpha * (corrupted - clean)

    return hook


def path_hooks(bridge: Any, clean: torch.Tensor, corrupted: torch.Tensor, steps: int) -> list[HookFn]:
    """One ``hook_embed`` hook per integration step: the embeddings at ``alpha = (i + 1/2) / steps`` of the way."""
    embedded = capture(bridge, [_EMBED_HOOK], clean)[_EMBED_HOOK]
    embedded_corrupt = capture(bridge, [_EMBED_HOOK], corrupted)[_EMBED_HOOK]
    return [_interpolating(embedded, embedded_corrupt, (i + 0.5) / steps) for i in range(steps)]


def _path_gradients(
    inputs: PatchingInputs, rows: Rows, clean: torch.Tensor, corrupted: torch.Tensor, steps: int
) -> dict[str, torch.Tensor]:
    """Mean gradient of ``m`` at every node hook along the straight path from the clean to the corrupted input.

    The path runs through the token embeddings: at ``alpha = (i + 1/2) / steps``
    (the midpoint rule) the embeddings are ``e_clean + alpha (e_corrupt -
    e_clean)``, every node takes the activation the model computes from them, and
    the gradient of the task metric (on the clean targets) with respect to each
    node's activation is taken there. One forward and one backward pass per step.
    """
    bridge = inputs.model.bridge
    names = hook_names(inputs.nodes)
    total: dict[str, torch.Tensor] = {}
    for point in path_hooks(bridge, clean, corrupted, steps):
        stored: dict[str, torch.Tensor] = {}
        hooks = [(_EMBED_HOOK, point)] + [(name, keep_graph(name, stored)) for name in names]
        with torch.enable_grad(), scoped_hooks(bridge, hooks):
            value = task_metric(bridge(clean), clean, inputs.task, inputs.metric, rows)
        grads = torch.autograd.grad(value.sum(), [stored[name] for name in names], allow_unused=True)
        for name, grad in zip(names, grads, strict=True):
            if grad is None:
                continue
            grad = grad.detach().to(torch.float64)
            total[name] = total[name] + grad if name in total else grad
    return {name: grad / steps for name, grad in total.items()}


def attribution_scores(
    inputs: PatchingInputs, method: str = "atp", ig_steps: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example attribution scores ``[n, nodes]`` and the clean metric ``[n]``.

    ``method = "atp"``: ``(a_patched - a_clean) . dm/da`` with the gradient of the
    clean run. ``method = "atp*"``: the attention patterns are taken out of the
    linearisation. The gradient is taken with every attention pattern held fixed
    (a leaf of the graph), which gives the node's first-order effect through
    values, residual stream and MLPs; to it is added, for every attention layer
    after the node, ``(P_patched - P_clean) . dm/dP``, where ``P_patched`` is that
    layer's attention pattern recomputed exactly (one forward pass) with the node
    patched, and ``dm/dP`` the gradient with respect to the pattern (the other
    patterns held fixed). The softmax, which saturates, is thus never linearised;
    only the path from each pattern onward is. Nodes with no attention layer after
    them get the same score under both methods. ``method = "eap-ig"``: the
    gradient is the mean of ``ig_steps`` gradients along the path from the clean
    to the corrupted input (integrated gradients over the token embeddings, as
    in EAP-IG, Hanna et al. 2024), so a metric that is saturated at the clean
    run is not judged by its flat gradient there; needs ``ablation = "corrupted"``.
    """
    if method == "eap-ig" and inputs.ablation != "corrupted":
        raise MeasurementError("eap-ig integrates from the clean to the corrupted input; it needs corrupted ablation")
    n = inputs.task.n
    scores = np.zeros((n, len(inputs.nodes)), dtype=np.float64)
    clean_metric = np.zeros(n, dtype=np.float64)
    names = hook_names(inputs.nodes)
    exact_qk = method == "atp*"
    layers = sorted({node.layer for node in inputs.nodes}) if exact_qk else []
    pattern_names = [_pattern_hook(layer) for layer in layers]
    bridge = inputs.model.bridge
    for part, clean, corrupted in inputs.batches():
        stored: dict[str, torch.Tensor] = {}
        patterns: dict[str, torch.Tensor] = {}
        hooks = [(name, keep_graph(name, stored)) for name in names]
        hooks += [(name, _freeze(name, patterns)) for name in pattern_names]
        with torch.enable_grad(), scoped_hooks(bridge, hooks):
            logits = bridge(clean)
            value = task_metric(logits, clean, inputs.task, inputs.metric, part)
        wrt = names + pattern_names
        tensors = [stored[name] for name in names] + [patterns[name] for name in pattern_names]
        grads: dict[str, torch.Tensor | None] = dict(
            zip(wrt, torch.autograd.grad(value.sum(), tensors, allow_unused=True), strict=True)
        )
        if method == "eap-ig":
            along = _path_gradients(inputs, part, clean, corrupted, ig_steps)
            grads.update({name: along.get(name) for name in names})
        sources = inputs.sources(corrupted)
        for j, node in enumerate(inputs.nodes):
            act = stored[node.hook].detach()
            src = sources[node.hook].expand_as(act)
            grad = grads[node.hook]
            if grad is None:  # nothing downstream of this node reaches m
                continue
            delta = (src - act).to(torch.float64) * grad.to(torch.float64)
            if node.head is not None:
                delta = delta[:, :, node.head]
            scores[part, j] = delta.reshape(delta.shape[0], -1).sum(dim=-1).cpu().numpy()
            later = [name for layer, name in zip(layers, pattern_names, strict=True) if layer > node.layer]
            later = [name for name in later if grads[name] is not None]
            if not later:
                continue
            patched: dict[str, torch.Tensor] = {}
            hooks = patch_hooks(inputs.nodes, [j], sources) + [(name, record(name, patched)) for name in later]
            with torch.no_grad(), scoped_hooks(bridge, hooks):
                bridge(clean)
            for name in later:
                change = (patched[name] - patterns[name].detach()).to(torch.float64)
                pattern_grad = grads[name]
                assert pattern_grad is not None  # filtered above
                through = change * pattern_grad.to(torch.float64)
                scores[part, j] += through.reshape(through.shape[0], -1).sum(dim=-1).cpu().numpy()
        clean_metric[part] = value.detach().cpu().numpy()
    if not np.all(np.isfinite(scores)):
        raise MeasurementError("attribution scores are not finite")
    return scores, clean_metric
