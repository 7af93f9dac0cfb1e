"""`run` after an interruption: finished measurements are reused from the result cache, and say so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import evidence.measure.runner as runner
from evidence.cli import main
from evidence.records import EvidenceRecord

SPEC = """\
[run]
seed = 0
measurements = ["heads.inventory", "model.batch_invariance"]
[model]
organism = "induction"
[measurements."heads.inventory"]
n_sequences = 8
bootstrap_resamples = 100
[measurements."model.batch_invariance"]
bootstrap_resamples = 100
"""


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "two.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture()
def interrupt_second(monkeypatch):
    """Ctrl-C as the second measurement starts."""
    real = runner.run_task

    def interrupted(task, *args, **kwargs):
        if task.measurement_id == "model.batch_invariance":
            raise KeyboardInterrupt
        return real(task, *args, **kwargs)

    monkeypatch.setattr(runner, "run_task", interrupted)
    return lambda: monkeypatch.setattr(runner, "run_task", real)


def steps(err: str) -> list[str]:
    """The progress line of each measurement, its time estimate left out."""
    return [
        re.sub(r" \(about \d+ s, an estimate\)$", "", line.removeprefix("\u2026 "))
        for line in err.splitlines()
        if line.startswith("\u2026 [")
    ]


def cached_record(cache: Path) -> EvidenceRecord:
    (entry,) = cache.glob("*/*.json")
    return EvidenceRecord.model_validate(json.loads(entry.read_bytes())["record"])


def test_a_run_restarted_after_ctrl_c_reuses_the_finished_measurement(spec, tmp_path, capsys, interrupt_second):
    cache, out = tmp_path / "cache", tmp_path / "out"
    assert main(["run", str(spec), "--no-sign", "--out", str(out), "--cache-dir", str(cache)]) == 130
    _, err = capsys.readouterr()
    assert steps(err) == ["[1/2] measuring heads.inventory", "[2/2] measuring model.batch_invariance"]
    assert not out.exists()
    finished = cached_record(cache)
    key = next(cache.glob("*/*.json")).stem

    interrupt_second()  # the restart runs to the end
    assert main(["run", str(spec), "--no-sign", "--out", str(out), "--cache-dir", str(cache)]) == 0
    _, err = capsys.readouterr()
    assert steps(err) == [
        f"[1/2] reused heads.inventory from the result cache ({key[:16]})",
        "[2/2] measuring model.batch_invariance",
    ]
    records = json.loads((out / "dossier.json").read_bytes())["records"]
    assert [r["reused_cache_key"] for r in records] == [key, None]
    assert {**records[0], "reused_cache_key": None} == finished.model_dump(mode="json")


def test_no_cache_measures_again_and_cache_dir_comes_from_the_environment(
    spec, tmp_path, capsys, interrupt_second, monkeypatch
):
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("INTERP_DOSSIER_CACHE_DIR", str(cache))
    argv = ["run", str(spec), "--no-sign", "--out", str(tmp_path / "out")]
    assert main(argv) == 130
    assert len(list(cache.glob("*/*.json"))) == 1
    capsys.readouterr()
    assert main([*argv, "--no-cache"]) == 130
    _, err = capsys.readouterr()
    assert steps(err)[0] == "[1/2] measuring heads.inventory"
    assert main(argv) == 130
    _, err = capsys.readouterr()
    assert steps(err)[0].startswith("[1/2] reused heads.inventory from the result cache (")


def test_cache_options_that_cannot_work_are_one_line_errors(spec, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra, fragment in [
        (["--no-cache", "--cache-dir", str(tmp_path)], "--no-cache reuses and stores nothing"),
        (["--cache-dir", str(blocker)], f"the result cache {blocker} is not a directory"),
    ]:
        code = main(["run", str(spec), "--no-sign", "--out", str(tmp_path / "out"), *extra])
        _, err = capsys.readouterr()
        assert code == 2 and "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
