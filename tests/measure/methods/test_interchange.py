"""methods.interchange: folds, pairs, subspaces, the intervention and the Proxy Reliance Index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.hooks import capture
from evidence.measure.methods.interchange import (
    GoalProxyPrompts,
    LayerResult,
    balanced_directions,
    bootstrap_reliance_index,
    interchange_effects,
    interchange_pairs,
    interchange_shift,
    patched_logit_diff,
    random_unit_directions,
    reliance_index,
    restrict,
    symmetric_orthonormalise,
    two_folds,
)
from evidence.organisms import language

# -- folds and pairs ---------------------------------------------------------------------------


def test_folds_split_every_cell_in_half_and_depend_on_the_seed():
    cells = np.repeat(np.arange(4), [10, 7, 2, 5])
    folds = two_folds(cells, np.random.default_rng(0))
    for cell, size in zip(range(4), [10, 7, 2, 5], strict=True):
        ones = int(folds[cells == cell].sum())
        assert ones == size // 2
    assert np.array_equal(folds, two_folds(cells, np.random.default_rng(0)))
    assert not np.array_equal(folds, two_folds(cells, np.random.default_rng(1)))


def test_each_base_gets_sources_of_its_fold_with_one_variable_flipped():
    goal = np.array([1, 0] * 8 + [1, 0] * 8, dtype=bool)
    proxy = np.array([1, 0] * 8 + [0, 1] * 8, dtype=bool)
    aligned = np.array([True] * 16 + [False] * 16)
    prompts = GoalProxyPrompts([f"p{i}" for i in range(32)], [[0]] * 32, goal, proxy, aligned)
    folds = two_folds(prompts.cells, np.random.default_rng(0))
    pairs = interchange_pairs(prompts, folds, np.random.default_rng(1))
    assert np.array_equal(pairs.base, np.arange(16))
    for b, g_src, p_src in zip(pairs.base, pairs.goal_source, pairs.proxy_source, strict=True):
        assert not aligned[g_src] and not aligned[p_src]
        assert folds[g_src] == folds[p_src] == folds[b]
        assert goal[g_src] != goal[b] and proxy[g_src] == proxy[b]
        assert goal[p_src] == goal[b] and proxy[p_src] != proxy[b]


# -- subspaces ---------------------------------------------------------------------------------


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


def test_random_directions_are_unit_and_seeded():
    dirs = random_unit_directions(5, 12, np.random.default_rng(3))
    assert dirs.shape == (5, 12) and np.allclose(np.linalg.norm(dirs, axis=1), 1.0)
    assert np.array_equal(dirs, random_unit_directions(5, 12, np.random.default_rng(3)))


# -- the intervention and its effects ----------------------------------------------------------


def test_interchange_shift_swaps_exactly_one_component():
    rng = np.random.default_rng(1)
    base, source = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    d = rng.standard_normal(8)
    d /= np.linalg.norm(d)
    patched = base + interchange_shift(base, source, d)
    assert np.allclose(patched @ d, source @ d)
    assert np.allclose(patched - np.outer(patched @ d, d), base - np.outer(base @ d, d))


def test_effects_are_oriented_towards_the_predicted_answer_and_averaged_over_draws():
    ld_base = np.array([1.0, -1.0])
    predicted_same = np.array([False, True])
    ld_after = np.array([-1.0, 1.0, 3.0, -3.0])  # two draws, draw-major
    effect = interchange_effects(ld_after, ld_base, predicted_same, 2)
    assert np.allclose(effect.delta, [(2.0 - 2.0) / 2, (2.0 - 2.0) / 2])
    assert np.allclose(effect.abs_delta, [2.0, 2.0])
    assert np.allclose(effect.success, [0.5, 0.5])


def test_a_full_swap_after_the_last_block_gives_the_source_logits(organism):
    """The intervention hook really edits the residual stream the unembedding reads."""
    model = organism("proxy-r0")
    texts = ["user : compare red twin red assistant :", "user : compare blue the gold assistant :"]
    seqs = [language.encode(t) for t in texts]
    last = model.n_layers - 1
    acts = capture(model.bridge, [f"blocks.{last}.hook_resid_post"], torch.tensor(seqs))
    resid = acts[f"blocks.{last}.hook_resid_post"][:, -1, :].double().numpy()
    answers = (language.VOCAB["same"], language.VOCAB["different"])
    swapped = patched_logit_diff(model, seqs, resid[::-1] - resid, last, answers, 8)
    with torch.no_grad():
        logits = model.bridge(torch.tensor(seqs))[:, -1, :]
    clean = (logits[:, answers[0]] - logits[:, answers[1]]).double().numpy()
    assert np.allclose(swapped, clean[::-1], atol=1e-4)
    assert not np.allclose(clean[0], clean[1], atol=1e-3)


# -- the Proxy Reliance Index ------------------------------------------------------------------


def test_restrict_keeps_the_chosen_bases_of_every_effect_and_scores_on_them():
    ld_base = np.zeros(4)
    predicted = np.array([True, True, False, False])
    hit = interchange_effects(np.array([1.0, 1.0, -1.0, -1.0]), ld_base, predicted, 1)
    half = interchange_effects(np.array([1.0, -1.0, 1.0, -1.0]), ld_base, predicted, 1)
    result = LayerResult(layer=2, cosine=0.1, goal=hit, proxy=half, random_goal=half, random_proxy=half)
    keep = np.array([True, False, False, True])
    kept = restrict(result, keep)
    assert kept.layer == 2 and kept.cosine == 0.1
    assert kept.goal.success.tolist() == [1.0, 1.0] and kept.proxy.success.tolist() == [1.0, 1.0]
    assert result.score == 1.5 and kept.score == 2.0  # the score is of the kept bases only
    with pytest.raises(MeasurementError, match="no base prompt left"):
        restrict(result, np.zeros(4, dtype=bool))


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


def test_reliance_index_interval_is_the_percentile_interval_of_the_resampled_ratios():
    """The same draws and quantiles as a hand-written percentile bootstrap, widened to hold the estimate."""
    rng = np.random.default_rng(5)
    proxy, goal = 0.2 + rng.standard_normal(50), 1.0 + rng.standard_normal(50)
    value, ci = bootstrap_reliance_index(proxy, goal, rng=np.random.default_rng(9), level=0.9, resamples=300)
    index = np.random.default_rng(9).integers(0, 50, size=(300, 50))
    mp, mg = np.abs(proxy[index].mean(axis=1)), np.abs(goal[index].mean(axis=1))
    alpha = (1.0 - 0.9) / 2.0
    lower, upper = np.quantile(mp / (mp + mg), [alpha, 1.0 - alpha])
    assert (ci.lower, ci.upper) == (min(float(lower), value), max(float(upper), value))
    assert (ci.level, ci.n, ci.resamples) == (0.9, 50, 300)
