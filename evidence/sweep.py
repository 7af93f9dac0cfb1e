"""A sweep: one signed dossier per checkpoint of a model, and a signed trend dossier over them.

``interp-dossier sweep [SPEC] --checkpoints DIR... --out SWEEP`` runs the run spec on every
checkpoint in turn, exactly as ``run --model DIR`` would, and writes::

    SWEEP/checkpoints/<label>/   each checkpoint's bundle (dossier.json, dossier.pdf, dossier.dsse.json, ...)
    SWEEP/trend/                 the trend dossier's bundle: every gated metric and verdict against the
                                 checkpoints, the first checkpoint where a verdict changes (evidence.trend)

Every checkpoint is checked before the first is measured (its model, placement and memory,
with the spec's policy and datasets). The sweep directory appears only when every bundle in
it is complete (it is built beside ``SWEEP`` and renamed into place); if the sweep stops, the
records of the checkpoints already measured stay in the result cache and a new sweep reuses them.
One signer signs every bundle (its passphrase is asked once), and with ``--executor ray`` one
cluster session serves every checkpoint.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.check import Preflight, Problem
from evidence.errors import ConfigError
from evidence.files import check_output_dir, replace_directory
from evidence.records import SignerInfo
from evidence.records.trend import TrendDossier
from evidence.runspec import RunSpec
from evidence.trend import Checkpoint, build_trend, natural_key, trend_predicate

if TYPE_CHECKING:
    from evidence.measure.cluster import RaySession
    from evidence.records.core import Profile
    from evidence.run import RunOutcome
    from signing.keys import Signer

__all__ = ["CHECKPOINTS_DIR", "TREND_DIR", "SweepOutcome", "resolve_checkpoints", "sweep"]

CHECKPOINTS_DIR = "checkpoints"
TREND_DIR = "trend"
#: what a checkpoint's label may hold (a directory name of the sweep)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep produced: each checkpoint's run, and the trend."""

    out_dir: Path
    runs: list[tuple[str, RunOutcome]]
    trend: TrendDossier
    trend_sha256: str
    signed: bool
    #: where a replaced sweep was kept because it held other files too (``--force``), if anywhere
    kept_previous: Path | None = None

    @property
    def gates_passed(self) -> bool:
        """True when every checkpoint's gate passed (or no policy was applied)."""
        return all(outcome.gate_passed for _, outcome in self.runs)

    @property
    def failed_records(self) -> int:
        """Records whose measurement failed, over every checkpoint."""
        return sum(len(outcome.failed_records) for _, outcome in self.runs)


def resolve_checkpoints(arguments: Sequence[str], *, order: Literal["natural", "given"]) -> list[tuple[str, str]]:
    """(label, model argument) for each checkpoint named: directories, quoted globs, organism names.

    A quoted glob (``'runs/ckpt-*'``) is expanded here; labels are the directories' names
    (characters that cannot be in one replaced by ``-``) and must differ. ``natural`` orders
    the checkpoints by label with numbers compared as numbers (``step-200`` before
    ``step-1000``); ``given`` keeps the order of the arguments.
    """
    named: list[str] = []
    for argument in arguments:
        if not Path(argument).expanduser().exists() and glob.has_magic(argument):
            matches = sorted(glob.glob(os.path.expanduser(argument)))
            if not matches:
                raise ConfigError(
                    f"no checkpoint matches {argument!r}",
                    hint="check the pattern; it is matched against the file system as the shell would",
                )
            named.extend(matches)
        else:
            named.append(argument)
    if not named:
        raise ConfigError("no checkpoint named", hint="pass --checkpoints DIR [DIR ...] (or a quoted glob)")
    pairs = []
    for argument in named:
        base = Path(argument.rstrip("/")).name or argument
        label = _LABEL_UNSAFE.sub("-", base).strip("-.")[:128] or "checkpoint"
        if not label[0].isalnum():
            label = "c" + label
        pairs.append((label, argument))
    labels = [label for label, _ in pairs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ConfigError(
            f"checkpoints share the name {', '.join(repeated)}: each checkpoint's bundle is named after its directory",
            hint="give the checkpoints' directories different names (e.g. link them under one parent as step-N)",
        )
    if len(pairs) < 2:
        raise ConfigError(
            f"a sweep compares at least two checkpoints; one was named ({named[0]})",
            hint=f"use `interp-dossier run --model {named[0]}` for one model",
        )
    if order == "natural":
        pairs.sort(key=lambda pair: natural_key(pair[0]))
    return pairs


def _check_sweep_dir(out_dir: Path, *, force: bool) -> Path:
    """Refuse, before any work, an output directory that is not new, empty, or (with ``force``) a sweep."""
    out_dir = out_dir.expanduser().absolute()
    is_sweep = (out_dir / TREND_DIR).is_dir() and (out_dir / CHECKPOINTS_DIR).is_dir()
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_sweep:
        raise ConfigError(
            f"refusing to replace {out_dir}: it is not empty and does not look like a sweep (no {TREND_DIR}/ "
            f"and {CHECKPOINTS_DIR}/)",
            hint="choose a new or empty --out directory; only a previous sweep is replaced",
        )
    if is_sweep and not force:
        raise ConfigError(
            f"refusing to replace the sweep in {out_dir}",
            hint="choose another --out, or pass --force to replace it (the old sweep is moved aside, and kept as "
            f"{out_dir.name}.previous-TIME if it holds anything besides its bundles)",
        )
    return check_output_dir(out_dir, replace=True) if not is_sweep else out_dir


def sweep(
    spec: RunSpec,
    checkpoints: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    title: str,
    order: Literal["natural", "given"] = "natural",
    key: Path | None = None,
    sign: bool = True,
    tsa: str | None = None,
    level: str | None = None,
    force: bool = False,
    strict: bool = False,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    profile: Profile = "standard",
    limit: int | None = None,
    spec_problems: Sequence[Problem] = (),
    executor: str = "in-process",
    address: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    detail: Callable[[float, str], None] | None = None,
    parallel: int | None = None,
) -> SweepOutcome:
    """Run ``spec`` on every checkpoint (label, model argument), then build, sign and write the trend.

    The arguments are those of :func:`evidence.run.run`, applied to every checkpoint;
    ``checkpoints`` come from :func:`resolve_checkpoints` (in sweep order). ``title`` names
    what was swept on the trend's cover. ``parallel``: with ``executor="ray"``, at most this many
    checkpoints are measured at once, each on its own actor (default: one per CPU of the cluster);
    each is prepared (loaded on this machine for the pre-run check and the numerics certificate),
    rendered and signed one at a time, and held in this machine's memory while it is measured.
    """
    from evidence.run import _check_executor, _check_level, _signer_for, run

    say = progress or (lambda _msg: None)
    _check_executor(executor, address, workers)
    out_dir = _check_sweep_dir(out_dir, force=force)
    if sign:
        _check_level(level, tsa)
    specs = [(label, spec.with_model(model)) for label, model in checkpoints]
    started = datetime.now(UTC)
    for label, checkpoint_spec in specs:  # every checkpoint's problems before the first minute of work
        say(f"checking checkpoint {label}")
        pre = Preflight(checkpoint_spec, strict=strict, run_started=started, problems=list(spec_problems))
        pre.check_spec()
        pre.raise_for_errors()
    signer = _signer_for(key) if sign else None
    moved = False
    runs: list[tuple[str, RunOutcome]] = []
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        with ExitStack() as stack:
            session = None
            if executor == "ray":
                from evidence.measure.cluster import ray_session

                say("ray: connecting to the cluster" if address else "ray: starting a local cluster")
                session = stack.enter_context(ray_session(address, workers=workers))
                say(f"ray: {session.description} (one session for every checkpoint)")
            (staging / CHECKPOINTS_DIR).mkdir()

            def measure(i: int, label: str, checkpoint_spec: RunSpec, held: _TurnLock | None = None) -> RunOutcome:
                say(f"== checkpoint {i}/{len(specs)}: {label} ==")
                return run(
                    checkpoint_spec,
                    staging / CHECKPOINTS_DIR / label,
                    sign=sign,
                    signer=signer,
                    tsa=tsa,
                    level=level,
                    strict=strict,
                    use_cache=use_cache,
                    cache_dir=cache_dir,
                    profile=profile,
                    limit=limit,
                    spec_problems=spec_problems,
                    executor=executor,
                    session=session,
                    progress=_prefixed(say, label),
                    detail=_prefixed_detail(detail, label) if detail is not None and held is not None else detail,
                    held=held,
                )

            side_by_side = _side_by_side(session, len(specs), parallel)
            if session is None or side_by_side < 2:
                for i, (label, checkpoint_spec) in enumerate(specs, start=1):
                    runs.append((label, measure(i, label, checkpoint_spec)))
            else:
                say(f"ray: up to {side_by_side} checkpoints measured at once")
                runs.extend(_side_by_side_runs(specs, measure, session, side_by_side))
        say("== the trend over the checkpoints ==")
        trend, trend_json = _write_trend(staging, runs, title=title, order=order, signer=signer, tsa=tsa,
                                         level=level, say=say)  # fmt: skip
        staging.chmod(0o755)
        kept = replace_directory(staging, out_dir, disposable=_only_bundles)
        moved = True
    except BaseException:
        finished = len(runs)
        kept_note = (
            f"; the records of the {finished} checkpoint(s) measured so far are in the result cache, and the next "
            "sweep reuses them"
            if finished and use_cache
            else ""
        )
        say(f"the sweep stopped: no sweep was written{kept_note}")
        raise
    finally:
        if not moved:
            shutil.rmtree(staging, ignore_errors=True)
        close = getattr(signer, "close", None)  # a token's session ends here
        if close is not None:
            close()
    runs = [(label, replace(outcome, out_dir=out_dir / CHECKPOINTS_DIR / label)) for label, outcome in runs]
    return SweepOutcome(out_dir=out_dir, runs=runs, trend=trend, trend_sha256=sha256_hex(trend_json),
                        signed=signer is not None, kept_previous=kept)  # fmt: skip


class _TurnLock:
    """The lock a checkpoint holds except while it is measured; once cancelled, taking it stops the checkpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self.cancelled = threading.Event()

    def acquire(self) -> bool:
        self._lock.acquire()
        if self.cancelled.is_set():
            self._lock.release()
            raise KeyboardInterrupt
        self._owner = threading.get_ident()
        return True

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    def release_if_held(self) -> None:
        """Release the lock if this thread holds it (a checkpoint stopped while it was measured does not)."""
        if self._owner == threading.get_ident():
            self.release()


def _side_by_side(session: RaySession | None, checkpoints: int, parallel: int | None) -> int:
    """How many checkpoints to measure at once: ``parallel``, else one per CPU of the cluster."""
    if session is None:
        return 1
    if parallel is not None:
        return max(1, min(parallel, checkpoints))
    cpus = int(session.ray.cluster_resources().get("CPU", 1))
    return max(1, min(cpus, checkpoints))


def _side_by_side_runs(
    specs: Sequence[tuple[str, RunSpec]],
    measure: Callable[[int, str, RunSpec, _TurnLock | None], RunOutcome],
    session: RaySession,
    width: int,
) -> list[tuple[str, RunOutcome]]:
    """Each checkpoint's run, ``width`` at a time, in sweep order; Ctrl-C or a failure stops them all."""
    turn = _TurnLock()

    def one(i: int, label: str, checkpoint_spec: RunSpec) -> RunOutcome:
        turn.acquire()
        try:
            return measure(i, label, checkpoint_spec, turn)
        finally:
            turn.release_if_held()

    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="checkpoint")
    futures = [pool.submit(one, i, label, s) for i, (label, s) in enumerate(specs, start=1)]
    try:
        return [(label, future.result()) for (label, _), future in zip(specs, futures, strict=True)]
    except BaseException:
        turn.cancelled.set()  # no checkpoint prepares, renders or signs any more
        session.cancel()  # and none measures: their actors end, their executors stop
        for future in futures:
            future.cancel()
        wait(futures)  # every thread is done before the caller removes what they were writing
        raise
    finally:
        pool.shutdown(wait=True)


def _prefixed_detail(detail: Callable[[float, str], None], label: str) -> Callable[[float, str], None]:
    """``detail`` with each message prefixed by the checkpoint's label (checkpoints measured at once)."""
    return lambda fraction, message: detail(fraction, f"{label}: {message}")


def _prefixed(say: Progress, label: str) -> Progress:
    """``say`` with each line prefixed by the checkpoint's label."""
    return lambda message: say(f"{label}: {message}")


def _write_trend(
    staging: Path,
    runs: Sequence[tuple[str, RunOutcome]],
    *,
    title: str,
    order: Literal["natural", "given"],
    signer: Signer | None,
    tsa: str | None,
    level: str | None,
    say: Progress,
) -> tuple[TrendDossier, bytes]:
    """Build the trend from the bundles just written, render and sign it into ``staging/trend``."""
    from evidence.dossier import parse_dossier

    checkpoints = []
    for label, _outcome in runs:
        data = (staging / CHECKPOINTS_DIR / label / "dossier.json").read_bytes()  # the bytes as signed
        checkpoints.append(Checkpoint(label=label, bundle=f"../{CHECKPOINTS_DIR}/{label}", data=data,
                                      dossier=parse_dossier(data)))  # fmt: skip
    signer_info = None
    if signer is not None:
        from signing.keys import describe_signer

        signer_info = SignerInfo.model_validate(describe_signer(signer))
    trend = build_trend(checkpoints, title=title, order=order, signer=signer_info)
    data = canonical_bytes(trend.model_dump(mode="json"))
    say("rendering the trend's PDF")
    from evidence.render import render_trend_pdf

    pdf = render_trend_pdf(trend, data, progress=say)
    from signing.bundle import seal, write_bundle_atomically

    if signer is not None:
        say("signing the trend")
        from signing.dsse import TREND_PREDICATE_TYPE

        timestamper = None
        if tsa is not None:
            from signing.timestamps import http_timestamper

            timestamper = http_timestamper(tsa)
        files = seal(data, pdf, signer, trend_predicate(trend), timestamper=timestamper, level=level,
                     predicate_type=TREND_PREDICATE_TYPE)  # fmt: skip
    else:
        files = {"dossier.json": data, "dossier.pdf": pdf}
    write_bundle_atomically(files, staging / TREND_DIR)
    return trend, data


def _only_bundles(sweep_dir: Path) -> bool:
    """Whether a previous sweep (or the empty directory it replaced) holds nothing but its bundles' own files."""
    from signing.bundle import OWN_FILES

    if not (sweep_dir / CHECKPOINTS_DIR).is_dir():
        return not any(sweep_dir.iterdir())
    bundles = [sweep_dir / TREND_DIR]
    for entry in sweep_dir.iterdir():
        if entry.is_symlink() or not entry.is_dir() or entry.name not in (TREND_DIR, CHECKPOINTS_DIR):
            return False
    for entry in (sweep_dir / CHECKPOINTS_DIR).iterdir():
        if entry.is_symlink() or not entry.is_dir():
            return False
        bundles.append(entry)
    for bundle in bundles:
        for entry in bundle.iterdir():
            if entry.is_symlink() or not entry.is_file() or entry.name not in OWN_FILES:
                return False
    return True
