"""Shared fixtures: an isolated key home, and one real bundle built by the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_key_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Development keys and cached results go to temporary directories, never to the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_DOSSIER_HOME", str(tmp_path_factory.mktemp("interp-dossier-home")))
    mp.delenv("INTERP_DOSSIER_KEY_PASSPHRASE", raising=False)
    # Results are cached per test session: no test reads or writes a developer's result cache.
    mp.setenv("INTERP_DOSSIER_CACHE_DIR", str(tmp_path_factory.mktemp("result-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def pipeline_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle written by `interp-dossier run` on the bundled default (built once per session).

    The default subject carries a planted defection that its policy's gate catches, so the run
    exits 1 with a complete bundle.
    """
    from evidence.cli import main

    out = tmp_path_factory.mktemp("pipeline") / "out"
    code = main(["run", "--out", str(out)])
    assert code == 1, f"run exited {code}, expected 1 (gate failed on the planted defection)"
    assert (out / "dossier.json").is_file()
    return out


@pytest.fixture(scope="session")
def organism():
    """``organism(name)``: a bundled reference organism, loaded once per test session."""
    from functools import cache

    from evidence.model import ModelSpec, load_model

    @cache
    def load(name: str):
        return load_model(ModelSpec(organism=name))

    return load


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (the organisms are tiny; two threads only contend)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def temporary_measurement():
    """``temporary_measurement(id, fn, **declarations)``: register a measurement for one test only."""
    from evidence.measure import MeasurementParams, measurement, registry

    added: list[str] = []

    class NoParams(MeasurementParams):
        pass

    def register(measurement_id: str, fn, *, params=NoParams, **declarations):
        measurement(measurement_id, version=declarations.pop("version", "1.0.0"), params=params, **declarations)(fn)
        added.append(measurement_id)
        return registry.get(measurement_id)

    yield register
    for measurement_id in added:
        registry._REGISTRY.pop(measurement_id, None)



def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """After a session that ran the attack corpus (tests/unit/test_attack_corpus.py), count its attacks."""
    import sys

    corpus = sys.modules.get("tests.attack_corpus")
    if corpus is None or not corpus.STOPPED:  # the corpus test did not run (or no attack was stopped)
        return
    stopped, total = len(corpus.STOPPED), len(corpus.ATTACKS)
    if stopped == total:
        terminalreporter.write_line(f"attack corpus: {total} attacks, each failed at its named step")
    else:
        terminalreporter.write_line(f"attack corpus: {total} attacks, {stopped} of them run and stopped at their step")
