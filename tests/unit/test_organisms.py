import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evidence.organisms as organisms
from evidence.errors import ConfigError, ModelLoadError
from evidence.organisms import ENV_WEIGHTS_DIR, ORGANISM_NAMES, get_spec, read_manifest, weights_dir
from evidence.organisms._training import deterministic, finite_state
from evidence.organisms.induction import MAX_SEGMENT, MIN_SEGMENT, repeated_segment_batch

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned():
    assert organisms.__all__ == [
        "ENV_WEIGHTS_DIR",
        "MANIFEST_NAME",
        "ORGANISM_NAMES",
        "OrganismSpec",
        "ProgressFn",
        "TrainResult",
        "TrainedOrganism",
        "get_spec",
        "read_manifest",
        "train",
        "weights_dir",
    ]


@pytest.mark.parametrize("module", ["evidence.organisms", "evidence.model", "evidence.measure"])
def test_importing_loads_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules or 'transformer_lens' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_registry_lists_the_induction_organism():
    assert "induction" in ORGANISM_NAMES
    spec = get_spec("induction")
    assert spec.architecture["n_layers"] == 2 and spec.architecture["attn_only"] is True
    assert (spec.architecture["d_model"], spec.architecture["n_heads"], spec.architecture["d_head"]) == (64, 4, 16)
    assert (spec.architecture["d_vocab"], spec.architecture["n_ctx"]) == (128, 96)
    assert json.loads(json.dumps(dict(spec.architecture))) == dict(spec.architecture)
    assert callable(spec.train_fn())


def test_unknown_organism_is_a_config_error():
    with pytest.raises(ConfigError, match="no organism called 'zebra'"):
        get_spec("zebra")


def test_committed_manifest_entries_match_their_files_and_specs():
    manifest = read_manifest()
    assert "induction" in manifest
    for name, entry in manifest.items():
        assert name in ORGANISM_NAMES
        path = weights_dir() / entry["weights_file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["weights_sha256"]
        assert entry["config"] == dict(get_spec(name).architecture)
        assert entry["seed"] == get_spec(name).seed and entry["steps"] == get_spec(name).steps
    text = (weights_dir() / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_weights_dir_defaults_to_package_data_and_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_WEIGHTS_DIR, raising=False)
    assert weights_dir() == ROOT / "evidence" / "organisms" / "weights"
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path))
    assert weights_dir() == tmp_path
    assert read_manifest() == {}


@pytest.mark.parametrize("content", ["{", "[]", '{"format": 2, "organisms": {}}', '{"format": 1}'])
def test_unreadable_manifests_are_refused(tmp_path, content):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ModelLoadError, match="manifest"):
        read_manifest(tmp_path)


def test_weight_files_are_byte_stable():
    state = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4)}
    blobs = {finite_state(state, name="x", generator_version="g/1") for _ in range(20)}
    assert len(blobs) == 1


def test_non_finite_trained_weights_are_refused():
    with pytest.raises(ModelLoadError, match="non-finite weights in w"):
        finite_state({"w": torch.tensor([1.0, float("nan")])}, name="x", generator_version="g/1")


def test_deterministic_mode_is_scoped():
    threads = torch.get_num_threads()
    flag = torch.are_deterministic_algorithms_enabled()
    with deterministic(5):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        first = torch.rand(3)
    with deterministic(5):
        assert torch.equal(torch.rand(3), first)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == flag


def test_training_batches_repeat_a_segment_of_varying_length_and_position():
    g = torch.Generator().manual_seed(0)
    tokens, mask = repeated_segment_batch(g, 256, 96, 128)
    assert tokens.shape == mask.shape == (256, 96)
    assert tokens.dtype == torch.int64 and int(tokens.min()) >= 0 and int(tokens.max()) < 128
    lengths, starts = set(), set()
    for row, m in zip(tokens, mask, strict=True):
        targets = m.nonzero().flatten()
        length = len(targets) + 1  # the first token of the copy is not predictable
        assert MIN_SEGMENT <= length <= MAX_SEGMENT
        first = int(targets[0]) - 1  # start of the second copy
        assert torch.equal(row[first : first + length], row[first - length : first])
        assert torch.equal(targets, torch.arange(first + 1, first + length))
        lengths.add(length)
        starts.add(first - length)
    assert len(lengths) > 15 and len(starts) > 30
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(repeated_segment_batch(g2, 256, 96, 128)[0], tokens)
