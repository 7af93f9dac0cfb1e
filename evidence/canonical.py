"""The one serializer: RFC 8785 canonical JSON, and the strict parser that reads it back.

Every byte that is hashed or signed (dossier.json, record digests, the in-toto
statement) comes from :func:`canonical_bytes`. Nothing else in the code base
turns a dossier into bytes. :func:`parse_json` reads such bytes and refuses
what RFC 8785 cannot represent (non-finite numbers, lone surrogates) and
duplicate keys, at parse time.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import rfc8785
from pydantic import BaseModel

from evidence.errors import RecordError

__all__ = ["canonical_bytes", "parse_json", "sha256_hex"]


def canonical_bytes(obj: BaseModel | Any) -> bytes:
    """RFC 8785 canonical JSON of a pydantic model or of plain JSON data."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    try:
        return rfc8785.dumps(data)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise RecordError(
            f"cannot serialise to canonical JSON: {exc}",
            hint="non-finite numbers and integers of 2^53 or more are not representable",
        ) from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class _Refused(ValueError):
    """A JSON text that parses, but holds something canonical JSON cannot."""


def parse_json(data: bytes, what: str) -> Any:
    r"""``data`` as JSON; :class:`ValueError` with a sentence naming ``what`` if it is not strict JSON.

    Refused: text that is not UTF-8, duplicate keys, NaN / Infinity, numbers
    too large to be finite (``1e400``), and lone surrogates (``"\ud800"``).
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Refused(f"{what} has a duplicate key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise _Refused(f"{what} holds {name}, which is not a number JSON allows")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise _Refused(f"{what} holds the number {text[:40]}, which is too large to be finite")
        return value

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        obj = json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_float=number)
    except _Refused:
        raise
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be read") from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        raise ValueError(f"{what} holds a number that cannot be read") from None
    _refuse_lone_surrogates(obj, what)
    return obj


def _refuse_lone_surrogates(obj: Any, what: str) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(item[exc.start])
                raise _Refused(
                    f"{what} holds a lone surrogate (\\u{code:04x}), which is not a Unicode character"
                ) from None
