"""A light install (no [measure] extra) asked to measure says so in one line, with the remedy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evidence.errors import MissingExtraError, missing_extra

ROOT = Path(__file__).resolve().parents[2]

#: Runs the CLI in an interpreter where the modules named in its first argument cannot be imported,
#: as on a light install.
WITHOUT_MEASURE_EXTRA = textwrap.dedent(
    """
    import sys

    class _LightInstall:
        blocked = tuple(sys.argv.pop(1).split(","))

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _LightInstall())
    from evidence.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("blocked", ["torch,numpy,transformer_lens", "torch,transformer_lens"])
def test_run_without_the_measure_extra_is_one_line_naming_the_extra(tmp_path: Path, blocked: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_MEASURE_EXTRA, blocked, "run", "--no-sign", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "[measure]" in lines[0]
    assert "pip install 'interp-dossier[measure]'" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", ["measure", "render", "export"])
def test_missing_extra_names_the_extra_the_module_and_the_command(extra: str) -> None:
    err = missing_extra(extra, ModuleNotFoundError("No module named 'x'", name="x"))
    assert isinstance(err, MissingExtraError) and err.exit_code == 2
    assert f"[{extra}]" in err.one_line()
    assert "'x'" in err.one_line()
    assert f"pip install 'interp-dossier[{extra}]'" in err.one_line()
