"""The refusal direction search: prompt splits and Arditi et al.'s selection rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.methods.directions import Point
from evidence.measure.methods.refusal_search import (
    CandidateEval,
    Criteria,
    RefusalSearchParams,
    select_candidate,
    split_indices,
)

# -- splits --------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_complete():
    a = split_indices(20, 0.5, np.random.default_rng(3))
    b = split_indices(20, 0.5, np.random.default_rng(3))
    c = split_indices(20, 0.5, np.random.default_rng(4))
    assert a == b and a != c
    train, held = a
    assert len(train) == 10 and len(held) == 10
    assert sorted(train + held) == list(range(20))


def test_split_keeps_two_held_out_and_refuses_tiny_sets():
    train, held = split_indices(5, 0.99, np.random.default_rng(0))
    assert len(held) == 2 and len(train) == 3
    with pytest.raises(MeasurementError, match="at least 4"):
        split_indices(3, 0.5, np.random.default_rng(0))


# -- selection ---------------------------------------------------------------------------------


def cand(layer: int, score: float, kl: float, added: float, *, degenerate: bool = False) -> CandidateEval:
    c = CandidateEval(Point(layer, f"blocks.{layer}.hook_resid_pre"), -1, torch.ones(2), degenerate)
    if not degenerate:
        c.ablated_logodds = np.full(3, score)
        c.kl = np.full(3, kl)
        c.added_logodds = np.full(3, added)
    return c


CRITERIA = Criteria(layer_bound=2.4, max_kl=0.1, induce_min_logodds=0.0, harmless_logodds=-8.0)


def test_selection_takes_the_lowest_ablated_refusal_among_passing_candidates():
    cands = [
        cand(0, -9.0, 0.01, -5.0),  # best score, but addition induces nothing
        cand(1, -2.0, 0.01, 3.0),  # passes
        cand(2, -4.0, 0.01, 1.0),  # passes, lower score: selected
        cand(2, -7.0, 0.50, 4.0),  # KL over budget
        cand(3, -8.0, 0.01, 4.0),  # beyond the layer limit
    ]
    sel = select_candidate(cands, CRITERIA)
    assert (sel.index, sel.passed, sel.n_passing) == (2, True, 2)


def test_addition_must_beat_the_unsteered_harmless_mean():
    strict = Criteria(layer_bound=2.4, max_kl=0.1, induce_min_logodds=-20.0, harmless_logodds=1.0)
    assert cand(1, -2.0, 0.01, 0.5).checks(strict) == (True, True, False)


def test_selection_without_a_passing_candidate_reports_the_best_of_the_next_tier():
    cands = [
        cand(0, 5.0, 0.01, -9.0, degenerate=True),
        cand(1, 3.0, 0.01, -9.0),
        cand(2, 1.0, 0.02, -9.0),
        cand(2, -5.0, 0.90, -9.0),
        cand(3, -9.0, 0.01, -9.0),
    ]
    sel = select_candidate(cands, CRITERIA)
    assert (sel.index, sel.passed, sel.n_passing) == (2, False, 0)
    assert "no candidate passes every filter" in sel.note
    # nothing within the KL budget either: best within the layer limit
    only_kl_fail = [cand(1, 3.0, 0.5, 9.0), cand(2, -1.0, 0.5, 9.0), cand(3, -5.0, 0.01, 9.0)]
    assert select_candidate(only_kl_fail, CRITERIA).index == 1


def test_selection_needs_one_usable_candidate():
    with pytest.raises(MeasurementError, match="zero"):
        select_candidate([cand(1, 0.0, 0.0, 0.0, degenerate=True)], CRITERIA)


# -- parameters ----------------------------------------------------------------------------------


def test_search_parameters_keep_the_uncertainty_defaults():
    params = RefusalSearchParams()
    assert (params.bootstrap_resamples, params.ci_level) == (1000, 0.95)
    assert set(params.model_dump()) == {
        "train_fraction",
        "select_fraction",
        "max_prompts",
        "positions",
        "max_layer_fraction",
        "max_kl",
        "ablation",
        "induce_min_logodds",
        "max_new_tokens",
        "batch_size",
        "bootstrap_resamples",
        "ci_level",
    }
