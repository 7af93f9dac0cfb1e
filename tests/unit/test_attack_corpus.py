"""The attack corpus (tests/attack_corpus.py): every named attack fails first at its named step, in a sentence."""

from __future__ import annotations

import re

import pytest

from signing.verify import _DEPENDS_ON, _PDF_ONLY_DEPENDS_ON
from tests.attack_corpus import ATTACKS, BUNDLE, PDF, STOPPED, Attack, Clean

#: the order in which verification runs its steps
_ORDER = {BUNDLE: [1, 2, 3, 4, 5, 6, 7, 8], PDF: [5, 6, 4, 7]}
_DEPENDENCIES = {BUNDLE: _DEPENDS_ON, PDF: _PDF_ONLY_DEPENDS_ON}
#: what raw exception text looks like: a traceback, or a detail that starts with an exception's name
_RAW = re.compile(r"Traceback \(most recent call last\)|^\s*[A-Za-z_][\w.]*(Error|Exception|Warning)\b")


@pytest.fixture(scope="module")
def clean() -> Clean:
    return Clean()


def _dependents(of: int, target: str) -> set[int]:
    """The steps that rest, directly or not, on step ``of``."""
    depends_on, found = _DEPENDENCIES[target], set()
    changed = True
    while changed:
        changed = False
        for step, needs in depends_on.items():
            if step not in found and (of in needs or found & set(needs)):
                found.add(step)
                changed = True
    return found


def test_the_corpus_names_at_least_forty_distinct_attacks():
    names = [a.name for a in ATTACKS]
    assert len(names) >= 40
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    for a in ATTACKS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9.]+)*", a.name), a.name
        assert a.target in (BUNDLE, PDF) and a.step in _ORDER[a.target], a
        assert a.description.endswith(".") and a.message, a


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_the_attack_fails_at_its_named_step(attack: Attack, clean: Clean, tmp_path):
    report = attack.run(clean, tmp_path)
    steps = {s.number: s for s in report.steps}
    failed = report.first_failure()
    assert not report.bottom_line
    assert failed is not None and failed.number == attack.step, (
        f"{attack.name}: expected to fail first at step {attack.step}, "
        + ("but nothing failed" if failed is None else f"but step {failed.number} failed: {failed.detail}")
    )
    before = _ORDER[attack.target][: _ORDER[attack.target].index(attack.step)]
    for number in before:
        if number in steps:
            assert steps[number].passed, f"step {number} before the named one failed: {steps[number].detail}"
    assert not failed.skipped
    assert attack.message in failed.detail, failed.detail
    assert not _RAW.search(failed.detail), f"raw exception text: {failed.detail}"
    for number in _dependents(attack.step, attack.target) & set(steps):
        assert steps[number].status == "not evaluated", steps[number]
        assert steps[number].detail == f"not evaluated (step {attack.step} failed)"
    STOPPED.add(attack.name)
