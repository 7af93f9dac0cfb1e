"""Locate the data directories that ship with the package (schemas/, templates/).

In a source checkout or an editable install they sit at the top of the
repository; in a built wheel they are packed under ``evidence/_resources/``.
Both are found through :mod:`importlib.resources`.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from evidence.errors import ConfigError

__all__ = ["resource_dir"]


def resource_dir(name: Literal["schemas", "templates"]) -> Traversable:
    """The shipped ``schemas`` or ``templates`` directory."""
    packed = resources.files("evidence") / "_resources" / name
    if packed.is_dir():
        return packed
    source = Path(str(resources.files("evidence"))).parent / name
    if source.is_dir():
        return source
    raise ConfigError(
        f"the installed package has no {name}/ directory",
        hint="reinstall interp-dossier; the wheel must ship schemas/ and templates/",
    )
