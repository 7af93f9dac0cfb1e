"""The clause catalog: which documentation requirements evidence can be mapped onto."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from evidence.errors import ConfigError, config_error_from_validation
from evidence.records import ClauseIndexEntry, ClauseRef, EvidenceRecord, Verdict

__all__ = ["EVIDENCE_KINDS", "Catalog", "Clause", "build_clause_index", "load_catalog"]

EvidenceKind = Literal["measurement", "calibration", "verdict", "provenance", "external", "signature"]
EVIDENCE_KINDS: tuple[str, ...] = ("measurement", "calibration", "verdict", "provenance", "external", "signature")


class Clause(BaseModel):
    """One requirement, paraphrased, with the text version it refers to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(min_length=3)]
    paraphrase: Annotated[str, StringConstraints(min_length=10, max_length=200)]
    accepts: list[EvidenceKind] = Field(min_length=1)

    @property
    def framework(self) -> str:
        """The framework prefix, e.g. ``EU-AIA``."""
        head = self.id.split("/", 1)[0]
        return head.split(":", 1)[0]


class _CatalogFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog_version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    texts: dict[str, str]
    clause: list[Clause]


@dataclass(frozen=True)
class Catalog:
    """The loaded catalog, indexed by clause id."""

    version: str
    texts: dict[str, str]
    clauses: dict[str, Clause]

    def __contains__(self, clause_id: object) -> bool:
        return clause_id in self.clauses

    def get(self, clause_id: str) -> Clause:
        """The clause with this id; ConfigError naming it if the catalog has none."""
        try:
            return self.clauses[clause_id]
        except KeyError:
            raise ConfigError(
                f"clause {clause_id!r} is not in the clause catalog {self.version}",
                hint="use an id from evidence/catalog/clauses.toml",
            ) from None

    def text_version(self, clause_id: str) -> str:
        """The legal or standard text the clause refers to."""
        return self.texts.get(self.get(clause_id).framework, "")

    def check(self, refs: Iterable[ClauseRef]) -> None:
        """Every reference names a clause of the catalog."""
        for ref in refs:
            self.get(ref.id)


_ClauseIdAdapter = TypeAdapter(ClauseRef)


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with this release."""
    text = (resources.files("evidence") / "catalog" / "clauses.toml").read_text(encoding="utf-8")
    try:
        parsed = _CatalogFile.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - guarded by tests
        raise ConfigError(f"the clause catalog is malformed: {exc}") from None
    except ValidationError as exc:  # pragma: no cover - guarded by tests
        raise config_error_from_validation(exc, source="the clause catalog is malformed") from None
    clauses: dict[str, Clause] = {}
    for clause in parsed.clause:
        if clause.id in clauses:
            raise ConfigError(f"the clause catalog lists {clause.id!r} twice")
        # Every id must also be a valid ClauseRef id.
        _ClauseIdAdapter.validate_python({"id": clause.id, "strength": "direct", "rationale": "x"})
        if clause.framework not in parsed.texts:
            raise ConfigError(f"clause {clause.id!r}: framework {clause.framework!r} has no text version")
        clauses[clause.id] = clause
    return Catalog(version=parsed.catalog_version, texts=dict(parsed.texts), clauses=clauses)


Strength = Literal["direct", "partial", "supporting"]
_STRENGTH_ORDER: dict[Strength, int] = {"direct": 0, "partial": 1, "supporting": 2}


def _strongest(strengths: list[Strength]) -> Strength | None:
    if not strengths:
        return None
    return sorted(strengths, key=_STRENGTH_ORDER.__getitem__)[0]


def build_clause_index(
    records: Iterable[EvidenceRecord], verdicts: Iterable[Verdict], catalog: Catalog | None = None
) -> list[ClauseIndexEntry]:
    """Every clause of the catalog, with the records and verdicts that evidence it (or none).

    Only records with status ``ok`` count as evidence. A clause id that is not in the
    catalog is an error: mappings must be to known clauses.
    """
    catalog = catalog or load_catalog()
    found: dict[str, tuple[list[str], list[str], list[Strength]]] = {cid: ([], [], []) for cid in catalog.clauses}
    for record in records:
        for ref in record.clauses:
            catalog.get(ref.id)
            if record.status == "ok":
                found[ref.id][0].append(record.record_id)
                found[ref.id][2].append(ref.strength)
    for verdict in verdicts:
        for ref in verdict.clauses:
            catalog.get(ref.id)
            if verdict.verdict != "n/a":
                found[ref.id][1].append(verdict.verdict_id)
                found[ref.id][2].append(ref.strength)
    entries = []
    for cid, clause in catalog.clauses.items():
        rec_ids, ver_ids, strengths = found[cid]
        strongest = _strongest(strengths)
        entries.append(
            ClauseIndexEntry(
                clause_id=cid,
                paraphrase=clause.paraphrase,
                text_version=catalog.text_version(cid),
                status="evidenced" if rec_ids or ver_ids else "not evidenced by this dossier",
                strongest=strongest,
                records=sorted(set(rec_ids)),
                verdicts=sorted(set(ver_ids)),
            )
        )
    return entries
