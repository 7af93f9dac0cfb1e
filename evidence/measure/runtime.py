"""Process-wide settings a measurement run depends on, and the record of them."""

from __future__ import annotations

import os
import platform
import random
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

import numpy as np
import torch

from evidence.records import Environment, ValidationEnvironment
from evidence.records.core import Dtype

__all__ = ["capture_environment", "capture_validation_environment", "configure_determinism"]


def configure_determinism(seed: int, *, threads: int | None = None) -> None:
    """Seed every generator and demand deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads is not None:
        torch.set_num_threads(threads)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def capture_environment(seeds: dict[str, int]) -> Environment:
    """Where the measurements ran: interpreter, libraries, platform, seeds, determinism."""
    return Environment(
        python=sys.version.split()[0],
        torch=torch.__version__,
        transformer_lens=_version("transformer-lens"),
        platform=platform.platform(),
        seeds=dict(seeds),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        threads=torch.get_num_threads(),
    )


def capture_validation_environment(
    dtype: Dtype = "float32", batching: Literal["left-padded", "by-length", "mixed"] | None = None
) -> ValidationEnvironment:
    """The software and CPU a validation ran on (the CPU kernels change float rounding), its dtype and batching."""
    return ValidationEnvironment(
        dtype=dtype,
        batching=batching,
        python=sys.version.split()[0],
        torch=_version("torch"),
        transformer_lens=_version("transformer-lens"),
        transformers=_version("transformers"),
        platform=f"{platform.system()} {platform.machine()}",
        cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        threads=max(int(torch.get_num_threads()), 1),
    )
