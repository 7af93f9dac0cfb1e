"""Incremental decoding with a key/value cache, through the bridge and its hooks.

Greedy generation runs the prompt once (the *prefill*) and then one new token
per step, each step attending to the keys and values kept from the steps
before, instead of re-running the whole sequence for every token. Hooks stay
attached: the prefill shows them the prompt's positions, each later step the
one new position, and :func:`evidence.measure.hooks.position_offset` tells a
hook which absolute position its first row is.

TransformerLens 4.3's bridge has no cache that works for the models this
project loads, so :func:`kv_cache` supplies one, for the duration of a
``with`` block and nothing else:

* **native models** (``boot_native``: the organisms and the natively built
  population members): ``NativeAttention`` keeps no cache. Inside the block each
  attention module computes with a cache-aware version of its own forward
  pass (the same projections, rotary embedding, scaling, soft cap, causal mask
  and pattern hook, on the new positions' queries against every position's
  keys and values); the bridge's wrappers, and so every hook, run as before.
* **Hugging Face checkpoints** (``boot_transformers``): ``transformers`` 5
  passes the cache to the attention modules as ``cache=``, while the bridge's
  attention components read ``past_key_values=`` (or ``layer_past=``), so the
  model's own cache is never filled and a cached step attends to the new token
  alone. Inside the block a forward pre-hook on each attention component hands
  it the cache under the name it reads. After the prefill the cache must hold
  every prompt position in every layer, once; a model whose cache does not
  (an architecture whose attention fills it otherwise) is decoded by full
  recompute instead, the same replies at the old cost.

Any other forward (a plain callable, another architecture) gets ``None``, and
callers keep the full-recompute path.

A left-padded batch (prompts of mixed length) decodes the same way: the
prefill takes the batch's attention mask and the position ids that follow it,
and every step extends the mask by one real slot and gives each row the
position after its own last one (the number of its real tokens so far), so a
row's new token sits where it would sit in the row alone.

The cached logits are the full recompute's up to float32 rounding (matrix
products of other shapes): at most 3e-5 on the organisms (logits up to 18),
1e-7 on the tiny GPT-2 and Llama checkpoints. Greedy tokens are therefore the
same unless two logits tie within that rounding, which the full recompute
would not decide reliably either; the tests compare the replies token for
token on organisms, held-out population members and both checkpoint styles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import decoding_at

__all__ = ["CachedDecoder", "kv_cache"]

Forward = Callable[..., torch.Tensor]


class CachedDecoder:
    """Incremental decoding of one batch at a time: :meth:`prefill`, then :meth:`step` per token; :meth:`keep` rows."""

    def __init__(self, bridge: Any, native: dict[int, tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self._bridge = bridge
        self._native = native  # native models: layer -> (keys, values) kept so far; None for the model's own cache
        self._hf_cache: Any = None
        self._tokens = torch.zeros((0, 0), dtype=torch.long)  # the sequences so far, for the fallback
        self._mask: torch.Tensor | None = None  # a left-padded batch's attention mask so far
        #: Set when the model's own cache was not filled by a prefill: every later step recomputes.
        self.recomputes = False

    def prefill(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at the last position of ``tokens [rows, length]`` (a fresh cache), ``[rows, vocab]``.

        ``mask``: the attention mask of a left-padded batch (1 on real tokens); the positions follow it.
        """
        self._tokens, self._mask = tokens, mask
        if self._native is not None:
            self._native.clear()
            logits = self._bridge(tokens, **self._keywords())
        elif self.recomputes:
            logits = self._bridge(tokens, **self._keywords())
        else:
            logits, self._hf_cache = self._bridge(
                tokens, return_type="logits_and_cache", use_cache=True, **self._keywords()
            )
            self.recomputes = not self._filled(tokens.shape[1])
        last: torch.Tensor = logits[:, -1, :]
        return last

    def step(self, new: torch.Tensor) -> torch.Tensor:
        """Logits after appending one token per row (``new [rows]``), ``[rows, vocab]``."""
        length = self._tokens.shape[1]
        self._tokens = torch.cat([self._tokens, new[:, None].to(self._tokens)], dim=1)
        if self._mask is not None:
            self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        if self.recomputes:
            logits = self._bridge(self._tokens, **self._keywords())
        else:
            if self._mask is None:
                positions = torch.full((new.shape[0], 1), length, dtype=torch.long, device=new.device)
                masked: dict[str, torch.Tensor] = {}
            else:
                positions = (self._mask.sum(dim=1, keepdim=True) - 1).to(device=new.device, dtype=torch.long)
                masked = {"attention_mask": self._mask.to(new.device)}
            with decoding_at(length):
                if self._native is not None:
                    logits = self._bridge(new[:, None], position_ids=positions, **masked)
                else:
                    logits, self._hf_cache = self._bridge(
                        new[:, None], return_type="logits_and_cache", cache=self._hf_cache, use_cache=True,
                        position_ids=positions, **masked,
                    )  # fmt: skip
        last: torch.Tensor = logits[:, -1, :]
        return last

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch) in the cache, in that order."""
        self._tokens = self._tokens[rows]
        if self._mask is not None:
            self._mask = self._mask[rows]
        if self._native is not None:
            for layer, (k, v) in self._native.items():
                self._native[layer] = (k[rows], v[rows])
        elif not self.recomputes:
            self._hf_cache.batch_select_indices(rows)

    def _keywords(self) -> dict[str, torch.Tensor]:
        """The mask and the positions that follow it, for a whole (left-padded) sequence; nothing unpadded."""
        if self._mask is None:
            return {}
        positions = (self._mask.long().cumsum(-1) - 1).masked_fill(self._mask == 0, 1)
        return {"attention_mask": self._mask, "position_ids": positions}

    def _filled(self, length: int) -> bool:
        """Whether every layer of the model's cache holds the ``length`` prompt positions (exactly once)."""
        layers = getattr(self._hf_cache, "layers", None)
        if not layers:
            return False
        return all(self._hf_cache.get_seq_length(i) == length for i in range(len(layers)))


@contextmanager
def kv_cache(forward: Forward) -> Iterator[CachedDecoder | None]:
    """A :class:`CachedDecoder` for ``forward`` while the block runs, or ``None`` where none is supported."""
    bridge = forward
    original = getattr(bridge, "original_model", None)
    if original is None or not hasattr(bridge, "hooks"):
        yield None
        return
    with ExitStack() as stack:
        native = _native_attention(original)
        if native == []:  # a native model this cache does not reproduce exactly
            yield None
            return
        if native is not None:
            store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
            for layer, attention in enumerate(native):
                attention.forward = _cached_forward(attention, layer, store)
                stack.callback(_restore_forward, attention)
            yield CachedDecoder(bridge, store)
            return
        attention_components = _hf_attention_components(bridge)
        if attention_components is None:
            yield None
            return
        for component in attention_components:
            handle = component.register_forward_pre_hook(_hand_cache, with_kwargs=True)
            stack.callback(handle.remove)
        yield CachedDecoder(bridge, None)


def _restore_forward(module: torch.nn.Module) -> None:
    del module.forward  # the instance attribute set by kv_cache; the class's forward shows again


def _native_attention(original: torch.nn.Module) -> list[torch.nn.Module] | None:
    """The ``NativeAttention`` module of every layer, in order, if ``original`` is a TransformerLens-native model.

    ``None`` for another model; an empty list for a native model whose attention is not the
    causal ``NativeAttention`` that :func:`_cached_forward` reproduces.
    """
    from transformer_lens.model_bridge.sources.native.model import NativeAttention, NativeModel

    if not isinstance(original, NativeModel):
        return None
    found: list[torch.nn.Module] = []
    for block in original.layers:
        attention = getattr(block.attn, "original_component", block.attn)
        if type(attention) is not NativeAttention or not attention.causal:
            return []
        found.append(attention)
    return found


def _cached_forward(
    self: Any, layer: int, store: dict[int, tuple[torch.Tensor, torch.Tensor]]
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``NativeAttention.forward`` (TransformerLens 4.3) for the new positions, with the earlier keys and values kept.

    The same operations in the same order as the library's forward: projections,
    rotary embedding at the given positions, grouped-query repetition, scaled
    scores, soft cap, causal mask (the new queries see every kept position and
    the new ones up to themselves), softmax, the pattern hook, values, output
    projection. A padding mask ``[batch, kept + new]`` (1 on real tokens) hides the pad
    slots from every query, as the library's forward does for a whole sequence.
    """
    from transformer_lens.utilities.activation_functions import apply_softcap

    def forward(
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pattern_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, seq, _ = hidden_states.shape
        q = self.q(hidden_states).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = self.v(hidden_states).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary.apply_rope(q, k, position_ids=position_ids)
        if layer in store:
            past_k, past_v = store[layer]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        store[layer] = (k, v)
        if self.kv_repeats > 1:
            k = k.repeat_interleave(self.kv_repeats, dim=1)
            v = v.repeat_interleave(self.kv_repeats, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / self.scale
        scores = apply_softcap(scores, self.attn_scores_soft_cap)
        total = k.shape[-2]
        block_mask = self.causal_mask[total - seq : total, :total]
        if attention_mask is not None:
            block_mask = _padding_mask(block_mask, attention_mask, total)
        scores = scores.masked_fill(block_mask, float("-inf"))
        pattern = torch.nn.functional.softmax(scores, dim=-1)
        pattern = pattern.masked_fill(block_mask, 0.0)
        if pattern_fn is not None:
            pattern = pattern_fn(pattern)
        attn = torch.matmul(pattern, v).transpose(1, 2).contiguous().view(batch, seq, -1)
        return self.o(attn), pattern

    return forward


def _padding_mask(block_mask: torch.Tensor, attention_mask: torch.Tensor, total: int) -> torch.Tensor:
    """The causal ``block_mask`` with the pad slots of a 2-D mask ``[batch, total]`` (0 on pads) masked too."""
    if attention_mask.dim() != 2 or attention_mask.shape[-1] != total:
        raise MeasurementError(
            f"cached decoding takes a [batch, {total}] padding mask, not {tuple(attention_mask.shape)}",
            hint="generate with cache=False",
        )
    pads = ~attention_mask.bool().to(block_mask.device)
    return block_mask | pads[:, None, None, :]


def _hf_attention_components(bridge: Any) -> list[torch.nn.Module] | None:
    """The bridge's attention component of every block (Hugging Face models whose attention reads the cache)."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    blocks = getattr(bridge, "blocks", None)
    if not blocks:
        return None
    found: list[torch.nn.Module] = []
    for block in blocks:
        attention = getattr(block, "attn", None)
        if not isinstance(attention, AttentionBridge) or getattr(attention, "_layer_idx", None) is None:
            return None
        found.append(attention)
    return found


def _hand_cache(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Pass the cache ``transformers`` 5 calls ``cache`` also as ``past_key_values``, the name the bridge reads."""
    if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
        kwargs = {**kwargs, "past_key_values": kwargs["cache"]}
    return args, kwargs
