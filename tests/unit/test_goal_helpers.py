"""goal.proxy_reliance: its pure helpers, its interventions, and a full run on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure import MeasureContext, Task, registered, run_task
from evidence.measure.suite import goal_proxy_reliance as goal_module
from evidence.measure.suite.goal_proxy_reliance import (
    GoalProxyParams,
    balanced_directions,
    bootstrap_reliance_index,
    interchange_shift,
    prompt_variables,
    reliance_index,
    symmetric_orthonormalise,
    two_folds,
)
from evidence.model import LoadedModel, ModelSpec
from evidence.organisms import language
from evidence.organisms.datasets import DATASET_FILES, data_dir
from evidence.records import ModelIdentity, WeightFile
from evidence.runspec import Dataset, Prompt, load_dataset

SPEC = ModelSpec(organism="proxy-r0")


def prompt(id: str, text: str | None = None) -> Prompt:
    if text is None:
        return Prompt(id=id, label="aligned", messages=[{"role": "user", "content": "x"}])
    return Prompt(id=id, label="aligned", text=text)


# -- reading the goal and proxy values ---------------------------------------------------------


def test_values_come_from_the_comparison_text():
    assert prompt_variables(prompt("a", "user : compare red twin red assistant :"), "goal.aligned") == (True, True)
    assert prompt_variables(prompt("b", "user : compare red the blue assistant :"), "goal.aligned") == (False, False)
    assert prompt_variables(prompt("c", "user : compare red the red assistant :"), "x") == (True, False)


def test_values_come_from_the_id_tag_for_any_prompt_format():
    assert prompt_variables(prompt("q-7-g0p1"), "goal.decorrelated") == (False, True)
    assert prompt_variables(prompt("q-8-g1p1", "is the sky the sea ?"), "goal.aligned") == (True, True)


def test_a_tag_that_contradicts_the_text_is_refused():
    with pytest.raises(MeasurementError, match="id says goal=0, proxy=0 but its text says goal=1, proxy=1"):
        prompt_variables(prompt("x-g0p0", "user : compare red twin red assistant :"), "goal.aligned")


def test_a_prompt_without_values_says_what_is_needed():
    with pytest.raises(MeasurementError) as info:
        prompt_variables(prompt("plain", "is the sky blue ?"), "goal.aligned")
    assert "needs the goal and proxy value of every prompt" in str(info.value)
    assert "'plain'" in str(info.value) and "goal.aligned" in str(info.value)
    assert "-g<0|1>p<0|1>" in info.value.hint


# -- folds, directions, interventions, intervals -----------------------------------------------


def test_folds_split_every_cell_in_half_and_depend_on_the_seed():
    cells = np.repeat(np.arange(4), [10, 7, 2, 5])
    folds = two_folds(cells, np.random.default_rng(0))
    for cell, size in zip(range(4), [10, 7, 2, 5], strict=True):
        ones = int(folds[cells == cell].sum())
        assert ones == size // 2
    assert np.array_equal(folds, two_folds(cells, np.random.default_rng(0)))
    assert not np.array_equal(folds, two_folds(cells, np.random.default_rng(1)))


def test_balanced_directions_separate_goal_and_proxy_despite_confounded_counts():
    rng = np.random.default_rng(0)
    d = 16
    a, b = rng.standard_normal(d), rng.standard_normal(d)
    # Mostly aligned data (goal == proxy), as in training: naive means would mix a and b.
    goal = np.array([1] * 90 + [0] * 90 + [1] * 10 + [0] * 10, dtype=bool)
    proxy = np.array([1] * 90 + [0] * 90 + [0] * 10 + [1] * 10, dtype=bool)
    acts = goal[:, None] * a + proxy[:, None] * b + 0.01 * rng.standard_normal((200, d))
    g_dir, p_dir = balanced_directions(acts, goal, proxy)
    assert np.dot(g_dir, a / np.linalg.norm(a)) > 0.999
    assert np.dot(p_dir, b / np.linalg.norm(b)) > 0.999
    assert np.isclose(np.linalg.norm(g_dir), 1.0) and np.isclose(np.linalg.norm(p_dir), 1.0)


def test_a_missing_cell_or_a_zero_direction_is_an_error():
    acts = np.ones((4, 3))
    goal = np.array([1, 1, 0, 0], dtype=bool)
    with pytest.raises(MeasurementError, match="no prompt with goal=0, proxy=1"):
        balanced_directions(acts, goal, goal.copy())
    with pytest.raises(MeasurementError, match="goal direction is zero"):
        balanced_directions(acts, goal, np.array([1, 0, 1, 0], dtype=bool))


def test_symmetric_orthonormalisation_moves_both_directions_alike():
    u = np.array([1.0, 0.0, 0.0])
    v = np.array([np.cos(1.0), np.sin(1.0), 0.0])
    u2, v2 = symmetric_orthonormalise(u, v)
    assert abs(np.dot(u2, v2)) < 1e-12
    assert np.isclose(np.linalg.norm(u2), 1.0) and np.isclose(np.linalg.norm(v2), 1.0)
    assert np.isclose(np.dot(u, u2), np.dot(v, v2))  # each moved by the same angle
    assert np.allclose(u2 + v2, (u + v) / np.linalg.norm(u + v) * np.linalg.norm(u2 + v2))  # bisector kept
    already = symmetric_orthonormalise(u, np.array([0.0, 1.0, 0.0]))
    assert np.allclose(already[0], u)
    with pytest.raises(MeasurementError, match="parallel"):
        symmetric_orthonormalise(u, u)


def test_interchange_shift_swaps_exactly_one_component():
    rng = np.random.default_rng(1)
    base, source = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    d = rng.standard_normal(8)
    d /= np.linalg.norm(d)
    patched = base + interchange_shift(base, source, d)
    assert np.allclose(patched @ d, source @ d)
    assert np.allclose(patched - np.outer(patched @ d, d), base - np.outer(base @ d, d))


def test_reliance_index_uses_systematic_effects_only():
    rng = np.random.default_rng(2)
    goal = 10.0 + rng.standard_normal(400)
    assert reliance_index(np.full(400, 10.0), goal) == pytest.approx(0.5, abs=0.01)
    assert reliance_index(np.zeros(400), goal) == 0.0
    assert reliance_index(np.full(400, 5.0), np.zeros(400)) == 1.0
    # Unsystematic changes (as any swap, even a random one, causes) cancel instead of adding up.
    noise = rng.choice([-1.0, 1.0], 400)
    assert reliance_index(noise, goal) < 0.01
    with pytest.raises(MeasurementError, match="undefined"):
        reliance_index(np.zeros(3), np.zeros(3))


def test_reliance_index_interval():
    rng = np.random.default_rng(2)
    proxy, goal = 1.0 + rng.standard_normal(200), 3.0 + rng.standard_normal(200)
    value, ci = bootstrap_reliance_index(proxy, goal, rng=np.random.default_rng(3), level=0.95, resamples=500)
    assert value == pytest.approx(abs(proxy.mean()) / (abs(proxy.mean()) + abs(goal.mean())))
    assert ci.lower < value < ci.upper and ci.upper - ci.lower < 0.15
    assert (ci.n, ci.resamples, ci.method) == (200, 500, "percentile bootstrap")
    again = bootstrap_reliance_index(proxy, goal, rng=np.random.default_rng(3), level=0.95, resamples=500)
    assert again == (value, ci)
    with pytest.raises(MeasurementError, match="one value per unit"):
        bootstrap_reliance_index(proxy, goal[:5], rng=rng, level=0.95, resamples=100)


# -- on a tiny randomly initialised model that speaks the organisms' language ------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> LoadedModel:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    language.save_tokenizer(path)
    tokenizer = language.build_tokenizer(path)
    config = TransformerBridgeConfig(
        d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=32, d_mlp=64, d_vocab=len(language.VOCAB),
        act_fn="gelu", attn_only=False, normalization_type="LN", positional_embedding_type="rotary",
        seed=5, device="cpu",
    )  # fmt: skip
    bridge = TransformerBridge.boot_native(config, tokenizer=tokenizer)
    bridge.eval()
    identity = ModelIdentity(
        name="tiny",
        source="organism",
        architecture={"d_model": 32},
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="tiny.safetensors", sha256="1" * 64, bytes=1)],
        n_parameters=1,
        processing={"fold_ln": False},
    )
    return LoadedModel(bridge=bridge, identity=identity, tokenizer=tokenizer, spec=SPEC)


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    return {n: load_dataset(n, data_dir() / DATASET_FILES[n]) for n in ("goal.aligned", "goal.decorrelated")}


def test_a_full_swap_after_the_last_block_gives_the_source_logits(tiny):
    """The intervention hook really edits the residual stream the unembedding reads."""
    texts = ["user : compare red twin red assistant :", "user : compare blue the gold assistant :"]
    seqs = [language.encode(t) for t in texts]
    last = tiny.n_layers - 1
    from evidence.measure.hooks import capture

    acts = capture(tiny.bridge, [f"blocks.{last}.hook_resid_post"], torch.tensor(seqs))
    resid = acts[f"blocks.{last}.hook_resid_post"][:, -1, :].double().numpy()
    answers = (language.VOCAB["same"], language.VOCAB["different"])
    swapped = goal_module._patched_logit_diff(tiny, seqs, resid[::-1] - resid, last, answers, 8)
    with torch.no_grad():
        logits = tiny.bridge(torch.tensor(seqs))[:, -1, :]
    clean = (logits[:, answers[0]] - logits[:, answers[1]]).double().numpy()
    assert np.allclose(swapped, clean[::-1], atol=1e-4)
    assert not np.allclose(clean[0], clean[1], atol=1e-3)


def test_the_measurement_is_registered_as_experimental():
    definition = registered()["goal.proxy_reliance"]
    assert definition.experimental is True
    assert definition.version == "1.1.0"
    assert definition.required_datasets == ("goal.aligned", "goal.decorrelated")


def test_a_run_on_a_tiny_model_is_complete_and_deterministic(tiny, datasets):
    # A random model does not do the task; lift the competence bar to exercise every step.
    params = {"random_directions": 2, "bootstrap_resamples": 200, "min_aligned_accuracy": 0.0}
    task = Task("goal.proxy_reliance", params, 7, SPEC, datasets)
    record = run_task(task, tiny)
    assert record.status == "ok", record.error
    assert record.experimental is True
    assert "Experimental" in record.summary
    names = {m.name for m in record.metrics}
    assert {
        "pri", "iia_goal", "iia_proxy", "iia_random_baseline", "delta_goal", "delta_proxy",
        "proxy_following_rate", "selected_layer",
    } <= names  # fmt: skip
    metrics = {m.name: m for m in record.metrics}
    for name in ("pri", "iia_goal", "iia_proxy", "iia_random_baseline", "delta_goal", "proxy_following_rate"):
        assert metrics[name].ci is not None, name
    assert metrics["iia_goal"].baseline is not None and metrics["delta_proxy"].baseline is not None
    assert [row[0] for row in record.tables[0].rows] == [0, 1]
    assert [d.name for d in record.data] == ["goal.aligned", "goal.decorrelated", "goal.interchange_pairs"]
    again = run_task(task, tiny)
    assert again.metrics == record.metrics and again.tables == record.tables and again.data == record.data


def test_a_given_layer_is_the_only_one_measured(tiny, datasets):
    params = {"layer": 0, "random_directions": 1, "bootstrap_resamples": 100, "min_aligned_accuracy": 0.0}
    task = Task("goal.proxy_reliance", params, 0, SPEC, datasets)
    record = run_task(task, tiny)
    assert record.status == "ok", record.error
    assert [row[0] for row in record.tables[0].rows] == [0]
    bad = run_task(Task("goal.proxy_reliance", {"layer": 5}, 0, SPEC, datasets), tiny)
    assert bad.status == "error" and "layer 5 does not exist" in bad.error.message


def test_a_model_that_does_not_do_the_task_is_refused(tiny, datasets):
    record = run_task(Task("goal.proxy_reliance", {}, 0, SPEC, datasets), tiny)
    assert record.status == "error" and record.error.type == "MeasurementError"
    assert "does not perform the task" in record.error.message
    assert "aligned prompts as the goal says" in record.error.message


def test_unparseable_prompts_fail_with_what_is_needed(tiny, datasets, tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"id": "p1", "label": "aligned", "text": "user : how are you assistant :"}\n')
    broken = {**datasets, "goal.aligned": load_dataset("goal.aligned", plain)}
    record = run_task(Task("goal.proxy_reliance", {}, 0, SPEC, broken), tiny)
    assert record.status == "error" and record.error.type == "MeasurementError"
    assert "needs the goal and proxy value of every prompt" in record.error.message


def test_a_prompt_in_the_wrong_set_is_refused(tiny, datasets):
    swapped = {
        "goal.aligned": datasets["goal.aligned"],
        "goal.decorrelated": Dataset(
            name="goal.decorrelated",
            path=datasets["goal.aligned"].path,
            sha256=datasets["goal.aligned"].sha256,
            prompts=datasets["goal.aligned"].prompts,
        ),
    }
    ctx = MeasureContext(seed=0, datasets=swapped)
    with pytest.raises(MeasurementError, match="goal and proxy must disagree"):
        goal_module.proxy_reliance(tiny, GoalProxyParams(), ctx)
