"""Retrained organisms against their committed weights."""

from __future__ import annotations

from pathlib import Path

#: Largest elementwise difference accepted between retrained and committed weights on another CPU.
WEIGHT_ATOL = 1e-4
#: Largest relative difference of the final training loss accepted there.
LOSS_RTOL = 1e-5


def same_kernels(committed: dict) -> bool:
    """Whether this machine reports the CPU kernels the committed weights were trained with (as recorded).

    Necessary for bit-identical retraining, not sufficient: the record names the instruction set
    (e.g. AVX512), not the processor, and another vendor's processor with the same instruction set
    can round differently (seen: retraining on an AMD EPYC moved weights by 6e-7). So a retrained
    file that differs where the kernels match is compared numerically, like one from other kernels.
    """
    import platform

    import torch

    recorded = committed.get("trained_with", {})
    return (
        recorded.get("cpu_capability") == torch.backends.cpu.get_cpu_capability()
        and recorded.get("machine") == platform.machine()
        and recorded.get("torch") == torch.__version__
    )


def assert_matches_committed(name: str, weights_sha256: str, final_loss: float, weights_path: Path) -> None:
    """Bit-identical where the kernels match the recorded ones and the processor rounds alike; otherwise equal
    up to float rounding (:func:`same_kernels`).

    Entries that record no CPU kernels (trained before the manifest recorded them) are checked numerically.
    """
    from safetensors.torch import load_file

    from evidence.organisms import read_manifest, weights_dir

    committed = read_manifest()[name]
    if same_kernels(committed) and weights_sha256 == committed["weights_sha256"]:  # bit for bit (see same_kernels)
        assert final_loss == committed["final_loss"]
        return
    ours = load_file(str(weights_path))
    theirs = load_file(str(weights_dir() / committed["weights_file"]))
    assert set(ours) == set(theirs)
    worst = max(float((ours[k].double() - theirs[k].double()).abs().max()) for k in ours)
    assert worst <= WEIGHT_ATOL, f"{name}: retrained weights differ from the committed by up to {worst:.3g}"
    assert abs(final_loss - committed["final_loss"]) <= LOSS_RTOL * abs(committed["final_loss"])
