"""The verification procedure is defined once; the README and ``verify`` follow it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from evidence.procedure import README_BEGIN, README_END, STEPS, readme_list, step_titles

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_the_steps_of_the_one_definition():
    readme = README.read_text(encoding="utf-8")
    assert readme.count(README_BEGIN) == 1 and readme.count(README_END) == 1, "README lost its step markers"
    shown = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    expected = readme_list()
    assert shown == expected, f"replace README's numbered steps (between the markers) with:\n{expected}"


def test_the_steps_are_numbered_one_to_eight_and_only_the_timestamp_step_is_conditional():
    assert [s.number for s in STEPS] == list(range(1, 9))
    assert [s.number for s in STEPS if s.only_when] == [8]
    assert all(s.title and s.description.endswith(".") for s in STEPS)
    assert len(set(step_titles().values())) == len(STEPS)


def test_verify_names_its_steps_from_the_definition():
    from signing.verify import STEP_TITLES

    assert STEP_TITLES == step_titles()


def test_the_readme_list_has_one_line_per_step_with_its_title():
    lines = readme_list().splitlines()
    assert len(lines) == len(STEPS)
    for step, line in zip(STEPS, lines, strict=True):
        assert line.startswith(f"{step.number}. **{step.title}**: {step.description}")


def test_the_definition_imports_nothing_heavy():
    code = (
        "import sys, evidence.procedure\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'weasyprint', 'jinja2', 'pyhanko') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
