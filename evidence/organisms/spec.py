"""How a reference organism is described and what its training returns (no torch at import).

Kept apart from :mod:`evidence.organisms` so that the trainers
(:mod:`evidence.organisms.induction`, :mod:`evidence.organisms.chat`), which
the package itself imports, can use these types without importing the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["OrganismSpec", "ProgressFn", "TrainedOrganism"]

#: ``progress(fraction, message)``: fraction in [0, 1].
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class TrainedOrganism:
    """What a training function returns: final weights, final loss, optional tokenizer."""

    state_dict: Mapping[str, torch.Tensor]
    final_loss: float
    tokenizer_json: str | None = None


@dataclass(frozen=True)
class OrganismSpec:
    """How one reference organism is built and trained."""

    name: str
    seed: int
    #: keyword arguments of ``TransformerBridgeConfig`` (JSON values; no seed, no device).
    architecture: Mapping[str, Any]
    #: ``"module:function"``; the function is ``fn(spec, progress) -> TrainedOrganism``.
    trainer: str
    #: version of the training-data generator; bump it whenever the data changes.
    generator_version: str
    steps: int
    description: str
    #: special tokens for the default tokenizer loader, e.g. ``{"bos_token": "<bos>"}``.
    special_tokens: Mapping[str, str] = field(default_factory=dict)
    #: file the tokenizer (if the trainer returns one) is written to; default ``<name>.tokenizer.json``.
    tokenizer_file: str | None = None
    #: ``"module:function"`` turning the tokenizer file's path into a tokenizer object; default:
    #: a ``transformers.PreTrainedTokenizerFast`` over the file with ``special_tokens``.
    tokenizer_loader: str | None = None

    def train_fn(self) -> Callable[[OrganismSpec, ProgressFn], TrainedOrganism]:
        """The training function (its module is imported here)."""
        fn: Callable[[OrganismSpec, ProgressFn], TrainedOrganism] = _resolve(self.trainer)
        return fn

    def load_tokenizer(self, path: Path) -> Any:
        """The tokenizer object for the tokenizer file at ``path``."""
        if self.tokenizer_loader is not None:
            return _resolve(self.tokenizer_loader)(path)
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_file=str(path), **dict(self.special_tokens)
        )


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
