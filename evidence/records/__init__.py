"""Evidence records and the dossier: the public data model, in one package.

These pydantic models are the single definition of what a dossier contains.
``schemas/*.schema.json`` are generated from them (``interp-dossier schema``)
and committed; auditors and other tools rely on the field names, so extend
this model, never rename a field.

Every model is frozen, rejects unknown keys and rejects NaN / Inf: a malformed
record cannot exist as an object.

Modules, each building only on the ones before it:

* :mod:`evidence.records.core`: records, metrics, policy, verdicts, the model's identity;
* :mod:`evidence.records.external`: behavioural evaluation results from other tools;
* :mod:`evidence.records.crossref`: findings set against those results;
* :mod:`evidence.records.dossier`: the dossier that holds all of them;
* :mod:`evidence.records.validation`: the validation report of the instruments over a population.

Reading external logs and judging cross-references are not here; they are in
:mod:`evidence.external` and :mod:`evidence.crossref`.
"""

from __future__ import annotations

from evidence.records.core import (
    DEVELOPMENT_KEY_NOTICE,
    EXAMPLES_TABLE,
    PROFILES,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    Baseline,
    CalibrationCheck,
    ChangeEntry,
    ClauseIndexEntry,
    ClauseRef,
    ConfidenceInterval,
    Criterion,
    DataRef,
    Environment,
    ErrorInfo,
    EvidenceRecord,
    Gate,
    MeasurementSpec,
    Metric,
    ModelIdentity,
    NumericsCertificate,
    Policy,
    Predecessor,
    Producer,
    SignerInfo,
    Table,
    Threshold,
    Tolerance,
    ValidationRequirement,
    Verdict,
    WeightFile,
)
from evidence.records.crossref import (
    Agreement,
    CrossReference,
)
from evidence.records.dossier import VALIDATION_REPORT_FILE, Dossier, ValidatedDetector, ValidationCitation
from evidence.records.external import (
    CONSTRUCTS,
    MAX_SAMPLES,
    Construct,
    ConstructDeclaration,
    ExternalEval,
    ExternalSample,
    ExternalScore,
    LogFormat,
    Tool,
)
from evidence.records.validation import (
    BEHAVIOURS,
    Behaviour,
    DetectorValidation,
    OrganismOutcome,
    Rate,
    ValidationEnvironment,
    ValidationReport,
)

__all__ = [
    "BEHAVIOURS",
    "CONSTRUCTS",
    "DEVELOPMENT_KEY_NOTICE",
    "EXAMPLES_TABLE",
    "MAX_SAMPLES",
    "PROFILES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Agreement",
    "Baseline",
    "Behaviour",
    "CalibrationCheck",
    "ChangeEntry",
    "ClauseIndexEntry",
    "ClauseRef",
    "ConfidenceInterval",
    "Construct",
    "ConstructDeclaration",
    "Criterion",
    "CrossReference",
    "DataRef",
    "DetectorValidation",
    "Dossier",
    "VALIDATION_REPORT_FILE",
    "ValidatedDetector",
    "ValidationCitation",
    "Environment",
    "ErrorInfo",
    "EvidenceRecord",
    "ExternalEval",
    "ExternalSample",
    "ExternalScore",
    "Gate",
    "LogFormat",
    "MeasurementSpec",
    "Metric",
    "ModelIdentity",
    "NumericsCertificate",
    "OrganismOutcome",
    "Policy",
    "Predecessor",
    "Producer",
    "Rate",
    "SignerInfo",
    "Table",
    "Threshold",
    "Tolerance",
    "Tool",
    "ValidationEnvironment",
    "ValidationReport",
    "ValidationRequirement",
    "Verdict",
    "WeightFile",
]
