"""Strict JSON parsing for material under verification: no duplicate keys, no NaN / Infinity."""

from __future__ import annotations

import json
from typing import Any


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def parse_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; :class:`ValueError` naming ``what`` otherwise."""
    try:
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    return obj
