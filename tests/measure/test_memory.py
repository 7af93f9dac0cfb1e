"""The memory preflight: estimates from a model's shape, the budget, and a refusal before any measurement runs."""

from __future__ import annotations

import pytest

from evidence.cli import main
from evidence.errors import ConfigError
from evidence.measure import memory
from evidence.measure.memory import MemoryEstimate, ModelSize, check_fits, estimate, format_bytes, parse_size
from evidence.model import ModelSpec, load_model
from tests.hf_models import build_gpt2

SIZE = ModelSize(n_params=1000, n_layers=2, d_model=8, d_mlp=32, n_heads=2, d_vocab=50, n_ctx=16)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123", 123), ("2GiB", 2 * 2**30), ("500 MB", 500 * 10**6), ("1.5kib", 1536), ("7b", 7)],
)
def test_sizes_are_read_in_bytes_and_units(text, expected):
    assert parse_size(text) == expected


def test_a_budget_that_is_not_a_size_is_refused_with_the_forms_accepted():
    with pytest.raises(ConfigError, match="INTERP_DOSSIER_MEMORY_BUDGET='lots' is not a size") as info:
        parse_size("lots")
    assert "8GiB" in (info.value.hint or "")


def test_bytes_are_shown_for_a_person():
    assert [format_bytes(n) for n in (512, 2048, 3 * 2**20, 5 * 2**30)] == ["512 B", "2.0 KiB", "3.0 MiB", "5.0 GiB"]


def test_the_estimate_follows_the_formula_of_the_module():
    plain = estimate("m", {"batch_size": 4, "seq_len": 3}, SIZE, "float32", backprop=False, model_copies=1)
    b, t = 4, 2 * 3 + 8  # seq_len without prompt sets
    n = b * t
    block = n * (12 * 8 + 3 * 32) + 2 * b * 2 * t * t
    stream, logits = n * 8 * 3, n * 50
    assert (plain.batch, plain.tokens) == (b, t)
    assert plain.weights == 1000 * 4 and plain.gradients == 0
    assert plain.activations == (block + stream + logits) * 4 + logits * 8
    backprop = estimate("m", {"batch_size": 4, "seq_len": 3}, SIZE, "float32", backprop=True, model_copies=2)
    assert backprop.weights == 2 * 1000 * 4 and backprop.gradients == 1000 * 4
    assert backprop.activations == (2 * block + stream + 2 * logits) * 4 + logits * 8
    half = estimate("m", {"batch_size": 4, "seq_len": 3}, SIZE, "bfloat16", backprop=False, model_copies=1)
    assert half.weights == plain.weights // 2 and half.activations < plain.activations
    assert estimate("m", {}, SIZE, "float32", backprop=True, model_copies=0).total == 0


def test_the_token_count_comes_from_the_prompts_and_stops_at_the_context(tmp_path):
    from evidence.datasets import read_dataset

    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "label": "x", "text": "abcd"}\n')
    dataset = read_dataset("d", path, {"d": frozenset({"x"})})
    wide = ModelSize(**{**SIZE.__dict__, "n_ctx": 1000})
    assert estimate("m", {}, wide, "float32", backprop=False, model_copies=1, datasets=[dataset]).tokens == 4 + 64
    assert estimate("m", {}, SIZE, "float32", backprop=False, model_copies=1, datasets=[dataset]).tokens == 16
    assert estimate("m", {}, wide, "float32", backprop=False, model_copies=1).batch == memory.DEFAULT_BATCH


def test_a_run_that_fits_passes_and_one_that_does_not_names_the_remedies():
    small = MemoryEstimate("a.small", weights=10, activations=10, gradients=0, batch=1, tokens=1)
    big = MemoryEstimate("b.big", weights=100, activations=900, gradients=24, batch=32, tokens=8)
    assert check_fits([small, big], (2000, "free"), dtype="float32", device="cpu") is big
    assert check_fits([small, big], None, dtype="float32", device="cpu") is big  # unknown: no refusal
    with pytest.raises(ConfigError) as info:
        check_fits([small, big], (1000, "available system memory"), dtype="float32", device="cpu", batched=["b.big"])
    assert info.value.message == (
        "b.big would need about 1.0 KiB (weights 100 B, activations 900 B, gradients 24 B; 32 x 8 tokens per pass), "
        "more than the 1000 B of available system memory; nothing was measured"
    )
    assert info.value.hint == (
        'try a smaller batch_size in [measurements."b.big"], or --dtype bfloat16 (half the memory), or --device cuda '
        "on a machine with a large enough GPU, or more free memory"
    )


def test_a_checkpoint_is_sized_from_its_files_as_it_loads(tmp_path):
    directory = build_gpt2(tmp_path / "gpt2")
    size = memory.size_before_loading(None, directory)
    loaded = load_model(ModelSpec(path=directory))
    assert size is not None
    assert size.n_params == loaded.identity.n_parameters
    cfg = loaded.bridge.cfg
    assert (size.n_layers, size.d_model, size.n_heads, size.d_vocab, size.n_ctx) == (
        cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_vocab, cfg.n_ctx)  # fmt: skip
    assert memory.size_of_loaded(size.n_params, cfg) == size
    organism = memory.size_before_loading("induction", None)
    assert organism is not None and organism.n_params > 0
    assert memory.size_before_loading("not-an-organism", None) is None


def test_a_model_that_cannot_fit_the_budget_is_refused_before_any_measurement(tmp_path, monkeypatch, capsys):
    build_gpt2(tmp_path / "gpt2")
    spec = tmp_path / "spec.toml"
    spec.write_text('[run]\nmeasurements = ["heads.inventory", "model.batch_invariance"]\n[model]\npath = "gpt2"\n')
    monkeypatch.setenv("INTERP_DOSSIER_MEMORY_BUDGET", "1MiB")
    code = main(["run", str(spec), "--no-sign", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "measuring" not in err and "loading model" not in err  # refused from the files, before loading
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: heads.inventory would need about ")
    assert "more than the 1.0 MiB of the budget INTERP_DOSSIER_MEMORY_BUDGET; nothing was measured" in line
    assert line.endswith(
        '(try a smaller batch_size in [measurements."heads.inventory"], or --dtype bfloat16 (half the memory), or '
        "--device cuda on a machine with a large enough GPU, or a larger INTERP_DOSSIER_MEMORY_BUDGET)"
    )
    assert not (tmp_path / "out").exists()
    # the same run under a budget it fits says its estimate and measures
    monkeypatch.setenv("INTERP_DOSSIER_MEMORY_BUDGET", "64GiB")
    assert main(["run", str(spec), "--no-sign", "--out", str(tmp_path / "out")]) in (0, 1)
    err = " ".join(capsys.readouterr().err.split())  # the progress console wraps long lines
    assert "memory preflight: at most about " in err and "for heads.inventory; 64.0 GiB of the budget" in err
    assert "measuring heads.inventory" in err


# -- edge scoring (circuit.faithfulness) ---------------------------------------------------------

GPT2_SMALL = ModelSize(n_params=124_439_808, n_layers=12, d_model=768, d_mlp=3072, n_heads=12, d_vocab=50257,
                       n_ctx=1024)  # fmt: skip


@pytest.mark.parametrize("name", ["gpt2", "llama", "demo"])
def test_the_edge_count_from_the_shape_is_that_of_the_models_edge_graph(name, tmp_path, organism):
    from evidence.measure.methods.edges import EdgeModel
    from tests.hf_models import build_llama

    if name == "demo":
        model = organism("demo")
    else:
        build = build_gpt2 if name == "gpt2" else build_llama
        model = load_model(ModelSpec(path=build(tmp_path / name, n_layer=3)))
    size = memory.size_of_loaded(model.identity.n_parameters, model.bridge.cfg)
    graph = EdgeModel(model)
    if name == "llama":
        assert 0 < size.n_kv_heads < size.n_heads  # grouped-query attention: fewer key/value receivers
    assert memory.edge_count(size) == len(graph.edges)


def test_gpt2_small_has_about_32_thousand_edges():
    assert memory.edge_count(GPT2_SMALL) == 32_491


def test_scoring_edges_adds_what_it_keeps_only_when_the_edges_are_scored():
    base = {"batch_size": 16, "seq_len": 24, "n_examples": 128}
    common = {"backprop": True, "model_copies": 2, "extra": memory.edge_scoring_bytes}
    skipped = estimate("circuit.faithfulness", base, GPT2_SMALL, "float32", **common)  # default max_edges 4,096
    scored = estimate("circuit.faithfulness", {**base, "max_edges": 40_000}, GPT2_SMALL, "float32", **common)
    off = estimate("circuit.faithfulness", {**base, "max_edges": 40_000, "edges": False}, GPT2_SMALL, "float32",
                   **common)  # fmt: skip
    assert skipped.total == off.total
    tokens = scored.tokens
    senders, receivers, d = 1 + 12 * 13, 12 * (3 * 12 + 1) + 1, 768
    stream = 16 * tokens * d
    kept = 3 * senders * stream * 4  # clean and source outputs of every sender, and their difference
    # the receivers' gradients do not fit the chunk at this size: one layer's heads at a time
    assert receivers * stream * 8 > memory.SCORE_CHUNK_BYTES
    kept += 12 * stream * (4 + 8) + memory.SCORE_CHUNK_BYTES + 16 * senders * 12 * 8
    kept += (128 + 16) * 32_491 * 8  # the per-example scores of every edge
    assert scored.total - off.total == kept
    assert scored.activations - off.activations == kept


def test_a_budget_that_fits_the_nodes_but_not_the_edges_refuses_with_the_remedies():
    base = {"batch_size": 16, "seq_len": 24}
    common = {"backprop": True, "model_copies": 2, "extra": memory.edge_scoring_bytes}
    nodes = estimate("circuit.faithfulness", base, GPT2_SMALL, "float32", **common)
    edges = estimate("circuit.faithfulness", {**base, "max_edges": 40_000}, GPT2_SMALL, "float32", **common)
    room = (nodes.total + edges.total) // 2
    assert check_fits([nodes], (room, "the budget X"), dtype="float32", device="cpu") is nodes
    with pytest.raises(ConfigError, match="circuit.faithfulness would need about") as info:
        check_fits([edges], (room, "the budget X"), dtype="float32", device="cpu", batched=["circuit.faithfulness"])
    assert 'a smaller batch_size in [measurements."circuit.faithfulness"]' in (info.value.hint or "")


def test_the_chat_model_suite_is_not_refused_for_one_measurement_s_batch_on_a_gpt2_small_sized_model():
    """On GPT-2 small's shape (124M), no measurement of the natural-language spec needs more than the batches of 64
    the others share: goal.proxy_reliance's default of 512 sequences made it need ~122 GiB by the estimate."""
    from evidence.measure.registry import get
    from evidence.runspec import load_runspec, natural_language_runspec_path

    spec = load_runspec(natural_language_runspec_path())
    totals = {}
    for mid, params in spec.measurements.items():
        definition = get(mid)
        datasets = [spec.datasets[use.name] for use in definition.datasets if use.name in spec.datasets]
        totals[mid] = estimate(mid, definition.validate_params(params).model_dump(), GPT2_SMALL, "float32",
                               backprop=definition.backprop, model_copies=definition.model_copies,
                               datasets=datasets, extra=definition.memory).total  # fmt: skip
    assert spec.measurements["goal.proxy_reliance"]["batch_size"] == 64
    others = max(total for mid, total in totals.items() if mid != "goal.proxy_reliance")
    assert totals["goal.proxy_reliance"] <= others * 1.01
    assert max(totals.values()) < 20 * 2**30  # the 24 GiB machines the project is tested on (edges scored included)
