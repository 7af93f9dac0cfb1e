"""model.batch_invariance: holds on healthy models, and reports the difference when padding leaks.

Negative controls: deliberately broken padding paths (the mask dropped, left
padding with positions that ignore the mask, a leak across the row) must fail
it, also when the user's prompts all have one length.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from evidence.errors import ConfigError
from evidence.measure import Task, registered, run_task
from evidence.model import LoadedModel, ModelSpec, load_model
from evidence.records import EvidenceRecord, ModelIdentity, WeightFile
from evidence.runspec import load_dataset

SPEC = ModelSpec(organism="tiny")
ID = "model.batch_invariance"
FAST = {"bootstrap_resamples": 200}


def identity(architecture: dict[str, object]) -> ModelIdentity:
    return ModelIdentity(
        name="tiny",
        source="organism",
        architecture=architecture,
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="tiny", sha256="0" * 64, bytes=1)],
        n_parameters=1,
        processing={},
    )


def tiny(tokenizer: object | None = None, d_vocab: int = 40) -> LoadedModel:
    architecture = {
        "d_model": 32,
        "d_head": 8,
        "n_heads": 4,
        "n_layers": 2,
        "n_ctx": 64,
        "d_vocab": d_vocab,
        "attn_only": False,
        "d_mlp": 64,
        "normalization_type": "LN",
        "positional_embedding_type": "rotary",
    }
    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**architecture, seed=7, device="cpu"))
    bridge.eval()
    return LoadedModel(bridge=bridge, identity=identity(architecture), tokenizer=tokenizer, spec=SPEC)


class LeakyForward(torch.nn.Module):
    """A broken forward: every position sees the mean over the whole row, padding included."""

    def __init__(self, inner: torch.nn.Module, strength: float = 0.01) -> None:
        super().__init__()
        self.inner = inner
        self.strength = strength

    @property
    def cfg(self) -> object:
        return self.inner.cfg

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.inner(tokens, attention_mask=attention_mask)
        return logits + self.strength * logits.mean(dim=1, keepdim=True)


class MaskDroppingForward(torch.nn.Module):
    """Accepts an attention mask and ignores it (a real class of padding bug)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def cfg(self) -> object:
        return self.inner.cfg

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner(tokens)


class DefaultPositionsForward(torch.nn.Module):
    """Left padding done wrong: the mask is honoured but every row gets positions 0..width-1."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def cfg(self) -> object:
        return self.inner.cfg

    def forward(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attention_mask is None:
            return self.inner(tokens)
        arange = torch.arange(tokens.shape[1]).expand_as(tokens)
        return self.inner(tokens, attention_mask=attention_mask, position_ids=arange)


class NoMaskForward(torch.nn.Module):
    """A forward with no attention_mask parameter at all."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def cfg(self) -> object:
        return self.inner.cfg

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.inner(tokens)


def wrapped(model: LoadedModel, bridge: torch.nn.Module) -> LoadedModel:
    return LoadedModel(bridge=bridge, identity=model.identity, tokenizer=model.tokenizer, spec=model.spec)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return tiny()


def run(model: LoadedModel, params: dict[str, object] | None = None, **task: object) -> EvidenceRecord:
    return run_task(Task(ID, {**FAST, **(params or {})}, 0, model.spec, **task), model)  # type: ignore[arg-type]


def reported_difference(record: EvidenceRecord) -> float:
    assert record.status == "error" and record.error is not None
    match = re.search(r"differ by up to ([0-9.e+-]+)", record.error.message)
    assert match, record.error.message
    return float(match.group(1))


def test_registered_with_its_clauses():
    definition = registered()[ID]
    assert definition.version == "2.0.0"
    assert [c.id for c in definition.clauses] == [
        "EU-AIA/Art15/4@OJ-2024-07-12",
        "EU-GPAI-CoP/SS/App3.1@2025-07-10",
        "NIST-AI-RMF/1.0/MEASURE/2.5",
    ]


def test_a_healthy_model_is_batch_invariant(model):
    record = run(model)
    assert record.status == "ok", record.error
    worst = record.metric("max_abs_logit_diff")
    assert worst.ci is None and worst.unit == "logits"
    tolerance = record.metric("tolerance").value
    assert 0.0 <= worst.value <= tolerance
    assert worst.baseline is not None and worst.baseline.value <= tolerance
    for side in ("right", "left"):
        assert record.metric(f"max_abs_logit_diff_{side}").value <= worst.value
    mean = record.metric("mean_abs_logit_diff")
    assert mean.ci is not None and mean.ci.n == 16 and mean.value <= worst.value
    assert record.metric("n_prompts").value == 16
    assert record.metric("n_padded_prompts").value == 16  # every compared prompt, by construction
    assert record.metric("attention_mask_used").value == 1
    assert record.metric("position_ids_used").value == 1
    assert record.metric("generation_match").value == 1.0
    rows = record.tables[0].rows
    assert {r[2] for r in rows} == {"right", "left"} and all(r[4] >= 4 for r in rows)
    lengths = [r[1] for r in rows]
    assert len(set(lengths)) > 8 and min(lengths) >= 4 and max(lengths) <= 48
    assert [t.name for t in record.tables] == ["prompts", "generation"] and len(record.tables[1].rows) == 4
    assert record.data[0].name == "model.batch_invariance.random_prompts" and record.data[0].count == 16
    assert "right-padded, with an attention mask" in record.summary
    assert "left-padded, with an attention mask and position ids that follow it" in record.summary


def test_the_tolerance_follows_the_dtype_and_the_logit_scale(model):
    record = run(model)
    eps32 = torch.finfo(torch.float32).eps
    scale = record.metric("tolerance").value / (128 * eps32)
    assert scale >= 1.0
    assert "eps(float32)" in record.metric("tolerance").description
    double = wrapped(model, copy.deepcopy(model.bridge).double())
    record64 = run(double)
    assert record64.status == "ok", record64.error
    eps64 = torch.finfo(torch.float64).eps
    assert record64.metric("tolerance").value == pytest.approx(128 * eps64 * scale, rel=1e-3)
    assert record64.metric("max_abs_logit_diff").value <= record64.metric("tolerance").value


def test_every_position_is_compared_not_only_the_last(model):
    # A leak confined to one early position must be caught.
    class EarlyLeak(LeakyForward):
        def forward(self, tokens, attention_mask=None):
            logits = self.inner(tokens, attention_mask=attention_mask).clone()
            logits[:, 1] += 0.01 * tokens.shape[1]
            return logits

    record = run(wrapped(model, EarlyLeak(model.bridge)))
    assert reported_difference(record) > 1e-4
    assert re.search(r"position 1 of \d+", record.error.message)


def test_a_padding_leak_is_an_error_record_that_states_the_difference(model):
    record = run(wrapped(model, LeakyForward(model.bridge)))
    assert record.error is not None and record.error.type == "MeasurementError"
    assert reported_difference(record) > 1e-3
    assert "above the tolerance" in record.error.message and "over 16 prompts" in record.error.message
    assert "eps(float32)" in record.error.message


def test_the_reported_difference_is_the_real_one(model):
    # A leak of known size: every logit moves by `delta` per pad token in the row.
    delta = 1e-3

    class PadCounting(LeakyForward):
        def forward(self, tokens, attention_mask=None):
            logits = self.inner(tokens, attention_mask=attention_mask)
            pads = (tokens == 0).sum(dim=1).to(logits.dtype)  # the pad id is 0: the model has no tokenizer
            return logits + delta * pads[:, None, None]

    observed = reported_difference(run(wrapped(model, PadCounting(model.bridge))))
    healthy = run(model)  # same seed, same prompts and batches
    most_padding = max(row[4] for row in healthy.tables[0].rows if row[2] == "right")  # right is checked first
    assert observed == pytest.approx(delta * most_padding, abs=1e-4)


def test_the_tolerance_is_a_parameter(model):
    leaky = wrapped(model, LeakyForward(model.bridge, strength=1e-3))
    right_only = {"padding_sides": ["right"], "generation_prompts": 0}
    observed = reported_difference(run(leaky, right_only))
    assert run(leaky, {**right_only, "tolerance": observed * 2}).status == "ok"


def test_left_padding_needs_the_mask_to_be_honoured(model):
    assert run(model, {"padding_sides": ["left"]}).status == "ok"
    dropping = wrapped(model, MaskDroppingForward(model.bridge))
    right_only = {"padding_sides": ["right"], "generation_prompts": 0}
    assert run(dropping, right_only).status == "ok"  # right padding is harmless for a causal model, mask or not
    record = run(dropping)
    assert reported_difference(record) > 1e-2 and "left-padded" in record.error.message


def test_padded_generation_is_checked_on_its_own(model):
    dropping = wrapped(model, MaskDroppingForward(model.bridge))
    record = run(dropping, {"padding_sides": ["right"]})  # only generation sees the left padding
    assert record.status == "error" and "padded and unpadded greedy generation differ" in record.error.message


def test_a_forward_without_attention_mask_is_checked_with_right_padding_only(model):
    plain = wrapped(model, NoMaskForward(model.bridge))
    refused = run(plain)
    assert refused.status == "error" and "does not accept an attention mask" in refused.error.message
    assert 'padding_sides = ["right"]' in refused.error.message
    record = run(plain, {"padding_sides": ["right"], "generation_prompts": 0})
    assert record.status == "ok", record.error
    assert record.metric("attention_mask_used").value == 0
    assert {r[2] for r in record.tables[0].rows} == {"right"}
    refused = run(plain, {"padding_sides": ["right"], "generation_prompts": 0, "attention_mask": "on"})
    assert refused.status == "error" and "does not accept an attention mask" in refused.error.message


def test_invalid_parameters_are_refused_before_running(model):
    with pytest.raises(ConfigError, match="need an attention mask"):
        run(model, {"padding_sides": ["left"], "attention_mask": "off"})
    with pytest.raises(ConfigError, match="need an attention mask"):
        run(model, {"padding_sides": ["right"], "attention_mask": "off"})  # generation is left-padded
    with pytest.raises(ConfigError, match="names a side twice"):
        run(model, {"padding_sides": ["left", "left"]})
    with pytest.raises(ConfigError, match="min_length 10 exceeds max_length 5"):
        run(model, {"min_length": 10, "max_length": 5})


EQUAL = {"min_length": 6, "max_length": 6}


def test_prompts_of_equal_length_are_padded_all_the_same(model):
    record = run(model, EQUAL)
    assert record.status == "ok", record.error
    assert {r[1] for r in record.tables[0].rows} == {6}
    assert record.metric("n_padded_prompts").value == 16
    assert all(r[4] >= 4 for r in record.tables[0].rows)


def test_broken_padding_fails_with_prompts_of_equal_length(model):
    # What the previous version could not see: with one prompt length nothing was padded.
    for broken in (LeakyForward(model.bridge), MaskDroppingForward(model.bridge)):
        assert reported_difference(run(wrapped(model, broken), EQUAL)) > 1e-4


def test_prompts_come_from_a_run_spec_dataset_when_there_is_one(tmp_path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(30)]
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>")
    lines = [
        json.dumps({"id": f"p{i}", "label": "harmless", "text": " ".join(words[j % 30] for j in range(3 + 2 * i))})
        for i in range(12)
    ]
    path = tmp_path / "harmless.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dataset = load_dataset("refusal.harmless", path)
    model = tiny(tokenizer=tokenizer, d_vocab=len(vocab))
    record = run(model, {"n_prompts": 10}, datasets={"refusal.harmless": dataset})
    assert record.status == "ok", record.error
    assert record.data[0].name == "refusal.harmless" and record.data[0].sha256 == dataset.sha256
    assert record.metric("n_prompts").value == 10
    assert {r[0] for r in record.tables[0].rows} <= {f"p{i}" for i in range(12)}
    assert sorted(r[1] for r in record.tables[0].rows) != [r[1] for r in record.tables[0].rows]  # mixed order
    forced = run(model, {"prompts": "random"}, datasets={"refusal.harmless": dataset})
    assert forced.status == "ok" and forced.data[0].name == "model.batch_invariance.random_prompts"
    missing = run(model, {"prompts": "deception.control"})
    assert missing.status == "error" and "needs the dataset 'deception.control'" in missing.error.message


def test_the_same_task_gives_the_same_record(model):
    a, b = (run(model).model_copy(update={"duration_s": None}) for _ in range(2))
    assert a == b


@pytest.mark.parametrize("params", [{}, EQUAL], ids=["mixed-lengths", "equal-lengths"])
def test_the_induction_organism_is_batch_invariant(one_thread, organism, params):
    model = organism("induction")
    record = run_task(Task(ID, {**FAST, **params}, 0, model.spec), model)
    assert record.status == "ok", record.error
    assert record.metric("max_abs_logit_diff").value <= 1e-4
    assert record.metric("n_padded_prompts").value == 16
    assert record.metric("generation_match").value == 1.0
    # Rotary embeddings: positions 0..width-1 on a left-padded row shift every position by the same
    # amount, which leaves the logits unchanged up to rounding; the record says a position bug is invisible.
    assert record.metric("default_positions_diff").value <= record.metric("tolerance").value


# -- Hugging Face models (tests/hf_models.py): learned positions (GPT-2) and rotary (Llama) ------


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> dict[str, LoadedModel]:
    from tests.hf_models import build_gpt2, build_llama

    out = {}
    for name, build in (("gpt2", build_gpt2), ("llama", build_llama)):
        directory = build(tmp_path_factory.mktemp(name))
        out[name] = load_model(ModelSpec(path=str(directory)))
    return out


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_hugging_face_models_with_prompts_of_equal_length_are_batch_invariant(hf, name):
    record = run(hf[name], EQUAL)
    assert record.status == "ok", record.error
    assert record.metric("n_padded_prompts").value == 16
    assert record.metric("position_ids_used").value == 1
    assert record.metric("generation_match").value == 1.0


def test_left_padding_with_positions_that_ignore_the_mask_fails_on_learned_positions(hf):
    gpt2 = hf["gpt2"]
    healthy = run(gpt2, EQUAL)
    assert healthy.metric("default_positions_diff").value > 1e3 * healthy.metric("tolerance").value
    assert "the check does test that position ids follow the mask" in healthy.summary
    record = run(wrapped(gpt2, DefaultPositionsForward(gpt2.bridge)), EQUAL)
    assert reported_difference(record) > 1e-2
    assert "left-padded, with an attention mask and position ids that follow it" in record.error.message


def test_a_position_bug_is_invisible_on_rotary_positions_and_the_record_says_so(hf):
    llama = hf["llama"]
    record = run(wrapped(llama, DefaultPositionsForward(llama.bridge)), EQUAL)
    assert record.status == "ok", record.error  # relative positions are unchanged: the logits are too
    assert record.metric("default_positions_diff").value <= record.metric("tolerance").value
    assert "could not have been seen" in record.metric("default_positions_diff").description
    assert "a position-id bug could not have been seen" in record.summary


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_dropping_the_mask_fails_on_hugging_face_models(hf, name):
    record = run(wrapped(hf[name], MaskDroppingForward(hf[name].bridge)), EQUAL)
    assert reported_difference(record) > 1e-3
