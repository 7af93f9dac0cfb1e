"""The one serializer: RFC 8785 canonical JSON.

Every byte that is hashed or signed (dossier.json, record digests, the in-toto
statement) comes from :func:`canonical_bytes`. Nothing else in the code base
turns a dossier into bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from pydantic import BaseModel

from evidence.errors import RecordError

__all__ = ["canonical_bytes", "sha256_hex"]


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
