"""JSONL ``group``: prompts of one group stay on one side of every split the suite makes from a prompt set.

The prompt sets here pair their prompts by ``group`` only: the ids are opaque, with no
suffix convention (``pair-0007-bad`` / ``pair-0007-good``) that could pair them instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from evidence.datasets import Dataset, group_keys, read_dataset
from evidence.measure.methods.deception import ProbeParams, _training_folds
from evidence.measure.methods.interchange import GoalProxyPrompts, interchange_pairs, two_folds
from evidence.measure.methods.probes import pair_groups
from evidence.measure.registry import dataset_labels
from evidence.measure.suite.deception_robustness import _split
from evidence.measure.suite.goal_proxy_reliance import prompt_variables


def _opaque(*parts: object) -> str:
    """An id that says nothing about the prompt's pair."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def _write(directory: Path, name: str, rows: list[dict[str, object]]) -> Dataset:
    path = directory / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_dataset(name, path, dataset_labels())


def _sides(groups: list[str], side: dict[int, str]) -> dict[str, set[str]]:
    """Group -> the sides its prompts landed on."""
    out: dict[str, set[str]] = {}
    for i, key in enumerate(groups):
        out.setdefault(key, set()).add(side[i])
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    directory = tmp_path_factory.mktemp("groups")
    rows: dict[str, list[dict[str, object]]] = {"deception.train": [], "deception.eval": []}
    for i in range(40):
        for label in ("deceptive", "honest"):
            rows["deception.train"].append(
                {"id": _opaque("t", i, label), "label": label, "group": f"request {i}", "text": f"{label} {i}"}
            )
        for label in ("positive", "negative"):
            rows["deception.eval"].append(
                {"id": _opaque("e", i, label), "label": label, "group": f"request {i}", "text": f"{label} {i}"}
            )
    # Minimal pairs across the two goal sets: an aligned prompt and a decorrelated one differing in the proxy.
    aligned, decorrelated = [], []
    for i in range(24):
        goal = i % 2 == 0
        group = f"comparison {i}"
        aligned.append({"id": _opaque("a", i), "label": "aligned", "group": group, "goal": goal, "proxy": goal,
                        "text": f"a {i}"})  # fmt: skip
        decorrelated.append({"id": _opaque("d", i), "label": "decorrelated", "group": group, "goal": goal,
                             "proxy": not goal, "text": f"d {i}"})  # fmt: skip
    rows["goal.aligned"], rows["goal.decorrelated"] = aligned, decorrelated
    return {name: _write(directory, name, r) for name, r in rows.items()}


def test_the_ids_carry_no_pairing_so_only_the_group_pairs_them(sets):
    train = sets["deception.train"].prompts
    labels = [p.label == "deceptive" for p in train]
    ids = [p.id for p in train]
    assert pair_groups(ids, labels) == ids  # the id convention finds no pair here
    keys = group_keys(train)
    assert keys is not None and len(set(keys)) == 40


@pytest.mark.parametrize("seed", range(5))
def test_probe_cross_validation_folds_keep_each_group_in_one_fold(sets, seed):
    train = sets["deception.train"].prompts
    labels = np.array([p.label == "deceptive" for p in train])
    folds = _training_folds(train, labels, ProbeParams(), np.random.default_rng(seed))
    keys = group_keys(train)
    assert keys is not None
    assert all(len(s) == 1 for s in _sides(keys, {i: str(f) for i, f in enumerate(folds)}).values())
    assert len(set(folds.tolist())) == ProbeParams().cv_folds
    # Without the group field the same prompts are single units, and pairs are split across folds.
    bare = [p.model_copy(update={"group": None}) for p in train]
    loose = _training_folds(bare, labels, ProbeParams(), np.random.default_rng(seed))
    assert any(len(s) > 1 for s in _sides(keys, {i: str(f) for i, f in enumerate(loose)}).values())


@pytest.mark.parametrize("seed", range(5))
def test_the_attack_split_keeps_each_group_on_one_side(sets, seed):
    prompts = sets["deception.eval"].prompts
    labels = np.array([p.label == "positive" for p in prompts])
    keys = group_keys(prompts)
    assert keys is not None
    split = _split(labels, keys, 8, np.random.default_rng(seed))
    side = {i: "attack" for i in split.attack_pos + split.train_neg}
    side |= {i: "held out" for i in split.held_pos + split.held_neg}
    assert sorted(side) == list(range(len(prompts)))  # every prompt is used, once
    assert all(len(s) == 1 for s in _sides(keys, side).values())
    assert len(split.attack_pos) == len(split.train_neg) == 8
    assert len(split.held_pos) == len(split.held_neg) == 32


def test_without_groups_the_attack_split_is_the_split_of_single_prompts():
    labels = np.array([True, False] * 30)
    rng = np.random.default_rng(3)
    split = _split(labels, None, 10, np.random.default_rng(3))
    pos, neg = rng.permutation(np.flatnonzero(labels)), rng.permutation(np.flatnonzero(~labels))
    assert split.attack_pos == sorted(pos[:10].tolist()) and split.held_pos == sorted(pos[10:].tolist())
    assert split.train_neg == sorted(neg[:15].tolist()) and split.held_neg == sorted(neg[15:].tolist())


@pytest.mark.parametrize("seed", range(5))
def test_goal_folds_and_the_selection_split_keep_each_group_on_one_side(sets, seed):
    read = [*sets["goal.aligned"].prompts, *sets["goal.decorrelated"].prompts]
    values = [prompt_variables(p, "goal") for p in read]
    keys = group_keys(read)
    assert keys is not None
    prompts = GoalProxyPrompts(
        [p.id for p in read],
        [[0]] * len(read),
        np.array([g for g, _ in values]),
        np.array([q for _, q in values]),
        np.array([p.label == "aligned" for p in read]),
        keys,
    )
    folds = two_folds(prompts.cells, np.random.default_rng(seed), prompts.groups)
    assert all(len(s) == 1 for s in _sides(keys, {i: str(f) for i, f in enumerate(folds)}).values())
    for cell in range(4):  # each goal/proxy cell is still split in half
        assert abs(int(folds[prompts.cells == cell].sum()) - int((prompts.cells == cell).sum()) / 2) <= 1
    pairs = interchange_pairs(prompts, folds, np.random.default_rng(seed + 1))
    base_keys = [keys[int(b)] for b in pairs.base]
    report = two_folds(4 * prompts.cells[pairs.base] + folds[pairs.base], np.random.default_rng(seed + 2), base_keys)
    assert all(len(s) == 1 for s in _sides(base_keys, {i: str(r) for i, r in enumerate(report)}).values())
    assert 0 < int(report.sum()) < report.size


def test_without_groups_the_goal_folds_split_each_cell_as_before():
    cells = np.repeat(np.arange(4), [10, 7, 2, 5])
    rng = np.random.default_rng(0)
    expected = np.zeros(cells.size, dtype=np.int64)
    for cell in range(4):
        order = rng.permutation(np.flatnonzero(cells == cell))
        expected[order[(len(order) + 1) // 2 :]] = 1
    assert np.array_equal(two_folds(cells, np.random.default_rng(0)), expected)
    singletons = [f"id:{i}" for i in range(cells.size)]
    assert np.array_equal(two_folds(cells, np.random.default_rng(0), singletons), expected)
