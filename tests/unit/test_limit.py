"""`run --limit N`: a seeded subset of each prompt set that keeps every label and every pair."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from evidence.datasets import Dataset, Prompt, limit_prompts
from evidence.errors import ConfigError
from evidence.runspec import default_runspec_path, load_runspec


@pytest.fixture(scope="module")
def bundled() -> dict[str, Dataset]:
    return load_runspec(default_runspec_path()).datasets


def dataset(*prompts: tuple[str, str], name: str = "set") -> Dataset:
    return Dataset(
        name=name, path=Path(f"{name}.jsonl"), sha256="0" * 64,
        prompts=tuple(Prompt(id=i, label=label, text=i) for i, label in prompts),
    )  # fmt: skip


def test_at_most_n_prompts_with_the_labels_in_proportion(bundled):
    limited = limit_prompts(bundled["deception.eval"], 20, seed=0)
    assert limited.count == 20
    assert Counter(p.label for p in limited.prompts) == {"positive": 10, "negative": 10}
    assert limited.sha256 == bundled["deception.eval"].sha256  # the file it was read from
    ids = [p.id for p in bundled["deception.eval"].prompts]
    assert [p.id for p in limited.prompts] == sorted((p.id for p in limited.prompts), key=ids.index)  # file order


def test_pairs_stay_together_by_group_and_by_id(bundled):
    by_group = limit_prompts(bundled["deception.train"], 11, seed=3)
    pairs = Counter(p.group for p in by_group.prompts)
    assert by_group.count == 10 and set(pairs.values()) == {2}

    no_groups = dataset(*[(f"pair-{i:04d}-{side}", side) for i in range(30) for side in ("bad", "good")])
    limited = limit_prompts(no_groups, 9, seed=0)
    stems = Counter(p.id.rsplit("-", 1)[0] for p in limited.prompts)
    assert limited.count == 8 and set(stems.values()) == {2}


def test_a_group_spread_over_two_sets_is_kept_in_both(bundled):
    harmful = limit_prompts(bundled["refusal.harmful"], 16, seed=5)
    harmless = limit_prompts(bundled["refusal.harmless"], 16, seed=5)
    assert harmful.count == harmless.count == 16
    assert {p.group for p in harmful.prompts} == {p.group for p in harmless.prompts}


def test_the_subset_follows_the_seed(bundled):
    control = bundled["deception.control"]
    first, again, other = (limit_prompts(control, 12, seed=s) for s in (1, 1, 2))
    assert first == again
    assert [p.id for p in first.prompts] != [p.id for p in other.prompts]


def test_a_rare_label_keeps_at_least_one_prompt():
    skewed = dataset(*[(f"a-{i}", "common") for i in range(40)], ("b-0", "rare"))
    limited = limit_prompts(skewed, 5, seed=0)
    assert Counter(p.label for p in limited.prompts) == {"common": 4, "rare": 1}


def test_a_limit_at_or_above_the_count_keeps_the_set():
    small = dataset(("x", "a"), ("y", "b"))
    assert limit_prompts(small, 2, seed=0) is small


def test_a_limit_too_small_for_every_label_is_a_config_error():
    three = dataset(("x", "a"), ("y", "b"), ("z", "c"), ("w", "c"), name="three")
    with pytest.raises(ConfigError, match=r"--limit 2 cannot keep every label of three \(three.jsonl\)") as excinfo:
        limit_prompts(three, 2, seed=0)
    assert excinfo.value.hint == "pass --limit 3 or more"
