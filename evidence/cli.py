"""The `interp-dossier` command line.

A thin layer: parse arguments, call the library, print. Every error the
library raises becomes one line on stderr and an exit code here, and nowhere
else; no traceback reaches the user.

Exit codes: 0 success; 1 verification failed, a measurement failed or the
deployment gate failed; 2 usage error or unreadable input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence.errors import UserFacingError

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from evidence.measure import MeasurementDef

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _progress() -> Callable[[str], None]:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def say(message: str) -> None:
        console.print(f"[dim]\u2026[/dim] {message}")

    return say


def _detail(min_interval: float = 2.0) -> Callable[[float, str], None]:
    """Progress within a long measurement: a line when the activity changes, at most every few seconds."""
    import time

    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    last_message = [""]
    last_at = [0.0]

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if message == last_message[0] or now - last_at[0] < min_interval:
            return
        last_message[0], last_at[0] = message, now
        console.print(f"[dim]    {fraction:4.0%}  {message}[/dim]")

    return report


# --- commands -----------------------------------------------------------------------------


def _data_overrides(items: Sequence[str] | None) -> dict[str, Path]:
    """``--data NAME=FILE`` options as a mapping; a usage error for one that is not of that form."""
    overrides: dict[str, Path] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise _usage(f"--data expects NAME=FILE, got {item!r}")
        overrides[name] = Path(value)
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    from evidence.check import Problem
    from evidence.run import run
    from evidence.runspec import default_runspec_path, read_runspec

    overrides = _data_overrides(args.data)
    spec_path = Path(args.runspec) if args.runspec else default_runspec_path(args.model)
    reading = read_runspec(spec_path, data_overrides=overrides)
    if reading.spec is None:  # not a run spec at all: nothing else can be checked
        raise reading.problems[0].error
    spec = reading.spec
    if args.model:
        spec = spec.with_model(args.model)
    elif spec.model_path is None and spec.model_organism is None:
        raise _usage(f"run spec {spec_path} names no model: pass --model DIR (or an organism), or add [model] to it")
    spec = spec.with_placement(device=args.device, dtype=args.dtype, n_gpus=args.n_gpus)
    if args.external_evals:
        spec = spec.with_external_evals([Path(p) for p in args.external_evals])
    _check_measuring_args(args, tsa_remedy="drop --no-sign, or pass --tsa to `sign` when signing the draft")
    outcome = run(
        spec,
        Path(args.out),
        key=Path(args.key) if args.key else None,
        sign=not args.no_sign,
        tsa=args.tsa,
        level=args.level,
        force=args.force,
        strict=args.strict,
        use_cache=not args.no_cache,
        profile=args.profile,
        limit=args.limit,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        predecessor=Path(args.predecessor) if args.predecessor else None,
        progress=_progress(),
        detail=_detail(),
        spec_problems=[Problem.from_spec(p) for p in reading.problems],
        executor=args.executor,
        address=args.address,
        workers=args.workers,
    )

    print(f"bundle:  {outcome.out_dir}")
    if outcome.kept_previous is not None:
        print(f"the bundle it replaced held other files too; kept as {outcome.kept_previous}")
    print(f"pdf:     {outcome.pdf_path}")
    print(f"dossier.json sha256: {outcome.dossier_sha256}")
    limited = outcome.dossier.prompt_limit
    print(f"profile: {outcome.dossier.profile}"
          + (f", at most {limited} prompts per dataset (--limit)" if limited is not None else ""))
    flagged = [x for x in outcome.dossier.cross_references if x.flagged]
    for x in flagged:
        print(f"cross-reference {'of another model' if x.other_model else 'disagreement'}: {x.explanation}")
    signer = outcome.dossier.signer
    if signer is None:
        print("unsigned (--no-sign): this bundle cannot be verified")
    elif signer.development_key:
        print(f"signed with a {signer.notice}")
    failed = outcome.failed_records
    for record in failed:
        error = record.error
        print(f"measurement failed: {record.record_id}: {error.type if error else 'error'}: "
              f"{error.message if error else ''}")
    gate = outcome.dossier.gate
    if gate is None:
        print("gate: no policy applied")
    else:
        print(f"gate: {gate.decision.upper()}")
        if gate.decision != "pass":
            for reason in gate.reasons:
                print(f"  - {reason}")
    return EXIT_FAILED if failed or not outcome.gate_passed else EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from evidence.check import Problem
    from evidence.runspec import default_runspec_path, read_runspec
    from evidence.sweep import resolve_checkpoints, sweep

    checkpoints = resolve_checkpoints(args.checkpoints, order=args.order)
    spec_path = Path(args.runspec) if args.runspec else default_runspec_path(checkpoints[0][1])
    reading = read_runspec(spec_path, data_overrides=_data_overrides(args.data))
    if reading.spec is None:
        raise reading.problems[0].error
    spec = reading.spec.with_placement(device=args.device, dtype=args.dtype, n_gpus=args.n_gpus)
    _check_measuring_args(args, tsa_remedy="drop --no-sign")
    if args.parallel is not None and args.executor != "ray":
        raise _usage("--parallel measures checkpoints at once on a Ray cluster: add --executor ray")
    if args.parallel is not None and args.parallel < 1:
        raise _usage(f"--parallel must be a positive number of checkpoints, not {args.parallel}")
    title = args.title or _sweep_title([model for _, model in checkpoints])
    outcome = sweep(
        spec,
        checkpoints,
        Path(args.out),
        title=title,
        order=args.order,
        key=Path(args.key) if args.key else None,
        sign=not args.no_sign,
        tsa=args.tsa,
        level=args.level,
        force=args.force,
        strict=args.strict,
        use_cache=not args.no_cache,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        profile=args.profile,
        limit=args.limit,
        spec_problems=[Problem.from_spec(p) for p in reading.problems],
        executor=args.executor,
        address=args.address,
        workers=args.workers,
        progress=_progress(),
        detail=_detail(),
        parallel=args.parallel,
    )
    print(f"sweep:   {outcome.out_dir}")
    if outcome.kept_previous is not None:
        print(f"the sweep it replaced held other files too; kept as {outcome.kept_previous}")
    for label, run in outcome.runs:
        gate = run.dossier.gate
        failed = len(run.failed_records)
        print(f"  {label}: gate {gate.decision.upper() if gate else 'none (no policy)'}"
              + (f", {failed} measurement(s) failed" if failed else "")
              + f"; dossier.json sha256 {run.dossier_sha256}")  # fmt: skip
    print(f"trend:   {outcome.out_dir / 'trend'} (dossier.json sha256 {outcome.trend_sha256})")
    trend = outcome.trend
    for series in trend.verdicts:
        change = series.first_change
        if change is not None:
            print(f"verdict change: {series.verdict_id}: {change.before} on {change.previous}, "
                  f"{change.after} from {change.checkpoint}")  # fmt: skip
    if trend.gate is not None and trend.gate.first_change is not None:
        change = trend.gate.first_change
        print(f"gate change: {change.before} on {change.previous}, {change.after} from {change.checkpoint}")
    elif trend.policy is not None:
        print("no verdict changes across the checkpoints" if not any(s.first_change for s in trend.verdicts)
              else "the gate is the same on every checkpoint")  # fmt: skip
    if not outcome.signed:
        print("unsigned (--no-sign): this sweep cannot be verified")
    elif trend.signer is not None and trend.signer.development_key:
        print(f"signed with a {trend.signer.notice}")
    return EXIT_OK if outcome.gates_passed and not outcome.failed_records else EXIT_FAILED


def _sweep_title(models: Sequence[str]) -> str:
    """What the trend's cover says was swept: the checkpoints' common directory, else their names."""
    parents = {str(Path(m).expanduser().absolute().parent) for m in models if Path(m).expanduser().exists()}
    if len(parents) == 1 and len(models) > 0 and all(Path(m).expanduser().exists() for m in models):
        return f"checkpoints in {parents.pop()}"
    return "checkpoints " + ", ".join(Path(m).name or m for m in models)


def _cmd_check(args: argparse.Namespace) -> int:
    from evidence.check import check_spec
    from evidence.runspec import default_runspec_path

    report = check_spec(
        Path(args.runspec) if args.runspec else default_runspec_path(args.model),
        data_overrides=_data_overrides(args.data),
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        n_gpus=args.n_gpus,
        external_evals=[Path(p) for p in args.external_evals or []],
        strict=args.strict,
    )
    for line in report.lines():
        print(line)
    return EXIT_OK if report.ok else EXIT_USAGE


def _cmd_init(args: argparse.Namespace) -> int:
    from evidence.starter import write_starter

    written = write_starter(Path(args.out), Path(args.model) if args.model else None)
    for path in written.files:
        print(f"wrote {path}")
    for path in written.to_provide:
        print(f"provide {path} (a prompt set; see the comments in {written.spec.name})")
    print(f"then: interp-dossier check {written.spec}")
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    from evidence.run import sign_draft

    outcome = sign_draft(Path(args.draft), Path(args.out), key=Path(args.key) if args.key else None,
                         tsa=args.tsa, level=args.level, progress=_progress(), force=args.force)  # fmt: skip
    print(f"bundle:  {outcome.out_dir}")
    if outcome.kept_previous is not None:
        print(f"the bundle it replaced held other files too; kept as {outcome.kept_previous}")
    print(f"dossier.json sha256: {outcome.dossier_sha256}")
    signer = outcome.dossier.signer
    if signer is not None and signer.development_key:
        print(f"signed with a {signer.notice}")
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    from evidence.dossier import parse_dossier
    from evidence.files import write_file_atomically
    from evidence.render import render_pdf

    source = Path(args.dossier)
    try:
        data = source.read_bytes()
    except OSError:
        raise _usage(f"{source} cannot be read") from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise _usage(f"the directory of --out {out} does not exist")
    from evidence.trend import is_trend_document

    if is_trend_document(data):  # a sweep's trend dossier renders with its own template
        from evidence.render import render_trend_pdf
        from evidence.trend import parse_trend

        trend = parse_trend(data, source=str(source))
        write_file_atomically(out, render_trend_pdf(trend, data, progress=_progress()))
        print(f"pdf: {out} (unsigned; a trend is signed by `interp-dossier sweep`)")
        return EXIT_OK
    dossier = parse_dossier(data)
    attachments = {}
    if dossier.validation is not None:  # the cited report, when it lies beside dossier.json as in a bundle
        report = source.parent / dossier.validation.file
        if report.is_file():
            attachments[report.name] = report.read_bytes()
    pdf = render_pdf(dossier, data, attachments=attachments, progress=_progress())
    write_file_atomically(out, pdf)
    print(f"pdf: {out} (unsigned; use `interp-dossier sign` on a draft bundle to seal)")
    return EXIT_OK


def _cmd_view(args: argparse.Namespace) -> int:
    from evidence.view import write_view

    target = Path(args.bundle)
    if args.out:
        out = Path(args.out)
    else:
        # Beside the bundle, never inside it (a bundle holds only its own files): a dossier.json's view
        # goes beside the directory that holds it.
        base = target.absolute() if target.is_dir() else target.absolute().parent
        out = base.with_name(base.name + ".view")
    index = write_view(target, out, force=args.force)
    print(f"view: {index} (open it in a browser; it needs no server and no network)")
    if args.open:
        import webbrowser

        if not webbrowser.open(index.as_uri()):
            print("note: no web browser could be started here; open the file above in one")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from signing.trust import SignerPolicy
    from signing.verify import verify_bundle, verify_pdf

    policy = SignerPolicy.pinned(args.signer_fingerprint or (), args.signer_subject or ())
    target, anchors = Path(args.bundle), [Path(t) for t in args.trust or []]
    at = _parse_time(args.at) if args.at else None
    revocation_data = [Path(p) for p in args.revocation_data or []]
    from signing.sweep import is_sweep

    if target.is_dir() and is_sweep(target):
        return _verify_sweep(args, target, anchors, policy, at, revocation_data)
    verify = verify_pdf if target.is_file() else verify_bundle
    pdf_only = verify is verify_pdf
    report = verify(target, anchors, signer_policy=policy, at=at, revocation=args.revocation,
                    revocation_data=revocation_data)  # fmt: skip
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for step in report.steps:
            mark = step.status.upper()
            print(f"[{mark}] ({step.number}) {step.title}: {step.detail}")
        if pdf_only:
            print("note: the PDF verified on its own; steps 1-3 (the bundle's DSSE envelope) do not apply")
        for warning in report.warnings:
            print(f"WARNING: {warning}")
        if report.development_key:
            print("note: signed with a development key \u2014 not for filing")
        if report.bottom_line:
            print(f"OK: {args.bundle} verified ({len(report.steps)} steps passed)")
        else:
            first = report.first_failure()
            where = f", first failure at step ({first.number}) {first.title}" if first is not None else ""
            print(f"FAILED: {args.bundle} did not verify{where}")
    return EXIT_OK if report.bottom_line else EXIT_FAILED


def _verify_sweep(
    args: argparse.Namespace, target: Path, anchors: list[Path], policy: Any, at: datetime | None,
    revocation_data: list[Path],
) -> int:
    """``verify SWEEP``: every checkpoint's bundle, then the trend; one bottom line."""
    from signing.sweep import verify_sweep

    report = verify_sweep(target, anchors, signer_policy=policy, at=at, revocation=args.revocation,
                          revocation_data=revocation_data)  # fmt: skip
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
        return EXIT_OK if report.bottom_line else EXIT_FAILED
    for name, bundle in report.bundles:
        print(f"== {name} ==")
        if bundle is None:
            print("[FAIL] the bundle could not be verified (see below)")
            continue
        for step in bundle.steps:
            print(f"[{step.status.upper()}] ({step.number}) {step.title}: {step.detail}")
        for warning in bundle.warnings:
            print(f"WARNING: {warning}")
    for problem in report.problems:
        print(f"SWEEP PROBLEM: {problem}")
    if any(b is not None and b.development_key for _, b in report.bundles):
        print("note: signed with a development key \u2014 not for filing")
    checkpoints = len(report.bundles) - 1
    if report.bottom_line:
        print(f"OK: {args.bundle} verified ({checkpoints} checkpoint bundles and the trend, every step passed)")
    else:
        failed = [name for name, b in report.bundles if b is None or not b.bottom_line]
        print(f"FAILED: {args.bundle} did not verify"
              + (f" (failed: {', '.join(failed)})" if failed else " (see the sweep problems above)"))  # fmt: skip
    return EXIT_OK if report.bottom_line else EXIT_FAILED


def _parse_time(text: str) -> datetime:
    """An ISO 8601 date or time for ``--at`` (UTC unless it names an offset)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _usage(
            f"--at expects an ISO 8601 date or time such as 2031-05-01 or 2031-05-01T12:00:00Z, got {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from evidence.dossier import parse_dossier
    from evidence.runspec import default_runspec_path, load_runspec

    try:
        from evidence.reproduce import reproduce
    except ModuleNotFoundError as exc:  # pragma: no cover - the light install has no torch
        from evidence.errors import missing_extra

        raise missing_extra("measure", exc) from None
    target = Path(args.bundle)
    source = target / "dossier.json" if target.is_dir() else target
    try:
        data = source.read_bytes()
    except OSError:
        raise _usage(f"{source} cannot be read; pass a bundle directory or its dossier.json") from None
    dossier = parse_dossier(data)
    overrides = _data_overrides(args.data)
    spec_path = Path(args.runspec) if args.runspec else default_runspec_path(args.model)
    spec = load_runspec(spec_path, data_overrides=overrides)
    if args.model:
        spec = spec.with_model(args.model)
    elif dossier.model.source == "organism":
        spec = spec.with_model(dossier.model.name)
    else:
        raise _usage(f"the dossier measured {dossier.model.name} from a directory; pass it with --model DIR")
    say = _progress()
    # By default the measurements are re-run where and as the dossier says they ran.
    recorded = dossier.model.processing
    n_gpus = recorded.get("n_gpus")
    spec = spec.with_placement(
        device=args.device or _recorded_text(recorded.get("device"), "cpu"),
        dtype=args.dtype or _recorded_text(recorded.get("dtype"), "float32"),
        n_gpus=args.n_gpus if args.n_gpus is not None else (n_gpus if isinstance(n_gpus, int) else 1),
    )
    results = reproduce(
        dossier, spec, measurements=args.measurement or None,
        announce=lambda i, n, mid: say(f"[{i}/{n}] re-measuring {mid}"),
    )  # fmt: skip
    counts = {"identical": 0, "within tolerance": 0, "differs": 0}
    for result in results:
        if result.problem is not None:
            print(f"[NOT REPRODUCED] {result.record_id}: {result.problem}")
        for m in result.metrics:
            counts[m.agreement] += 1
            if m.agreement != "identical":
                again = "absent" if m.reproduced is None else f"{m.reproduced:.6g}"
                print(f"[{m.agreement.upper()}] {result.record_id} {m.name}: recorded {m.recorded:.6g}, "
                      f"reproduced {again}")  # fmt: skip
        if result.reproduced:
            print(f"[REPRODUCED] {result.record_id}: {len(result.metrics)} metrics")
    failed = [r for r in results if not r.reproduced]
    print(f"{len(results) - len(failed)} of {len(results)} records reproduced; metrics: {counts['identical']} "
          f"identical, {counts['within tolerance']} within tolerance, {counts['differs']} differ")  # fmt: skip
    return EXIT_FAILED if failed else EXIT_OK


def _recorded_text(value: object, default: str) -> str:
    return value if isinstance(value, str) else default


def _add_executor(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--executor", choices=["in-process", "ray"], default="in-process",
                   help=f"where {what} run: in this process (the default), or as tasks on a Ray cluster (needs "
                   "the [ray] extra: pip install 'interp-dossier[ray]')")
    p.add_argument("--address", metavar="ADDR", help="with --executor ray: the cluster to use (e.g. "
                   "127.0.0.1:6379 of `ray start --head`); default: a local cluster started for this command on this "
                   "machine and stopped after it")
    p.add_argument("--workers", type=int, metavar="N", help="with --executor ray and no --address: the local "
                   "cluster's worker processes (default: one per CPU)")


def _check_measuring_args(args: argparse.Namespace, *, tsa_remedy: str) -> None:
    """What `run` and `sweep` refuse of their options before any work: budget, cache, signing, executor."""
    if args.limit is not None and args.limit < 1:
        raise _usage(f"--limit must be a positive number of prompts, not {args.limit}")
    if args.cache_dir and args.no_cache:
        raise _usage("--no-cache reuses and stores nothing: drop --cache-dir, or drop --no-cache")
    if args.tsa and args.no_sign:
        raise _usage(f"--tsa timestamps the signatures: {tsa_remedy}")
    _check_executor_args(args)


def _check_executor_args(args: argparse.Namespace) -> None:
    if args.executor != "ray" and (args.address is not None or args.workers is not None):
        raise _usage("--address and --workers are for a Ray cluster: add --executor ray")
    if args.workers is not None and args.workers < 1:
        raise _usage(f"--workers must be a positive number of worker processes, not {args.workers}")
    if args.workers is not None and args.address is not None:
        raise _usage("--workers sizes a local cluster; a cluster at --address has its own: drop --workers")


def _add_placement(p: argparse.ArgumentParser, *, default: str) -> None:
    from evidence.model import DEVICES, DTYPES

    p.add_argument("--device", choices=DEVICES, help=f"where to run the model (default: {default} device, else cpu)")
    p.add_argument("--dtype", choices=DTYPES, help=f"the model's floating-point format (default: {default} dtype, "
                   "else float32; float16 only on cuda or mps)")
    p.add_argument("--n-gpus", type=int, metavar="N", help="spread a Hugging Face model over N CUDA devices "
                   f"(accelerate's balanced device map; with --device cuda; default: {default} n_gpus, else 1)")


def _cmd_keygen(args: argparse.Namespace) -> int:
    from signing.keys import keygen, make_csr, pack_certificate, passphrase_from_env_or_prompt

    if args.csr and args.cert:
        raise _usage("--csr makes a key and a request; --cert packs the CA's certificate later: one at a time")
    if (args.subject or args.algorithm) and not args.csr:
        raise _usage("--subject and --algorithm go with --csr")
    if args.csr:
        if not args.subject:
            raise _usage("--csr needs --subject, e.g. --subject 'CN=Example Lab dossier signer,O=Example Lab,C=DE'")
        key_path, csr_path = make_csr(
            Path(args.out), args.subject, args.algorithm or "rsa-3072", passphrase_from_env_or_prompt(confirm=True)
        )
        print(f"key:     {key_path} (PKCS#8, mode 0600; keep it private, it never leaves this directory)")
        print(f"request: {csr_path} (send it to your organisation's CA for a document-signing certificate)")
        print(f"then:    interp-dossier keygen --out {args.out} --cert CERT.pem  (its certificate, then the chain)")
        return EXIT_OK
    if args.cert:
        p12 = pack_certificate(Path(args.out), Path(args.cert), passphrase_from_env_or_prompt(confirm=False))
        print(f"key:     {p12} (PKCS#12 with the certificate chain, mode 0600; sign with --key {p12})")
        print("auditors obtain your CA's root certificate from the CA, not from the bundle, and pass it with --trust")
        return EXIT_OK
    key_path, cert_path = keygen(Path(args.out), passphrase_from_env_or_prompt(confirm=True))
    print(f"key:         {key_path} (PKCS#12, mode 0600; keep it private)")
    print(f"certificate: {cert_path} (give this to auditors as the trust anchor)")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from evidence.resources import resource_dir
    from evidence.schema import check_schemas, write_schemas

    directory = Path(args.dir) if args.dir else Path(str(resource_dir("schemas")))
    if args.check:
        drift = check_schemas(directory)
        if drift:
            print(f"schema drift in {directory}: {', '.join(drift)} (run `interp-dossier schema` and commit)")
            return EXIT_FAILED
        print(f"OK: schemas in {directory} match the models")
        return EXIT_OK
    for path in write_schemas(directory):
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_organisms_train(args: argparse.Namespace) -> int:
    from evidence.organisms import ORGANISM_NAMES, train

    names = args.names or list(ORGANISM_NAMES)
    unknown = [n for n in names if n not in ORGANISM_NAMES]
    if unknown:
        raise _usage(f"unknown organism(s) {', '.join(unknown)}; known: {', '.join(ORGANISM_NAMES)}")
    if args.seed is not None and args.out is None:
        raise _usage("--seed trains a replicate, which must go to --out DIR (the bundled weights stay as committed)")
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    say = _progress()
    for name in names:
        say(f"training {name}" + (f" from seed {args.seed}" if args.seed is not None else ""))
        result = train(name, weights_dir=out, seed=args.seed)
        print(f"{name}  sha256 {result.weights_sha256}  final loss {result.final_loss:.4f}")
    return EXIT_OK


def _cmd_population_list(args: argparse.Namespace) -> int:
    from evidence.errors import ModelLoadError
    from evidence.population import members, read_manifest, verify_member

    directory = Path(args.dir) if args.dir else None
    manifest = read_manifest(directory)
    rows = []
    for member in members(args.split):
        if member.name not in manifest:
            status = "not trained"
        else:
            try:
                verify_member(member.name, directory)
                status = "trained"
            except ModelLoadError:
                status = "stale"  # files or table row differ from the manifest: retrain
        rows.append((member, status))
    if args.json:
        out = [
            {**m.as_dict(), "status": status, "checks": manifest.get(m.name, {}).get("checks")} for m, status in rows
        ]
        print(json.dumps(out, indent=2, sort_keys=True))
        return EXIT_OK
    header = ("name", "behaviour", "role", "control_type", "arch", "lang", "seed", "split", "steps", "status")
    table = [header] + [
        (m.name, m.behaviour, m.role, m.control_type or "-", m.architecture, m.language, str(m.seed), m.split,
         str(m.steps), status)
        for m, status in rows
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _cmd_population_train(args: argparse.Namespace) -> int:
    import time

    from evidence.population import get_member, members
    from evidence.population.build import MemberBehaviourError, build_member

    if not args.member and not args.split:
        raise _usage("name the members to train: --split dev|heldout or --member NAME...")
    chosen = [get_member(n) for n in args.member] if args.member else list(members(args.split))
    if args.member and args.split:
        chosen = [m for m in chosen if m.split == args.split]
    directory = Path(args.out) if args.out else None
    if args.missing and chosen:
        from evidence.errors import ModelLoadError
        from evidence.population import verify_member

        def trained(name: str) -> bool:
            try:
                verify_member(name, directory)
            except ModelLoadError:
                return False
            return True

        chosen = [m for m in chosen if not trained(m.name)]
        if not chosen:
            print("every member named is trained and matches the manifest")
            return EXIT_OK
    if not chosen:
        raise _usage("no member to train")
    say = _progress()
    failed: list[str] = []
    started = time.perf_counter()
    for i, member in enumerate(chosen, 1):
        say(f"[{i}/{len(chosen)}] training {member.name} ({member.architecture}, {member.language}, "
            f"seed {member.seed}, {member.steps} steps)")  # fmt: skip
        try:
            result = build_member(member.name, directory=directory, progress=_detail(min_interval=10.0))
        except MemberBehaviourError as exc:
            failed.append(member.name)
            print(f"{member.name}  NOT WRITTEN: {exc.message}")
            continue
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in sorted(result.checks.numbers.items()))
        print(f"{member.name}  {result.seconds:.0f} s ({result.cpu_seconds:.0f} s CPU)  "
              f"{result.size_bytes / 1024:.0f} KiB  "
              f"final loss {result.final_loss:.4f}  checks passed: {numbers}")  # fmt: skip
    total = time.perf_counter() - started
    print(f"{len(chosen) - len(failed)} of {len(chosen)} members written in {total / 60:.1f} min")
    if failed:
        print(f"not behaving as planted (not written): {', '.join(failed)}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from evidence.files import write_file_atomically
    from evidence.runspec import default_runspec_path, load_runspec

    try:
        from evidence.measure.runtime import configure_determinism
        from evidence.validation import bundled_population, population_split, validate
        from evidence.validation_report import report_bytes
    except ModuleNotFoundError as exc:  # pragma: no cover - the light install has no torch
        from evidence.errors import missing_extra

        raise missing_extra("measure", exc) from None
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise _usage(f"--out {out} is a directory; give the report's file name")
    _check_executor_args(args)
    if args.merge:
        if args.executor != "in-process":
            raise _usage("--merge measures nothing: drop --executor")
        return _merge_validation(args, out)
    if args.population is None:
        args.population = "bundled"
    if args.population == "bundled":
        if args.member:
            raise _usage("--member names members of the calibration population: use --population dev|heldout|all")
        population = bundled_population()
    else:
        population = population_split(args.population, names=args.member)
    # The shipped configuration: each measurement's parameters as the default run spec sets them.
    params = load_runspec(default_runspec_path()).measurements
    say = _progress()
    # Population members are tiny: one thread is as fast and is not slowed by a busy machine
    # (nor by a second `validate` measuring other instruments beside this one).
    configure_determinism(args.seed, threads=1)
    with contextlib.ExitStack() as stack:
        executor = None
        if args.executor == "ray":
            from evidence.measure.cluster import measure_members, ray_session

            say("ray: connecting to the cluster" if args.address else "ray: starting a local cluster")
            session = stack.enter_context(ray_session(args.address, workers=args.workers))

            def executor(work: Any, seed: int, progress: Callable[[str], None]) -> Any:
                return measure_members(session, work, seed, threads=1, say=progress)

        report = validate(
            population,
            measurements=args.measurement or None,
            params={m: p for m, p in params.items() if p},
            seed=args.seed,
            progress=say,
            executor=executor,
        )
    write_file_atomically(out, report_bytes(report))
    for detector in report.detectors:
        print(detector.summary())
    print(f"wrote {out} (population {report.population}, {len(report.organisms)} organisms)")
    return EXIT_OK


def _merge_validation(args: argparse.Namespace, out: Path) -> int:
    """``validate --merge PART... --out FILE``: one report from parts measured separately."""
    from evidence.files import write_file_atomically
    from evidence.validation_report import merge_reports, read_report, report_bytes

    chosen = [f"--{name}" for name in ("population", "measurement", "member") if getattr(args, name)]
    if chosen:
        raise _usage(f"--merge takes the parts as they were measured; drop {', '.join(chosen)}")
    if len(args.merge) < 2:
        raise _usage("--merge needs at least two reports")
    if any(Path(p).resolve() == out.resolve() for p in args.merge):
        raise _usage(f"--out {out} is one of the parts; write the merged report to a new file")
    merged = merge_reports([read_report(Path(p)) for p in args.merge])
    write_file_atomically(out, report_bytes(merged))
    for detector in merged.detectors:
        print(detector.summary())
    print(f"wrote {out} (population {merged.population}, {len(merged.detectors)} detectors from "
          f"{len(args.merge)} reports)")  # fmt: skip
    return EXIT_OK


def _cmd_measurements(args: argparse.Namespace) -> int:
    try:
        from evidence.measure import get, registered
    except ModuleNotFoundError as exc:
        from evidence.errors import missing_extra

        raise missing_extra("measure", exc) from None

    definitions = [get(args.id)] if args.id else list(registered().values())
    described = {d.id: _describe_measurement(d) for d in definitions}
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
    else:
        print("\n\n".join("\n".join(_measurement_lines(info)) for info in described.values()))
    return EXIT_OK


def _describe_measurement(definition: MeasurementDef) -> dict[str, Any]:
    """Everything the registry knows about one measurement, as JSON-ready data."""
    from evidence.methods_docs import doc_path
    from evidence.policy import describe_all

    return {
        "id": definition.id,
        "version": definition.version,
        "experimental": definition.experimental,
        "headline": definition.headline,
        "metrics": list(definition.metrics),
        "profiles": {profile: dict(overrides) for profile, overrides in definition.profiles.items()},
        "parameters": [_describe_parameter(name, f) for name, f in definition.params.model_fields.items()],
        "datasets": [
            {"name": d.name, "labels": sorted(d.labels), "required": d.required, "description": d.description}
            for d in definition.datasets
        ],
        "markers": list(definition.markers),
        "clauses": [{"id": c.id, "strength": c.strength, "rationale": c.rationale} for c in definition.clauses],
        "calibration": [
            {
                "organism": e.organism,
                "planted": e.planted,
                "metric": e.metric,
                "criteria": describe_all(e.criteria, e.combine, e.metric),
                **({"params": dict(e.params)} if e.params else {}),
            }
            for e in definition.calibration
        ],
        "detectors": [
            {
                "metric": d.metric,
                "behaviour": d.behaviour,
                "criteria": describe_all(d.criteria, d.combine, d.metric),
                **({"controls": list(d.controls)} if d.controls else {}),
            }
            for d in definition.detectors
        ],
        "crossref": [
            {
                "metric": r.metric,
                "construct": r.construct,
                "comparison": r.comparison,
                "transform": r.transform,
                "finding": r.finding,
                "relation": r.relation,
            }
            for r in definition.crossref
        ],
        "doc_page": doc_path(definition.id),
    }


_CONSTRAINTS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "min length"),
                ("max_length", "max length"), ("multiple_of", "multiple of"))


def _describe_parameter(name: str, info: FieldInfo) -> dict[str, Any]:
    from pydantic_core import PydanticUndefined, to_jsonable_python

    required = info.is_required()
    default = None if required else info.get_default(call_default_factory=True)
    constraints = [
        f"{words} {value}"
        for item in info.metadata
        for attr, words in _CONSTRAINTS
        if (value := getattr(item, attr, None)) is not None and value is not PydanticUndefined
    ]
    return {
        "name": name,
        "type": _type_name(info.annotation),
        "required": required,
        "default": to_jsonable_python(default),
        "constraints": constraints,
        "description": info.description or "",
    }


def _type_name(annotation: Any) -> str:
    """A parameter's type as a person reads it: ``int``, ``list[str] | None``, ``"auto" | "on"``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    return str(getattr(annotation, "__name__", annotation))


def _measurement_lines(info: dict[str, Any]) -> list[str]:
    """One measurement as a block of text (from the same data ``--json`` prints)."""
    head = f"{info['id']} {info['version']}" + ("  [experimental]" if info["experimental"] else "")
    lines = [head, f"  documentation: {info['doc_page']}"]
    if info["headline"] is not None:
        lines.append(f"  headline metric: {info['headline']}")
    if info["metrics"]:
        lines.append(f"  metrics: {', '.join(sorted(info['metrics']))}")

    def part(title: str, items: list[str]) -> None:
        if not items:
            lines.append(f"  {title}: none")
            return
        lines.append(f"  {title}:")
        lines.extend(f"    {item}" for item in items)

    params = []
    for p in info["parameters"]:
        text = f"{p['name']}: {p['type']}" + (" (required)" if p["required"] else f" = {json.dumps(p['default'])}")
        if p["constraints"]:
            text += f"  [{', '.join(p['constraints'])}]"
        if p["description"]:
            text += f" \u2014 {p['description']}"
        params.append(text)
    part("parameters", params)
    if info["profiles"]:  # parameter overrides of run --profile
        lines.append("  profiles:")
        lines.extend(f"    {profile}: " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in overrides.items())
                     for profile, overrides in info["profiles"].items())  # fmt: skip
    part("datasets", [
        f"{d['name']} ({'required' if d['required'] else 'optional'}); labels: {', '.join(d['labels'])}"
        + (f" \u2014 {d['description']}" if d["description"] else "")
        for d in info["datasets"]
    ])
    part("markers", info["markers"])
    part("clauses", [f"{c['id']} ({c['strength']})" for c in info["clauses"]])
    part("detectors", [
        f"{d['behaviour']}: {d['criteria']}" + (f" (controls: {', '.join(d['controls'])})" if "controls" in d else "")
        for d in info["detectors"]
    ])  # fmt: skip
    part("calibration", [
        f"{e['organism']} ({'planted' if e['planted'] else 'control'}): {e['criteria']}"
        + (f" (run with {e['params']})" if e.get("params") else "")
        for e in info["calibration"]
    ])
    part("cross-references", [
        f"{r['metric']} vs external {r['construct']} ({r['comparison']}"
        + (", as 1 - value)" if r["transform"] == "complement" else ")")
        for r in info["crossref"]
    ])
    return lines


# --- parser -------------------------------------------------------------------------------


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; exposed for documentation and tests."""
    from evidence import __version__

    parser = _Parser(prog="interp-dossier", description="Signed, verifiable interpretability evidence.")
    parser.add_argument("--version", action="version", version=f"interp-dossier {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="measure, gate, build, render and sign a dossier bundle")
    p.add_argument("runspec", nargs="?", help="run spec (TOML); default: the bundled reference organisms")
    p.add_argument("--model", help="a local Hugging Face directory, an organism name, or a model id (org/name) in "
                   "the local Hugging Face cache (overrides the spec)")
    _add_placement(p, default="the spec's [model]")
    p.add_argument("--data", action="append", metavar="NAME=FILE", help="override a dataset of the spec")
    p.add_argument("--out", default="out", help="bundle directory to write (default: out)")
    p.add_argument("--key", help="signing key: a PKCS#12 file, or a key on a PKCS#11 token as "
                   "'pkcs11:token=LABEL;object=KEY' (PIN from $INTERP_DOSSIER_PKCS11_PIN); default: a development "
                   "key, not for filing")
    p.add_argument("--tsa", metavar="URL", help="timestamp authority (RFC 3161): PAdES B-T and a timestamp of the "
                   "DSSE signature (dossier.dsse.tst, verification step 8)")
    p.add_argument("--level", choices=["B-B", "B-T", "B-LT", "B-LTA"],
                   help="PAdES level: B-B (no timestamp), B-T (timestamped), B-LT (and the certificate chains, "
                   "CRLs and OCSP responses embedded for verification years later), B-LTA (and a document "
                   "timestamp over them); default B-T with --tsa, else B-B; all but B-B need --tsa")
    p.add_argument("--no-sign", action="store_true", help="write an unsigned draft bundle")
    p.add_argument("--force", action="store_true", help="replace the bundle already in --out (it is moved aside, "
                   "and kept as OUT.previous-TIME if it holds files besides the bundle's own)")
    p.add_argument("--external-evals", nargs="+", metavar="FILE",
                   help="behavioural evaluation results to cross-reference (Inspect logs, lm-eval results)")
    p.add_argument("--predecessor", metavar="BUNDLE", help="the dossier this one supersedes (adds a changelog)")
    p.add_argument("--strict", action="store_true", help="refuse external evaluations that name another model "
                   "than the one measured (by default they are recorded, flagged, and compared with nothing)")
    p.add_argument("--profile", choices=["quick", "standard", "thorough"], default="standard",
                   help="measurement budget: quick (fewer bootstrap resamples, attack steps, random directions), "
                   "standard (the defaults), thorough (more); the spec's own parameters win; a policy set for "
                   "another profile judges INCONCLUSIVE (default: standard)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N prompts of each dataset: a seeded subset "
                   "that keeps every label and every pair; recorded, and judged INCONCLUSIVE by the policy")
    p.add_argument("--no-cache", action="store_true", help="measure everything again: reuse no finished result "
                   "from the result cache and store none")
    p.add_argument("--cache-dir", metavar="DIR", help="the result cache (default: $INTERP_DOSSIER_CACHE_DIR, else "
                   "$XDG_CACHE_HOME/interp-dossier/results, else ~/.cache/interp-dossier/results)")
    _add_executor(p, "the measurements")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="measure several checkpoints: one signed dossier each, and a signed trend "
                       "dossier over them")
    p.add_argument("runspec", nargs="?", help="run spec (TOML) run on every checkpoint; its [model] is replaced by "
                   "each checkpoint (default: as `run --model` would choose for the first checkpoint)")
    p.add_argument("--checkpoints", nargs="+", required=True, metavar="DIR",
                   help="the checkpoints: model directories (or organism names), or a quoted glob such as "
                   "'runs/step-*'; each is named after its directory")
    p.add_argument("--order", choices=["natural", "given"], default="natural",
                   help="the checkpoints' order in the trend: by name with numbers compared as numbers, so "
                   "step-200 comes before step-1000 (natural, the default), or as given")
    p.add_argument("--title", help="what was swept, for the trend's cover (default: the checkpoints' directory)")
    _add_placement(p, default="the spec's [model]")
    p.add_argument("--data", action="append", metavar="NAME=FILE", help="override a dataset of the spec")
    p.add_argument("--out", default="sweep", help="sweep directory to write: checkpoints/<name>/ and trend/ "
                   "(default: sweep)")
    p.add_argument("--key", help="signing key for every bundle: a PKCS#12 file, or a key on a PKCS#11 token as "
                   "'pkcs11:token=LABEL;object=KEY'; default: a development key, not for filing")
    p.add_argument("--tsa", metavar="URL", help="timestamp authority (RFC 3161) for every signature")
    p.add_argument("--level", choices=["B-B", "B-T", "B-LT", "B-LTA"], help="PAdES level of every PDF (as for run)")
    p.add_argument("--no-sign", action="store_true", help="write unsigned draft bundles")
    p.add_argument("--force", action="store_true", help="replace the sweep already in --out (kept as "
                   "OUT.previous-TIME if it holds files besides its bundles)")
    p.add_argument("--strict", action="store_true", help="as for run")
    p.add_argument("--profile", choices=["quick", "standard", "thorough"], default="standard",
                   help="measurement budget of every checkpoint (as for run; default: standard)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N prompts of each dataset (as for run)")
    p.add_argument("--no-cache", action="store_true", help="measure everything again (as for run)")
    p.add_argument("--cache-dir", metavar="DIR", help="the result cache (as for run); a sweep that stops keeps "
                   "the checkpoints measured so far there, and the next sweep reuses them")
    _add_executor(p, "the measurements")
    p.add_argument("--parallel", type=int, metavar="N", help="with --executor ray: measure at most N checkpoints "
                   "at once, one actor each (default: one per CPU of the cluster); each is also held in this "
                   "machine's memory while it is measured")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("check", help="everything knowable before measuring: spec, policy, datasets, markers in "
                       "context, model, memory")
    p.add_argument("runspec", nargs="?", help="run spec (TOML); default: the bundled reference organisms")
    p.add_argument("--model", help="a local Hugging Face directory, an organism name, or a model id (org/name) in "
                   "the local Hugging Face cache (overrides the spec)")
    _add_placement(p, default="the spec's [model]")
    p.add_argument("--data", action="append", metavar="NAME=FILE", help="override a dataset of the spec")
    p.add_argument("--external-evals", nargs="+", metavar="FILE",
                   help="behavioural evaluation results to cross-reference (Inspect logs, lm-eval results)")
    p.add_argument("--strict", action="store_true", help="an external evaluation of another model is an error, "
                   "as with run --strict")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("init", help="write a starter run spec and policy (and, for a model directory, the prompt "
                       "sets to provide)")
    p.add_argument("--model", metavar="DIR", help="a local Hugging Face model directory (default: the bundled demo "
                   "organism)")
    p.add_argument("--out", default=".", metavar="DIR", help="where to write runspec.toml and policy.toml "
                   "(default: the current directory); existing files are never overwritten")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("sign", help="sign an unsigned draft bundle (run --no-sign) into a new bundle")
    p.add_argument("draft", help="the draft bundle directory")
    p.add_argument("--out", required=True, help="signed bundle directory to write")
    p.add_argument("--force", action="store_true", help="replace the bundle already in --out (it is moved aside, "
                   "and kept as OUT.previous-TIME if it holds files besides the bundle's own)")
    p.add_argument("--key", help="signing key: a PKCS#12 file, or a key on a PKCS#11 token as "
                   "'pkcs11:token=LABEL;object=KEY' (PIN from $INTERP_DOSSIER_PKCS11_PIN); default: a development "
                   "key, not for filing")
    p.add_argument("--tsa", metavar="URL", help="timestamp authority (RFC 3161): PAdES B-T and a timestamp of the "
                   "DSSE signature (dossier.dsse.tst, verification step 8)")
    p.add_argument("--level", choices=["B-B", "B-T", "B-LT", "B-LTA"],
                   help="PAdES level: B-B (no timestamp), B-T (timestamped), B-LT (and the certificate chains, "
                   "CRLs and OCSP responses embedded for verification years later), B-LTA (and a document "
                   "timestamp over them); default B-T with --tsa, else B-B; all but B-B need --tsa")
    p.set_defaults(func=_cmd_sign)

    p = sub.add_parser("render", help="render a dossier.json to PDF/A-3a (PDF/UA-1), unsigned")
    p.add_argument("dossier", help="dossier.json")
    p.add_argument("--out", required=True, help="PDF file to write")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("view", help="write a browsable HTML view of a dossier (offline, no server)")
    p.add_argument("bundle", help="bundle directory, or a dossier.json")
    p.add_argument("--out", help="directory to write the view to (default: BUNDLE.view beside the bundle)")
    p.add_argument("--force", action="store_true", help="replace a view already in --out")
    p.add_argument("--open", action="store_true", help="open the view in the default web browser")
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser("verify", help="verify a bundle, or a dossier PDF on its own, offline (the auditor's check)")
    p.add_argument("bundle", help="bundle directory, a sweep directory (every checkpoint's bundle and the "
                   "trend), or a dossier PDF to verify on its own")
    p.add_argument("--trust", action="append", metavar="CERT.pem", help="trust anchor (repeatable; required)")
    p.add_argument("--signer-fingerprint", action="append", metavar="SHA256",
                   help="accept only a signer certificate with this sha256 fingerprint (repeatable)")
    p.add_argument("--signer-subject", action="append", metavar="DN",
                   help="accept only a signer with this RFC 4514 subject, e.g. 'CN=Example Lab,O=Example' "
                        "(repeatable)")
    p.add_argument("--at", metavar="TIME",
                   help="validate as of this time (ISO 8601, UTC unless an offset is given; default: now), e.g. to "
                   "check a filing years later; a timestamped signature's certificates are judged as of its "
                   "timestamp, with the validation data embedded (PAdES B-LT/B-LTA) or passed")
    p.add_argument("--revocation", choices=["soft-fail", "hard-fail"], default="soft-fail",
                   help="soft-fail (default): judge revocation with the data at hand, pass when there is none; "
                   "hard-fail: fail a certificate that names a CRL or OCSP responder when no current data from it "
                   "is at hand (nothing is ever fetched)")
    p.add_argument("--revocation-data", action="append", metavar="FILE",
                   help="a CRL (DER or PEM) or OCSP response (DER) obtained from the signer's CA (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("reproduce", help="re-run the measurements a dossier records and compare every metric")
    p.add_argument("bundle", help="bundle directory, or a dossier.json")
    p.add_argument("--model", help="the model the dossier was made from (default: the organism it names)")
    _add_placement(p, default="the dossier's recorded")
    p.add_argument("--runspec", metavar="TOML", help="run spec naming the prompt sets and markers (default: bundled)")
    p.add_argument("--data", action="append", metavar="NAME=FILE", help="a prompt set the dossier used (repeatable)")
    p.add_argument("--measurement", action="append", metavar="ID", help="re-run only these (repeatable)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("measurements", help="list the registered measurements and everything declared about them")
    p.add_argument("id", nargs="?", help="one measurement id (default: all)")
    p.add_argument("--json", action="store_true", help="print as a JSON object keyed by id")
    p.set_defaults(func=_cmd_measurements)

    p = sub.add_parser("validate", help="detection and false-alarm rates of every detector over a population")
    p.add_argument("--population", choices=["bundled", "dev", "heldout", "all"],
                   help="which organisms to measure (default: bundled, the reference organisms; dev, heldout, all: "
                        "the calibration population's splits)")
    p.add_argument("--measurement", action="append", metavar="ID", help="validate only these (repeatable)")
    p.add_argument("--member", action="append", metavar="NAME",
                   help="only these members of the population split (repeatable; the report's population is "
                        "then '<split>-subset')")
    p.add_argument("--seed", type=int, default=0, help="task seed of every run (default: 0)")
    p.add_argument("--merge", nargs="+", metavar="REPORT",
                   help="measure nothing: merge reports of one population measured in parts (e.g. one "
                        "process per instrument) into one")
    p.add_argument("--out", required=True, help="validation report (JSON) to write")
    _add_executor(p, "the members' measurements")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("keygen", help="make a development key, or a key and certificate request for filing")
    p.add_argument("--out", required=True, help="directory for the key files (signer.p12 and signer.pem; with "
                   "--csr, signer.key and signer.csr)")
    p.add_argument("--csr", action="store_true", help="make a key and a certificate signing request (signer.csr) "
                   "for your organisation's CA instead of a self-signed development key")
    p.add_argument("--subject", metavar="DN", help="with --csr: the signer's name, e.g. 'CN=Example Lab dossier "
                   "signer,O=Example Lab,C=DE'")
    p.add_argument("--algorithm", choices=["rsa-3072", "ecdsa-p256", "ecdsa-p384"],
                   help="with --csr: the key's algorithm (default rsa-3072)")
    p.add_argument("--cert", metavar="CERT.pem", help="pack the certificate the CA issued for signer.key (PEM, "
                   "then its issuers) with the key into signer.p12")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser("schema", help="regenerate the JSON Schemas from the models")
    p.add_argument("--check", action="store_true", help="fail if the committed schemas differ from the models")
    p.add_argument("--dir", help="schema directory (default: the package's schemas/)")
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("organisms", help="the bundled reference organisms")
    osub = p.add_subparsers(dest="organisms_command", required=True, parser_class=_Parser)
    t = osub.add_parser("train", help="retrain organisms from their seeds and print their sha256")
    t.add_argument("names", nargs="*", metavar="NAME")
    t.add_argument("--seed", type=int, help="train a replicate from this seed instead of the registered one")
    t.add_argument("--out", metavar="DIR", help="write weights and manifest here (default: the bundled weights)")
    t.set_defaults(func=_cmd_organisms_train)

    p = sub.add_parser("population", help="the calibration population (planted organisms and matched controls)")
    psub = p.add_subparsers(dest="population_command", required=True, parser_class=_Parser)
    t = psub.add_parser("list", help="the population table and which members are trained")
    t.add_argument("--split", choices=("dev", "heldout"), help="only this split")
    t.add_argument("--dir", metavar="DIR", help="members directory (default: the bundled members)")
    t.add_argument("--json", action="store_true", help="print as JSON, with each member's behaviour check")
    t.set_defaults(func=_cmd_population_list)
    t = psub.add_parser("train", help="train members from their seeds, check their behaviour, write them")
    t.add_argument("--split", choices=("dev", "heldout"), help="train every member of this split")
    t.add_argument("--member", nargs="+", metavar="NAME", help="train only these members")
    t.add_argument("--missing", action="store_true",
                   help="skip members that are trained and match the manifest (finish an interrupted split)")
    t.add_argument("--out", metavar="DIR", help="members directory to write (default: the bundled members)")
    t.set_defaults(func=_cmd_population_train)

    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell; load the script with "
                   "`source <(interp-dossier completion bash)` (e.g. in ~/.bashrc)")
    p.set_defaults(func=_cmd_completion)
    return parser


def _cmd_completion(args: argparse.Namespace) -> int:
    from evidence.completion import completion_script

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return EXIT_OK


def _quiet_libraries() -> None:
    """Silence warnings and progress bars raised inside third-party libraries.

    They (e.g. a crypto library's deprecation notice) are meant for those libraries' developers, not
    for a compliance officer or an auditor; ``INTERP_DOSSIER_DEBUG=1`` shows them.
    """
    if not os.environ.get("INTERP_DOSSIER_DEBUG"):
        warnings.filterwarnings("ignore", module=r"(?!evidence\b|signing\b)")
        # Hugging Face's own progress bars ("Loading weights") interleave with ours: off before the
        # libraries are imported (they read the variable then), and in them if they already are.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
        elif "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()


def _wants_verify_json(argv: Sequence[str]) -> bool:
    """True for ``verify ... --json``, even when the rest of the arguments do not parse."""
    positional = [a for a in argv if not a.startswith("-")]
    return bool(positional) and positional[0] == "verify" and "--json" in argv


def _failed(
    message: str,
    *,
    kind: str,
    code: int,
    hint: str | None = None,
    as_json: bool = False,
    details: Sequence[str] = (),
) -> int:
    """Report an error in one line on stderr (and, for ``verify --json``, as the JSON object on stdout).

    ``details``: several problems found together (a refused run), one more line each.
    """
    _err(f"{message} ({hint})" if hint else message)
    for line in details:
        print(f"  - {line}", file=sys.stderr)
    if as_json:
        print(json.dumps(_verify_error_json(message, kind=kind, hint=hint, exit_code=code), indent=2, sort_keys=True))
    return code


def _verify_error_json(message: str, *, kind: str, hint: str | None, exit_code: int) -> dict[str, object]:
    """The ``verify --json`` object when nothing could be verified (schemas/verify-output.schema.json)."""
    return {
        "bottom_line": False,
        "development_key": False,
        "notice": None,
        "revocation_policy": None,
        "signer_subject": None,
        "steps": [],
        "validated_at": None,
        "warnings": [],
        "error": {"kind": kind, "message": message, "hint": hint, "exit_code": exit_code},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    _quiet_libraries()
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_verify_json(arguments)
    try:
        args = build_parser().parse_args(arguments)
        code: int = args.func(args)
        return code
    except _UsageError as exc:
        return _failed(str(exc), kind="usage", code=EXIT_USAGE, as_json=as_json)
    except UserFacingError as exc:
        return _failed(exc.message, kind="error", code=exc.exit_code, hint=exc.hint, as_json=as_json,
                       details=getattr(exc, "details", ()))
    except KeyboardInterrupt:
        return _failed("interrupted; nothing was written", kind="interrupted", code=EXIT_INTERRUPTED, as_json=as_json)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get("INTERP_DOSSIER_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {exc} (set INTERP_DOSSIER_DEBUG=1 for details)"
        return _failed(message, kind="internal", code=EXIT_FAILED, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
