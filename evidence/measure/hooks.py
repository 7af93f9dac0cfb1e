"""Scoped, checked hooks: the one way measurements read or edit activations.

Every intervention and every activation capture goes through
:func:`scoped_hooks`. It attaches hook functions through the bridge's own
``hooks()`` context manager (TransformerLens 4.3), counts how often each one
runs, removes them when the block ends (also after an exception), and raises
:class:`evidence.errors.MeasurementError` when a hook never ran: an edit that
silently does nothing would produce a plausible but false result.

Hook names are TransformerLens names; the classic aliases resolve to the
bridge's canonical points (``blocks.L.attn.hook_z`` is reported by the hook
as ``blocks.L.attn.o.hook_in`` and carries ``[batch, pos, head, d_head]``;
``blocks.L.attn.hook_pattern`` carries ``[batch, head, query, key]``).

Generation with a key/value cache (:mod:`evidence.measure.methods.kv_cache`)
shows hooks the prompt once and then one new position per step. A hook that
edits every position the same way needs nothing more; a hook that edits
positions by their index reads :func:`position_offset` (the absolute position
of the first position it sees); a hook whose edit of earlier positions changes
as the sequence grows (e.g. one counted from the end of the sequence) cannot
run incrementally: it is marked with :func:`whole_sequence`, and generation
under it recomputes the whole sequence at every step (:func:`incremental`).

Prompts of mixed length run in left-padded batches, where every row's prompt
ends at the same column. A hook that edits "the prompt's positions" of such a
batch reads :func:`prompt_width` (the columns the current batch's prompts
occupy, padding included), which the batching code sets for each batch
(:func:`prompts_of_width`); editing a pad slot changes nothing, since the
attention mask hides it from every real position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from weakref import WeakSet

import torch

from evidence.errors import MeasurementError

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "ActivationBuffer",
    "HookFn",
    "capture",
    "capture_at",
    "decoding_at",
    "incremental",
    "keep_graph",
    "position_offset",
    "prompt_width",
    "prompts_of_width",
    "record",
    "scoped_hooks",
    "whole_sequence",
]

#: ``fn(activation, hook) -> replacement or None`` (None keeps the activation).
HookFn = Callable[[torch.Tensor, Any], "torch.Tensor | None"]

_OFFSET: ContextVar[int] = ContextVar("position_offset", default=0)
_PROMPT_WIDTH: ContextVar[int | None] = ContextVar("prompt_width", default=None)
_WHOLE_SEQUENCE: WeakSet[Callable[..., Any]] = WeakSet()


def position_offset() -> int:
    """The absolute position of the first position hooks see in the current forward pass.

    0, except during a cached generation step, where hooks see only the new
    position(s) that follow the kept ones.
    """
    return _OFFSET.get()


@contextmanager
def decoding_at(offset: int) -> Iterator[None]:
    """Forward passes inside the block start at absolute position ``offset`` (see :func:`position_offset`)."""
    token = _OFFSET.set(offset)
    try:
        yield
    finally:
        _OFFSET.reset(token)


def prompt_width() -> int:
    """The columns the prompts of the batch being run occupy (left padding included).

    Set by the code that batches prompts (:func:`prompts_of_width`); a hook that asks
    outside such a batch is an error, never a guess.
    """
    width = _PROMPT_WIDTH.get()
    if width is None:
        raise MeasurementError(
            "an edit of the prompt's positions ran outside a batch of prompts",
            hint="give the edit the prompt's length, or run it through the batched readers",
        )
    return width


@contextmanager
def prompts_of_width(width: int) -> Iterator[None]:
    """Forward passes inside the block run a batch whose prompts occupy ``width`` columns (see :func:`prompt_width`)."""
    token = _PROMPT_WIDTH.set(int(width))
    try:
        yield
    finally:
        _PROMPT_WIDTH.reset(token)


def whole_sequence(fn: HookFn) -> HookFn:
    """Mark ``fn`` as needing the whole sequence at every generation step (see :func:`incremental`)."""
    _WHOLE_SEQUENCE.add(fn)
    return fn


def incremental(hooks: Sequence[tuple[str, HookFn]]) -> bool:
    """Whether generation under ``hooks`` may run one new position at a time (no hook is :func:`whole_sequence`)."""
    return not any(fn in _WHOLE_SEQUENCE for _, fn in hooks)


def _attached_count(bridge: TransformerBridge) -> int:
    return sum(len(point.fwd_hooks) + len(point.bwd_hooks) for point in bridge.hook_points())


def _counting(index: int, fn: HookFn, counts: list[int]) -> HookFn:
    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor | None:
        counts[index] += 1
        return fn(activation, hook)

    return hook


@contextmanager
def scoped_hooks(bridge: TransformerBridge, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[dict[str, int]]:
    """Attach forward ``hooks`` for the duration of the block; check that each one ran.

    Yields a live mapping hook name -> number of calls so far. On leaving the
    block the hooks are removed; if the block completed and some hook was
    never called, :class:`MeasurementError` names it. An unknown or disabled
    hook point is refused before anything runs.
    """
    names = [name for name, _ in hooks]
    counts = [0] * len(hooks)
    wrapped = [(name, _counting(i, fn, counts)) for i, (name, fn) in enumerate(hooks)]
    live: dict[str, int] = dict.fromkeys(names, 0)
    before = _attached_count(bridge)
    try:
        context = bridge.hooks(fwd_hooks=wrapped)
        context.__enter__()
    except (KeyError, ValueError, AttributeError, NotImplementedError) as exc:
        raise MeasurementError(
            f"cannot attach hooks {names}: {exc}",
            hint="use hook names that exist on this model (see bridge.hook_dict)",
        ) from exc
    completed = False
    try:
        yield live
        completed = True
    finally:
        context.__exit__(None, None, None)
        for name in names:
            live[name] = sum(c for n, c in zip(names, counts, strict=True) if n == name)
        leaked = _attached_count(bridge) - before
        if completed:
            if leaked:
                raise MeasurementError(f"{leaked} hook(s) were still attached after the block ended")
            silent = [name for name, count in zip(names, counts, strict=True) if count == 0]
            if silent:
                raise MeasurementError(
                    f"hook(s) {silent} never ran",
                    hint="the forward pass did not reach these points; an intervention there would be a no-op",
                )


def capture(bridge: TransformerBridge, names: Sequence[str], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``tokens`` through the model and return the activations at ``names`` (detached, on the CPU).

    Goes through :func:`scoped_hooks`, so a point that never fires is an error
    rather than a missing key.
    """
    stored: dict[str, torch.Tensor] = {}

    def store(name: str) -> HookFn:
        def fn(activation: torch.Tensor, hook: Any) -> None:
            if name in stored:
                raise MeasurementError(f"hook point {name!r} fired more than once in one forward pass")
            stored[name] = activation.detach().to("cpu", copy=True)  # on the CPU, whatever the model's device

        return fn

    with torch.no_grad(), scoped_hooks(bridge, [(name, store(name)) for name in names]):
        bridge(tokens)
    return stored


class ActivationBuffer:
    """Activations of ``n`` prompts at a few positions of some hook points: ``values [n, point, position, *rest]``.

    Allocated once, at the first activation written (which tells the trailing shape), in
    ``dtype`` on the CPU; :func:`capture_at` writes each batch's rows into it.
    """

    def __init__(self, n: int, names: Sequence[str], positions: int, dtype: torch.dtype = torch.float32) -> None:
        self.n, self.names, self.positions, self.dtype = n, list(names), positions, dtype
        self._values: torch.Tensor | None = None

    def write(self, rows: torch.Tensor, point: int, picked: torch.Tensor) -> None:
        """Store ``picked [len(rows), positions, *rest]`` at ``rows`` of hook point number ``point``."""
        if self._values is None:
            shape = (self.n, len(self.names), self.positions, *picked.shape[2:])
            self._values = torch.zeros(shape, dtype=self.dtype)
        if tuple(picked.shape[2:]) != tuple(self._values.shape[3:]):
            raise MeasurementError(f"hook point {self.names[point]!r} changed shape between batches")
        self._values[rows, point] = picked.to("cpu", self.dtype)

    @property
    def values(self) -> torch.Tensor:
        """Everything written (an error if nothing was)."""
        if self._values is None:
            raise MeasurementError("no activation was captured", hint="pass at least one prompt")
        return self._values


def capture_at(
    bridge: TransformerBridge,
    names: Sequence[str],
    tokens: torch.Tensor,
    columns: torch.Tensor,
    buffer: ActivationBuffer,
    rows: Sequence[int],
    **keywords: Any,
) -> None:
    """Run ``tokens`` and keep, of every hook point in ``names``, only row ``r``'s positions ``columns[r]``.

    ``columns [batch, k]`` are column indices into the batch (in a left-padded batch, a position
    counted from a prompt's start must add the row's pad offset; the last real token is the last
    column). The positions are picked inside the hook, before anything is copied, and written to
    ``buffer`` at ``rows`` (the prompts' indices); ``keywords`` (e.g. an attention mask and position
    ids) go to the forward. Goes through :func:`scoped_hooks`, so a point that never fires is an error.
    """
    if columns.dim() != 2 or columns.shape[0] != tokens.shape[0]:
        raise MeasurementError(f"columns {tuple(columns.shape)} do not match a batch of {tokens.shape[0]} rows")
    if bool(((columns < 0) | (columns >= tokens.shape[1])).any()):
        raise MeasurementError(f"a captured position lies outside the batch's {tokens.shape[1]} columns")
    where = torch.as_tensor(list(rows), dtype=torch.long)
    seen: set[str] = set()

    def store(point: int, name: str) -> HookFn:
        def fn(activation: torch.Tensor, hook: Any) -> None:
            if name in seen:
                raise MeasurementError(f"hook point {name!r} fired more than once in one forward pass")
            seen.add(name)
            cols = columns.to(activation.device)
            batch = torch.arange(activation.shape[0], device=activation.device)[:, None]
            buffer.write(where, point, activation.detach()[batch, cols])

        return fn

    with torch.no_grad(), scoped_hooks(bridge, [(name, store(i, name)) for i, name in enumerate(names)]):
        bridge(tokens, **keywords)


def keep_graph(key: str, store: dict[str, torch.Tensor]) -> HookFn:
    """A hook that keeps the activation in the autograd graph and stores it under ``key``.

    An activation that needs no gradient yet (nothing upstream does) becomes a
    leaf that does, so that gradients with respect to it can be taken; the
    model computes on with this very tensor.
    """

    def hook(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        if not activation.requires_grad:
            activation = activation.detach().requires_grad_(True)
        store[key] = activation
        return activation

    return hook


def record(key: str, store: dict[str, torch.Tensor]) -> HookFn:
    """A hook that stores a detached view of the activation (a copy on the CPU for a model elsewhere) under ``key``."""

    def hook(activation: torch.Tensor, hook: Any) -> None:
        store[key] = activation.detach().cpu()

    return hook
