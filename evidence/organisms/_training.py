"""Shared machinery for training organisms deterministically (imports torch)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from safetensors.torch import save

from evidence.errors import ModelLoadError

__all__ = ["TRAINING_THREADS", "deterministic", "finite_state"]

#: Intra-op threads used while training; fixed, because the reduction order
#: (and so the last bits of every weight) depends on it.
TRAINING_THREADS = 1


@contextmanager
def deterministic(seed: int, threads: int = TRAINING_THREADS) -> Iterator[None]:
    """Seed torch, force deterministic kernels and a fixed thread count; restore on exit."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


def finite_state(state: Mapping[str, torch.Tensor], *, name: str, generator_version: str) -> bytes:
    """The safetensors bytes of ``state``; refuses NaN / Inf (a diverged training run)."""
    tensors: dict[str, torch.Tensor] = {}
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(
                f"training organism {name!r} produced non-finite weights in {key}",
                hint="the training run diverged; check the learning rate and the data generator",
            )
        tensors[key] = tensor.clone()
    # One metadata key only: safetensors writes a metadata map in arbitrary order,
    # so several keys would make the file bytes differ from run to run.
    provenance = json.dumps(
        {"generator_version": generator_version, "organism": name}, sort_keys=True
    )
    return save(tensors, metadata={"interp_dossier": provenance})
