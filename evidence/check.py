"""The pre-run check: everything knowable before measuring, as one list of problems and one row per measurement.

``interp-dossier check`` reports it; ``interp-dossier run`` performs the same checks first and
refuses, before any measurement, when one of them is an error (a warning is printed and the run
goes on). Nothing here measures: the checks reuse the validators the run itself applies
(:func:`evidence.runspec.read_runspec`, :func:`evidence.policy.load_policy`,
:func:`evidence.measure.runner.task_problems`, :func:`evidence.external.load_external_evals`,
:func:`evidence.model.load_model`, :mod:`evidence.measure.memory`), and collect what they raise
instead of stopping at the first.

A :class:`Preflight` runs in two stages, so that ``run`` can refuse before it loads a model:

1. without the model: the run spec, the policy against the registry (unknown measurements,
   thresholds on measurements the spec does not run, metrics a measurement never emits: an error
   against its declared ``metrics=``, a warning for a measurement that declares none),
   each measurement's parameters, datasets and markers, the external evaluations, the device, and
   the memory preflight when the model's size can be read from its files;
2. with the model loaded: chat-message prompts for a tokenizer without a chat template, markers
   and answer words tokenized in context with the model's own tokenizer, ``refusal.stability``'s
   ``exclude_text`` and ``template_end_tokens`` against the prompts, external evaluations of
   another model, and the memory preflight from the loaded model's shape.

Each problem names its source (spec, policy, datasets, markers, model, evaluations), says what
is wrong in one sentence and what to do about it. The report has one :class:`MeasurementRow` per
measurement; a new column is a new field of that row and a new entry of :data:`COLUMNS`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from evidence.errors import ConfigError, PreflightError, UserFacingError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from evidence.datasets import Prompt
    from evidence.measure import MeasurementDef
    from evidence.measure.memory import MemoryEstimate, ModelSize
    from evidence.model import LoadedModel, ModelSpec
    from evidence.records import ExternalEval, Policy
    from evidence.runspec import RunSpec, SpecProblem

__all__ = [
    "COLUMNS",
    "SOURCES",
    "CheckReport",
    "MeasurementRow",
    "Preflight",
    "Problem",
    "Severity",
    "chat_template_problem",
    "check_spec",
    "declared_metrics",
    "other_model_error",
]

Severity = Literal["error", "warning"]

#: Where a problem lies, in the order the report groups them.
SOURCES = ("spec", "policy", "datasets", "markers", "model", "evaluations")

#: Prompts of each dataset tokenized to read markers and answers in context.
_CONTEXTS_PER_DATASET = 8


@dataclass(frozen=True)
class Problem:
    """One thing wrong before a run: where (``source``), what, the remedy, and whether it stops the run."""

    source: str
    message: str
    hint: str | None = None
    severity: Severity = "error"
    #: the dataset the problem is about, if any: a dataset that does not load is not also reported missing
    dataset: str | None = None
    #: the error a validator raised, re-raised as it was when it is the only one that stops a run
    error: UserFacingError | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"problem source {self.source!r} is not one of {SOURCES}")

    @classmethod
    def of(cls, source: str, exc: UserFacingError, severity: Severity = "error", dataset: str | None = None) -> Problem:
        """A problem from an error a validator raised."""
        return cls(source=source, message=exc.message, hint=exc.hint, severity=severity, dataset=dataset, error=exc)

    @classmethod
    def from_spec(cls, problem: SpecProblem) -> Problem:
        """A problem :func:`evidence.runspec.read_runspec` found."""
        return cls.of(problem.source, problem.error, dataset=problem.dataset)

    def one_line(self) -> str:
        """The message and its remedy as one line."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def as_error(self) -> UserFacingError:
        """The error a validator raised (a ConfigError for a problem found by the check itself)."""
        return self.error if self.error is not None else ConfigError(self.message, hint=self.hint)


@dataclass(frozen=True)
class MeasurementRow:
    """One measurement as the check sees it: one row of the report, one field per column."""

    measurement: str
    version: str
    memory: MemoryEstimate | None = None
    #: estimated seconds (:mod:`evidence.measure.cost`): declared passes times a forward pass timed here
    seconds: float | None = None

    def cells(self) -> tuple[str, ...]:
        """The row's cells, in the order of :data:`COLUMNS`."""
        return tuple(read(self) for _, read in COLUMNS)


def _memory_cell(row: MeasurementRow) -> str:
    from evidence.measure.memory import format_bytes

    m = row.memory
    if m is None:
        return "not estimated"
    return f"{format_bytes(m.total)} ({m.batch} x {m.tokens} tokens per pass)"


def _time_cell(row: MeasurementRow) -> str:
    from evidence.measure.cost import format_seconds

    return "not estimated" if row.seconds is None else f"about {format_seconds(row.seconds)}"


#: The report's columns: a heading and how to read the cell from a row.
COLUMNS: tuple[tuple[str, Callable[[MeasurementRow], str]], ...] = (
    ("measurement", lambda row: row.measurement),
    ("version", lambda row: row.version),
    ("peak memory (estimate)", _memory_cell),
    ("time (estimate)", _time_cell),
)


@dataclass(frozen=True)
class CheckReport:
    """What the check found: problems (grouped by source when shown) and one row per measurement."""

    spec: Path | None
    model: str | None
    problems: tuple[Problem, ...] = ()
    rows: tuple[MeasurementRow, ...] = ()
    available_memory: tuple[int, str] | None = None

    @property
    def errors(self) -> tuple[Problem, ...]:
        """The problems that stop a run."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """The problems a run goes on with."""
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when nothing stops a run."""
        return not self.errors

    def lines(self) -> list[str]:
        """The report as text: problems first, grouped by source, then the measurements, then the bottom line."""
        out = [f"run spec: {self.spec}" if self.spec is not None else "run spec: (none)"]
        if self.model is not None:
            out.append(f"model: {self.model}")
        if self.problems:
            out.append("problems:")
            for source in SOURCES:
                found = [p for p in self.problems if p.source == source]
                if found:
                    out.append(f"  {source}:")
                    out += [f"    {p.severity}: {p.one_line()}" for p in _errors_first(found)]
        if self.rows:
            out.append("measurements:")
            out += _table([heading for heading, _ in COLUMNS], [row.cells() for row in self.rows])
        if self.available_memory is not None:
            from evidence.measure.memory import format_bytes

            room, source = self.available_memory
            out.append(f"memory available: {format_bytes(room)} ({source})")
        n_err, n_warn = len(self.errors), len(self.warnings)
        if n_err:
            out.append(f"FAILED: {_count(n_err, 'error')}, {_count(n_warn, 'warning')}; fix the errors before `run`")
        else:
            out.append(f"OK: ready to run ({_count(n_warn, 'warning')})")
        return out


def _errors_first(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.severity != "error")  # stable: the order found within a severity


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def declared_metrics(definition: MeasurementDef) -> set[str]:
    """The metrics a measurement declares on its decorator: ``metrics=``, and those its other declarations read."""
    names = set(definition.metrics)
    names |= {d.metric for d in definition.detectors} | {e.metric for e in definition.calibration}
    names |= {r.metric for r in definition.crossref}
    if definition.headline is not None:
        names.add(definition.headline)
    return names


@dataclass
class Preflight:
    """The checks of one run spec, collected stage by stage (see the module docstring)."""

    spec: RunSpec
    strict: bool = False
    run_started: datetime | None = None
    problems: list[Problem] = field(default_factory=list)
    policy: Policy | None = None
    external: list[ExternalEval] = field(default_factory=list)
    checked: list[tuple[MeasurementDef, BaseModel]] = field(default_factory=list)
    rows: list[MeasurementRow] = field(default_factory=list)
    available: tuple[int, str] | None = None
    largest: MemoryEstimate | None = None

    @property
    def model_spec(self) -> ModelSpec:
        """The model the spec names, where and how it runs (a ConfigError for an impossible placement)."""
        from evidence.model import ModelSpec

        s = self.spec
        return ModelSpec(organism=s.model_organism, path=s.model_path, device=s.model_device, dtype=s.model_dtype,
                         n_gpus=s.model_n_gpus)  # fmt: skip

    @property
    def errors(self) -> list[Problem]:
        """The problems found so far that stop a run."""
        return [p for p in self.problems if p.severity == "error"]

    def add(self, source: str, exc: UserFacingError, severity: Severity = "error") -> None:
        """Record an error a validator raised."""
        self.problems.append(Problem.of(source, exc, severity))

    def warn(self, source: str, message: str, hint: str | None = None) -> None:
        """Record a warning."""
        self.problems.append(Problem(source, message, hint, "warning"))

    def raise_for_errors(self) -> None:
        """Refuse the run when an error was found: the error itself when it is the only one, else all of them."""
        errors = self.errors
        if len(errors) == 1:
            raise errors[0].as_error()
        if errors:
            raise PreflightError(
                f"the run cannot start: {len(errors)} problems; nothing was measured",
                hint="fix them; `interp-dossier check SPEC` lists every problem, warnings too",
                details=tuple(f"{p.source}: {p.one_line()}" for p in errors),
            )

    def _model_failed(self) -> bool:
        return any(p.source == "model" and p.severity == "error" for p in self.problems)

    # -- stage 1: without the model -----------------------------------------------------------

    def check_spec(self) -> None:
        """Policy, measurements, external evaluations, placement, and memory when the model's files tell its size."""
        from evidence.measure import memory
        from evidence.model import check_device

        self._check_policy()
        self._check_tasks()
        self._check_external()
        if self._model_failed():
            return  # the model named cannot be used: neither its placement nor its size is known
        try:
            self.model_spec  # noqa: B018 - constructing it checks the placement
            check_device(self.spec.model_device, self.spec.model_n_gpus)
        except UserFacingError as exc:  # ConfigError, or ModelLoadError for a device this machine lacks
            self.add("model", exc)
            return
        size = memory.size_before_loading(self.spec.model_organism, self.spec.model_path)
        if size is not None:  # refuse what cannot fit before loading it
            self.check_memory(size)

    def _check_policy(self) -> None:
        from evidence.measure.registry import get
        from evidence.policy import load_policy

        path = self.spec.policy_path
        if path is None:
            return
        try:
            self.policy = load_policy(path, run_started=self.run_started)
        except ConfigError as exc:
            self.add("policy", exc)
            return
        for t in self.policy.thresholds:
            where = f"policy {path}: threshold {t.id!r}"
            try:
                definition = get(t.measurement, where=where)
            except ConfigError as exc:
                self.add("policy", exc)
                continue
            if t.measurement not in self.spec.measurements:
                self.warn("policy", f"{where} judges {t.measurement}, which the run spec does not run: its verdict "
                          "will be INCONCLUSIVE and so will the gate",
                          hint=f"add {t.measurement!r} to [run].measurements, or drop the threshold")  # fmt: skip
            declared = declared_metrics(definition)
            if t.metric not in declared:
                close = difflib.get_close_matches(t.metric, sorted(declared), n=2, cutoff=0.6)
                guess = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
                if definition.metrics:  # the complete set: the threshold could never be judged
                    self.add("policy", ConfigError(f"{where}: {definition.id} emits no metric {t.metric!r}, so the "
                                                   "threshold could never be judged",
                                                   hint=f"{guess}its metrics: {', '.join(sorted(declared))}"))
                else:
                    self.warn("policy", f"{where}: {definition.id} declares no metric {t.metric!r}; a record "
                              "without it leaves the verdict INCONCLUSIVE",
                              hint=f"{guess}it declares {', '.join(sorted(declared)) or 'none'}")  # fmt: skip

    def _check_tasks(self) -> None:
        from evidence.measure import Task
        from evidence.measure.methods.behaviour import Markers
        from evidence.measure.registry import get
        from evidence.measure.runner import task_problems

        markers = {kind: tuple(phrases) for kind, phrases in self.spec.markers.items()}
        subject = None
        try:
            subject = self.model_spec
        except ConfigError:
            pass  # reported by check_spec
        for mid, params in self.spec.measurements.items():
            task = Task(measurement_id=mid, params=params, seed=self.spec.seed,
                        subject=subject, datasets=self.spec.datasets, markers=markers)  # type: ignore[arg-type]  # fmt: skip
            found = task_problems(task)
            unloaded = {p.dataset for p in self.problems if p.dataset is not None}
            for problem in found:
                if problem.dataset not in unloaded:  # a dataset named that does not load is reported where it fails
                    self.add(problem.source, problem.error)
            try:
                definition = get(mid)
            except ConfigError:
                continue
            if not any(p.source == "spec" for p in found):
                self.checked.append((definition, definition.validate_params(params)))
            self.rows.append(MeasurementRow(measurement=mid, version=definition.version))
        try:
            Markers.from_spec(self.spec.markers)
        except ConfigError as exc:
            self.add("markers", exc)

    def _check_external(self) -> None:
        from evidence.external import load_external_evals

        readable = []
        for path in self.spec.external_eval_paths:  # one at a time, so that every file that does not parse is named
            try:
                load_external_evals([path])
            except UserFacingError as exc:
                self.add("evaluations", exc)
            else:
                readable.append(path)
        if readable:
            try:  # together: the same file twice, and the spec's declarations
                self.external = load_external_evals(readable, self.spec.external_declarations)
            except UserFacingError as exc:
                self.add("evaluations", exc)

    def check_memory(self, size: ModelSize) -> None:
        """Each measurement's estimated peak memory (into its row); an error when the largest cannot fit."""
        from evidence.measure import memory

        model_spec = self.model_spec
        estimates = {
            definition.id: memory.estimate(
                definition.id, params.model_dump(), size, model_spec.dtype,
                backprop=definition.backprop, model_copies=definition.model_copies,
                datasets=[self.spec.datasets[d.name] for d in definition.datasets if d.name in self.spec.datasets],
                extra=definition.memory,
            )
            for definition, params in self.checked
        }  # fmt: skip
        self.rows = [replace(row, memory=estimates.get(row.measurement, row.memory)) for row in self.rows]
        try:
            self.available = memory.available_memory(model_spec.device, model_spec.n_gpus)
            batched = [d.id for d, _ in self.checked if "batch_size" in d.params.model_fields]
            self.largest = memory.check_fits(estimates.values(), self.available, dtype=model_spec.dtype,
                                             device=model_spec.device, batched=batched)  # fmt: skip
        except ConfigError as exc:
            self.add("model", exc)

    def check_time(self, model: LoadedModel) -> None:
        """Each measurement's estimated run time (into its row), for those that declare their passes."""
        from evidence.measure.cost import Workload, estimate_seconds, time_forward

        if all(definition.cost is None for definition, _ in self.checked):
            return
        timing = time_forward(model)
        work = Workload.of(model, self.spec.datasets)
        seconds = {d.id: estimate_seconds(d, params, work, timing) for d, params in self.checked}
        self.rows = [replace(row, seconds=seconds.get(row.measurement)) for row in self.rows]

    def memory_line(self) -> str | None:
        """One line on the largest estimate and the room for it, once the memory preflight ran."""
        from evidence.measure.memory import format_bytes

        if self.largest is None:
            return None
        available = self.available
        room = f"{format_bytes(available[0])} of {available[1]}" if available else "available memory unknown"
        return f"memory preflight: at most {self.largest.describe()} for {self.largest.measurement}; {room}"

    def load(self) -> LoadedModel | None:
        """Load the model; None, with the reason among the problems, when it cannot be or must not be loaded.

        It is not loaded when its placement is impossible or the memory preflight found it cannot fit.
        """
        from evidence.model import load_model

        if self._model_failed():
            return None
        try:
            model_spec = self.model_spec
        except ConfigError:
            return None  # reported by check_spec
        try:
            return load_model(model_spec)
        except UserFacingError as exc:
            self.add("model", exc)
            return None

    # -- stage 2: with the model ----------------------------------------------------------------

    def check_model(self, model: LoadedModel) -> None:
        """Tokenizer-dependent checks, other models' evaluations, and the memory preflight if not done."""
        if self.largest is None and not any(row.memory for row in self.rows):
            from evidence.measure import memory

            self.check_memory(memory.size_of_loaded(model.identity.n_parameters, model.bridge.cfg))
        self._check_chat_template(model)
        if model.tokenizer is not None:
            self._check_markers(model)
            self._check_answers(model)
            self._check_stability_options(model)
        self._check_evaluated_model(model.identity.name)

    def _used_datasets(self) -> list[str]:
        names = {d.name for definition, _ in self.checked for d in definition.datasets}
        return sorted(n for n in names if n in self.spec.datasets)

    def _check_chat_template(self, model: LoadedModel) -> None:
        problem = chat_template_problem(model.tokenizer, self.model_spec.describe(), self.spec, self._used_datasets())
        if problem is not None:
            self.problems.append(problem)

    def _contexts(self, model: LoadedModel, names: Sequence[str]) -> list[list[int]]:
        """Token ids of the first prompts of each dataset (those the tokenizer can render)."""
        from evidence.measure.methods.behaviour import prompt_ids

        contexts = []
        for name in names:
            for prompt in self.spec.datasets[name].prompts[:_CONTEXTS_PER_DATASET]:
                try:
                    contexts.append(prompt_ids(model.tokenizer, prompt))
                except ConfigError:
                    break  # chat messages without a chat template: reported on their own
        return contexts

    def _check_markers(self, model: LoadedModel) -> None:
        from evidence.measure.methods.behaviour import marker_tokens

        contexts = self._contexts(model, self._used_datasets())
        tokenizer = model.tokenizer
        unknown_id = getattr(tokenizer, "unk_token_id", None)
        for kind, phrases in sorted(self.spec.markers.items()):
            for phrase in phrases:
                where = f"[markers].{kind} {phrase!r}"
                try:
                    splits = {tuple(marker_tokens(tokenizer, phrase, c)) for c in contexts or [None]}  # type: ignore[list-item]
                    first = phrase.split()[0] if phrase.split() else phrase
                    heads = {tuple(marker_tokens(tokenizer, first, c)) for c in contexts or [None]}  # type: ignore[list-item]
                except ConfigError as exc:
                    self.add("markers", exc)
                    continue
                if unknown_id is not None and any(unknown_id in s for s in splits):
                    self.problems.append(Problem(
                        "markers", f"{where} holds a word the tokenizer does not know (it encodes to its unknown "
                        "token), so the model can never say it",
                        hint="write the marker in words of the model's vocabulary, as its replies spell them",
                    ))  # fmt: skip
                    continue
                longest = max(heads, key=len)
                if len(longest) > 1:
                    pieces = " + ".join(repr(tokenizer.decode([i])) for i in longest)  # type: ignore[union-attr]
                    self.warn("markers", f"{where}: its first word splits into {len(longest)} tokens after the "
                              f"prompts ({pieces}); the marker log-odds read only the first, which other words "
                              "share", hint="prefer a marker whose first word is one token for this tokenizer; replies "
                              "are still judged on the whole phrase")  # fmt: skip

    def _check_answers(self, model: LoadedModel) -> None:
        """``goal.proxy_reliance`` reads each answer as one token after the prompt: a split answer is refused."""
        from evidence.errors import MeasurementError
        from evidence.measure.context import MeasureContext
        from evidence.measure.suite.goal_proxy_reliance import ALIGNED, DECORRELATED, answer_tokens, answer_words

        params = next((p for d, p in self.checked if d.id == "goal.proxy_reliance"), None)
        if params is None or not {ALIGNED, DECORRELATED} <= set(self.spec.datasets):
            return  # a missing dataset is reported on its own

        ctx = MeasureContext(seed=self.spec.seed, datasets=self.spec.datasets)
        try:
            words = answer_words(params, ctx)  # type: ignore[arg-type]
        except MeasurementError as exc:
            self.add("datasets", exc)
            return
        sample: Prompt = self.spec.datasets[ALIGNED].prompts[0]
        try:
            tokens = [answer_tokens(model, sample, w) for w in words]
        except (MeasurementError, ConfigError) as exc:
            self.add("datasets", exc)
            return
        for word, ids in zip(words, tokens, strict=True):
            if len(ids) > 1:
                pieces = " + ".join(repr(model.tokenizer.decode([i])) for i in ids)  # type: ignore[union-attr]
                self.problems.append(Problem(
                    "markers", f"goal.proxy_reliance answer {word!r} splits into {len(ids)} tokens after a prompt "
                    f"({pieces}); the measurement reads each answer as one token",
                    hint="choose answers that are one token for this tokenizer: the prompts' \"answers\", or "
                    "answer_goal_true and answer_goal_false",
                ))  # fmt: skip
        if tokens[0][0] == tokens[1][0]:
            self.problems.append(Problem(
                "markers", f"goal.proxy_reliance answers {words[0]!r} and {words[1]!r} start with the same token",
                hint="choose answers whose first tokens differ",
            ))  # fmt: skip

    def _check_stability_options(self, model: LoadedModel) -> None:
        """``refusal.stability``: ``exclude_text`` in the prompts, ``template_end_tokens`` within their shared end."""
        params: Any = next((p for d, p in self.checked if d.id == "refusal.stability"), None)
        if params is None:
            return
        texts = [_prompt_text(p) for dataset in self.spec.datasets.values() for p in dataset.prompts]
        for excluded in params.exclude_text:
            if not any(excluded in text for text in texts):
                self.warn("spec", f'[measurements."refusal.stability"] exclude_text {excluded!r} occurs in no prompt '
                          "of the run spec's datasets", hint="check its spelling: it should be text the prompts "
                          "carry, such as a trigger")  # fmt: skip
        if params.template_end_tokens is None or "refusal.harmful" not in self.spec.datasets:
            return
        from evidence.measure.methods.suffix_attack import common_suffix_length

        seqs = self._contexts(model, ["refusal.harmful"])
        shared = common_suffix_length(seqs) if seqs else 0
        if seqs and params.template_end_tokens > shared:
            self.warn("spec", f'[measurements."refusal.stability"] template_end_tokens = {params.template_end_tokens} '
                      f"is more than the {shared} closing tokens the harmful prompts share: the suffix would go "
                      "inside the requests' own words", hint=f"set it to at most {shared}, or leave it out to use "
                      "the shared closing tokens")  # fmt: skip

    def _check_evaluated_model(self, subject: str) -> None:
        other = other_model_error(self.external, subject)
        if other is None:
            return
        if self.strict:
            self.add("evaluations", other)
        else:
            self.warn(
                "evaluations",
                f"{other.message}: they are recorded as flagged and compared with nothing",
                hint="pass the evaluations of the measured model",
            )

    def report(self) -> CheckReport:
        """The problems and rows found so far."""
        try:
            model = self.model_spec.describe()
        except ConfigError:
            model = None
        return CheckReport(spec=self.spec.source, model=model, problems=tuple(self.problems), rows=tuple(self.rows),
                           available_memory=self.available)  # fmt: skip


def chat_template_problem(tokenizer: object, model: str, spec: RunSpec, used: Sequence[str]) -> Problem | None:
    """Prompt sets in chat ``messages`` (of those named ``used``) for a tokenizer without a chat template."""
    if tokenizer is None or getattr(tokenizer, "chat_template", None):
        return None
    chat = [
        f"{name} ({spec.datasets[name].path})"
        for name in sorted(used)
        if name in spec.datasets and any(p.messages is not None for p in spec.datasets[name].prompts)
    ]
    if not chat:
        return None
    return Problem(
        "datasets",
        f"{model} has no chat template, but the prompt sets {', '.join(chat)} are chat messages",
        hint="save a tokenizer with a chat template next to the model (tokenizer.chat_template, then "
        "tokenizer.save_pretrained(DIR)), or write those prompts as 'text'",
    )


def other_model_error(external: Sequence[ExternalEval], subject: str) -> ConfigError | None:
    """The error ``run --strict`` raises for external evaluations that name another model (None: there are none)."""
    from evidence.crossref import evaluates_subject

    others = [ev for ev in external if evaluates_subject(ev.model, subject) is False]
    if not others:
        return None
    named = "; ".join(f"{ev.source_file} ({ev.task}) names {ev.model}" for ev in others)
    return ConfigError(
        f"external evaluations of another model than {subject}: {named}",
        hint="pass the evaluations of the measured model, or drop --strict to record them as not comparable",
    )


def _prompt_text(prompt: Prompt) -> str:
    if prompt.text is not None:
        return prompt.text
    return "\n".join(m.content for m in prompt.messages or [])


def check_spec(
    path: Path,
    *,
    data_overrides: Mapping[str, Path] | None = None,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    n_gpus: int | None = None,
    external_evals: Sequence[Path] = (),
    strict: bool = False,
) -> CheckReport:
    """Check a run spec file as ``run`` would, with the same overrides, and report every problem at once."""
    from datetime import UTC

    from evidence.runspec import read_runspec

    reading = read_runspec(path, data_overrides=data_overrides)
    found = [Problem.from_spec(p) for p in reading.problems]
    if reading.spec is None:
        return CheckReport(spec=path, model=None, problems=tuple(found))
    spec = reading.spec
    unresolved = None
    if model:
        try:
            spec = spec.with_model(model)
        except UserFacingError as exc:  # the rest is still checked; no model is loaded
            unresolved = Problem.of("model", exc)
            found.append(unresolved)
    spec = spec.with_placement(device=device, dtype=dtype, n_gpus=n_gpus)
    if external_evals:
        spec = spec.with_external_evals(external_evals)
    pre = Preflight(spec, strict=strict, run_started=datetime.now(UTC), problems=found)
    pre.check_spec()
    loaded = pre.load()
    if loaded is not None:
        pre.check_model(loaded)
        pre.check_time(loaded)
    report = pre.report()
    return report if unresolved is None else replace(report, model=model)
