"""Node patching on the induction task: the examples, the nodes, and what patching no node or every node gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.methods.attribution import attribution_scores
from evidence.measure.methods.patching import (
    PatchingInputs,
    activation_patching_effects,
    default_seq_len,
    induction_task,
    model_nodes,
    patched_metrics,
    task_metric,
)
from evidence.model import LoadedModel


@pytest.fixture(scope="module")
def induction(organism) -> LoadedModel:
    return organism("induction")


def test_the_examples_repeat_a_segment_and_the_corrupted_twin_has_nothing_to_copy(induction):
    task = induction_task(induction, 8, 6, np.random.default_rng(0))
    assert task.offset == 0 and task.length == 12 and task.clean.shape == task.corrupted.shape == (8, 12)
    assert np.array_equal(task.clean[:, :6], task.clean[:, 6:])
    assert np.array_equal(task.corrupted[:, 6:], task.clean[:, 6:])
    assert not np.array_equal(task.corrupted[:, :6], task.clean[:, :6])
    assert task.positions.tolist() == [6, 7, 8, 9, 10]
    again = induction_task(induction, 8, 6, np.random.default_rng(0))
    assert task.digest() == again.digest() and len(task.digest()) == 64
    assert default_seq_len(induction) == 16
    with pytest.raises(MeasurementError, match="exceed the model's context"):
        induction_task(induction, 2, 49, np.random.default_rng(0))


def test_the_nodes_are_every_head_in_layer_order(induction):
    nodes = model_nodes(induction)
    assert [n.label for n in nodes] == [f"L{layer}H{head}" for layer in range(2) for head in range(4)]
    assert {n.hook for n in nodes} == {"blocks.0.attn.hook_z", "blocks.1.attn.hook_z"}
    assert all(n.kind == "head" for n in nodes)


def test_patching_no_node_is_the_clean_run_and_every_node_removes_the_task(induction):
    task = induction_task(induction, 8, 8, np.random.default_rng(1))
    nodes = model_nodes(induction)
    inputs = PatchingInputs(induction, nodes, task, "logprob", "corrupted", 4)
    clean = torch.from_numpy(task.clean)
    with torch.no_grad():
        want_clean = task_metric(induction.bridge(clean), clean, task, "logprob").numpy()
    effects, m_clean, m_empty = activation_patching_effects(inputs, [0, 5])
    assert effects.shape == (8, 2)
    assert np.allclose(m_clean, want_clean, atol=1e-6)
    everything = patched_metrics(inputs, [frozenset(range(len(nodes)))], lambda _: None)[0]
    assert np.array_equal(m_empty, everything)
    assert m_clean.mean() - m_empty.mean() > 5.0  # every head patched: the copying is gone (ln(128) = 4.85)
    single = patched_metrics(inputs, [frozenset({5})], lambda _: None)[0]
    assert np.allclose(effects[:, 1], single - m_clean)


def test_attribution_scores_every_node_and_returns_the_clean_metric(induction):
    task = induction_task(induction, 8, 8, np.random.default_rng(2))
    inputs = PatchingInputs(induction, model_nodes(induction), task, "logprob", "corrupted", 8)
    plain, clean = attribution_scores(inputs, "atp")
    integrated, clean_ig = attribution_scores(inputs, "eap-ig", 4)
    assert plain.shape == integrated.shape == (8, 8)
    assert np.allclose(clean, clean_ig)
    assert np.isfinite(plain).all() and np.isfinite(integrated).all()
    mean_inputs = PatchingInputs(induction, model_nodes(induction), task, "logprob", "mean", 8)
    with pytest.raises(MeasurementError, match="needs corrupted ablation"):
        attribution_scores(mean_inputs, "eap-ig", 4)
