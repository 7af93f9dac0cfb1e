"""The auditor's check of a whole sweep: every checkpoint's bundle, then the trend over them.

A sweep directory (``interp-dossier sweep``) holds exactly::

    SWEEP/checkpoints/<label>/   one signed dossier bundle per checkpoint
    SWEEP/trend/                 the signed trend dossier over them

Each checkpoint's bundle is verified with the dossier procedure, and the trend's
bundle with the same steps reading a trend (:mod:`signing.verify`), whose step 7
reads every checkpoint's dossier.json by the sha256 the trend records and
recomputes the trend from them. The sweep verifies only if every bundle does and
the directory holds nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.trend import is_trend_document
from signing.bundle import DOSSIER_JSON, MAX_FILE_BYTES
from signing.errors import BundleError
from signing.longterm import RevocationPolicy
from signing.trust import SignerPolicy
from signing.verify import CHECKPOINTS_DIR, VerificationReport, verify_bundle

__all__ = ["TREND_DIR", "SweepReport", "is_sweep", "verify_sweep"]

#: The directory of a sweep that holds the trend's bundle.
TREND_DIR = "trend"


def is_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep directory (it holds ``trend/`` and ``checkpoints/``)."""
    return (path / TREND_DIR).is_dir() and (path / CHECKPOINTS_DIR).is_dir()


@dataclass(frozen=True)
class SweepReport:
    """Each bundle's report (by its path in the sweep) and what is wrong with the sweep itself."""

    #: (``checkpoints/<label>`` or ``trend``, its report, or None when it could not be verified at all)
    bundles: list[tuple[str, VerificationReport | None]]
    #: entries of the sweep that are not its bundles, and bundles that could not be read, one sentence each
    problems: list[str] = field(default_factory=list)

    @property
    def trend(self) -> VerificationReport | None:
        """The trend bundle's report."""
        return next((report for name, report in self.bundles if name == TREND_DIR), None)

    @property
    def bottom_line(self) -> bool:
        """True only if every bundle verified and the sweep holds nothing else."""
        return not self.problems and all(r is not None and r.bottom_line for _, r in self.bundles)

    def to_json(self) -> dict[str, Any]:
        """The ``verify --json`` object: the trend's report, with every bundle's and the sweep's problems."""
        trend = self.trend
        if trend is not None:
            out = trend.to_json()
        else:
            out = VerificationReport(steps=[], development_key=False).to_json()
        out["bottom_line"] = self.bottom_line
        out["sweep"] = {
            "bundles": [
                {"bundle": name, "bottom_line": bool(r and r.bottom_line), "report": r.to_json() if r else None}
                for name, r in self.bundles
            ],
            "problems": list(self.problems),
        }
        return out


def verify_sweep(
    sweep_dir: Path,
    trust_anchors: Sequence[Path],
    *,
    signer_policy: SignerPolicy | None = None,
    at: dt.datetime | None = None,
    revocation: RevocationPolicy = "soft-fail",
    revocation_data: Sequence[Path] = (),
) -> SweepReport:
    """Verify every bundle of the sweep in ``sweep_dir`` against the auditor's trust anchors.

    The arguments are those of :func:`signing.verify.verify_bundle`, applied to every bundle.
    """
    sweep_dir = Path(sweep_dir)
    problems: list[str] = []
    for entry in sorted(sweep_dir.iterdir()):
        if entry.name not in (TREND_DIR, CHECKPOINTS_DIR) or entry.is_symlink() or not entry.is_dir():
            problems.append(f"the sweep holds {entry.name}, which is neither {CHECKPOINTS_DIR}/ nor {TREND_DIR}/")
    names = []
    for entry in sorted((sweep_dir / CHECKPOINTS_DIR).iterdir()):
        if entry.is_symlink() or not entry.is_dir():
            problems.append(f"{CHECKPOINTS_DIR}/{entry.name} is not a checkpoint's bundle directory")
        else:
            names.append(f"{CHECKPOINTS_DIR}/{entry.name}")
    names.append(TREND_DIR)
    bundles: list[tuple[str, VerificationReport | None]] = []
    for name in names:
        try:
            report = verify_bundle(sweep_dir / name, trust_anchors, signer_policy=signer_policy, at=at,
                                   revocation=revocation, revocation_data=revocation_data, in_sweep=True)  # fmt: skip
        except BundleError as exc:  # an incomplete bundle: a failure of the sweep, not of the verifier
            problems.append(f"{name}: {exc.message}")
            bundles.append((name, None))
            continue
        bundles.append((name, report))
    trend_json = sweep_dir / TREND_DIR / DOSSIER_JSON
    readable = trend_json.is_file() and trend_json.stat().st_size <= MAX_FILE_BYTES
    if readable and not is_trend_document(trend_json.read_bytes()):
        problems.append(f"{TREND_DIR}/ holds a model's dossier, not a trend dossier")
    return SweepReport(bundles=bundles, problems=problems)
