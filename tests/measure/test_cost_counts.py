"""Declared passes against counted ones: each measurement run on ``demo``, every forward and backward pass counted.

Each run's record is also held to the measurement's declared metrics: every metric it emitted is declared.

A counter wraps the forward of every TransformerBridge (the subject, its randomly initialised twin,
the organisms calibration loads) and records each call and its input tokens; a forward run with
gradients enabled is counted as run backward when the next backward pass (``Tensor.backward`` or
``torch.autograd.grad``) comes. The declared :class:`~evidence.measure.cost.Passes` must agree within
the factors below: calls within 0.7x-2x of those counted, tokens within 0.5x-2x, and backward passes
the same, or none on both sides. Declared counts may be high: replies judged for a marker are counted
at a typical length, and the organisms' replies end sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge

from evidence.datasets import limit_prompts
from evidence.measure import Task, get, registered, run_task
from evidence.measure.cost import Passes, Workload
from evidence.measure.registry import SUITE_PACKAGE
from evidence.model import ModelSpec
from evidence.runspec import default_runspec_path, load_runspec

CALLS = (0.7, 2.0)
TOKENS = (0.5, 2.0)


@dataclass
class Counted:
    calls: int = 0
    tokens: int = 0
    backward_calls: int = 0
    backward_tokens: int = 0
    pending_calls: int = 0
    pending_tokens: int = 0


@pytest.fixture
def counted(monkeypatch):
    """Count the forward calls and tokens of every bridge, and which of them ran backward."""
    seen = Counted()
    forward, grad, backward = TransformerBridge.forward, torch.autograd.grad, torch.Tensor.backward

    def counting_forward(self, *args, **kwargs):
        tokens = args[0] if args else kwargs.get("input")
        n = int(tokens.numel()) if isinstance(tokens, torch.Tensor) else 0
        seen.calls += 1
        seen.tokens += n
        if torch.is_grad_enabled():
            seen.pending_calls += 1
            seen.pending_tokens += n
        return forward(self, *args, **kwargs)

    def ran_backward() -> None:
        seen.backward_calls += seen.pending_calls
        seen.backward_tokens += seen.pending_tokens
        seen.pending_calls = seen.pending_tokens = 0

    def counting_grad(*args, **kwargs):
        ran_backward()
        return grad(*args, **kwargs)

    def counting_backward(self, *args, **kwargs):
        ran_backward()
        return backward(self, *args, **kwargs)

    monkeypatch.setattr(TransformerBridge, "forward", counting_forward)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    monkeypatch.setattr(torch.Tensor, "backward", counting_backward)
    return seen


def _within(declared: int, counted: int, bounds: tuple[float, float]) -> bool:
    if counted == 0:
        return declared == 0
    return bounds[0] <= declared / counted <= bounds[1]


#: (measurement, prompts per dataset, parameters): small, so that the whole module runs in about a minute.
CASES = [
    ("heads.inventory", 8, {"n_sequences": 16}),
    ("model.batch_invariance", 8, {}),
    ("refusal.direction", 12, {"n_random_directions": 2}),
    ("refusal.stability", 12, {"n_resamples": 2, "n_template_variants": 1, "attack_steps": 4, "restarts": 1}),
    ("deception.probe", 24, {}),
    ("probe.causality", 24, {"alpha_curve": [1.0, 2.0]}),
    ("deception.robustness", 24, {"attack_steps": 4}),
    ("goal.proxy_reliance", 24, {}),
    (
        "circuit.faithfulness",
        8,
        {"tasks": ["induction"], "n_examples": 16, "max_patched_edges": 24, "max_edge_curve_points": 4,
         "max_curve_points": 8},
    ),
    (
        "circuit.faithfulness",
        48,
        {"tasks": ["refusal"], "refusal_min_pairs": 4, "max_patched_edges": 24, "max_edge_curve_points": 4,
         "max_curve_points": 8},
    ),
    (
        "calibration.organisms",
        8,
        {"measurements": ["model.batch_invariance"], "spot_check": 0},
    ),
]  # fmt: skip


def test_every_measurement_declares_its_passes():
    suite = {mid: d for mid, d in registered().items() if d.module.startswith(SUITE_PACKAGE)}
    assert {mid for mid, _, _ in CASES} == set(suite)
    assert all(definition.cost is not None for definition in suite.values())


@pytest.mark.parametrize(
    ("measurement_id", "limit", "overrides"), CASES, ids=[f"{c[0]}-{c[2].get('tasks', [''])[0]}" for c in CASES]
)
def test_declared_passes_agree_with_the_counted_ones(organism, one_thread, counted, measurement_id, limit, overrides):
    spec = load_runspec(default_runspec_path())
    datasets = {name: limit_prompts(d, limit, spec.seed) for name, d in spec.datasets.items()}
    model = organism("demo")
    definition = get(measurement_id)
    params = {**spec.measurements.get(measurement_id, {}), **overrides}
    declared: Passes = definition.cost(definition.params_for(params, "quick"), Workload.of(model, datasets, limit))

    markers = {kind: tuple(phrases) for kind, phrases in spec.markers.items()}
    task = Task(measurement_id, params, spec.seed, ModelSpec(organism="demo"), datasets=datasets, markers=markers,
                profile="quick", prompt_limit=limit)  # fmt: skip
    record = run_task(task, model)
    assert record.status == "ok", record.error
    # every metric the run emitted is declared, so that a policy may name it (and check knows it)
    assert {m.name for m in record.metrics} <= set(definition.metrics), set(definition.metrics)
    for check in record.checks:  # calibration: the metric each check read is its measurement's
        assert check.metric in get(check.measurement).metrics, check

    found = (counted.calls, counted.tokens, counted.backward_calls, counted.backward_tokens)
    assert _within(declared.calls, counted.calls, CALLS), (declared, found)
    assert _within(declared.tokens, counted.tokens, TOKENS), (declared, found)
    assert _within(declared.backward_calls, counted.backward_calls, CALLS), (declared, found)
    assert _within(declared.backward_tokens, counted.backward_tokens, TOKENS), (declared, found)


def test_the_counter_can_tell_a_wrong_declaration(organism, one_thread, counted):
    """The check above can fail: a declaration that forgets half of the passes is caught."""
    model = organism("demo")
    definition = get("model.batch_invariance")
    declared = definition.cost(definition.params_for({"prompts": "random"}), Workload.of(model, {}))
    run_task(Task("model.batch_invariance", {"prompts": "random"}, 0, ModelSpec(organism="demo")), model)
    assert _within(declared.calls, counted.calls, CALLS)
    assert not _within(declared.calls // 3, counted.calls, CALLS)
