import json

import pytest

from evidence.errors import ConfigError
from evidence.runspec import default_runspec_path, load_runspec


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = """
[run]
measurements = ["heads.inventory"]
[model]
organism = "induction"
"""


def test_default_runspec_loads():
    spec = load_runspec(default_runspec_path())
    assert spec.model_organism
    assert spec.measurements


def test_minimal_spec(tmp_path):
    spec = load_runspec(write(tmp_path, MINIMAL))
    assert spec.model_organism == "induction" and spec.model_path is None
    assert spec.measurements == {"heads.inventory": {}}
    assert len(spec.sha256) == 64


def test_malformed_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[model\norganism = 1")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_runspec(path)
    assert str(path) in str(info.value)


def test_unknown_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.organsim"):
        load_runspec(write(tmp_path, MINIMAL.replace("organism", "organsim")))


def test_model_needs_exactly_one_source(tmp_path):
    text = MINIMAL.replace('organism = "induction"', 'organism = "induction"\npath = "x"')
    with pytest.raises(ConfigError, match="exactly one of 'path' or 'organism'"):
        load_runspec(write(tmp_path, text))


def test_missing_spec_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_runspec(tmp_path / "nope.toml")


def test_parameters_for_unselected_measurement(tmp_path):
    text = MINIMAL + '[measurements."refusal.direction"]\nlayer = 1\n'
    with pytest.raises(ConfigError, match="does not select"):
        load_runspec(write(tmp_path, text))


def dataset_spec(tmp_path, lines, name="refusal.harmful"):
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    return write(tmp_path, MINIMAL + f'[datasets]\n"{name}" = "d.jsonl"\n')


def test_dataset_loads_and_is_digested(tmp_path):
    spec = load_runspec(dataset_spec(tmp_path, [json.dumps({"id": "a", "label": "harmful", "text": "x"})]))
    ds = spec.datasets["refusal.harmful"]
    assert ds.count == 1 and len(ds.sha256) == 64


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "label": "harmless", "text": "x"}'], r"d\.jsonl:1: unknown label 'harmless'"),
        (['{"id": "a", "label": "harmful", "text": "x"}', "{not json"], r"d\.jsonl:2: not valid JSON"),
        (['{"id": "a", "label": "harmful"}'], r"d\.jsonl:1: give exactly one of 'text' or 'messages'"),
        (['{"id": "a", "label": "harmful", "text": "x", "extra": 1}'], r"d\.jsonl:1: extra"),
        ([""], "holds no prompts"),
        (['{"id": "a", "label": "harmful", "text": "x"}'] * 2, "duplicate id"),
    ],
)
def test_bad_dataset_lines_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(ConfigError, match=message):
        load_runspec(dataset_spec(tmp_path, lines))


def test_missing_dataset_file(tmp_path):
    path = write(tmp_path, MINIMAL + '[datasets]\n"refusal.harmful" = "missing.jsonl"\n')
    with pytest.raises(ConfigError, match=r"missing\.jsonl does not exist"):
        load_runspec(path)


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset name 'refusal.harmfull'"):
        load_runspec(dataset_spec(tmp_path, ['{"id": "a", "label": "harmful", "text": "x"}'],
                                  name="refusal.harmfull"))


def test_with_model_overrides(tmp_path):
    spec = load_runspec(write(tmp_path, MINIMAL))
    assert spec.with_model("demo").model_organism == "demo"
    local = spec.with_model(str(tmp_path))
    assert local.model_path == tmp_path.resolve() and local.model_organism is None


def test_a_misspelled_selected_measurement_is_refused_with_the_closest_id(tmp_path):
    path = write(tmp_path, MINIMAL.replace("heads.inventory", "heads.inventroy"))
    with pytest.raises(ConfigError) as info:
        load_runspec(path)
    message = info.value.one_line()
    assert f"run spec {path}: [run].measurements: unknown measurement 'heads.inventroy'" in message
    assert "did you mean 'heads.inventory'?" in message


def test_a_parameter_table_for_an_unknown_measurement_is_refused(tmp_path):
    text = '[model]\norganism = "induction"\n[measurements."refusal.directoin"]\nbatch_size = 8\n'
    with pytest.raises(ConfigError) as info:
        load_runspec(write(tmp_path, text))
    message = info.value.one_line()
    assert '[measurements."refusal.directoin"]: unknown measurement' in message
    assert "did you mean 'refusal.direction'?" in message


def test_an_unknown_id_is_named_before_the_selection_is_checked(tmp_path):
    text = MINIMAL + '[measurements."heads.inventroy"]\nn_sequences = 8\n'
    with pytest.raises(ConfigError, match=r"\[measurements\.\"heads\.inventroy\"\]: unknown measurement") as info:
        load_runspec(write(tmp_path, text))
    assert "did you mean 'heads.inventory'?" in info.value.one_line()


def test_importing_runspec_does_not_import_the_registry():
    import subprocess
    import sys

    code = "import sys, evidence.runspec; print('evidence.measure' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_model_device_and_dtype_come_from_the_spec_and_yield_to_the_command_line(tmp_path):
    spec = load_runspec(write(tmp_path, MINIMAL))
    assert (spec.model_device, spec.model_dtype) == ("cpu", "float32")
    spec = load_runspec(write(tmp_path, MINIMAL + 'dtype = "bfloat16"\n'))
    assert (spec.model_device, spec.model_dtype) == ("cpu", "bfloat16")
    assert spec.with_placement(device=None, dtype="float32").model_dtype == "float32"
    assert spec.with_placement(device="cuda").model_device == "cuda"
    assert spec.with_placement(device="cuda").model_dtype == "bfloat16"


def test_an_unknown_model_dtype_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        load_runspec(write(tmp_path, MINIMAL + 'dtype = "float8"\n'))
