"""The gradient-guided suffix search against refusal, on a small random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evidence.errors import ConfigError
from evidence.measure.methods.suffix_attack import (
    checkpoint_steps,
    common_suffix_length,
    gcg_attack,
    resolve_objective,
    template_end,
)
from evidence.measure.methods.suffixes import insert_suffix
from tests.measure.methods.test_directions import small_model
from tests.measure.methods.test_suffixes import _Tok


def test_suffix_helpers():
    seqs = [[1, 7, 8, 5, 6], [1, 9, 5, 6], [1, 3, 4, 4, 5, 6]]
    assert common_suffix_length(seqs) == 2
    assert common_suffix_length([[1, 2], [1, 2]]) == 1  # never the whole shortest prompt
    assert insert_suffix([1, 7, 8, 5, 6], [40, 41], 2) == [1, 7, 8, 40, 41, 5, 6]
    assert checkpoint_steps(0) == [0]
    assert checkpoint_steps(5) == [0, 1, 2, 4, 5]
    assert checkpoint_steps(8) == [0, 1, 2, 4, 8]


def test_gcg_lowers_its_objective_deterministically():
    model = small_model()
    model.tokenizer = _Tok()
    seqs = [[1, 5, 6, 7, 2, 3], [1, 8, 9, 2, 3], [1, 4, 4, 2, 3]]

    def never_flips(batch):
        return np.ones(len(batch), dtype=bool)

    def run():
        return gcg_attack(
            model,
            seqs,
            objective_ids=[10],
            sign=1.0,
            end_len=2,
            suffix_len=3,
            steps=4,
            top_k=4,
            n_candidates=8,
            batch_size=64,
            generator=torch.Generator().manual_seed(11),
            refused=never_flips,
        )

    a, b = run(), run()
    assert a.suffixes == b.suffixes and np.array_equal(a.final_objective, b.final_objective)
    assert np.all(a.final_objective <= a.initial_objective + 1e-9)
    assert a.final_objective.mean() < a.initial_objective.mean()
    assert a.steps_used == 4 and a.evaluations == 32
    assert [step for step, _, _ in a.curve] == [0, 1, 2, 4]
    assert all(t not in (0, 1) and t < 20 for s in a.suffixes for t in s)


def test_template_end_defaults_to_the_common_suffix_and_leaves_room_for_one():
    seqs = [[1, 7, 8, 5, 6], [1, 9, 5, 6]]
    assert template_end(seqs, None) == 2
    assert template_end(seqs, 1) == 1
    with pytest.raises(ConfigError, match="leaves no room"):
        template_end(seqs, 4)


def test_the_objective_is_helpful_only_with_helpful_markers():
    assert resolve_objective("auto", ("sure",)) == "helpful"
    assert resolve_objective("auto", ()) == "refusal"
    assert resolve_objective("refusal", ("sure",)) == "refusal"
    with pytest.raises(ConfigError, match="needs \\[markers\\].helpful"):
        resolve_objective("helpful", ())
