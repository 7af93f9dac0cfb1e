"""Devices and dtypes: what a ModelSpec accepts, what is refused with a remedy, what the identity records.

This machine has no GPU: the CUDA and MPS paths are exercised only as far as their refusal when
the device is absent; loading onto a GPU is not run here.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from evidence.cli import main
from evidence.errors import ConfigError, ModelLoadError
from evidence.measure import Task, run_task
from evidence.model import ModelSpec, load_model
from tests.hf_models import build_llama


def test_spec_defaults_to_the_cpu_in_float32_and_says_otherwise():
    spec = ModelSpec(organism="induction")
    assert (spec.device, spec.dtype) == ("cpu", "float32")
    assert spec.describe() == "organism 'induction'"
    assert ModelSpec(organism="induction", dtype="bfloat16").describe() == "organism 'induction' on cpu in bfloat16"


@pytest.mark.parametrize(
    ("fields", "message", "hint"),
    [
        ({"device": "tpu"}, "unknown device 'tpu'", "cpu, cuda, mps"),
        ({"dtype": "int8"}, "unknown dtype 'int8'", "float32, bfloat16, float16"),
        ({"dtype": "float16"}, "float16 is not offered on the CPU", "--dtype bfloat16"),
    ],
    ids=["device", "dtype", "float16-on-cpu"],
)
def test_spec_refuses_what_it_cannot_run_with_a_remedy(fields, message, hint):
    with pytest.raises(ConfigError, match=message) as info:
        ModelSpec(organism="induction", **fields)
    assert hint in (info.value.hint or "")


def test_float16_is_accepted_on_a_gpu_device():
    assert ModelSpec(organism="induction", device="cuda", dtype="float16").dtype == "float16"


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda", "CUDA is not available on this machine"), ("mps", "MPS (Apple GPU) is not available on this machine")],
)
def test_an_absent_device_is_refused_before_loading(monkeypatch, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match=re.escape(message)) as info:
        load_model(ModelSpec(organism="induction", device=device))
    assert info.value.hint == "pass --device cpu"


def test_run_with_cuda_on_a_machine_without_it_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["run", "--device", "cuda", "--no-sign", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "error: CUDA is not available on this machine (pass --device cpu)\n"
    assert not (tmp_path / "out").exists()


def test_the_identity_records_device_and_dtype(organism):
    loaded = load_model(ModelSpec(organism="induction", dtype="bfloat16"))
    assert loaded.identity.processing["dtype"] == "bfloat16"
    assert loaded.identity.processing["device"] == "cpu"
    assert {p.dtype for p in loaded.bridge.parameters()} == {torch.bfloat16}
    # the same weights file as in float32: the digest is of the file, not of the cast tensors
    assert loaded.identity.weights_sha256 == organism("induction").identity.weights_sha256
    assert organism("induction").identity.processing["dtype"] == "float32"


def _scores(record) -> dict[str, float]:
    return {m.name: m.value for m in record.metrics if m.name.endswith("_score_max")}


def test_bfloat16_on_the_cpu_measures_close_to_float32(tmp_path, one_thread):
    """heads.inventory and model.batch_invariance on a tiny Llama (GQA) checkpoint, in both dtypes.

    Tolerance: 0.01 absolute on the head scores, which are attention probabilities in [0, 1].
    bfloat16 keeps 8 significant bits (a relative rounding of 2^-8, about 0.004, at 1.0); two
    blocks of rounding stay well inside 0.01, while a wrong cast or an unconverted input would
    move a score by far more or fail outright.
    """
    directory = build_llama(tmp_path / "llama")
    records = {}
    for dtype in ("float32", "bfloat16"):
        spec = ModelSpec(path=directory, dtype=dtype)
        model = load_model(spec)
        assert model.identity.processing["dtype"] == dtype
        assert next(model.bridge.parameters()).dtype == getattr(torch, dtype)
        records[dtype] = {
            mid: run_task(Task(mid, {}, 0, spec), model) for mid in ("heads.inventory", "model.batch_invariance")
        }
    for mid, record in records["bfloat16"].items():
        assert record.status == "ok", (mid, record.error)
        assert all(math.isfinite(m.value) for m in record.metrics)
    low, full = _scores(records["bfloat16"]["heads.inventory"]), _scores(records["float32"]["heads.inventory"])
    assert set(low) == set(full) and low
    for name, value in full.items():
        assert low[name] == pytest.approx(value, abs=0.01), name
    invariance = records["bfloat16"]["model.batch_invariance"]
    assert invariance.metric("max_abs_logit_diff").value <= invariance.metric("tolerance").value


@pytest.mark.parametrize(
    ("fields", "message", "hint"),
    [
        ({"path": "m", "n_gpus": 2}, "--n-gpus spreads the model over several CUDA devices", "add --device cuda"),
        ({"organism": "demo", "device": "cuda", "n_gpus": 2}, "the organisms are loaded on one device",
         "drop --n-gpus"),
        ({"path": "m", "device": "cuda", "n_gpus": 0}, "--n-gpus must be a positive number of GPUs, not 0", None),
    ],
    ids=["not-cuda", "organism", "zero"],
)
def test_several_gpus_are_for_a_directory_on_cuda(fields, message, hint):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        ModelSpec(**fields)
    assert info.value.hint == hint


def test_several_gpus_are_described_and_refused_when_the_machine_has_fewer(monkeypatch, tmp_path):
    spec = ModelSpec(path=tmp_path, device="cuda", dtype="bfloat16", n_gpus=2)
    assert spec.describe() == f"Hugging Face directory '{tmp_path}' on 2 cuda devices in bfloat16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    message = "--n-gpus 2 asks for more GPUs than this machine has (1)"
    with pytest.raises(ModelLoadError, match=re.escape(message)) as info:
        load_model(spec)
    assert info.value.hint == "pass --n-gpus 1 or fewer"


def test_n_gpus_without_cuda_on_the_command_line_is_one_line(tmp_path, capsys):
    code = main(["run", "--model", str(tmp_path), "--n-gpus", "2", "--no-sign", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: --n-gpus spreads the model over several CUDA devices (add --device cuda)"
    )


def test_the_random_twin_of_a_model_spread_over_gpus_is_spread_by_the_same_device_map(monkeypatch, tmp_path):
    """Not run on GPUs here: accelerate's dispatch is replaced by one that records the map it is given."""
    import accelerate

    from evidence.model import LoadedModel, random_twin

    model = load_model(ModelSpec(path=str(build_llama(tmp_path / "llama"))))
    device_map = {"model.embed_tokens": 0, "model.layers": 1, "model.norm": 1, "lm_head": 1}
    dispatched: list[tuple[torch.nn.Module, dict]] = []

    def dispatch(module, device_map):
        dispatched.append((module, dict(device_map)))
        module.hf_device_map = dict(device_map)
        return module

    monkeypatch.setattr(accelerate, "dispatch_model", dispatch)
    model.bridge.original_model.hf_device_map = dict(device_map)  # as accelerate leaves a model it spread
    spread = LoadedModel(bridge=model.bridge, identity=model.identity, tokenizer=model.tokenizer,
                         spec=ModelSpec(path=model.spec.path, device="cuda", dtype="bfloat16", n_gpus=2))  # fmt: skip
    twin = random_twin(spread, seed=3)
    ((module, given),) = dispatched
    assert module is twin.bridge.original_model and given == device_map  # spread like the model, not moved whole
    assert next(twin.bridge.parameters()).dtype == torch.bfloat16  # in the model's dtype
    assert twin.identity.processing["random_init_seed"] == 3
    assert not torch.equal(twin.bridge.W_E.float(), model.bridge.W_E.float())  # its own weights
