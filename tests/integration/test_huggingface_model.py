"""A local Hugging Face directory, loaded offline: a tiny random GPT-2 built in the test."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from evidence.errors import ModelLoadError
from evidence.measure import Task, run_task
from evidence.measure.hooks import capture
from evidence.model import ModelSpec, load_model, random_twin, weights_digest

VOCAB = 48


def build_checkpoint(directory: Path) -> GPT2LMHeadModel:
    words = ["<|endoftext|>"] + [f"w{i}" for i in range(VOCAB - 1)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf = GPT2LMHeadModel(config).eval()
    hf.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return hf


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, GPT2LMHeadModel]:
    directory = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    return directory, build_checkpoint(directory)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(ModelSpec(path=checkpoint[0]))


def test_loads_offline_with_raw_weights_and_matching_logits(checkpoint, loaded):
    directory, hf = checkpoint
    tokens = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(loaded.bridge(tokens), hf(tokens).logits, atol=1e-5)
    assert (loaded.n_layers, loaded.n_heads, loaded.d_vocab, loaded.n_ctx) == (2, 2, VOCAB, 64)
    assert loaded.tokenizer is not None and loaded.tokenizer.bos_token_id == 0
    assert not loaded.bridge.training


def test_offline_switches_are_set_only_while_loading(checkpoint, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    seen = {}
    real = PreTrainedTokenizerFast.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(env=os.environ.get("HF_HUB_OFFLINE"), hub=hub.HF_HUB_OFFLINE, kwargs=kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerFast, "from_pretrained", classmethod(spy))
    load_model(ModelSpec(path=checkpoint[0]))
    assert seen["env"] == "1" and seen["hub"] is True
    assert seen["kwargs"].get("local_files_only") is True
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_identity_pins_the_files_and_every_processing_flag(checkpoint, loaded):
    directory, _ = checkpoint
    identity = loaded.identity
    assert identity.name == "tiny-gpt2" and identity.source == "huggingface"
    assert identity.path == str(directory)
    assert identity.architecture == json.loads((directory / "config.json").read_text())
    assert [f.name for f in identity.weight_files] == ["model.safetensors"]
    assert identity.weights_sha256 == weights_digest({f.name: f.sha256 for f in identity.weight_files})
    assert identity.tokenizer_sha256 is not None
    assert identity.n_parameters == sum(p.numel() for p in checkpoint[1].parameters())
    assert identity.processing == {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
        "fold_value_biases": False,
        "refactor_factored_attn_matrices": False,
        "compatibility_mode": False,
        "dtype": "float32",
        "device": "cpu",
        "batching": "left-padded",
        "attn_implementation": "eager",
    }


def test_classic_hook_names_work_on_a_transformers_model(loaded):
    tokens = torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    acts = capture(loaded.bridge, ["blocks.1.attn.hook_pattern", "blocks.0.attn.hook_z"], tokens)
    assert acts["blocks.1.attn.hook_pattern"].shape == (2, 2, 9, 9)
    assert acts["blocks.0.attn.hook_z"].shape == (2, 9, 2, 16)


def test_random_twin_has_the_architecture_but_not_the_weights(loaded):
    twin = random_twin(loaded, 5)
    assert twin.identity.architecture == loaded.identity.architecture
    assert twin.identity.weights_sha256 != loaded.identity.weights_sha256
    assert random_twin(loaded, 5).identity.weights_sha256 == twin.identity.weights_sha256
    assert random_twin(loaded, 6).identity.weights_sha256 != twin.identity.weights_sha256


def test_heads_inventory_runs_with_a_bos_token(checkpoint, loaded):
    params = {"n_sequences": 8, "seq_len": 10, "bootstrap_resamples": 100, "batch_size": 4}
    record = run_task(Task("heads.inventory", params, 0, ModelSpec(path=checkpoint[0])), loaded)
    assert record.status == "ok", record.error
    assert record.record_id == "heads.inventory:tiny-gpt2"
    assert record.data[0].description.startswith("int64 array of shape [4, 21]")  # the discovery half
    assert "BOS" in record.data[0].description


def test_non_finite_weights_are_refused(tmp_path):
    directory = tmp_path / "nan-gpt2"
    build_checkpoint(directory)
    state = load_file(str(directory / "model.safetensors"))
    key = next(k for k in sorted(state) if k.endswith("attn.c_attn.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="non-finite weights"):
        load_model(ModelSpec(path=directory))


def test_a_directory_transformers_cannot_read_is_a_model_load_error(tmp_path):
    directory = tmp_path / "broken"
    build_checkpoint(directory)
    (directory / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(ModelSpec(path=directory))


def test_edges_are_scored_on_a_transformers_model(loaded):
    # GPT-2: learned position embeddings, the transformers attention and MLP behind the bridge. The
    # recomputation edge patching rests on must reproduce them, or the record would be an error.
    spec = loaded.spec
    params = {"n_examples": 8, "seq_len": 6, "bootstrap_resamples": 200, "twin_baseline": False}
    record = run_task(Task("circuit.faithfulness", params, 0, spec), loaded)
    assert record.status == "ok", record.error
    assert record.metric("n_edges").value == 46  # into layer-0 q/k/v 6, L0 MLP 3, layer-1 q/k/v 24, L1 MLP 6, logits 7
    assert record.metric("edge_recompute_error").value < 1e-5
    rows = next(t for t in record.tables if t.name == "edges").rows
    assert len(rows) == 46 and all(isinstance(r[3], float) for r in rows)
