"""The main job: measure a model, build the dossier, render it, sign it, write the bundle.

Work is done in this order so that mistakes surface before minutes of
measurement: output location, key and passphrase, run spec, model; then the
measurements; then bytes. The bundle appears in its final place only when
every file of it exists (it is written to a temporary directory first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from evidence.canonical import sha256_hex
from evidence.changelog import diff_dossiers, load_predecessor
from evidence.crossref import cross_reference
from evidence.dossier import build_dossier, dossier_bytes, parse_dossier, statement_predicate, with_fields
from evidence.errors import ConfigError, missing_extra
from evidence.export import build_exports
from evidence.external import load_external_evals
from evidence.files import check_output_dir
from evidence.policy import evaluate, load_policy, roll_up
from evidence.records import (
    VALIDATION_REPORT_FILE,
    Dossier,
    EvidenceRecord,
    ExternalEval,
    NumericsCertificate,
    SignerInfo,
    Verdict,
)
from evidence.runspec import RunSpec
from evidence.validation_report import cite, parse_report, shipped_report_file, shipped_report_path

if TYPE_CHECKING:
    from pydantic import BaseModel

    from evidence.measure import MeasurementDef
    from evidence.measure.memory import ModelSize
    from evidence.model import LoadedModel, ModelSpec
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
) -> RunOutcome:
    """Measure, build, render, sign and write the bundle to ``out_dir``.

    ``progress`` receives one line per stage; ``detail`` the measurements' own
    ``(fraction, message)`` reports within a stage. ``tsa``: the URL of a timestamp
    authority, which makes the signatures PAdES B-T and timestamps the envelope;
    ``level``: the PAdES level (B-LT and B-LTA also embed validation data).
    ``force``: replace a previous bundle in ``out_dir`` (otherwise refused before any work).
    ``strict``: refuse, before measuring, an external evaluation of another model than the one
    measured (otherwise it is recorded as a flagged, not-comparable cross-reference).
    """
    say = progress or (lambda _msg: None)
    out_dir = check_output_dir(out_dir, replace=force)
    if sign:
        _check_level(level, tsa)

    started = datetime.now(UTC)
    policy = load_policy(spec.policy_path, run_started=started) if spec.policy_path is not None else None
    previous = load_predecessor(predecessor) if predecessor is not None else None
    external = (
        load_external_evals(spec.external_eval_paths, spec.external_declarations) if spec.external_eval_paths else []
    )
    signer = _signer_for(key) if sign else None
    report_file = shipped_report_file()
    validation = (
        (parse_report(report_file, source=str(shipped_report_path())), sha256_hex(report_file))
        if report_file is not None
        else None
    )

    # Measurement (torch, TransformerLens) is imported only now.
    try:
        from evidence.measure import Task, check_task, get, registered, run_suite
        from evidence.measure.runtime import capture_environment, configure_determinism
        from evidence.model import ModelSpec, check_device, load_model
    except ModuleNotFoundError as exc:
        raise missing_extra("measure", exc) from None

    model_spec = ModelSpec(
        organism=spec.model_organism,
        path=spec.model_path,
        device=spec.model_device,
        dtype=spec.model_dtype,
        n_gpus=spec.model_n_gpus,
    )
    check_device(model_spec.device, model_spec.n_gpus)
    markers = {kind: tuple(phrases) for kind, phrases in spec.markers.items()}
    if policy is not None:  # a threshold on a measurement that does not exist can never be judged
        for threshold in policy.thresholds:
            get(threshold.measurement, where=f"policy {spec.policy_path}: threshold {threshold.id!r}")
    tasks = [
        Task(
            measurement_id=mid,
            params=params,
            seed=spec.seed,
            subject=model_spec,
            datasets=spec.datasets,
            markers=markers,
        )
        for mid, params in spec.measurements.items()
    ]
    checked = [check_task(task) for task in tasks]  # every task is checked before the first minute of work

    # Reference organisms are tiny: one thread is as fast and is not slowed by a busy machine.
    configure_determinism(spec.seed, threads=1 if spec.model_organism else None)
    from evidence.measure import memory

    size = memory.size_before_loading(spec.model_organism, spec.model_path)
    if size is not None:  # refuse what cannot fit before loading it
        _memory_preflight(checked, size, model_spec, spec, say)
    say(f"loading model {model_spec.describe()}")
    model = load_model(model_spec)
    if size is None:
        size = memory.size_of_loaded(model.identity.n_parameters, model.bridge.cfg)
        _memory_preflight(checked, size, model_spec, spec, say)
    _require_chat_template(model.tokenizer, model_spec.describe(), spec, [get(t.measurement_id) for t in tasks])
    if strict:
        _require_same_model(external, model.identity.name)
    say("numerics certificate: the bridge against the plain model, batched against alone")
    identity = model.identity.model_copy(update={"numerics": _numerics(model, spec)})

    records = run_suite(
        tasks,
        model,
        announce=lambda i, n, task: say(f"[{i}/{n}] measuring {task.measurement_id}"),
        progress=detail,
    )
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
        environment=capture_environment({"run": spec.seed}),
        records=records,
        policy=policy,
        verdicts=verdicts,
        gate=gate,
        external_evals=external,
        cross_references=cross_reference(records, external, subject=model.identity.name, rules=rules),
        validation=cite(*validation, records) if validation is not None else None,
    )
    if previous is not None:
        old, link = previous
        dossier = with_fields(dossier, predecessor=link, changelog=diff_dossiers(old, dossier))
    return publish(
        dossier, out_dir, signer=signer, progress=say, validation_report=report_file, tsa=tsa, level=level, force=force
    )


def _memory_preflight(
    checked: Sequence[tuple[MeasurementDef, BaseModel]],
    size: ModelSize,
    model_spec: ModelSpec,
    spec: RunSpec,
    say: Progress,
) -> None:
    """Estimate each measurement's peak memory; refuse the run, before any measurement, when the largest cannot fit."""
    from evidence.measure import memory

    estimates = [
        memory.estimate(
            definition.id, params.model_dump(), size, model_spec.dtype,
            backprop=definition.backprop, model_copies=definition.model_copies,
            datasets=[spec.datasets[d.name] for d in definition.datasets if d.name in spec.datasets],
        )
        for definition, params in checked
    ]  # fmt: skip
    available = memory.available_memory(model_spec.device, model_spec.n_gpus)
    batched = [definition.id for definition, _ in checked if "batch_size" in definition.params.model_fields]
    largest = memory.check_fits(estimates, available, dtype=model_spec.dtype, device=model_spec.device,
                                batched=batched)  # fmt: skip
    if largest is not None:
        room = f"{memory.format_bytes(available[0])} of {available[1]}" if available else "available memory unknown"
        say(f"memory preflight: at most {largest.describe()} for {largest.measurement}; {room}")


def _require_chat_template(tokenizer: object, model: str, spec: RunSpec, definitions: Sequence[MeasurementDef]) -> None:
    """Refuse, before measuring, prompt sets in chat ``messages`` for a model whose tokenizer has no chat template."""
    if tokenizer is None or getattr(tokenizer, "chat_template", None):
        return
    used = {d.name for definition in definitions for d in definition.datasets}
    chat = sorted(
        f"{name} ({dataset.path})"
        for name, dataset in spec.datasets.items()
        if name in used and any(p.messages is not None for p in dataset.prompts)
    )
    if chat:
        raise ConfigError(
            f"{model} has no chat template, but the prompt sets {', '.join(chat)} are chat messages",
            hint="save a tokenizer with a chat template next to the model (tokenizer.chat_template, then "
            "tokenizer.save_pretrained(DIR)), or write those prompts as 'text'",
        )


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

    pdf = render_pdf(dossier, data, attachments=exports)

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


def _check_level(level: str | None, tsa: str | None) -> None:
    """Refuse an impossible PAdES level before any work (e.g. B-LT without a timestamp authority)."""
    from signing.pades import check_level

    check_level(level, tsa is not None)


def _require_same_model(external: Sequence[ExternalEval], subject: str) -> None:
    """``--strict``: every external evaluation names the measured model (or names none)."""
    from evidence.crossref import evaluates_subject

    others = [ev for ev in external if evaluates_subject(ev.model, subject) is False]
    if others:
        named = "; ".join(f"{ev.source_file} ({ev.task}) names {ev.model}" for ev in others)
        raise ConfigError(
            f"external evaluations of another model than {subject}: {named}",
            hint="pass the evaluations of the measured model, or drop --strict to record them as not comparable",
        )


def _numerics(model: LoadedModel, spec: RunSpec) -> NumericsCertificate:
    """The run's numerics certificate (:func:`evidence.measure.numerics.run_certificate`)."""
    from evidence.measure.numerics import run_certificate

    return run_certificate(model, spec.datasets, spec.seed)
