"""What changed since the predecessor dossier: model, suite, policy and verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from evidence.canonical import sha256_hex
from evidence.dossier import parse_dossier
from evidence.errors import ConfigError
from evidence.records import ChangeEntry, Dossier, Predecessor

__all__ = ["diff_dossiers", "load_predecessor"]


def load_predecessor(path: Path) -> tuple[Dossier, Predecessor]:
    """Read a predecessor (a bundle directory or its dossier.json) and identify it by digest."""
    file = path / "dossier.json" if path.is_dir() else path
    try:
        data = file.read_bytes()
    except OSError:
        raise ConfigError(
            f"predecessor {file} cannot be read", hint="pass a bundle directory or its dossier.json"
        ) from None
    dossier = parse_dossier(data)
    return dossier, Predecessor(dossier_id=dossier.dossier_id, sha256=sha256_hex(data), created_at=dossier.created_at)


def _short(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def diff_dossiers(old: Dossier, new: Dossier) -> list[ChangeEntry]:
    """The differences that matter to a reader of the filing, in a stable order."""
    changes: list[ChangeEntry] = []

    def add(area: str, item: str, before: object, after: object) -> None:
        if before != after:
            changes.append(ChangeEntry(
                area=area,  # type: ignore[arg-type]
                item=item,
                before=None if before is None else (before if isinstance(before, str) else _short(before)),
                after=None if after is None else (after if isinstance(after, str) else _short(after)),
            ))

    om, nm = old.model, new.model
    add("model", "name", om.name, nm.name)
    add("model", "weights_sha256", om.weights_sha256, nm.weights_sha256)
    for key in sorted(set(om.architecture) | set(nm.architecture)):
        add("model", f"architecture.{key}", om.architecture.get(key), nm.architecture.get(key))
    for key in sorted(set(om.processing) | set(nm.processing)):
        add("model", f"processing.{key}", om.processing.get(key), nm.processing.get(key))

    add("suite", "profile", old.profile, new.profile)
    add("suite", "prompt_limit", old.prompt_limit, new.prompt_limit)
    old_specs = {r.measurement.id: r.measurement for r in old.records if r.subject == om.name}
    new_specs = {r.measurement.id: r.measurement for r in new.records if r.subject == nm.name}
    for mid in sorted(set(old_specs) | set(new_specs)):
        o, n = old_specs.get(mid), new_specs.get(mid)
        if o is None or n is None:
            add("suite", mid, "run" if o else None, "run" if n else None)
            continue
        add("suite", f"{mid}.version", o.version, n.version)
        add("suite", f"{mid}.params", o.params, n.params)

    op, np_ = old.policy, new.policy
    add("policy", "sha256", op.sha256 if op else None, np_.sha256 if np_ else None)
    ot = {t.id: t for t in op.thresholds} if op else {}
    nt = {t.id: t for t in np_.thresholds} if np_ else {}
    for tid in sorted(set(ot) | set(nt)):
        o_t, n_t = ot.get(tid), nt.get(tid)
        add("policy", tid,
            None if o_t is None else f"{o_t.metric} {o_t.comparator} {o_t.threshold:g} (margin {o_t.margin:g})",
            None if n_t is None else f"{n_t.metric} {n_t.comparator} {n_t.threshold:g} (margin {n_t.margin:g})")

    ov = {v.verdict_id: v.verdict for v in old.verdicts}
    nv = {v.verdict_id: v.verdict for v in new.verdicts}
    for vid in sorted(set(ov) | set(nv)):
        add("verdicts", vid, ov.get(vid), nv.get(vid))
    add("verdicts", "gate", old.gate.decision if old.gate else None, new.gate.decision if new.gate else None)
    return changes
