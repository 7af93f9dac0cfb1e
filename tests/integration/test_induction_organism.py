"""The committed ``induction`` organism: integrity of its weights, and a replicate trained from another seed.

What heads.inventory finds in the organism is tested in tests/measure/suite/test_heads_inventory.py.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from evidence.errors import ModelLoadError
from evidence.measure import Task, run_task
from evidence.model import LoadedModel, ModelSpec, load_model, weights_digest
from evidence.organisms import ENV_WEIGHTS_DIR, MANIFEST_NAME, read_manifest, train, weights_dir
from tests.helpers_organisms import assert_matches_committed

SPEC = ModelSpec(organism="induction")


@pytest.fixture(scope="module")
def organism() -> LoadedModel:
    return load_model(SPEC)


def test_identity_matches_the_manifest(organism):
    entry = read_manifest()["induction"]
    identity = organism.identity
    assert identity.source == "organism" and identity.name == "induction"
    assert [f.name for f in identity.weight_files] == ["induction.safetensors"]
    assert identity.weight_files[0].sha256 == entry["weights_sha256"]
    assert identity.weights_sha256 == weights_digest({"induction.safetensors": entry["weights_sha256"]})
    assert identity.architecture == entry["config"]
    assert identity.tokenizer_sha256 is None and organism.tokenizer is None
    assert identity.processing["compatibility_mode"] is False and identity.processing["fold_ln"] is False
    assert (organism.n_layers, organism.n_heads, organism.d_vocab, organism.n_ctx) == (2, 4, 128, 96)


def test_the_organism_continues_repeated_segments(organism):
    g = torch.Generator().manual_seed(99)
    segment = torch.randint(0, 128, (16, 20), generator=g)
    tokens = torch.cat([torch.randint(0, 128, (16, 7), generator=g), segment, segment], dim=1)
    with torch.no_grad():
        predicted = organism.bridge(tokens)[:, 27:-1].argmax(-1)
    accuracy = (predicted == tokens[:, 28:]).float().mean().item()
    assert accuracy > 0.9


def test_a_tampered_weights_file_is_refused(tmp_path):
    shutil.copytree(weights_dir(), tmp_path / "w")
    target = tmp_path / "w" / "induction.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    expected = read_manifest(tmp_path / "w")["induction"]["weights_sha256"]
    with pytest.raises(ModelLoadError) as info:
        load_model(SPEC, organisms_dir=tmp_path / "w")
    message = str(info.value)
    assert str(target) in message and expected in message and "has sha256" in message
    assert info.value.hint == "interp-dossier organisms train induction"


def test_the_weights_directory_can_be_overridden_by_environment(tmp_path, monkeypatch):
    shutil.copytree(weights_dir(), tmp_path / "w")
    (tmp_path / "w" / "induction.safetensors").write_bytes(b"\x00" * 16)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "w"))
    assert weights_dir() == tmp_path / "w"
    with pytest.raises(ModelLoadError, match="manifest expects"):
        load_model(SPEC)


def test_weights_for_another_configuration_are_refused(tmp_path):
    shutil.copytree(weights_dir(), tmp_path / "w")
    manifest = json.loads((tmp_path / "w" / MANIFEST_NAME).read_text())
    manifest["organisms"]["induction"]["config"]["d_model"] = 32
    (tmp_path / "w" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="different configuration"):
        load_model(SPEC, organisms_dir=tmp_path / "w")


@pytest.mark.slow
def test_training_is_bit_reproducible_and_matches_the_committed_weights(tmp_path):
    committed = read_manifest()["induction"]
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    other = {"name": "other", "weights_sha256": "0" * 64}
    (first / MANIFEST_NAME).write_text(json.dumps({"format": 1, "organisms": {"other": other}}))
    a = train("induction", weights_dir=first)
    b = train("induction", weights_dir=second)
    assert (first / "induction.safetensors").read_bytes() == (second / "induction.safetensors").read_bytes()
    assert a.weights_sha256 == b.weights_sha256 and a.final_loss == b.final_loss
    assert read_manifest(first)["other"] == other  # other organisms' entries survive
    assert read_manifest(first)["induction"] == read_manifest(second)["induction"]
    # Bit-identical to the committed weights on the CPU kernels they were trained with; elsewhere equal
    # up to float rounding (the kernels are recorded in the manifest).
    assert_matches_committed("induction", a.weights_sha256, a.final_loss, Path(a.weights_path))
    assert committed["config"] == read_manifest(first)["induction"]["config"]
    assert Path(a.weights_path).stat().st_mode & 0o777 == 0o644


def test_non_finite_organism_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(weights_dir(), tmp_path / "w")
    target = tmp_path / "w" / "induction.safetensors"
    state = load_file(str(target))
    state["blocks.0.attn.q.weight"][0, 0] = float("inf")
    save_file(state, str(target))
    manifest = json.loads((tmp_path / "w" / MANIFEST_NAME).read_text())
    manifest["organisms"]["induction"]["weights_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (tmp_path / "w" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"non-finite weights \(NaN or Inf\) in blocks.0.attn.q.weight"):
        load_model(SPEC, organisms_dir=tmp_path / "w")


@pytest.mark.slow
def test_a_replicate_from_another_seed_is_another_model_whose_heads_still_specialise_by_layer(tmp_path, capsys):
    from evidence.cli import main

    assert main(["organisms", "train", "induction", "--seed", "7", "--out", str(tmp_path)]) == 0
    assert "induction  sha256 " in capsys.readouterr().out
    entry = read_manifest(tmp_path)["induction"]
    assert entry["seed"] == 7 and entry["replicate"] is True
    assert entry["weights_sha256"] != read_manifest()["induction"]["weights_sha256"]
    replicate = load_model(SPEC, organisms_dir=tmp_path)
    assert replicate.identity.name == "induction (replicate from seed 7)"
    # The recipe puts the previous-token heads in layer 0 and the induction heads in layer 1 whatever the
    # seed; how well and how sparsely differs (this replicate learns the task less well and spreads it over
    # more heads: docs/methods/circuit.faithfulness.md has the numbers).
    record = run_task(Task("heads.inventory", {"random_ablation_draws": 1}, 0, SPEC), replicate)
    assert record.status == "ok", record.error
    assert record.metric("induction_head_layer").value == 1 and record.metric("prev_token_head_layer").value == 0
    score = record.metric("induction_score_max")
    assert score.ci is not None and score.baseline is not None and score.baseline.ci is not None
    assert score.ci.lower > 0.3 > score.baseline.ci.upper  # far above its own random-init twin
