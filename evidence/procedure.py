"""The auditor's verification procedure: its numbered steps, defined once.

``interp-dossier verify`` names its steps with these titles (``signing.verify``),
the PDF's chapter "How to verify" lists them, and the README's numbered list
under "Verification procedure" is :func:`readme_list` (a test keeps it equal).
The README then explains each step in detail; this module holds what every
reader sees: a title and one or two sentences per step.

Pure standard library: an auditor's install imports it without torch,
TransformerLens or WeasyPrint.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "README_BEGIN",
    "README_END",
    "STEPS",
    "TREND_STEPS",
    "VerificationStep",
    "readme_list",
    "step_titles",
]


@dataclass(frozen=True)
class VerificationStep:
    """One numbered step of the procedure."""

    number: int
    #: the step's name, as ``verify`` prints it: ``[PASS] (N) <title>: <detail>``
    title: str
    #: what the step checks, in one or two sentences
    description: str
    #: when the step applies only to some bundles, which ones (``None``: every bundle)
    only_when: str | None = None


STEPS: tuple[VerificationStep, ...] = (
    VerificationStep(
        1,
        "envelope signed by a trusted signer",
        "The DSSE envelope parses and carries exactly one signature, valid over the pre-authentication "
        "encoding; the signer's certificate chains to a trust anchor the auditor supplied with --trust, "
        "was not revoked before the signature's time, and is fit to sign documents.",
    ),
    VerificationStep(
        2,
        "in-toto statement v1 with the dossier predicate",
        "The envelope's payload is an in-toto Statement v1 whose predicate type is interp-dossier's.",
    ),
    VerificationStep(
        3,
        "subject digests match dossier.json and dossier.pdf",
        "The statement's subject digests equal the SHA-256 of dossier.json, dossier.pdf and every export "
        "it names, and the bundle holds nothing else.",
    ),
    VerificationStep(
        4,
        "dossier.json is canonical, validates, and agrees with the signed statement and signer",
        "dossier.json parses strictly, is exactly its canonical RFC 8785 bytes, has a supported schema "
        "version and validates against the JSON Schema; the signed statement and the signer it names "
        "agree with it.",
    ),
    VerificationStep(
        5,
        "PDF signature intact, trusted and covering the entire file",
        "The PDF's one signature is intact, valid and trusted and covers the entire file; no later "
        "update changes its content (at PAdES B-LT/B-LTA only validation data and document timestamps "
        "may follow).",
    ),
    VerificationStep(
        6,
        "PDF embeds this dossier.json and prints its digest",
        "The dossier.json embedded in the PDF is byte-identical to the bundle's, and the digest printed "
        "on the PDF's cover equals its SHA-256.",
    ),
    VerificationStep(
        7,
        "verdicts, gate, clause index and calibration checks recompute from records and policy",
        "The recorded policy predates the dossier; every verdict, the gate decision, the clause index and "
        "every calibration check recompute from the records, the recorded policy and the validation "
        "report in the bundle.",
    ),
    VerificationStep(
        8,
        "the DSSE signature's timestamp is valid, trusted and names it",
        "dossier.dsse.tst is an RFC 3161 timestamp over the envelope's signature by an authority that "
        "chains to a --trust anchor, dated within the signer certificate's validity.",
        only_when="a bundle signed with --tsa",
    ),
)

#: The steps for the trend dossier of a sweep (``interp-dossier sweep``): the same numbers, with steps 2, 4 and 7
#: reading a trend instead of a dossier. Each checkpoint's own bundle is verified with :data:`STEPS`.
TREND_STEPS: tuple[VerificationStep, ...] = tuple(
    {
        2: VerificationStep(
            2,
            "in-toto statement v1 with the trend predicate",
            "The envelope's payload is an in-toto Statement v1 whose predicate type is interp-dossier's trend "
            "predicate, naming every checkpoint's dossier by SHA-256.",
        ),
        4: VerificationStep(
            4,
            "the trend's dossier.json is canonical, validates, and agrees with the signed statement and signer",
            "The trend parses strictly, is exactly its canonical RFC 8785 bytes, has a supported schema version "
            "and validates against trend.schema.json; the signed statement and the signer it names agree with it.",
        ),
        7: VerificationStep(
            7,
            "every series, verdict change and gate recompute from the checkpoints' dossiers",
            "Every checkpoint's dossier.json beside the trend has the SHA-256 the trend records (and no other "
            "checkpoint is there); every metric series, verdict series, first verdict change and the gate series "
            "recompute from those dossiers.",
        ),
    }.get(step.number, step)
    for step in STEPS
)

#: The markers around the README's numbered list of the steps.
README_BEGIN = "<!-- verification-steps: begin -->"
README_END = "<!-- verification-steps: end -->"


def step_titles(steps: tuple[VerificationStep, ...] = STEPS) -> dict[int, str]:
    """Each step's number and title, in order (of the dossier procedure, or of ``steps``)."""
    return {step.number: step.title for step in steps}


def readme_list() -> str:
    """The README's numbered list of the steps (Markdown), as it must stand between the markers."""
    lines = []
    for step in STEPS:
        when = f" (Only in {step.only_when}.)" if step.only_when else ""
        lines.append(f"{step.number}. **{step.title}**: {step.description}{when}")
    return "\n".join(lines)
