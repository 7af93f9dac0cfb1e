"""`sweep --checkpoints`: how checkpoints are named, found and ordered, and options refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.cli import main
from evidence.errors import ConfigError
from evidence.sweep import resolve_checkpoints


def _dirs(root: Path, *names: str) -> list[str]:
    for name in names:
        (root / name).mkdir(parents=True)
    return [str(root / name) for name in names]


def test_natural_order_puts_step_200_before_step_1000_and_given_keeps_the_arguments(tmp_path):
    given = _dirs(tmp_path, "step-1000", "step-200", "step-30")
    natural = resolve_checkpoints(given, order="natural")
    assert [label for label, _ in natural] == ["step-30", "step-200", "step-1000"]
    assert [label for label, _ in resolve_checkpoints(given, order="given")] == ["step-1000", "step-200", "step-30"]
    assert dict(natural)["step-200"] == str(tmp_path / "step-200")


def test_a_quoted_glob_is_expanded_and_labels_are_safe_directory_names(tmp_path):
    _dirs(tmp_path, "ckpt 1", "ckpt 2", "other")
    found = resolve_checkpoints([str(tmp_path / "ckpt*")], order="natural")
    assert [label for label, _ in found] == ["ckpt-1", "ckpt-2"]
    with pytest.raises(ConfigError, match="no checkpoint matches"):
        resolve_checkpoints([str(tmp_path / "nothing-*")], order="natural")


def test_repeated_names_and_a_single_checkpoint_are_refused(tmp_path):
    one = _dirs(tmp_path / "a", "step-1")
    two = _dirs(tmp_path / "b", "step-1")
    with pytest.raises(ConfigError, match="checkpoints share the name step-1"):
        resolve_checkpoints([*one, *two], order="natural")
    with pytest.raises(ConfigError, match="at least two checkpoints"):
        resolve_checkpoints(one, order="natural")


def test_parallel_needs_the_ray_executor_and_a_positive_number(tmp_path, capsys):
    checkpoints = _dirs(tmp_path, "step-1", "step-2")
    base = ["sweep", "--checkpoints", *checkpoints, "--out", str(tmp_path / "out")]
    assert main([*base, "--parallel", "2"]) == 2
    assert "--parallel measures checkpoints at once on a Ray cluster" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
