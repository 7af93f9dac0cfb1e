"""Strict JSON parsing for material under verification: no duplicate keys, no NaN / Infinity."""

from __future__ import annotations

from typing import Any

from evidence.canonical import parse_json


def parse_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; :class:`ValueError` naming ``what`` otherwise.

    Duplicate keys, non-finite numbers and lone surrogates are refused (see
    :func:`evidence.canonical.parse_json`).
    """
    obj = parse_json(data, what)
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    return obj
