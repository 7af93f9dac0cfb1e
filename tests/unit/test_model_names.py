"""What ``--model NAME`` names: a directory, an organism, or a model in the local Hugging Face cache (offline)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from evidence.errors import ConfigError
from evidence.model import ModelSpec, hub_cache_dir, load_model, resolve_cached_model
from evidence.runspec import RunSpec
from tests.hf_models import build_gpt2


def _spec() -> RunSpec:
    return RunSpec(source=None, sha256="0" * 64, seed=0, model_path=None, model_organism="demo", measurements={})


def _cache_with(root: Path, repo_id: str, revision: str = "0123abcd", *, ref: bool = True) -> Path:
    """A hub cache in ``root`` holding a tiny GPT-2 as ``repo_id`` at ``revision`` (huggingface_hub's layout)."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = build_gpt2(repo / "snapshots" / revision)
    (repo / "blobs").mkdir()
    for file in sorted(snapshot.iterdir()):  # as huggingface_hub stores them: symlinks into blobs/
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        file.rename(blob)
        file.symlink_to(Path("..") / ".." / "blobs" / blob.name)
    if ref:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_the_cache_is_where_huggingface_hub_keeps_it(monkeypatch, tmp_path):
    for key in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"


def test_a_cached_model_loads_by_its_hub_name_offline(monkeypatch, tmp_path):
    snapshot = _cache_with(tmp_path / "hub", "example-org/tiny-gpt2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    spec = _spec().with_model("example-org/tiny-gpt2")
    assert spec.model_path == snapshot.resolve() and spec.model_organism is None
    loaded = load_model(ModelSpec(path=spec.model_path))
    assert loaded.identity.source == "huggingface"
    assert loaded.identity.path == str(snapshot.resolve())
    (weights,) = loaded.identity.weight_files  # read through the snapshot's symlink, named as the model saved it
    assert weights.name == "model.safetensors"
    assert weights.sha256 == (snapshot / "model.safetensors").resolve().name


def test_refs_main_chooses_among_snapshots_and_without_it_several_are_ambiguous(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--m"
    for revision in ("aaaa", "bbbb"):
        (repo / "snapshots" / revision).mkdir(parents=True)
    with pytest.raises(ConfigError, match="2 snapshots") as info:
        resolve_cached_model("org/m")
    assert "--model DIR" in (info.value.hint or "")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("bbbb\n")
    assert resolve_cached_model("org/m") == repo / "snapshots" / "bbbb"


def test_a_model_not_in_the_cache_says_where_it_looked_and_how_to_bring_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        _spec().with_model("example-org/absent-model")
    assert info.value.message == (
        "model 'example-org/absent-model' is not a directory, an organism, or in the local Hugging Face cache "
        f"({tmp_path / 'hub' / 'models--example-org--absent-model'})"
    )
    assert info.value.hint is not None
    assert "huggingface-cli download example-org/absent-model" in info.value.hint
    assert "pass a local directory" in info.value.hint


def test_a_typo_of_a_directory_suggests_the_near_name(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "gpt2-tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="there is no model directory 'gpt2-tiy'; did you mean 'gpt2-tiny'") as info:
        _spec().with_model("gpt2-tiy")
    assert info.value.hint == "pass --model gpt2-tiny"
    with pytest.raises(ConfigError, match="did you mean 'models/gpt2-tiny'"):
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "gpt2-tiny").mkdir()
        _spec().with_model("models/gpt2-tiy")


def test_a_typo_of_an_organism_suggests_the_organism(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean the organism 'induction'"):
        _spec().with_model("inductoin")


def test_directories_and_organisms_come_before_the_cache(monkeypatch, tmp_path):
    _cache_with(tmp_path / "hub", "demo")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert _spec().with_model("demo").model_organism == "demo"
    (tmp_path / "local").mkdir()
    assert _spec().with_model("local").model_path == (tmp_path / "local").resolve()
