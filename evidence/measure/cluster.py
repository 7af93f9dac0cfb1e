"""Measurement tasks on a Ray cluster: the executor behind ``--executor ray``.

In-process execution stays the default and needs no Ray; this module imports
Ray only when a session is opened (:func:`import_ray` turns its absence into
one line with the remedy).

How work is placed:

* ``run``: one actor per (model, placement), :class:`_ModelWorker`, loads the
  model once and serves the run's tasks one at a time with the same
  :func:`~evidence.measure.runner.run_task` as in-process execution. The
  driver keeps the loop of :func:`~evidence.measure.runner.run_suite` (order,
  result cache, announcements) and hands each task to the actor
  (:class:`ModelActorExecutor`). The run's
  :class:`~evidence.measure.context.SharedResults` live in the actor, so an
  intermediate result several measurements share (a fitted probe, a selected
  direction) is computed once and reused in place: every task of a model goes
  to that model's one actor. Each result is also published, by object
  reference, to a small store actor (:class:`_SharedStore`, keyed by the same
  digest of everything the result depends on), which owns it: a model actor
  restarted after a loss takes the result from there instead of computing it
  again. A CUDA placement asks Ray for ``n_gpus`` GPUs for the actor.
* ``validate``: each population member is one Ray task (:func:`measure_members`)
  that loads the member and runs every measurement that applies to it, as
  :func:`evidence.validation.measure_member` does in-process; members run in
  parallel, one CPU each.

Faults: the actor is restarted by Ray (``max_restarts``) and the task it was
running is submitted again (``max_task_retries``); a member task is retried
(``max_retries``). The driver notices a retried measurement by the worker
process that finished it (another pid than the one that started it) and the
record says so (``retries``). A task that exhausts its retries becomes an
``error`` record with the reason; the bundle is written only once every task
has a record. Ctrl-C cancels the cluster's tasks, ends the actors and closes
the session.

Progress: the actor keeps the latest ``(fraction, message)`` of its running
measurement; the driver polls it (a separate concurrency group, so polling
never waits behind the measurement) and passes it to the same progress
display as in-process execution.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from evidence.errors import ConfigError, missing_extra
from evidence.records import ErrorInfo, EvidenceRecord

if TYPE_CHECKING:
    from pydantic import JsonValue

    from evidence.measure.context import ProgressFn
    from evidence.measure.runner import Task
    from evidence.model import LoadedModel, ModelSpec
    from evidence.validation import Member

__all__ = [
    "ACTOR_PREFIX",
    "MAX_RESTARTS",
    "MAX_TASK_RETRIES",
    "NAMESPACE",
    "STORE_PREFIX",
    "ModelActorExecutor",
    "RaySession",
    "import_ray",
    "measure_members",
    "ray_session",
]

#: The Ray namespace of every actor this package creates.
NAMESPACE = "interp-dossier"
#: Model actors are named ``ACTOR_PREFIX`` + a random suffix (``ray list actors`` shows them).
ACTOR_PREFIX = "interp-dossier-model-"
#: The actor that keeps a model's shared intermediate results is named ``STORE_PREFIX`` + the same suffix.
STORE_PREFIX = "interp-dossier-shared-"
#: How often Ray restarts a model actor whose process was lost.
MAX_RESTARTS = 2
#: How often Ray submits a measurement again after the actor running it was lost.
MAX_TASK_RETRIES = 2
#: How often Ray runs a population member's task again after its worker was lost.
MAX_MEMBER_RETRIES = 2
_POLL_SECONDS = 0.25
_START_ATTEMPTS = 3

Say = Callable[[str], None]


def import_ray() -> ModuleType:
    """Ray, imported now; a one-line error naming the extra when it is not installed."""
    # Ray asks to report usage statistics over the network unless told not to; a tool that runs offline does not.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise missing_extra("ray", exc) from None
    return ray


@dataclass
class RaySession:
    """A connection to a Ray cluster, and what this process created on it."""

    ray: ModuleType
    #: How the dossier's environment names the executor, e.g. ``ray 2.60.0: a local cluster (2 CPUs)``.
    description: str
    actors: list[Any] = field(default_factory=list)
    #: set by :meth:`cancel`: no task starts any more (a sweep's other checkpoints stop too)
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop the session's work: every actor ends, and every executor on the session stops at its next step."""
        self.cancelled = True
        self.kill_actors()

    def kill_actors(self) -> None:
        """End every actor this session started (their running tasks with them)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors.clear()


def _package_root() -> str:
    """The directory this package is imported from: local workers import the same code."""
    return str(Path(__file__).resolve().parents[2])


def _quiet_cluster_messages(ray: ModuleType) -> Callable[[], None]:
    """Keep Ray's own notices (e.g. "a worker died") off the user's terminal; returns the undo.

    The run reports what matters itself (a retried measurement, an error record with the reason).
    ``INTERP_DOSSIER_DEBUG=1`` shows them. Ray prints these from a listener thread through one function
    of its worker module, which is the only hook there is.
    """
    if os.environ.get("INTERP_DOSSIER_DEBUG"):
        return lambda: None
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if worker is None or original is None:
        return lambda: None
    worker.print_to_stdstream = lambda *_args, **_kwargs: None

    def undo() -> None:
        worker.print_to_stdstream = original

    return undo


@contextmanager
def ray_session(address: str | None = None, *, workers: int | None = None) -> Iterator[RaySession]:
    """Connect to the cluster at ``address``, or start a local one on this machine; always closed on exit.

    ``workers``: CPUs of a local cluster (default: this machine's); refused with ``address``.
    A Ray connection this process already holds (a notebook's, say) is used as it is and left open.
    Ray's logging stays off the terminal (workers' output is not forwarded; Ray logs errors only).
    A local cluster registers its node under the machine's own address (Ray replaces a loopback
    address by a reachable one) and admits only clients holding its token (Ray 2.60's default).
    """
    ray = import_ray()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be a positive number of worker processes, not {workers!r}")
    if workers is not None and address is not None:
        raise ConfigError(
            "--workers sizes a local cluster; a cluster at --address has its own workers", hint="drop --workers"
        )
    undo = _quiet_cluster_messages(ray)
    owned = not ray.is_initialized()
    try:
        if owned:
            _connect(ray, address, workers)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if not owned:
            where = "the connection this process holds"
        elif address is None:
            where = "a local cluster"
        else:
            where = f"the cluster at {address}"
        session = RaySession(ray=ray, description=f"ray {ray.__version__}: {where} ({cpus} CPUs)")
        try:
            yield session
        finally:
            session.kill_actors()
    finally:
        try:
            if owned and ray.is_initialized():
                ray.shutdown()  # a local cluster this process started stops with it
        finally:
            undo()


def _connect(ray: ModuleType, address: str | None, workers: int | None) -> None:
    common: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
    }
    if address is not None:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach a Ray cluster at {address}: {str(exc).splitlines()[0][:200]}",
                hint="start one with `ray start --head`, or drop --address to start a local one",
            ) from None
        return
    path = os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH", "")) if p)
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            ray.init(
                num_cpus=workers or os.cpu_count() or 1,
                include_dashboard=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
                **common,
            )
            return
        except Exception as exc:  # noqa: BLE001 - any failure to start is one line for the user
            # Ray gives its processes 30 s to start; a busy machine can need longer: try again.
            if attempt < _START_ATTEMPTS and "timed out during startup" in str(exc):
                continue
            raise ConfigError(
                f"could not start a local Ray cluster: {type(exc).__name__}: {_first_line(exc, 200)}",
                hint="on a busy machine try again, or start one with `ray start --head` and pass --address",
            ) from None


# -- run: one actor per model ---------------------------------------------------------------------


class _SharedStore:
    """A Ray actor's body: the run's shared intermediate results, by key, as object references.

    It owns the objects, so they outlive a model actor that is lost: the restarted actor takes the
    fitted probe its predecessor published instead of fitting it again.
    """

    def __init__(self) -> None:
        self._refs: dict[str, list[Any]] = {}
        self.published = 0
        self.taken = 0

    def publish(self, key: str, value: Any) -> None:
        """Keep ``value`` (``(result, seeds)``) for ``key`` in the object store."""
        import ray

        self._refs.setdefault(key, [ray.put(value)])
        self.published += 1

    def reference(self, key: str) -> list[Any] | None:
        """``[object reference]`` of ``key``'s value (in a list, so that Ray passes it unresolved), or None."""
        found = self._refs.get(key)
        if found is not None:
            self.taken += 1
        return found

    def counts(self) -> dict[str, int]:
        """How many results were published and how often one was taken."""
        return {"published": self.published, "taken": self.taken}


def _cluster_shared_results(store: Any) -> Any:
    """SharedResults that also publish each result to ``store`` and look there before computing one."""
    import ray

    from evidence.measure.context import SharedResults

    class ClusterSharedResults(SharedResults):
        def get_or_compute(
            self, key: str, compute: Callable[[], Any], seeds: dict[str, int]
        ) -> tuple[Any, dict[str, int]]:
            if key not in self._store:
                try:
                    found = ray.get(store.reference.remote(key))
                    if found:
                        self._store[key] = ray.get(found[0])
                except ray.exceptions.RayError:
                    pass  # without the store, the result is computed here
            known = key in self._store
            value, used = super().get_or_compute(key, compute, seeds)
            if not known:
                try:
                    ray.get(store.publish.remote(key, (value, used)))
                except Exception:  # noqa: BLE001 - a result that cannot be sent stays here
                    pass
            return value, used

    return ClusterSharedResults()


class _ModelWorker:
    """A Ray actor's body: the model loaded once, the run's shared results, the latest progress."""

    def __init__(self, spec: ModelSpec, seed: int, threads: int | None, store_name: str | None = None) -> None:
        import ray

        from evidence.measure.context import SharedResults
        from evidence.measure.runtime import configure_determinism
        from evidence.model import load_model

        configure_determinism(seed, threads=threads)
        self._seed, self._threads = seed, threads
        self._model = load_model(spec)
        # The store is found by its name, not passed as a handle: an actor whose constructor takes a
        # reference cannot be restarted once the reference is gone (ray-project/ray#53727).
        store = ray.get_actor(store_name, namespace=NAMESPACE) if store_name is not None else None
        self._shared = _cluster_shared_results(store) if store is not None else SharedResults()
        self._progress: tuple[float, str] = (0.0, "")

    def about(self) -> dict[str, Any]:
        """Who serves: process id, package version, node id, the loaded model's name."""
        import ray

        from evidence import __version__

        return {
            "pid": os.getpid(),
            "version": __version__,
            "node": ray.get_runtime_context().get_node_id(),
            "subject": self._model.identity.name,
        }

    def run(self, task: Task) -> tuple[EvidenceRecord, int]:
        """``task``'s record (as :func:`~evidence.measure.runner.run_task` makes it) and this process's id."""
        from evidence.measure.runner import run_task
        from evidence.measure.runtime import configure_determinism

        # Actor methods run on a thread of Ray's; torch keeps some state per thread.
        configure_determinism(self._seed, threads=self._threads)
        self._progress = (0.0, "")
        record = run_task(task, self._model, progress=self._report, shared=self._shared)
        return record, os.getpid()

    def _report(self, fraction: float, message: str) -> None:
        self._progress = (fraction, message)

    def progress(self) -> tuple[float, str, int]:
        """The running measurement's latest ``(fraction, message)`` and this process's id."""
        return self._progress[0], self._progress[1], os.getpid()


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


class ModelActorExecutor:
    """Runs one model's tasks on its actor; an ``execute`` for :func:`~evidence.measure.runner.run_suite`.

    The actor is started at the first task (a run whose records all come from the result cache
    starts none). ``threads``: torch threads in the actor, as the driver would use them.
    """

    def __init__(
        self,
        session: RaySession,
        model: LoadedModel,
        *,
        seed: int,
        threads: int | None,
        say: Say | None = None,
    ) -> None:
        self._session = session
        self._spec = model.spec
        self._subject = model.identity.name
        self._seed, self._threads = seed, threads
        self._say = say or (lambda _m: None)
        self._actor: Any = None
        #: the actors this executor started (its model's actor and its store)
        self._own: list[Any] = []
        #: why the cluster cannot run this model's tasks at all (every later task is recorded with it)
        self._unavailable: str | None = None

    def _start(self) -> Any:
        from evidence import __version__

        ray = self._session.ray
        gpus = self._spec.n_gpus if self._spec.device == "cuda" else 0
        remote = ray.remote(
            num_cpus=1,
            num_gpus=gpus,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_TASK_RETRIES,
            concurrency_groups={"poll": 1},
        )(_ModelWorker)
        suffix = uuid.uuid4().hex[:12]
        store = (
            ray.remote(num_cpus=0, max_restarts=0)(_SharedStore)
            .options(name=f"{STORE_PREFIX}{suffix}", namespace=NAMESPACE)
            .remote()
        )
        self._session.actors.append(store)
        self._own.append(store)
        actor = remote.options(name=f"{ACTOR_PREFIX}{suffix}", namespace=NAMESPACE).remote(
            self._spec, self._seed, self._threads, f"{STORE_PREFIX}{suffix}"
        )
        self._session.actors.append(actor)
        self._own.append(actor)
        about = ray.get(actor.about.options(concurrency_group="poll").remote())
        if about["version"] != __version__:
            raise ConfigError(
                f"the Ray cluster runs interp-dossier {about['version']}, this is {__version__}",
                hint="install the same version on the cluster's nodes",
            )
        if about["subject"] != self._subject:
            raise ConfigError(
                f"the Ray cluster loaded {about['subject']!r} for {self._spec.describe()}, not {self._subject!r}",
                hint="give the cluster's nodes the same model files as this machine",
            )
        addresses = {n.get("NodeID"): n.get("NodeManagerAddress") for n in ray.nodes()}
        node = addresses.get(about["node"]) or about["node"][:12]
        self._say(f"ray: {self._spec.describe()} loaded by a worker on node {node} (pid {about['pid']})")
        self._actor = actor
        return actor

    def close(self) -> None:
        """End this model's actor and store: its tasks are done (a sweep's next checkpoint needs the memory)."""
        for actor in self._own:
            try:
                self._session.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            if actor in self._session.actors:
                self._session.actors.remove(actor)
        self._own.clear()
        self._actor = None

    def _pid(self, actor: Any) -> int:
        return int(self._session.ray.get(actor.about.options(concurrency_group="poll").remote())["pid"])

    def _lost(self, task: Task, message: str, kind: str, retries: int) -> EvidenceRecord:
        from evidence.measure.runner import lost_task_record

        error = ErrorInfo(
            type=kind,
            message=message[:1000],
            hint="see the Ray cluster's logs (`ray logs`), e.g. for a worker ended for lack of memory",
        )
        return lost_task_record(task, self._subject, error, retries=retries or None)

    def __call__(self, task: Task, progress: ProgressFn | None) -> EvidenceRecord:
        """``task``'s record, measured on the model's actor (an ``error`` record if the cluster lost it for good)."""
        ray = self._session.ray
        errors = ray.exceptions
        if self._session.cancelled:
            raise KeyboardInterrupt
        if self._unavailable is not None:
            return self._lost(task, self._unavailable, "WorkerUnavailable", 0)
        try:
            actor = self._actor if self._actor is not None else self._start()
            pids = {self._pid(actor)}
        except errors.RayError as exc:
            if self._session.cancelled:
                raise KeyboardInterrupt from None
            where = self._spec.describe()
            self._unavailable = f"the Ray cluster could not start a worker for {where}: {_first_line(exc)}"
            self.close()
            return self._lost(task, self._unavailable, "WorkerUnavailable", 0)
        ref = actor.run.remote(task)
        shown: tuple[int, float, str] | None = None
        try:
            while not ray.wait([ref], timeout=_POLL_SECONDS)[0]:
                if self._session.cancelled:
                    raise KeyboardInterrupt
                try:
                    fraction, message, pid = ray.get(
                        actor.progress.options(concurrency_group="poll").remote(), timeout=_POLL_SECONDS * 8
                    )
                except (errors.RayActorError, errors.GetTimeoutError):
                    continue  # the actor is being restarted; the measurement is submitted again
                pids.add(pid)
                # a restarted measurement reports again from its start
                if progress is not None and message and (pid, fraction, message) != shown:
                    shown = (pid, fraction, message)
                    progress(fraction, message)
            record, pid = ray.get(ref)
            if not isinstance(record, EvidenceRecord):
                raise TypeError(f"the worker returned {type(record).__name__}, not a record")
        except KeyboardInterrupt:
            ray.cancel(ref)
            self._session.kill_actors()  # a measurement in an actor ends with its process
            raise
        except errors.RayTaskError as exc:  # not the measurement (run_task records its failures): the call itself
            if self._session.cancelled:  # the session was cancelled under it: no record, the work stops
                raise KeyboardInterrupt from None
            return self._lost(task, f"the Ray worker failed: {_first_line(exc)}", type(exc).__name__, len(pids) - 1)
        except errors.RayError as exc:  # the actor was lost more often than Ray restarts it
            if self._session.cancelled:
                raise KeyboardInterrupt from None
            self._session.ray.kill(actor, no_restart=True)
            self._actor = None
            message = (
                f"the worker measuring it was lost and {MAX_TASK_RETRIES} retries did not finish it: {_first_line(exc)}"
            )
            return self._lost(task, message, "WorkerLost", max(len(pids) - 1, MAX_TASK_RETRIES))
        pids.add(pid)
        retries = len(pids) - 1
        if retries:
            self._say(f"    the worker measuring {task.measurement_id} was lost; Ray ran it again ({retries}x)")
            record = EvidenceRecord.model_validate({**record.model_dump(), "retries": retries})
        return record


# -- validate: one task per population member --------------------------------------------------------


Outcome = tuple[EvidenceRecord | None, str | None]
Work = Sequence[tuple[str, "Member", Mapping[str, "JsonValue"]]]


def _member_task(
    member: Member, items: list[tuple[str, dict[str, Any]]], seed: int, threads: int | None
) -> tuple[list[Outcome], list[str]]:
    """A Ray task's body: measure one member with each ``(measurement id, parameters)``."""
    from evidence.measure.runtime import configure_determinism
    from evidence.validation import measure_member

    configure_determinism(seed, threads=threads)
    return measure_member(member, items, seed)


def measure_members(
    session: RaySession,
    work: Work,
    seed: int,
    *,
    threads: int | None = 1,
    say: Say | None = None,
) -> tuple[dict[tuple[str, str], Outcome], set[str]]:
    """Every ``(measurement id, member, parameters)`` of ``work``: one Ray task per member, in parallel.

    Returns the outcome per ``(measurement id, member name)`` and how the members' prompts were batched.
    A member whose task is lost more often than Ray retries it is an error for each of its measurements.
    """
    ray = session.ray
    tell = say or (lambda _m: None)
    by_member: dict[str, tuple[Member, list[tuple[str, dict[str, Any]]]]] = {}
    for measurement_id, member, params in work:
        by_member.setdefault(member.name, (member, []))[1].append((measurement_id, dict(params)))
    remote = ray.remote(_member_task).options(num_cpus=1, max_retries=MAX_MEMBER_RETRIES)
    started = time.perf_counter()
    pending = {remote.remote(member, items, seed, threads): name for name, (member, items) in by_member.items()}
    tell(f"ray: {len(pending)} members as tasks on {session.description}")
    results: dict[tuple[str, str], Outcome] = {}
    batching: set[str] = set()
    done, total = 0, len(work)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS * 4)
            for ref in ready:
                name = pending.pop(ref)
                member, items = by_member[name]
                try:
                    outcomes, modes = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    why = f"the worker measuring it was lost beyond {MAX_MEMBER_RETRIES} retries: {_first_line(exc)}"
                    outcomes, modes = [(None, why)] * len(items), []
                batching.update(modes)
                for (measurement_id, _params), outcome in zip(items, outcomes, strict=True):
                    done += 1
                    results[(measurement_id, name)] = outcome
                    record, error = outcome
                    failed = error is not None or (record is not None and record.status != "ok")
                    seconds = record.duration_s if record is not None and record.duration_s is not None else 0.0
                    tell(f"[{done}/{total}] {measurement_id} on {name} ({member.role})")
                    tell(f"    {seconds:.1f} s{' (failed)' if failed else ''}")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    tell(f"ray: {len(by_member)} members measured in {time.perf_counter() - started:.1f} s")
    return results, batching
