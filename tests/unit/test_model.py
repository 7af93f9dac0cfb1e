import hashlib
import json
from pathlib import Path

import pytest

import evidence.model as model_module
from evidence.errors import ConfigError, ModelLoadError
from evidence.model import ModelSpec, load_model, weights_digest


def test_public_api_is_pinned():
    assert model_module.__all__ == [
        "DEVICES",
        "DTYPES",
        "LoadedModel",
        "ModelSpec",
        "PROCESSING",
        "check_device",
        "hub_cache_dir",
        "load_model",
        "random_twin",
        "resolve_cached_model",
        "resolve_model_name",
        "weights_digest",
    ]


def test_spec_names_exactly_one_model():
    with pytest.raises(ConfigError):
        ModelSpec()
    with pytest.raises(ConfigError):
        ModelSpec(organism="induction", path=Path("x"))
    with pytest.raises(ConfigError):
        ModelSpec(organism="")


def test_spec_describes_itself_and_normalises_paths():
    assert ModelSpec(organism="induction").describe() == "organism 'induction'"
    spec = ModelSpec(path="models/m")  # type: ignore[arg-type]
    assert spec.path == Path("models/m")
    assert spec.describe() == "Hugging Face directory 'models/m'"
    assert spec == ModelSpec(path=Path("models/m"))


def test_weights_digest_is_over_sorted_name_and_digest_lines():
    files = {"b.safetensors": "2" * 64, "a.safetensors": "1" * 64}
    expected = hashlib.sha256(
        ("a.safetensors\0" + "1" * 64 + "\n" + "b.safetensors\0" + "2" * 64 + "\n").encode()
    ).hexdigest()
    assert weights_digest(files) == expected


def test_processing_flags_are_all_off():
    assert dict(model_module.PROCESSING) == {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
        "fold_value_biases": False,
        "refactor_factored_attn_matrices": False,
        "compatibility_mode": False,
    }


def test_unknown_organism_is_a_config_error():
    with pytest.raises(ConfigError, match="no organism called 'nope'") as info:
        load_model(ModelSpec(organism="nope"))
    assert "induction" in (info.value.hint or "")


def write(path: Path, text: str = "{}") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("setup", "message", "hint"),
    [
        (lambda d: d / "missing", "there is no model directory", "Hugging Face model directory"),
        (lambda d: write(d / "file.bin"), "is a file, not a model directory", "config.json"),
        (lambda d: d, "has no config.json", "save_pretrained"),
        (lambda d: write(d / "config.json", "{not json").parent, "not readable JSON", "save"),
        (lambda d: write(d / "config.json").parent, "has no weight files", "save_pretrained"),
        (
            lambda d: (write(d / "config.json"), write(d / "model.safetensors", "x"))[0].parent,
            "has no tokenizer files",
            "tokenizer.save_pretrained",
        ),
    ],
    ids=["missing", "file", "no-config", "bad-config", "no-weights", "no-tokenizer"],
)
def test_unusable_directories_are_refused_with_a_remedy(tmp_path, setup, message, hint):
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(ModelSpec(path=setup(tmp_path)))
    assert hint in (info.value.hint or "")


def test_missing_organism_manifest_entry_names_the_training_command(tmp_path):
    write(tmp_path / "manifest.json", json.dumps({"format": 1, "organisms": {}}))
    with pytest.raises(ModelLoadError, match="no entry") as info:
        load_model(ModelSpec(organism="induction"), organisms_dir=tmp_path)
    assert info.value.hint == "interp-dossier organisms train induction"


def _copy_of_induction(tmp_path: Path, **changes: object) -> Path:
    from evidence.organisms import read_manifest, weights_dir

    entry = dict(read_manifest()["induction"], **changes)
    source = weights_dir() / str(entry["weights_file"])
    (tmp_path / source.name).write_bytes(source.read_bytes())
    write(tmp_path / "manifest.json", json.dumps({"format": 1, "organisms": {"induction": entry}}))
    return tmp_path


def test_weights_from_another_seed_are_refused_unless_marked_as_a_replicate(tmp_path):
    directory = _copy_of_induction(tmp_path, seed=7)
    with pytest.raises(ModelLoadError, match="different configuration") as info:
        load_model(ModelSpec(organism="induction"), organisms_dir=directory)
    assert info.value.hint == "interp-dossier organisms train induction"


def test_a_replicate_loads_and_says_so_in_its_identity(tmp_path):
    directory = _copy_of_induction(tmp_path, seed=7, replicate=True)
    loaded = load_model(ModelSpec(organism="induction"), organisms_dir=directory)
    assert loaded.identity.name == "induction (replicate from seed 7)"
    bundled = load_model(ModelSpec(organism="induction"))
    assert bundled.identity.name == "induction"
    assert loaded.identity.weights_sha256 == bundled.identity.weights_sha256  # the same file, here


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            ["tokenizer_config.json", "chat_template.jinja"],
            "cannot be loaded: it has chat_template.jinja, tokenizer_config.json but no vocabulary file "
            "(tokenizer.json, vocab.json and merges.txt, tokenizer.model, spiece.model or vocab.txt)",
        ),
    ],
    ids=["settings-only"],
)
def test_tokenizer_files_without_a_vocabulary_name_what_is_missing(tmp_path, files, message):
    write(tmp_path / "config.json")
    write(tmp_path / "model.safetensors", "x")
    for name in files:
        write(tmp_path / name)
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec(path=tmp_path))
    assert info.value.message == f"the tokenizer in {tmp_path} {message}"
    assert "tokenizer.save_pretrained" in (info.value.hint or "")


def test_bpe_vocabulary_without_merges_names_the_missing_file(tmp_path):
    write(tmp_path / "config.json")
    write(tmp_path / "model.safetensors", "x")
    write(tmp_path / "tokenizer_config.json")
    write(tmp_path / "vocab.json")
    with pytest.raises(ModelLoadError, match="vocab.json with merges.txt is incomplete: merges.txt is missing"):
        load_model(ModelSpec(path=tmp_path))


def test_another_vocabulary_format_is_left_to_the_tokenizer_library(tmp_path):
    write(tmp_path / "config.json")
    write(tmp_path / "model.safetensors", "x")
    write(tmp_path / "tokenizer_config.json")
    write(tmp_path / "sentencepiece.bpe.model")
    with pytest.raises(ModelLoadError, match="cannot load the tokenizer from") as info:  # not the vocabulary check
        load_model(ModelSpec(path=tmp_path))
    assert "\n" not in info.value.message
