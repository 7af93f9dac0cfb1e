"""The main job: measure a model, build the dossier, render it, sign it, write the bundle.

Work is done in this order so that mistakes surface before minutes of
measurement: output location, key and passphrase, run spec, model; then the
measurements; then bytes. The bundle appears in its final place only when
every file of it exists (it is written to a temporary directory first).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evidence.canonical import sha256_hex
from evidence.changelog import diff_dossiers, load_predecessor
from evidence.check import Preflight, Problem
from evidence.crossref import cross_reference
from evidence.dossier import build_dossier, dossier_bytes, parse_dossier, statement_predicate, with_fields
from evidence.errors import ConfigError, missing_extra
from evidence.export import build_exports
from evidence.files import check_output_dir
from evidence.policy import evaluate, roll_up
from evidence.records import (
    PROFILES,
    VALIDATION_REPORT_FILE,
    Dossier,
    EvidenceRecord,
    NumericsCertificate,
    SignerInfo,
    Verdict,
)
from evidence.records.core import Profile
from evidence.runspec import RunSpec
from evidence.validation_report import cite, parse_report, shipped_report_file, shipped_report_path

if TYPE_CHECKING:
    from pydantic import BaseModel

    from evidence.measure import MeasurementDef
    from evidence.measure.cache import ResultCache
    from evidence.measure.cluster import RaySession
    from evidence.model import LoadedModel
    from signing.keys import Signer

__all__ = ["RunOutcome", "publish", "run", "sign_draft"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunOutcome:
    """What a run produced."""

    out_dir: Path
    dossier: Dossier
    dossier_sha256: str
    signed: bool
    #: where a replaced bundle was kept because it held files of the user's (``--force``), if anywhere
    kept_previous: Path | None = None

    @property
    def pdf_path(self) -> Path:
        """Where the PDF of the bundle is."""
        return self.out_dir / "dossier.pdf"

    @property
    def gate_passed(self) -> bool:
        """True when no policy was applied or the gate decided PASS."""
        return self.dossier.gate is None or self.dossier.gate.decision == "pass"

    @property
    def failed_records(self) -> list[EvidenceRecord]:
        """Records whose measurement failed."""
        return [r for r in self.dossier.records if r.status == "error"]


def _signer_for(key: Path | None) -> Signer:
    from signing.keys import ensure_development_signer, load_signer, passphrase_from_env_or_prompt

    if key is None:
        return ensure_development_signer()
    from signing.pkcs11 import Pkcs11Signer, Pkcs11Uri, is_pkcs11_uri

    if is_pkcs11_uri(key):  # a key on a token: an HSM, a smart card, SoftHSM
        return Pkcs11Signer(Pkcs11Uri.parse(str(key)))
    if not key.is_file():
        raise ConfigError(
            f"key file {key} does not exist",
            hint="pass a PKCS#12 file, e.g. one made by `interp-dossier keygen --out DIR`",
        )
    return load_signer(key, passphrase_from_env_or_prompt(confirm=False))


def run(
    spec: RunSpec,
    out_dir: Path,
    *,
    key: Path | None = None,
    sign: bool = True,
    tsa: str | None = None,
    level: str | None = None,
    predecessor: Path | None = None,
    progress: Progress | None = None,
    detail: Callable[[float, str], None] | None = None,
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
    signer: Signer | None = None,
    session: RaySession | None = None,
    held: SupportsLock | None = None,
) -> RunOutcome:
    """Measure, build, render, sign and write the bundle to ``out_dir``.

    Before the model is loaded, and again with it, the pre-run check (:mod:`evidence.check`) runs:
    an error refuses the run (the error itself, or a :class:`~evidence.errors.PreflightError`
    listing every one), a warning is passed to ``progress``. ``spec_problems``: what reading the
    spec found (:func:`evidence.runspec.read_runspec`), refused with the rest.

    ``progress`` receives one line per stage; ``detail`` the measurements' own
    ``(fraction, message)`` reports within a stage. ``tsa``: the URL of a timestamp
    authority, which makes the signatures PAdES B-T and timestamps the envelope;
    ``level``: the PAdES level (B-LT and B-LTA also embed validation data).
    ``force``: replace a previous bundle in ``out_dir`` (otherwise refused before any work).
    ``strict``: refuse, before measuring, an external evaluation of another model than the one
    measured (otherwise it is recorded as a flagged, not-comparable cross-reference).
    ``use_cache``: reuse finished records from the result cache in ``cache_dir`` (default:
    :func:`evidence.measure.cache.default_cache_dir`) and keep new ones there, one progress
    line per reused measurement; False recomputes everything and stores nothing.
    ``profile``: the budget profile whose parameter overrides each measurement declares (the
    run spec's parameters win over them); ``limit``: at most this many prompts of each dataset
    (:func:`evidence.datasets.limit_prompts`). Both are recorded, and a policy set for another
    profile, or for every prompt, judges the records INCONCLUSIVE.
    ``executor``: ``"in-process"`` (the default) or ``"ray"``: the measurements run on a Ray cluster
    (:mod:`evidence.measure.cluster`), at ``address`` or, without one, on a local cluster of
    ``workers`` CPUs started for this run and stopped after it; the records are the same, and the
    dossier's environment names the executor. ``signer``: sign with this signer (already opened, e.g.
    for several runs) instead of the one ``key`` names; ``session``: with ``executor="ray"``, measure on
    this open cluster session instead of connecting (or starting one) for this run alone. ``held``: a
    lock the caller holds and that this run releases while its measurements run on the cluster (a sweep
    measures several checkpoints at once that way, and prepares, renders and signs them one at a time).
    """
    say = progress or (lambda _msg: None)
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit must be a positive number of prompts, not {limit!r}")
    if session is None:
        _check_executor(executor, address, workers)
    out_dir = check_output_dir(out_dir, replace=force)
    cache = _result_cache(cache_dir, say) if use_cache else None
    if sign:
        _check_level(level, tsa)
    started = datetime.now(UTC)
    if sign and signer is None:
        signer = _signer_for(key)
    elif not sign:
        signer = None
    previous = load_predecessor(predecessor) if predecessor is not None else None
    report_file = shipped_report_file()
    validation = (
        (parse_report(report_file, source=str(shipped_report_path())), sha256_hex(report_file))
        if report_file is not None
        else None
    )

    # Measurement (torch, TransformerLens) is imported only now.
    try:
        from evidence.measure import Task, check_task, registered, run_suite
        from evidence.measure.runtime import capture_environment, configure_determinism
    except ModuleNotFoundError as exc:
        raise missing_extra("measure", exc) from None

    # The pre-run check (evidence.check): everything knowable without the model, then with it.
    pre = Preflight(spec, strict=strict, run_started=started, problems=list(spec_problems))
    pre.check_spec()
    pre.raise_for_errors()
    model_spec = pre.model_spec  # check_spec reported an impossible placement as an error
    if limit is not None:
        spec = _limited(spec, limit)
    markers = {kind: tuple(phrases) for kind, phrases in spec.markers.items()}
    tasks = [
        Task(
            measurement_id=mid,
            params=params,
            seed=spec.seed,
            subject=model_spec,
            datasets=spec.datasets,
            markers=markers,
            profile=profile,
            prompt_limit=limit,
        )
        for mid, params in spec.measurements.items()
    ]
    checked = [check_task(task) for task in tasks]  # with the profile's budgets, before the first minute of work
    # Reference organisms are tiny: one thread is as fast and is not slowed by a busy machine.
    configure_determinism(spec.seed, threads=1 if spec.model_organism else None)
    say(_budget_line(profile, limit))
    say(f"loading model {model_spec.describe()}")
    model = pre.load()
    pre.raise_for_errors()
    if model is None:  # pragma: no cover - load() reports why as an error, raised above
        raise ConfigError(f"{model_spec.describe()} could not be loaded")
    pre.check_model(model)
    pre.raise_for_errors()
    for line in [pre.memory_line(), *(f"warning: {p.source}: {p.one_line()}" for p in pre.problems)]:
        if line is not None:
            say(line)
    policy, external = pre.policy, pre.external
    say("numerics certificate: the bridge against the plain model, batched against alone")
    identity = model.identity.model_copy(update={"numerics": _numerics(model, spec)})

    estimates = _time_estimates(checked, model, spec, limit, say)
    environment = capture_environment({"run": spec.seed})
    with ExitStack() as stack:
        execute = None
        if executor == "ray":
            from evidence.measure.cluster import ModelActorExecutor, ray_session

            if session is None:
                say("ray: connecting to the cluster" if address else "ray: starting a local cluster")
                session = stack.enter_context(ray_session(address, workers=workers))
                say(f"ray: {session.description}")
            environment = environment.model_copy(update={"executor": session.description})
            threads = 1 if spec.model_organism else None
            execute = ModelActorExecutor(session, model, seed=spec.seed, threads=threads, say=say)
        with _released(held):
            records = run_suite(
                tasks,
                model,
                announce=lambda i, n, task: say(f"[{i}/{n}] measuring {task.measurement_id}{estimates[i - 1]}"),
                progress=detail,
                cache=cache,
                reused=lambda i, n, task, key: say(f"[{i}/{n}] reused {task.measurement_id} "
                                                   f"from the result cache ({key[:16]})"),
                execute=execute,
            )
        if execute is not None:
            execute.close()  # the model's actor is done; on a shared session (a sweep) it would hold the model
    rules = [rule for definition in registered().values() for rule in definition.crossref]

    verdicts: list[Verdict] = []
    gate = None
    if policy is not None:
        verdicts = evaluate(
            policy, records, subject=model.identity.name, validation=validation, dtype=model_spec.dtype,
            batching=str(model.identity.processing.get("batching", "by-length")),
        )  # fmt: skip
        gate = roll_up(verdicts)
    dossier = build_dossier(
        model=identity,
        environment=environment,
        records=records,
        policy=policy,
        verdicts=verdicts,
        gate=gate,
        external_evals=external,
        cross_references=cross_reference(records, external, subject=model.identity.name, rules=rules),
        validation=cite(*validation, records) if validation is not None else None,
        profile=profile,
        prompt_limit=limit,
    )
    if previous is not None:
        old, link = previous
        dossier = with_fields(dossier, predecessor=link, changelog=diff_dossiers(old, dossier))
    return publish(
        dossier, out_dir, signer=signer, progress=say, validation_report=report_file, tsa=tsa, level=level, force=force
    )


EXECUTORS = ("in-process", "ray")


class SupportsLock(Protocol):
    """A lock: :class:`threading.Lock`, or one that refuses to be taken again once its work is cancelled."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


@contextmanager
def _released(lock: SupportsLock | None) -> Iterator[None]:
    """Release ``lock`` (which the caller holds) for the block, and take it again after."""
    if lock is None:
        yield
        return
    lock.release()
    try:
        yield
    finally:
        lock.acquire()


def _check_executor(executor: str, address: str | None, workers: int | None) -> None:
    """Refuse, before any work, an unknown executor, options that need Ray without it, or Ray not installed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}", hint=f"use one of {', '.join(EXECUTORS)}")
    if executor != "ray" and (address is not None or workers is not None):
        raise ConfigError("--address and --workers are for a Ray cluster", hint="add --executor ray")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be a positive number of worker processes, not {workers!r}")
    if workers is not None and address is not None:
        raise ConfigError("--workers sizes a local cluster; a cluster at --address has its own", hint="drop --workers")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise missing_extra("ray")


def _time_estimates(
    checked: Sequence[tuple[MeasurementDef, BaseModel]],
    model: LoadedModel,
    spec: RunSpec,
    limit: int | None,
    say: Progress,
) -> list[str]:
    """Say the run's time estimate; return each measurement's, as a suffix of its progress line ("" for none).

    Estimates only (:mod:`evidence.measure.cost`): declared passes times a forward pass timed now.
    """
    from evidence.measure.cost import Workload, estimate_seconds, format_seconds, time_forward

    if all(definition.cost is None for definition, _ in checked):
        return [""] * len(checked)
    timing = time_forward(model)
    work = Workload.of(model, spec.datasets, limit)
    seconds = [estimate_seconds(definition, params, work, timing) for definition, params in checked]
    known = [s for s in seconds if s is not None]
    say(f"time estimate: about {format_seconds(sum(known))} ({len(known)} of {len(seconds)} measurements have one)")
    return [f" (about {format_seconds(s)}, an estimate)" if s is not None else "" for s in seconds]


def _budget_line(profile: str, limit: int | None) -> str:
    """The progress line that states the run's budget."""
    prompts = f"at most {limit} prompts per dataset (--limit)" if limit is not None else "every prompt"
    return f"profile {profile}, {prompts}"


def _limited(spec: RunSpec, limit: int) -> RunSpec:
    """``spec`` with at most ``limit`` prompts of each dataset (a seeded, label-stratified subset)."""
    from evidence.datasets import limit_prompts

    return replace(spec, datasets={name: limit_prompts(d, limit, spec.seed) for name, d in spec.datasets.items()})


def _result_cache(directory: Path | None, say: Progress) -> ResultCache:
    """The run's result cache; refused before any work when its directory is not one."""
    from evidence.measure.cache import ResultCache, default_cache_dir

    where = directory if directory is not None else default_cache_dir()
    if where.exists() and not where.is_dir():
        raise ConfigError(
            f"the result cache {where} is not a directory",
            hint="pass --cache-dir DIR (or set $INTERP_DOSSIER_CACHE_DIR) to a directory, or run with --no-cache",
        )
    return ResultCache(where, warn=lambda message: say(f"warning: {message}"))


def publish(
    dossier: Dossier,
    out_dir: Path,
    *,
    signer: Signer | None,
    progress: Progress | None = None,
    validation_report: bytes | None = None,
    tsa: str | None = None,
    level: str | None = None,
    force: bool = False,
) -> RunOutcome:
    """Name the signer, serialise, render, sign and write the bundle atomically.

    ``force``: replace a previous bundle in ``out_dir`` (see :func:`signing.bundle.write_bundle_atomically`).

    ``validation_report``: the bytes of the validation report the dossier cites
    (required exactly when it cites one); it joins the bundle as
    ``validation-report.json``, signed and embedded in the PDF like the exports.
    """
    say = progress or (lambda _msg: None)
    cited = dossier.validation
    if cited is None and validation_report is not None:
        raise ConfigError("a validation report was given for a dossier that cites none")
    if cited is not None and (validation_report is None or sha256_hex(validation_report) != cited.report_sha256):
        raise ConfigError(
            f"the dossier cites validation report {cited.report_sha256[:16]}, which is not at hand",
            hint=f"keep {VALIDATION_REPORT_FILE} beside dossier.json in the draft bundle",
        )
    if signer is not None:
        from signing.keys import describe_signer

        dossier = with_fields(dossier, signer=SignerInfo.model_validate(describe_signer(signer)))
    data = dossier_bytes(dossier)
    exports = build_exports(dossier)
    if validation_report is not None:
        exports[VALIDATION_REPORT_FILE] = validation_report

    say("rendering the PDF")
    from evidence.render import render_pdf

    pdf = render_pdf(dossier, data, attachments=exports, progress=say)

    from signing.bundle import seal, write_bundle_atomically

    if signer is not None:
        say("signing")
        timestamper = None
        if tsa is not None:
            from signing.timestamps import http_timestamper

            timestamper = http_timestamper(tsa)
        files = seal(
            data, pdf, signer, statement_predicate(dossier), extra=exports, timestamper=timestamper, level=level
        )
    else:
        files = {"dossier.json": data, "dossier.pdf": pdf, **exports}
    kept = write_bundle_atomically(files, out_dir, replace=force)
    return RunOutcome(out_dir=out_dir, dossier=dossier, dossier_sha256=sha256_hex(data), signed=signer is not None,
                      kept_previous=kept)  # fmt: skip


def sign_draft(
    draft_dir: Path,
    out_dir: Path,
    *,
    key: Path | None,
    tsa: str | None = None,
    level: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> RunOutcome:
    """Sign an unsigned draft bundle (``run --no-sign``) into a new, signed bundle (``force``: replacing one)."""
    if (draft_dir / "trend").is_dir() and (draft_dir / "checkpoints").is_dir() or _is_trend_bundle(draft_dir):
        raise ConfigError(
            f"{draft_dir} is a sweep (or its trend): a sweep is signed as it is made, since its trend names each "
            "checkpoint's signed dossier by digest",
            hint="run the sweep again with --key; the result cache reuses every measurement already made",
        )
    out_dir = check_output_dir(out_dir, replace=force)
    _check_level(level, tsa)
    source = draft_dir / "dossier.json"
    try:
        data = source.read_bytes()
    except OSError:
        raise ConfigError(f"{source} cannot be read", hint="pass the directory `run --no-sign` wrote") from None
    dossier = parse_dossier(data)
    if dossier.signer is not None:
        raise ConfigError(
            f"{source} is already signed by {dossier.signer.subject}",
            hint="sign the unsigned draft, or run again with --key",
        )
    report = None
    if dossier.validation is not None:
        cited = draft_dir / VALIDATION_REPORT_FILE
        try:
            report = cited.read_bytes()
        except OSError:
            raise ConfigError(
                f"{cited} cannot be read: the draft cites a validation report",
                hint="sign the whole directory `run --no-sign` wrote",
            ) from None
    signer = _signer_for(key)
    try:
        return publish(
            dossier, out_dir, signer=signer, progress=progress, validation_report=report, tsa=tsa, level=level,
            force=force,
        )
    finally:
        close = getattr(signer, "close", None)  # a token's session ends here
        if close is not None:
            close()


def _is_trend_bundle(directory: Path) -> bool:
    """Whether ``directory`` holds a sweep's trend dossier."""
    from evidence.trend import is_trend_document

    try:
        return is_trend_document((directory / "dossier.json").read_bytes())
    except OSError:
        return False


def _check_level(level: str | None, tsa: str | None) -> None:
    """Refuse an impossible PAdES level before any work (e.g. B-LT without a timestamp authority)."""
    from signing.pades import check_level

    check_level(level, tsa is not None)


def _numerics(model: LoadedModel, spec: RunSpec) -> NumericsCertificate:
    """The run's numerics certificate (:func:`evidence.measure.numerics.run_certificate`)."""
    from evidence.measure.numerics import run_certificate

    return run_certificate(model, spec.datasets, spec.seed)
