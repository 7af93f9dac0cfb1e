"""The README's Python API example runs as it is written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from evidence.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section shows one example"
    return blocks[0]


def test_the_readme_example_runs_and_verifies(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INTERP_DOSSIER_KEY_PASSPHRASE", "example passphrase")
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    shutil.copy(tmp_path / "keys" / "signer.p12", tmp_path / "signer.p12")
    shutil.copy(tmp_path / "keys" / "signer.pem", tmp_path / "ca-root.pem")  # a development key is its own anchor
    (tmp_path / "my-run.toml").write_text(
        '[run]\nseed = 0\nmeasurements = ["heads.inventory"]\n[model]\norganism = "induction"\n'
        '[measurements."heads.inventory"]\nn_sequences = 16\nbootstrap_resamples = 200\n'
    )
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    exec(compile(_example(), "README.md (Python API)", "exec"), {})  # noqa: S102 - the project's own README
    out = capsys.readouterr().out
    assert "gate: no policy" in out
    assert re.search(r"^dossier\.json sha256: [0-9a-f]{64}$", out, re.M)
    steps = re.findall(r"^(\d) .* (PASS|FAIL) ", out, re.M)
    assert [n for n, _ in steps] == ["1", "2", "3", "4", "5", "6", "7"]
    assert {verdict for _, verdict in steps} == {"PASS"}
    assert (tmp_path / "out" / "dossier.pdf").is_file()
