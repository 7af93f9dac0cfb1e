"""Edges of the residual stream for ``circuit.faithfulness``: who writes what each component reads.

The residual stream that a component reads is a sum of what earlier
components wrote: the token embeddings (the *input*), each attention head's
output (``z_h W_O[h]``, its bias aside), each MLP's output, plus constant
biases. An *edge* ``u -> v`` joins a writer (sender) ``u`` to a reader
(receiver) ``v``, where a receiver is one head's query, key or value input
(``L1H2.k``), an MLP's input, or the unembedding (``logits``). Senders of a
layer-``l`` head are the input and everything in layers ``< l``; an MLP also
reads the heads of its own layer; ``logits`` read everything.

Patching an edge changes what one receiver reads and nothing else: the
receiver computes from ``resid + sum over its patched senders of (a_u(source)
- a_u(current run))``, while every other reader, and the residual stream
itself, see the current run. Patching all edges into a receiver therefore
feeds it the source run's stream; patching every edge gives the source run.
The receiver is recomputed from the model's own weights and normalisation
modules (``LN1(r) W_Q[h] + b_Q[h]`` for a query, ``MLP(LN2(r))`` for an MLP);
:meth:`EdgeModel.check` verifies, before anything is scored, that this
recomputation and the split of the stream into writers reproduce the
model's own activations, so an architecture that computes otherwise is
refused rather than scored wrongly.

Attribution of an edge is ``(a_u(source) - a_u(clean)) . dm/d(input of v)``
summed over positions (edge attribution patching, Syed et al. 2023), where
the gradient with respect to a receiver's own input is obtained by pulling
the gradient at the receiver's output back through its recomputation; with
integrated gradients (EAP-IG, Hanna et al. 2024) that gradient is averaged
along the straight path from the clean to the corrupted token embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import HookFn, capture, keep_graph, record, scoped_hooks
from evidence.measure.memory import SCORE_CHUNK_BYTES, SENDER_BATCH_BYTES
from evidence.measure.methods.attribution import path_hooks
from evidence.measure.methods.circuit_tasks import Rows
from evidence.measure.methods.patching import PatchingInputs, task_metric
from evidence.model import LoadedModel

__all__ = [
    "Edge",
    "EdgeModel",
    "EdgePatchingInputs",
    "Receiver",
    "Sender",
    "edge_attribution_scores",
    "edge_model",
    "edge_patched_metrics",
]

_EMBED = "hook_embed"
_FINAL = "ln_final.hook_in"
_CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Sender:
    """A writer into the residual stream: the input, a head (``head`` set) or an MLP."""

    kind: str  # "input", "head", "mlp"
    layer: int = -1
    head: int | None = None

    @property
    def label(self) -> str:
        """``input``, ``L0H3`` or ``L0MLP``."""
        if self.kind == "input":
            return "input"
        return f"L{self.layer}MLP" if self.kind == "mlp" else f"L{self.layer}H{self.head}"


@dataclass(frozen=True)
class Receiver:
    """A reader of the residual stream: a head's q, k or v input, an MLP, or the logits."""

    kind: str  # "q", "k", "v", "mlp", "logits"
    layer: int = -1
    head: int | None = None

    #: the key/value head this receiver is, in a model whose keys and values are shared by groups of heads
    grouped: bool = False

    @property
    def label(self) -> str:
        """``L1H2.k``, ``L1MLP`` or ``logits``; ``L1KV0.k`` for a key/value head shared by a group (GQA)."""
        if self.kind == "logits":
            return "logits"
        if self.kind == "mlp":
            return f"L{self.layer}MLP"
        return f"L{self.layer}{'KV' if self.grouped else 'H'}{self.head}.{self.kind}"


@dataclass(frozen=True)
class Edge:
    """``sender -> receiver``, as indices into :attr:`EdgeModel.senders` and :attr:`EdgeModel.receivers`."""

    sender: int
    receiver: int


class EdgeModel:
    """The senders, receivers and edges of a model, and the recomputations that patch or differentiate them."""

    def __init__(self, model: LoadedModel) -> None:
        bridge = model.bridge
        self.model = model
        self.n_layers = model.n_layers
        self.n_heads = model.n_heads
        self.has_mlp = not bool(getattr(bridge.cfg, "attn_only", False))
        available = set(getattr(bridge, "hook_dict", {}))
        needed = [_EMBED, _FINAL]
        for layer in range(self.n_layers):
            needed += [f"blocks.{layer}.hook_resid_pre"] + [f"blocks.{layer}.attn.hook_{c}" for c in "qkvz"]
            if self.has_mlp:
                needed += [f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_mlp_out"]
        missing = [name for name in needed if name not in available]
        if missing:
            raise MeasurementError(f"edge scoring needs hook points this model lacks: {missing}")
        try:
            self.weights = [_attention_weights(bridge.blocks[layer].attn) for layer in range(self.n_layers)]
            self.ln1 = [_module(bridge.blocks[layer].ln1) for layer in range(self.n_layers)]
            self.ln2 = [_module(bridge.blocks[layer].ln2) for layer in range(self.n_layers)] if self.has_mlp else []
            self.mlp = [_module(bridge.blocks[layer].mlp) for layer in range(self.n_layers)] if self.has_mlp else []
        except (AttributeError, IndexError) as exc:
            raise MeasurementError(f"edge scoring cannot read the attention weights or modules: {exc}") from exc
        for layer, w in enumerate(self.weights):
            shapes = {name: tuple(t.shape) for name, t in w.items()}
            kv = shapes["W_K"][0]
            if (
                shapes["W_Q"][0] != self.n_heads
                or shapes["W_K"] != shapes["W_V"]
                or shapes["W_K"][1:] != shapes["W_Q"][1:]
                or kv == 0
                or self.n_heads % kv
            ):
                raise MeasurementError(
                    f"edge patching needs key and value heads shared by equal groups of query heads; layer {layer} "
                    f"has weights {shapes}"
                )
        self.d_model = int(bridge.cfg.d_model)
        #: bytes per element of the model's activations (its weights' dtype)
        self.dtype_bytes = int(self.weights[0]["W_Q"].element_size()) if self.weights else 4
        #: key/value heads per layer (fewer than query heads under grouped-query attention)
        self.n_kv_heads = int(self.weights[0]["W_K"].shape[0]) if self.weights else self.n_heads
        grouped = self.n_kv_heads != self.n_heads

        self.senders = [Sender("input")]
        self.receivers: list[Receiver] = []
        for layer in range(self.n_layers):
            self.senders += [Sender("head", layer, h) for h in range(self.n_heads)]
            if self.has_mlp:
                self.senders.append(Sender("mlp", layer))
            self.receivers += [
                Receiver(c, layer, h, grouped=grouped and c != "q")
                for h in range(self.n_heads)
                for c in "qkv"
                if c == "q" or h < self.n_kv_heads
            ]
            if self.has_mlp:
                self.receivers.append(Receiver("mlp", layer))
        self.receivers.append(Receiver("logits"))
        #: relative error of the last :meth:`check` (None before one has run)
        self.recompute_error: float | None = None
        self.edges = [
            Edge(s, r)
            for r, receiver in enumerate(self.receivers)
            for s, sender in enumerate(self.senders)
            if _reads(receiver, sender, self.n_layers)
        ]

    def label(self, edge: Edge) -> str:
        """``L0H3->L1H1.k``."""
        return f"{self.senders[edge.sender].label}->{self.receivers[edge.receiver].label}"

    # -- the split of the stream into writers -----------------------------------------------------

    def _capture_names(self) -> list[str]:
        names = [_EMBED] + [f"blocks.{layer}.attn.hook_z" for layer in range(self.n_layers)]
        if self.has_mlp:
            names += [f"blocks.{layer}.hook_mlp_out" for layer in range(self.n_layers)]
        return names

    def _head_outputs(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """``[heads, batch, pos, d_model]``: what each head of ``layer`` writes."""
        return torch.einsum("bphe,hed->hbpd", z, self.weights[layer]["W_O"].to(z))

    def _stack(self, embed: torch.Tensor, z: dict[int, torch.Tensor], mlp: dict[int, torch.Tensor]) -> torch.Tensor:
        parts = [embed[None]]
        for layer in range(self.n_layers):
            parts.append(self._head_outputs(layer, z[layer]))
            if self.has_mlp:
                parts.append(mlp[layer][None])
        return torch.cat(parts, dim=0)

    def outputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Every sender's output on ``tokens``: ``[senders, batch, pos, d_model]``."""
        got = capture(self.model.bridge, self._capture_names(), tokens)
        z = {layer: got[f"blocks.{layer}.attn.hook_z"] for layer in range(self.n_layers)}
        mlp = {layer: got[f"blocks.{layer}.hook_mlp_out"] for layer in range(self.n_layers)} if self.has_mlp else {}
        return self._stack(got[_EMBED], z, mlp)

    # -- recomputing a receiver ---------------------------------------------------------------------

    def head_input(self, layer: int, kind: str, resid: torch.Tensor) -> torch.Tensor:
        """``LN1(resid) W_c + b_c`` for every head: ``resid [..., d_model]`` -> ``[..., heads, d_head]``.

        ``resid`` may carry a head axis (``[b, p, heads, d_model]``): head ``h`` then reads its own stream.
        """
        w = self.weights[layer]
        normed = self.ln1[layer](resid.to(w["W_Q"].device))  # on the layer's device; the result on resid's
        weight, bias = w[f"W_{kind.upper()}"].to(normed), w[f"b_{kind.upper()}"].to(normed)
        pattern = "bphd,hde->bphe" if normed.dim() == 4 else "bpd,hde->bphe"
        out: torch.Tensor = torch.einsum(pattern, normed, weight) + bias
        return out.to(resid.device)

    def mlp_output(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """``MLP(LN2(resid))``."""
        out: torch.Tensor = self.mlp[layer](self.ln2[layer](resid.to(self.weights[layer]["W_Q"].device)))
        return out.to(resid.device)  # computed on the layer's device, returned on resid's

    def check(self, tokens: torch.Tensor) -> float:
        """Largest relative mismatch between the model's activations and their recomputation; raises if large."""
        names = self._capture_names() + [_FINAL]
        for layer in range(self.n_layers):
            names += [f"blocks.{layer}.hook_resid_pre"] + [f"blocks.{layer}.attn.hook_{c}" for c in "qkv"]
            if self.has_mlp:
                names.append(f"blocks.{layer}.hook_resid_mid")
        got = capture(self.model.bridge, sorted(set(names)), tokens)
        z = {layer: got[f"blocks.{layer}.attn.hook_z"] for layer in range(self.n_layers)}
        mlp = {layer: got[f"blocks.{layer}.hook_mlp_out"] for layer in range(self.n_layers)} if self.has_mlp else {}
        stack = self._stack(got[_EMBED], z, mlp)
        worst = 0.0

        def compare(what: str, ours: torch.Tensor, theirs: torch.Tensor, constant: bool = False) -> None:
            nonlocal worst
            diff = ours - theirs
            if constant:  # biases and position embeddings are the same in every example: compare what varies
                diff = diff - diff.mean(dim=0, keepdim=True)
            scale = float(theirs.abs().max()) or 1.0
            error = float(diff.abs().max()) / scale
            worst = max(worst, error)
            if not error <= _CHECK_TOLERANCE:
                raise MeasurementError(
                    f"edge patching cannot reproduce this model's {what} (relative error {error:.2g})",
                    hint="it recomputes each head's q, k and v as LN1(resid) W + b and each MLP as MLP(LN2(resid))",
                )

        with torch.no_grad():
            for layer in range(self.n_layers):
                resid = got[f"blocks.{layer}.hook_resid_pre"]
                before = stack[: self._first_sender(layer)].sum(dim=0)
                compare(f"residual stream at layer {layer}", before, resid, constant=True)
                for kind in "qkv":
                    compare(
                        f"layer {layer} {kind}",
                        self.head_input(layer, kind, resid),
                        got[f"blocks.{layer}.attn.hook_{kind}"],
                    )
                if self.has_mlp:
                    compare(
                        f"layer {layer} MLP",
                        self.mlp_output(layer, got[f"blocks.{layer}.hook_resid_mid"]),
                        mlp[layer],
                    )
            compare("final residual stream", stack.sum(dim=0), got[_FINAL], constant=True)
        return worst

    def _heads(self, kind: str) -> int:
        """How many heads compute ``kind`` (q: the query heads; k, v: the key/value heads)."""
        return self.n_heads if kind == "q" else self.n_kv_heads

    def _first_sender(self, layer: int) -> int:
        """Index of the first sender of ``layer`` (the senders before it write layer ``layer``'s input)."""
        return 1 + layer * (self.n_heads + int(self.has_mlp))

    # -- patching -------------------------------------------------------------------------------------

    def patched_forward(
        self, tokens: torch.Tensor, patched: Sequence[int], source: torch.Tensor
    ) -> torch.Tensor:
        """Logits of ``tokens`` with the edges ``patched`` (indices into :attr:`edges`) fed from ``source``.

        ``source`` is every sender's patch value, ``[senders, batch or 1, pos, d_model]``.
        """
        by_receiver: dict[int, list[int]] = {}
        for index in patched:
            edge = self.edges[index]
            by_receiver.setdefault(edge.receiver, []).append(edge.sender)
        current: dict[int, torch.Tensor] = {}  # sender index -> its output in this run
        resid: dict[str, torch.Tensor] = {}

        def shift(senders: list[int]) -> torch.Tensor:
            total = None
            for s in senders:
                change = source[s].to(current[s].device) - current[s]  # on the sender's device (GPUs may differ)
                total = change if total is None else total + change.to(total.device)
            assert total is not None
            return total

        hooks: dict[str, HookFn] = {}

        def record_embed(activation: torch.Tensor, hook: Any) -> None:
            current[0] = activation

        hooks[_EMBED] = record_embed
        for layer in range(self.n_layers):
            first = self._first_sender(layer)
            head_patches = {
                (r.kind, r.head): by_receiver[i]
                for i, r in enumerate(self.receivers)
                if i in by_receiver and r.layer == layer and r.kind in "qkv"
            }
            if head_patches:
                hooks[f"blocks.{layer}.hook_resid_pre"] = record(f"pre{layer}", resid)
                for kind in "qkv":
                    wanted = {h: s for (c, h), s in head_patches.items() if c == kind}
                    if wanted:
                        hooks[f"blocks.{layer}.attn.hook_{kind}"] = self._replace_heads(
                            layer, kind, wanted, resid, f"pre{layer}", shift
                        )
            hooks[f"blocks.{layer}.attn.hook_z"] = self._record_heads(layer, first, current)
            if self.has_mlp:
                mlp_index = self.receivers.index(Receiver("mlp", layer))
                if mlp_index in by_receiver:
                    hooks[f"blocks.{layer}.hook_resid_mid"] = record(f"mid{layer}", resid)
                hooks[f"blocks.{layer}.hook_mlp_out"] = self._mlp_hook(
                    layer, first + self.n_heads, by_receiver.get(mlp_index), resid, current, shift
                )
        logits_index = len(self.receivers) - 1
        if logits_index in by_receiver:
            senders = by_receiver[logits_index]

            def final(activation: torch.Tensor, hook: Any) -> torch.Tensor:
                return activation + shift(senders).to(activation)

            hooks[_FINAL] = final
        with torch.no_grad(), scoped_hooks(self.model.bridge, sorted(hooks.items())):
            logits: torch.Tensor = self.model.bridge(tokens)
        return logits

    def _record_heads(self, layer: int, first: int, current: dict[int, torch.Tensor]) -> HookFn:
        def hook(activation: torch.Tensor, hook: Any) -> None:
            outputs = self._head_outputs(layer, activation)
            for h in range(self.n_heads):
                current[first + h] = outputs[h]

        return hook

    def _replace_heads(
        self,
        layer: int,
        kind: str,
        wanted: dict[int | None, list[int]],
        resid: dict[str, torch.Tensor],
        key: str,
        shift: Callable[[list[int]], torch.Tensor],
    ) -> HookFn:
        def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            out = activation.clone()
            base = resid[key]
            for head, senders in wanted.items():
                assert head is not None
                recomputed = self.head_input(layer, kind, base + shift(senders).to(base))
                out[:, :, head] = recomputed[:, :, head].to(out)
            return out

        return hook

    def _mlp_hook(
        self,
        layer: int,
        index: int,
        senders: list[int] | None,
        resid: dict[str, torch.Tensor],
        current: dict[int, torch.Tensor],
        shift: Callable[[list[int]], torch.Tensor],
    ) -> HookFn:
        def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
            if senders is not None:
                base = resid[f"mid{layer}"]
                activation = self.mlp_output(layer, base + shift(senders).to(base)).to(activation)
            current[index] = activation
            return activation

        return hook

    # -- gradients at every receiver's input ---------------------------------------------------------

    def _output_gradients(
        self, tokens: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor], embed_hook: HookFn | None
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor], torch.Tensor]:
        """One backward pass: ``(gradient at each receiver's output, the streams receivers read, metric)``.

        The outputs are each layer's q, k and v (``[b, p, heads, d_head]``), each MLP's output and the
        final residual stream; all are as small as the stream itself.
        """
        bridge = self.model.bridge
        kept: dict[str, torch.Tensor] = {}
        streams: dict[str, torch.Tensor] = {}
        hooks: list[tuple[str, HookFn]] = []
        if embed_hook is not None:
            hooks.append((_EMBED, embed_hook))
        outputs = [_FINAL]
        for layer in range(self.n_layers):
            hooks.append((f"blocks.{layer}.hook_resid_pre", record(f"blocks.{layer}.hook_resid_pre", streams)))
            outputs += [f"blocks.{layer}.attn.hook_{c}" for c in "qkv"]
            if self.has_mlp:
                hooks.append((f"blocks.{layer}.hook_resid_mid", record(f"blocks.{layer}.hook_resid_mid", streams)))
                outputs.append(f"blocks.{layer}.hook_mlp_out")
        hooks += [(name, keep_graph(name, kept)) for name in outputs]
        with torch.enable_grad(), scoped_hooks(bridge, hooks):
            value = metric(bridge(tokens))
        raw = torch.autograd.grad(value.sum(), [kept[name] for name in outputs], allow_unused=True)
        grads: dict[str, torch.Tensor | None] = {name: g for name, g in zip(outputs, raw, strict=True)}
        streams[_FINAL] = kept[_FINAL].detach()
        return grads, streams, value.detach()

    def _gradient_groups(
        self, grads: dict[str, torch.Tensor | None], streams: dict[str, torch.Tensor]
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(receiver indices, d metric / d their input [receivers, b, p, d_model])``, a layer's q, k or v at a time.

        Each group is pulled back through the receivers' own recomputation in the model's dtype; a
        receiver the metric does not depend on is left out.
        """
        index = {r: i for i, r in enumerate(self.receivers)}
        with torch.enable_grad():
            for layer in range(self.n_layers):
                stream = streams[f"blocks.{layer}.hook_resid_pre"]
                for kind in "qkv":
                    g = grads[f"blocks.{layer}.attn.hook_{kind}"]
                    if g is None:
                        continue
                    heads = self._heads(kind)
                    spread = stream[:, :, None, :].expand(-1, -1, heads, -1).clone().requires_grad_(True)
                    recomputed = self.head_input(layer, kind, spread)  # [b, p, heads, d_head]
                    (pulled,) = torch.autograd.grad(recomputed, spread, g.to(recomputed))
                    rows = [
                        index[Receiver(kind, layer, h, grouped=kind != "q" and heads != self.n_heads)]
                        for h in range(heads)
                    ]
                    yield rows, pulled.detach().permute(2, 0, 1, 3)
                if self.has_mlp:
                    g = grads[f"blocks.{layer}.hook_mlp_out"]
                    if g is not None:
                        mid = streams[f"blocks.{layer}.hook_resid_mid"].clone().requires_grad_(True)
                        out = self.mlp_output(layer, mid)
                        (pulled,) = torch.autograd.grad(out, mid, g.to(out))
                        yield [index[Receiver("mlp", layer)]], pulled.detach()[None]
        final = grads[_FINAL]
        if final is not None:
            yield [len(self.receivers) - 1], final.detach().cpu()[None]  # with the others, beside the CPU's deltas

    def receiver_gradients(
        self, tokens: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor], embed_hook: HookFn | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d metric / d input of each receiver [receivers, b, p, d_model], metric [b])``.

        The gradient at a receiver's output (its q, k or v, the MLP's output, or
        the final residual stream) is pulled back through that receiver's own
        recomputation, so each head's query, key and value get their own
        gradient with respect to the stream they read. ``embed_hook`` replaces
        the token embeddings (for integrated gradients). This holds every
        receiver's gradient at once, in float64: :meth:`edge_scores` scores the
        same edges a group of receivers at a time.
        """
        grads, streams, value = self._output_gradients(tokens, metric, embed_hook)
        out = torch.zeros((len(self.receivers), *streams[_FINAL].shape), dtype=torch.float64)
        for rows, gradient in self._gradient_groups(grads, streams):
            out[rows] = gradient.to(torch.float64)
        return out, value

    def scores(self, delta: torch.Tensor, gradients: torch.Tensor) -> np.ndarray:
        """Per-example edge scores ``[batch, edges]`` from sender changes and receiver gradients."""
        full = torch.einsum("sbpd,rbpd->bsr", delta.to(torch.float64), gradients)
        senders = torch.tensor([e.sender for e in self.edges])
        receivers = torch.tensor([e.receiver for e in self.edges])
        result: np.ndarray = full[:, senders, receivers].numpy()
        return result

    def edge_scores(
        self,
        tokens: torch.Tensor,
        metric: Callable[[torch.Tensor], torch.Tensor],
        delta: torch.Tensor,
        embed_hooks: Iterable[HookFn | None],
        chunk_bytes: int = SCORE_CHUNK_BYTES,
    ) -> np.ndarray:
        """Per-example edge scores ``[batch, edges]``, averaged over one gradient per hook in ``embed_hooks``.

        The same numbers as :meth:`scores` of the mean of :meth:`receiver_gradients`, up to the
        order of float64 additions, in bounded memory: ``delta`` (each sender's change, ``[senders,
        b, p, d_model]``) is kept in its own dtype (float32), each receiver group's gradient
        (:meth:`_gradient_groups`: at most one layer's heads) lives only while it is scored, and the
        products are formed in float64 a block of senders at a time, each block's operands within
        ``chunk_bytes``. Extra memory beyond the model's own backward pass: one group's gradient in
        the model's dtype and in float64, plus ``chunk_bytes``, plus the ``[b, senders, group]``
        products.
        """
        by_receiver: dict[int, tuple[list[int], list[int]]] = {}
        for e, edge in enumerate(self.edges):
            edges_of, senders_of = by_receiver.setdefault(edge.receiver, ([], []))
            edges_of.append(e)
            senders_of.append(edge.sender)
        b, p, d = delta.shape[1:]
        per_sender = b * p * d * 8  # one sender's change in float64
        total = np.zeros((b, len(self.edges)), dtype=np.float64)
        n = 0
        for hook in embed_hooks:
            n += 1
            grads, streams, _ = self._output_gradients(tokens, metric, hook)
            for rows, gradient in self._gradient_groups(grads, streams):
                wide = gradient.to(torch.float64)
                reach = max(max(by_receiver[r][1]) for r in rows if r in by_receiver) + 1
                block = max(1, (chunk_bytes - wide.numel() * 8) // per_sender)
                products = torch.empty((b, reach, len(rows)), dtype=torch.float64)
                for start in range(0, reach, block):
                    part = delta[start : min(start + block, reach)].to(torch.float64)
                    products[:, start : start + part.shape[0]] = torch.einsum("sbpd,rbpd->bsr", part, wide)
                for local, r in enumerate(rows):
                    if r in by_receiver:
                        edges_of, senders_of = by_receiver[r]
                        total[:, edges_of] += products[:, senders_of, local].numpy()
        if n == 0:
            raise MeasurementError("edge scoring needs at least one gradient")
        return total / n if n > 1 else total


def _attention_weights(attn: Any) -> dict[str, torch.Tensor]:
    """An attention layer's projections; a bias the layer does not have (e.g. Llama's) is zero."""
    weights = {name: getattr(attn, name).detach() for name in ("W_Q", "W_K", "W_V", "W_O")}
    for kind in "QKV":
        bias = getattr(attn, f"b_{kind}", None)
        weight = weights[f"W_{kind}"]
        weights[f"b_{kind}"] = (
            bias.detach() if bias is not None else torch.zeros(weight.shape[0], weight.shape[2], dtype=weight.dtype)
        )
    return weights


def _reads(receiver: Receiver, sender: Sender, n_layers: int) -> bool:
    if sender.kind == "input" or receiver.kind == "logits":
        return True
    if receiver.kind == "mlp":
        return sender.layer < receiver.layer or (sender.layer == receiver.layer and sender.kind == "head")
    return sender.layer < receiver.layer


def _module(component: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module a bridge component wraps (calling it does not fire the bridge's hooks)."""
    inner = getattr(component, "_original_component", None)
    module = inner if inner is not None else component
    if not callable(module):
        raise MeasurementError(f"{type(component).__name__} is not callable")
    return module  # type: ignore[no-any-return]


# -- edge patching on a task's examples ----------------------------------------------------------


def edge_model(model: LoadedModel, tokens: torch.Tensor, max_edges: int) -> tuple[EdgeModel | None, str]:
    """The model's checked edge graph, or None and why its edges cannot be scored (one sentence).

    Edges are left out when the model has more than ``max_edges`` of them, or
    when its attention or MLPs are not computed the way edge patching
    recomputes them (:meth:`EdgeModel.check` on ``tokens`` fails).
    """
    try:
        graph = EdgeModel(model)
        if len(graph.edges) > max_edges:
            return None, (
                f"Edges were not scored: the model has {len(graph.edges)} edges, more than max_edges = "
                f"{max_edges} (raise max_edges to score them; time and memory grow with the number of edges)."
            )
        graph.recompute_error = graph.check(tokens)
    except MeasurementError as exc:
        return None, f"Edges were not scored: {exc.message}" + (f" ({exc.hint})." if exc.hint else ".")
    return graph, ""


@dataclass
class EdgePatchingInputs:
    """Edge patching on the examples of ``inputs``: per batch, the clean tokens and each sender's patch value."""

    graph: EdgeModel
    inputs: PatchingInputs
    _mean: torch.Tensor | None = None

    def _rows(self) -> Iterable[tuple[Rows, torch.Tensor, torch.Tensor]]:
        """The task's batches, cut so that every sender's output on one fits :data:`SENDER_BATCH_BYTES`.

        Every sender's output is kept for a whole batch (``[senders, b, pos, d_model]``, for the
        clean run, the source and their difference), which on a large model exceeds what the
        other measurements keep; examples are independent, so a smaller batch changes no score.
        """
        per_row_bytes = len(self.graph.senders) * self.graph.d_model * self.graph.dtype_bytes
        for part, clean, corrupted in self.inputs.batches():
            rows = max(1, SENDER_BATCH_BYTES // max(1, per_row_bytes * clean.shape[1]))
            if rows >= clean.shape[0]:
                yield part, clean, corrupted
                continue
            for lo in range(0, clean.shape[0], rows):
                hi = min(lo + rows, clean.shape[0])
                sub = slice(part.start + lo, part.start + hi) if isinstance(part, slice) else part[lo:hi]
                yield sub, clean[lo:hi], corrupted[lo:hi]

    def batches(self) -> Iterable[tuple[Rows, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(part, clean tokens, corrupted tokens, sender patch values [senders, b or 1, pos, d])``."""
        for part, clean, corrupted in self._rows():
            if self.inputs.ablation == "corrupted":
                source = self.graph.outputs(corrupted)
            else:
                source = self._means()
            yield part, clean, corrupted, source

    def _means(self) -> torch.Tensor:
        if self._mean is None:
            total: torch.Tensor | None = None
            for _, _, corrupted in self._rows():
                part = self.graph.outputs(corrupted).to(torch.float64).sum(dim=1, keepdim=True)
                total = part if total is None else total + part
            assert total is not None
            self._mean = (total / float(self.inputs.task.n)).to(torch.float32)
        return self._mean

    def metric(self, rows: Rows, tokens: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The task metric of logits on ``tokens`` (their clean targets)."""
        return lambda logits: task_metric(logits, tokens, self.inputs.task, self.inputs.metric, rows)


def edge_attribution_scores(edges: EdgePatchingInputs, method: str, ig_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example edge scores ``[n, edges]`` and the clean metric ``[n]``.

    ``(a_u(source) - a_u(clean)) . g_v`` for every edge ``u -> v``, with ``g_v``
    the gradient of ``m`` with respect to what ``v`` reads: at the clean run
    (``atp``, and ``atp*``, whose QK fix is not applied to edges), or averaged
    along the path from the clean to the corrupted embeddings (``eap-ig``).
    When every receiver's gradient of a batch fits :data:`SCORE_CHUNK_BYTES` in
    float64 they are scored at once; otherwise a group of receivers at a time
    (:meth:`EdgeModel.edge_scores`: the same scores up to the order of float64
    additions, in bounded memory).
    """
    graph, task = edges.graph, edges.inputs.task
    n = task.n
    scores = np.zeros((n, len(graph.edges)), dtype=np.float64)
    clean_metric = np.zeros(n, dtype=np.float64)
    bridge = edges.inputs.model.bridge
    for part, clean, corrupted, source in edges.batches():
        metric = edges.metric(part, clean)
        delta = source - graph.outputs(clean)
        with torch.no_grad():
            clean_metric[part] = metric(bridge(clean)).numpy()
        points: list[HookFn | None] = (
            list(path_hooks(bridge, clean, corrupted, ig_steps)) if method == "eap-ig" else [None]
        )
        if len(graph.receivers) * delta[0].numel() * 8 <= SCORE_CHUNK_BYTES:
            # Every receiver's gradient fits the budget: the mean gradient, scored at once.
            gradient = graph.receiver_gradients(clean, metric, points[0])[0]
            for point in points[1:]:
                gradient += graph.receiver_gradients(clean, metric, point)[0]
            if len(points) > 1:
                gradient /= len(points)
            scores[part] = graph.scores(delta, gradient)
        else:
            scores[part] = graph.edge_scores(clean, metric, delta, points)
    if not np.all(np.isfinite(scores)):
        raise MeasurementError("edge attribution scores are not finite")
    return scores, clean_metric


def edge_patched_metrics(
    edges: EdgePatchingInputs, patch_sets: Sequence[frozenset[int]], progress: Callable[[float], None]
) -> np.ndarray:
    """Task metric ``[sets, n]`` with each set of edges patched (an empty set is the clean run)."""
    n = edges.inputs.task.n
    out = np.zeros((len(patch_sets), n), dtype=np.float64)
    done, total = 0, max(1, len(patch_sets) * n)
    for part, clean, _, source in edges.batches():
        metric = edges.metric(part, clean)
        for i, chosen in enumerate(patch_sets):
            out[i, part] = metric(edges.graph.patched_forward(clean, sorted(chosen), source)).numpy()
            done += clean.shape[0]
            progress(done / total)
    if not np.all(np.isfinite(out)):
        raise MeasurementError("the task metric is not finite under edge patching")
    return out
