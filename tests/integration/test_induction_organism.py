"""The committed ``induction`` organism: integrity of its weights, and what heads.inventory finds in it.

Thresholds. An induction score is an attention weight averaged over the query
rows of the repeated half, each of which can see 25 to 48 keys; a head that
spreads its attention evenly scores about 1/36 = 0.03 there, and the random-init
twin's heads score 0.03 (previous-token: 0.07, because early rows see few keys).
A score of 0.2 is several times what uniform attention gives and a quarter of
what a working induction head gives, so the twin must stay below 0.2 and the
trained heads' interval must lie above 0.5.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from evidence.canonical import canonical_bytes
from evidence.errors import ModelLoadError
from evidence.measure import Task, run_task
from evidence.model import LoadedModel, ModelSpec, load_model, random_twin, weights_digest
from evidence.organisms import ENV_WEIGHTS_DIR, MANIFEST_NAME, read_manifest, train, weights_dir
from evidence.records import EvidenceRecord

SPEC = ModelSpec(organism="induction")
UNIFORM_CEILING = 0.2
HEAD_FLOOR = 0.5


@pytest.fixture(scope="module")
def organism() -> LoadedModel:
    return load_model(SPEC)


@pytest.fixture(scope="module")
def record(organism) -> EvidenceRecord:
    return run_task(Task("heads.inventory", {}, 0, SPEC), organism)


@pytest.fixture(scope="module")
def twin_record(organism) -> EvidenceRecord:
    twin = random_twin(organism, 12345)
    return run_task(Task("heads.inventory", {}, 0, SPEC), twin)


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


def test_heads_inventory_finds_the_planted_circuit(record):
    assert record.status == "ok", record.error
    assert record.record_id == "heads.inventory:induction"
    assert record.metric("induction_head_layer").value == 1
    assert record.metric("prev_token_head_layer").value == 0
    for name in ("induction_score_max", "prev_token_score_max"):
        metric = record.metric(name)
        assert metric.ci is not None and metric.baseline is not None and metric.baseline.ci is not None
        assert metric.ci.method == "percentile bootstrap" and metric.ci.n == 64
        assert metric.ci.lower > HEAD_FLOOR, name
        assert metric.baseline.ci.upper < UNIFORM_CEILING, name
        assert metric.ci.lower > 3 * metric.baseline.ci.upper, name


def test_the_record_is_complete(record):
    assert record.measurement.params == {
        "n_sequences": 64,
        "seq_len": 24,
        "batch_size": 16,
        "bootstrap_resamples": 1000,
        "ci_level": 0.95,
        "top_k": 1,
        "random_ablation_draws": 4,
    }
    assert set(record.seeds) == {"task", "tokens", "twin_init", "bootstrap", "random_heads"}
    assert [t.name for t in record.tables] == ["head_scores", "twin_head_scores"]
    table = record.tables[0]
    assert table.columns == ["layer", "head", "prev_token", "duplicate_token", "induction"]
    assert len(table.rows) == 8
    assert record.data[0].count == 64 and len(record.data[0].sha256) == 64
    assert record.metric("induction_head_index").unit == "head index"
    assert "L1H" in record.summary


def test_ablating_the_top_induction_head_raises_the_repeat_loss(record):
    clean = record.metric("repeat_loss_clean")
    ablated = record.metric("repeat_loss_ablated")
    increase = record.metric("repeat_loss_increase")
    assert clean.value < 0.25  # the organism predicts repeated tokens almost perfectly
    assert ablated.value > 1.5 * clean.value
    assert increase.ci is not None and increase.ci.lower > 0.05
    assert increase.baseline is not None and increase.value > increase.baseline.value


def test_the_random_twin_shows_no_circuit(record, twin_record):
    assert twin_record.status == "ok", twin_record.error
    trained = record.metric("induction_score_max")
    twin = twin_record.metric("induction_score_max")
    assert twin.ci.upper < UNIFORM_CEILING
    assert twin.ci.upper < trained.ci.lower / 3
    assert twin_record.metric("prev_token_score_max").ci.upper < UNIFORM_CEILING
    assert twin_record.metric("repeat_loss_clean").value > 4.0  # about ln(128) = 4.85


def test_the_same_task_gives_the_same_record_bytes(organism):
    params = {"n_sequences": 16, "bootstrap_resamples": 200, "random_ablation_draws": 2}
    a, b = (
        run_task(Task("heads.inventory", params, 3, SPEC), organism).model_copy(update={"duration_s": None})
        for _ in range(2)
    )
    assert a.status == "ok"
    assert canonical_bytes(a) == canonical_bytes(b)


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
    assert a.weights_sha256 == committed["weights_sha256"], (
        f"retrained weights differ from the committed ones (trained with {committed['trained_with']})"
    )
    assert a.final_loss == committed["final_loss"]
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
    # more heads: circuit.faithfulness's docstring has the numbers).
    record = run_task(Task("heads.inventory", {"random_ablation_draws": 1}, 0, SPEC), replicate)
    assert record.status == "ok", record.error
    assert record.metric("induction_head_layer").value == 1 and record.metric("prev_token_head_layer").value == 0
    score = record.metric("induction_score_max")
    assert score.ci is not None and score.baseline is not None and score.baseline.ci is not None
    assert score.ci.lower > 0.3 > score.baseline.ci.upper  # far above its own random-init twin
