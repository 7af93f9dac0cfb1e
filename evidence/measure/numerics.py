"""The numerics certificate: how faithfully the measured model computes, on the dossier's own prompts.

Every measurement reads logits and activations through the TransformerBridge,
often in padded batches. Before any of them runs, two comparisons say how far
that path is from the plain one, so that a reader can set a measured effect
against the numerical noise under it:

* **bridge vs plain model**: for a Hugging Face checkpoint, the bridge's logits
  against those of the same checkpoint loaded anew with plain ``transformers``,
  prompt by prompt (an organism exists only as a bridge: there is nothing to
  compare with). The plain model is loaded only for this and freed after it: for
  a moment the weights are in memory twice;
* **batched vs alone**: the prompts in one left-padded batch with an attention
  mask and position ids that follow it (:mod:`evidence.measure.methods.batching`)
  against each prompt alone.

Both compare the logits of every real token, in the dtype of the run. The
comparisons are reported, not judged: ``model.batch_invariance`` is the
measurement that judges padding against a tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from evidence.datasets import Dataset
from evidence.errors import MeasurementError
from evidence.measure.methods.batching import pad_rows, run_padded
from evidence.model import LoadedModel
from evidence.records import NumericsCertificate
from evidence.records.core import Dtype

__all__ = ["MAX_PROMPTS", "numerics_certificate", "run_certificate"]

#: Prompts the certificate compares (the first ones of its dataset).
MAX_PROMPTS = 8


@torch.no_grad()
def numerics_certificate(
    model: LoadedModel, seqs: Sequence[Sequence[int]], source: str, *, plain: Any = None
) -> NumericsCertificate:
    """Compare the bridge with the plain model and a padded batch with each prompt alone, on ``seqs``.

    The plain model is loaded anew from the checkpoint's directory with ``transformers``
    (the bridge's own ``original_model`` is the very module the bridge runs, so comparing
    with it could not fail); ``plain`` passes one in instead (tests).
    """
    seqs = [list(s) for s in seqs if len(s) > 0][:MAX_PROMPTS]
    if not seqs:
        raise MeasurementError(f"the numerics certificate has no prompt to run ({source} gave none)")
    bridge = model.bridge
    alone = [_logits(bridge(torch.tensor([seq]))) for seq in seqs]
    reference = _plain_model(model) if plain is None else plain
    bridge_max = bridge_mean = None
    if reference is not None:
        diffs = []
        for seq, ours in zip(seqs, alone, strict=True):
            theirs = reference(input_ids=torch.tensor([seq], device=_device(reference))).logits
            diffs.append((ours - _logits(theirs)).abs())
        bridge_max, bridge_mean = _summary(diffs)
    compared = reference is not None
    del reference  # the plain model's weights are not kept
    pad_id = _pad_id(model)
    batch = pad_rows(seqs, "left", pad_id)
    padded = run_padded(bridge, batch, mask=True, positions="mask")
    diffs = []
    for row, (seq, ours) in enumerate(zip(seqs, alone, strict=True)):
        start = batch.starts[row]
        diffs.append((padded[row, start : start + len(seq)].cpu() - ours).abs())
    batched_max, batched_mean = _summary(diffs)
    recorded = model.identity.processing.get("dtype", "float32")
    dtype: Dtype = recorded if recorded in ("bfloat16", "float16") else "float32"  # type: ignore[assignment]
    if compared:
        note = (
            f"The bridge's logits differ from the plain transformers model's by at most {bridge_max:.3g} on these "
            f"prompts, and a left-padded batch's from each prompt alone by at most {batched_max:.3g} ({dtype})."
        )
    else:
        note = (
            "An organism exists only as a TransformerBridge model, so there is no plain implementation to compare "
            f"with; a left-padded batch's logits differ from each prompt alone by at most {batched_max:.3g} ({dtype})."
        )
    return NumericsCertificate(
        dtype=dtype,
        prompt_source=source,
        prompts=len(seqs),
        tokens=sum(len(s) for s in seqs),
        reference="transformers" if compared else "none",
        bridge_max_abs_diff=bridge_max,
        bridge_mean_abs_diff=bridge_mean,
        batched_max_abs_diff=batched_max,
        batched_mean_abs_diff=batched_mean,
        note=note,
    )


def run_certificate(model: LoadedModel, datasets: Mapping[str, Dataset], seed: int) -> NumericsCertificate:
    """A run's certificate, on the first prompts of the first dataset (by name) the run uses.

    Without a dataset, or for a model without a tokenizer, on seeded random token
    sequences instead (the prompt source says so).
    """
    from evidence.errors import ConfigError
    from evidence.measure.methods.behaviour import prompt_ids

    for name in sorted(datasets):
        if model.tokenizer is None:
            break
        seqs = []
        for prompt in datasets[name].prompts[:MAX_PROMPTS]:
            try:
                seqs.append(prompt_ids(model.tokenizer, prompt, max_tokens=model.bridge.cfg.n_ctx))
            except ConfigError:
                continue
        if seqs:
            return numerics_certificate(model, seqs, f"dataset {name}")
    generator = torch.Generator().manual_seed(seed)
    vocab = int(model.bridge.cfg.d_vocab)
    length = min(16, int(model.bridge.cfg.n_ctx))
    seqs = [torch.randint(0, vocab, (length - k % 4,), generator=generator).tolist() for k in range(MAX_PROMPTS)]
    return numerics_certificate(model, seqs, f"random token sequences (seed {seed})")


def _logits(out: torch.Tensor) -> torch.Tensor:
    """``[positions, vocab]`` float64 on the CPU, from a one-row forward."""
    logits = out[0] if out.dim() == 3 else out
    result: torch.Tensor = logits.detach().to("cpu", torch.float64)
    if not torch.isfinite(result).all():
        raise MeasurementError("the model's logits are not finite on the certificate's prompts")
    return result


def _summary(diffs: Sequence[torch.Tensor]) -> tuple[float, float]:
    flat = torch.cat([d.reshape(-1) for d in diffs])
    return float(flat.max()), float(flat.mean())


def _plain_model(model: LoadedModel) -> Any:
    """The checkpoint loaded with plain ``transformers`` on the bridge's device and dtype (None for an organism)."""
    if model.identity.source != "huggingface" or model.identity.path is None:
        return None
    from transformers import AutoModelForCausalLM

    parameter = next(model.bridge.parameters())
    try:
        plain = AutoModelForCausalLM.from_pretrained(model.identity.path, dtype=parameter.dtype, local_files_only=True)
    except Exception as exc:  # the bridge loaded it: a failure here is reported, not hidden
        raise MeasurementError(
            f"the numerics certificate cannot load {model.identity.path} with transformers: {exc}"
        ) from exc
    return plain.to(parameter.device).eval()  # type: ignore[arg-type]


def _device(bridge: object) -> torch.device:
    parameter = next(bridge.parameters())  # type: ignore[attr-defined]
    device: torch.device = parameter.device
    return device


def _pad_id(model: LoadedModel) -> int:
    tokenizer = model.tokenizer
    for attribute in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute, None) if tokenizer is not None else None
        if isinstance(value, int):
            return value
    return 0
