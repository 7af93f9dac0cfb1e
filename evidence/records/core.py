"""Evidence records, verdicts, policy and the dossier's parts: the core of the data model.

The dossier itself (:class:`evidence.records.Dossier`) is assembled from these
parts and from the external-evaluation and cross-reference models in
:mod:`evidence.records.dossier`; see :mod:`evidence.records` for the whole.

Every model is frozen, rejects unknown keys and rejects NaN / Inf: a malformed
record cannot exist as an object.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

__all__ = [
    "DEVELOPMENT_KEY_NOTICE",
    "PROFILES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Baseline",
    "CalibrationCheck",
    "ChangeEntry",
    "ClauseIndexEntry",
    "ClauseRef",
    "ConfidenceInterval",
    "Criterion",
    "DataRef",
    "Environment",
    "ErrorInfo",
    "EvidenceRecord",
    "Gate",
    "MeasurementSpec",
    "Metric",
    "ModelIdentity",
    "Policy",
    "Predecessor",
    "Producer",
    "SignerInfo",
    "EXAMPLES_TABLE",
    "Table",
    "Threshold",
    "Tolerance",
    "ValidationRequirement",
    "Verdict",
    "WeightFile",
]

#: The dossier format version written by this release.
SCHEMA_VERSION: Final = "1.0"
#: Versions this release can read and verify; anything else is refused.
SUPPORTED_SCHEMA_VERSIONS: frozenset[str] = frozenset({SCHEMA_VERSION})

#: The notice every artifact signed with a development key carries.
DEVELOPMENT_KEY_NOTICE = "development key \u2014 not for filing"

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
MeasurementId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
SemVer = Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: The floating-point format a model was measured in (ModelIdentity.processing["dtype"]).
Dtype = Literal["float32", "bfloat16", "float16"]
#: A run's budget profile: each measurement's parameter overrides for it (``standard``: the defaults).
Profile = Literal["quick", "standard", "thorough"]
#: The profiles, in order of budget.
PROFILES: Final = ("quick", "standard", "thorough")
ClauseId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9.:-]*(/[^/\s@]+)*(@[^\s/@]+)?$")]
# Finite numbers only: non-finite values are not representable in signed JSON.
Number = Annotated[float, Field(allow_inf_nan=False)] | int


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)


class ConfidenceInterval(_Frozen):
    """An interval estimate: how the uncertainty of a metric was quantified."""

    lower: Number
    upper: Number
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(description="coverage, e.g. 0.95")
    method: Name = Field(description='e.g. "percentile bootstrap", "wilson"')
    n: Annotated[int, Field(ge=1)] = Field(description="number of independent units (prompts, sequences)")
    resamples: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="bootstrap resamples, when the method resamples"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ConfidenceInterval:
        if self.lower > self.upper:
            raise ValueError(f"CI lower bound {self.lower} exceeds upper bound {self.upper}")
        return self


class Baseline(_Frozen):
    """What a metric is compared against (random direction, untrained twin, ...)."""

    name: Name
    value: Number
    ci: ConfidenceInterval | None = None
    description: str = ""


class Metric(_Frozen):
    """One number a measurement reports, with its uncertainty and its baseline."""

    name: Name
    value: Number
    unit: Name = Field(description='e.g. "score", "nats", "fraction", "layer index"')
    ci: ConfidenceInterval | None = None
    baseline: Baseline | None = None
    description: str = ""

    @model_validator(mode="after")
    def _value_in_ci(self) -> Metric:
        # A point estimate outside its own interval signals a bug in the estimator.
        if self.ci is not None and not (self.ci.lower - 1e-9 <= self.value <= self.ci.upper + 1e-9):
            raise ValueError(
                f"metric {self.name!r}: value {self.value} lies outside its CI "
                f"[{self.ci.lower}, {self.ci.upper}]"
            )
        return self


#: The name of the table in which a behaviour-based measurement shows example prompts and what the model
#: said (:mod:`evidence.measure.methods.examples`); the document gathers these tables in an appendix.
EXAMPLES_TABLE = "example_outputs"


class Table(_Frozen):
    """A small table of results (per-head scores, per-layer curves)."""

    name: Name
    columns: list[Name] = Field(min_length=1)
    rows: list[list[str | Number | None]]
    description: str = ""

    @model_validator(mode="after")
    def _rectangular(self) -> Table:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name!r}: row {i} has {len(row)} cells, expected {len(self.columns)}"
                )
        return self


class MeasurementSpec(_Frozen):
    """What was run, so that it can be re-run: id, version and parameters verbatim."""

    id: MeasurementId
    version: SemVer
    params: dict[str, JsonValue] = Field(default_factory=dict)


class DataRef(_Frozen):
    """An input a measurement used, identified by content digest."""

    name: Name
    sha256: Sha256Hex
    count: Annotated[int, Field(ge=0)] = Field(description="number of items (prompts, sequences)")
    description: str = ""


class ClauseRef(_Frozen):
    """A documentation requirement that a record provides evidence for."""

    id: ClauseId
    strength: Literal["direct", "partial", "supporting"]
    rationale: Annotated[str, StringConstraints(min_length=1, max_length=400)]


Comparator = Literal[">=", ">", "<=", "<"]
DecisionRule = Literal["ci-bound", "point", "ci-lower", "ci-upper"]


class Criterion(_Frozen):
    """What one metric must satisfy: a comparator, a threshold and how uncertainty is read.

    ``ci-bound``: the interval's bound on the safe side (lower for ``>``/``>=``, upper for
    ``<``/``<=``) is compared, so the whole interval must clear the threshold;
    ``point``: the point value; ``ci-lower`` / ``ci-upper``: that bound of the interval.
    ``margin`` moves the threshold towards the safe side. ``above_baseline``: the threshold
    is counted from the metric's baseline (its interval's far bound, else its value), so
    ``> 0`` reads "clears its baseline"; a metric without a baseline does not satisfy it.
    """

    comparator: Comparator
    threshold: Number
    rule: DecisionRule = "ci-bound"
    margin: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    above_baseline: bool = False


class CalibrationCheck(_Frozen):
    """One check of the suite against planted ground truth: the instrument must see what is there.

    ``passed`` is recomputed by a verifier from ``value``, ``ci``, ``baseline`` and ``criteria``
    with the gate's own code (:func:`evidence.policy.satisfied`).
    """

    measurement: MeasurementId
    organism: Name
    planted: bool = Field(description="true: the behaviour is planted; false: a control without it")
    metric: Name
    value: Number | None = Field(description="null when the measurement failed on this organism")
    ci: ConfidenceInterval | None = None
    baseline: Baseline | None = None
    criteria: list[Criterion] = Field(default_factory=list, description="what the metric must satisfy")
    combine: Literal["all", "any"] = Field(default="all", description="whether all criteria or any one must hold")
    criterion: Annotated[str, StringConstraints(min_length=1, max_length=1000)] = Field(
        description="the criteria in words and numbers (and why a check could not be evaluated)"
    )
    expected: Literal["holds", "fails"] = Field(
        default="holds",
        description="whether the criteria are expected to hold; a spot check expects what the validation "
        "report recorded for the organism, which on a missed planted organism is that they fail",
    )
    validation_report: Sha256Hex | None = Field(
        default=None,
        description="a spot check: the sha256 of the validation report whose recorded outcome it re-measures",
    )
    passed: bool
    record_digest: Sha256Hex | None = Field(default=None, description="the calibration run's record")


class ErrorInfo(_Frozen):
    """Why a measurement failed."""

    type: Name
    message: Annotated[str, StringConstraints(min_length=1)]
    hint: str | None = Field(default=None, description="the remedy, in words, when the measurement gave one")


class Tolerance(_Frozen):
    """How closely a re-run must agree with a record to reproduce it (``interp-dossier reproduce``).

    In the environment that made the record (same machine, libraries and threads)
    a re-run is expected to be identical; elsewhere a value ``v`` reproduces a
    recorded ``r`` when ``|v - r| <= absolute + relative * |r|`` (floating-point
    reduction order differs between CPUs and library builds).
    """

    absolute: Annotated[float, Field(ge=0.0)]
    relative: Annotated[float, Field(ge=0.0)]


class EvidenceRecord(_Frozen):
    """The result of one measurement on one model: evidence, never judgement."""

    record_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]
    measurement: MeasurementSpec
    subject: Name = Field(description="the model the measurement was run on")
    status: Literal["ok", "error"]
    error: ErrorInfo | None = None
    seeds: dict[str, int] = Field(default_factory=dict)
    metrics: list[Metric] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)
    checks: list[CalibrationCheck] = Field(default_factory=list)
    data: list[DataRef] = Field(default_factory=list)
    clauses: list[ClauseRef] = Field(default_factory=list)
    experimental: bool = False
    summary: str = Field(default="", description="one paragraph, plain language")
    duration_s: Annotated[float, Field(ge=0.0)] | None = None
    tolerance: Tolerance | None = Field(
        default=None, description="how closely a re-run must agree with the metrics to reproduce them"
    )
    headline: Name | None = Field(
        default=None,
        description="the metric its measurement declares as its headline (the one its policy thresholds and "
        "validation detectors read); null when none was declared or the record does not carry it",
    )
    profile: Profile = Field(
        default="standard",
        description="the budget profile the run measured under (its parameter overrides are in measurement.params)",
    )
    prompt_limit: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="at most this many prompts of each dataset were used (a seeded, label-stratified subset); "
        "null: every prompt",
    )
    reused_cache_key: Sha256Hex | None = Field(
        default=None,
        description="set when the run did not recompute this record but reused a finished one from its result "
        "cache: the cache key (sha256 of everything the record depends on); null: computed by this run",
    )
    retries: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="set when the worker process measuring this was lost (killed, crashed) and the cluster ran "
        "the measurement again from the start: how many times; null: it ran once",
    )

    @model_validator(mode="after")
    def _status_consistent(self) -> EvidenceRecord:
        if self.status == "error" and self.error is None:
            raise ValueError(f"record {self.record_id!r}: status 'error' requires an 'error' object")
        if self.status == "ok" and self.error is not None:
            raise ValueError(f"record {self.record_id!r}: status 'ok' must not carry an 'error'")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"record {self.record_id!r}: duplicate metric names {dupes}")
        if self.status == "ok" and self.headline is not None and self.headline not in names:
            raise ValueError(f"record {self.record_id!r}: headline {self.headline!r} is not one of its metrics")
        return self

    def metric(self, name: str) -> Metric:
        """The metric called ``name``; KeyError if there is none."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


class ValidationRequirement(_Frozen):
    """What a threshold demands of its instrument's validation before it may decide.

    Read from the validation report of the instrument (same measurement, version,
    metric and parameters). When this run's reading meets the validated detector's
    criteria (the instrument reports the behaviour present), the upper bound of the
    false-alarm rate's interval must not exceed ``max_false_alarms``; when it does
    not (the behaviour reported absent), the lower bound of the detection rate's
    interval must reach ``min_detection``. Otherwise the verdict is INCONCLUSIVE.
    """

    min_detection: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    max_false_alarms: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class Threshold(Criterion):
    """A declared threshold on one metric of one measurement, and how uncertainty is treated.

    ``ci-bound``: PASS only if the whole confidence interval clears the threshold by the
    safety margin; FAIL if the whole interval lies on the wrong side of the threshold;
    INCONCLUSIVE otherwise (and when the metric carries no interval).
    ``point``: the point value alone is compared; for exact quantities only.
    ``ci-lower`` / ``ci-upper``: that bound alone is compared (PASS or FAIL).
    """

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    measurement: MeasurementId
    metric: Name
    rationale: Annotated[str, StringConstraints(min_length=1)]
    clauses: list[ClauseRef] = Field(default_factory=list)
    validation: ValidationRequirement | None = Field(
        default=None, description="the instrument's validation this threshold requires before it may decide"
    )


class Policy(_Frozen):
    """The thresholds a deployment decision is gated on, with who set them and when."""

    name: Name
    version: Name
    set_by: Name
    set_at: AwareDatetime
    sha256: Sha256Hex = Field(description="sha256 of the policy file as read")
    dtype: Dtype | None = Field(
        default=None,
        description="the dtype the thresholds were set for: a model measured in another is judged INCONCLUSIVE; "
        "null: the policy makes no claim about the dtype",
    )
    profile: Profile = Field(
        default="standard",
        description="the budget profile the thresholds were set for: records measured under another, or on a "
        "limited number of prompts, are judged INCONCLUSIVE",
    )
    thresholds: list[Threshold] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        ids = [t.id for t in self.thresholds]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate threshold ids {dupes}")
        return self


class Verdict(_Frozen):
    """A judgement of evidence against a declared threshold; points at the evidence by digest."""

    verdict_id: Name = Field(description="the id of the threshold judged")
    verdict: Literal["pass", "fail", "inconclusive", "n/a"]
    measurement: MeasurementId
    metric: Name
    record_id: str | None = Field(default=None, description="the record judged; null when none applies")
    record_digest: Sha256Hex | None = Field(
        default=None, description="sha256 of the canonical JSON of the record judged"
    )
    observed: Number | None = None
    ci: ConfidenceInterval | None = None
    threshold: Number
    comparator: Comparator
    rule: DecisionRule
    margin: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    reason: Annotated[str, StringConstraints(min_length=1)] = Field(description="why, in one sentence")
    rationale: str = ""
    set_by: Name
    set_at: AwareDatetime
    clauses: list[ClauseRef] = Field(default_factory=list)
    validation: str | None = Field(
        default=None,
        description="the instrument's validation the verdict rests on (thresholds that require one)",
    )
    validation_report: Sha256Hex | None = Field(
        default=None, description="sha256 of the validation report consulted"
    )


class Gate(_Frozen):
    """The roll-up of all verdicts into one deployment decision."""

    decision: Literal["pass", "fail", "inconclusive"]
    counts: dict[str, int]
    reasons: list[str] = Field(description="the verdicts that decided it, one sentence each")


class ClauseIndexEntry(_Frozen):
    """One clause of the catalog and the evidence in this dossier that bears on it."""

    clause_id: ClauseId
    paraphrase: Name
    text_version: str
    status: Literal["evidenced", "not evidenced by this dossier"]
    strongest: Literal["direct", "partial", "supporting"] | None = None
    records: list[str] = Field(default_factory=list, description="record ids")
    verdicts: list[str] = Field(default_factory=list, description="verdict ids")

    @model_validator(mode="after")
    def _status_matches(self) -> ClauseIndexEntry:
        evidenced = bool(self.records or self.verdicts)
        if evidenced != (self.status == "evidenced"):
            raise ValueError(f"clause {self.clause_id}: status {self.status!r} contradicts its evidence")
        return self


class Predecessor(_Frozen):
    """The dossier this one supersedes."""

    dossier_id: Name
    sha256: Sha256Hex = Field(description="sha256 of the predecessor's dossier.json")
    created_at: AwareDatetime


class ChangeEntry(_Frozen):
    """One difference from the predecessor."""

    area: Literal["model", "suite", "policy", "verdicts"]
    item: Name
    before: str | None = None
    after: str | None = None


class Producer(_Frozen):
    """The tool that produced the dossier."""

    name: Literal["interp-dossier"] = "interp-dossier"
    version: Name


class WeightFile(_Frozen):
    """One file of model weights, by digest."""

    name: Name
    sha256: Sha256Hex
    bytes: Annotated[int, Field(ge=0)]


class NumericsCertificate(_Frozen):
    """How faithfully the measured model computes: the bridge against the plain model, batched against alone.

    Measured on the dossier's own prompts, in the dtype of the run, before any
    measurement: the logits of every real token of each prompt, (a) through the
    TransformerBridge against the plain ``transformers`` model it wraps (not
    applicable to an organism, which exists only as a bridge), and (b) in one
    left-padded batch with an attention mask against each prompt alone.
    """

    dtype: Dtype
    prompt_source: Name = Field(description="the dataset the prompts were taken from")
    prompts: Annotated[int, Field(ge=1)]
    tokens: Annotated[int, Field(ge=1)] = Field(description="real tokens compared, over all prompts")
    reference: Literal["transformers", "none"] = Field(
        description="the plain implementation the bridge was compared with, or none (an organism)"
    )
    bridge_max_abs_diff: Number | None = Field(description="max |bridge - plain model| over all logits")
    bridge_mean_abs_diff: Number | None
    batched_max_abs_diff: Number = Field(description="max |padded batch - alone| over all logits of real tokens")
    batched_mean_abs_diff: Number
    note: Annotated[str, StringConstraints(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _reference_consistent(self) -> NumericsCertificate:
        compared = self.bridge_max_abs_diff is not None and self.bridge_mean_abs_diff is not None
        if compared != (self.reference == "transformers"):
            raise ValueError("the bridge is compared exactly when there is a plain model to compare with")
        return self


class ModelIdentity(_Frozen):
    """Which model was measured, exactly, and how its weights were processed."""

    name: Name
    source: Literal["organism", "huggingface"]
    path: str | None = Field(default=None, description="local directory, for user models")
    architecture: dict[str, JsonValue] = Field(description="the configuration the model was built from")
    weights_sha256: Sha256Hex = Field(description="sha256 over the weight files, see weight_files")
    weight_files: list[WeightFile] = Field(min_length=1)
    tokenizer_sha256: Sha256Hex | None = None
    n_parameters: Annotated[int, Field(ge=0)]
    processing: dict[str, JsonValue] = Field(
        description="every weight-processing flag (LayerNorm folding, centring, dtype, ...)"
    )
    numerics: NumericsCertificate | None = Field(
        default=None, description="the numerics certificate of the run (dossiers made by run carry one)"
    )


class Environment(_Frozen):
    """Where the measurements ran."""

    python: Name
    torch: Name | None
    transformer_lens: Name | None
    platform: Name
    seeds: dict[str, int]
    deterministic_algorithms: bool
    threads: Annotated[int, Field(ge=1)]
    executor: Name | None = Field(
        default=None,
        description="how the measurements were executed when not in the producing process, e.g. "
        "'ray 2.60.0: a local cluster (2 CPUs)'; null: in-process",
    )


class SignerInfo(_Frozen):
    """Who signs the bundle; filled in before rendering so that the PDF can say it."""

    subject: Name
    certificate_sha256: Sha256Hex
    development_key: bool
    notice: str | None = Field(default=None, description="printed on every artifact, e.g. for dev keys")

    @model_validator(mode="after")
    def _dev_key_marked(self) -> SignerInfo:
        if self.development_key and self.notice != DEVELOPMENT_KEY_NOTICE:
            raise ValueError(f"a development key must carry the notice {DEVELOPMENT_KEY_NOTICE!r}")
        return self
