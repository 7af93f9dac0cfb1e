"""Locate the data directories that ship with the package (schemas/, templates/, docs/methods/, the fonts).

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

__all__ = ["resource_dir", "shipped_fonts"]


def resource_dir(name: Literal["schemas", "templates", "docs/methods"]) -> Traversable:
    """The shipped ``schemas``, ``templates`` or ``docs/methods`` directory."""
    packed = resources.files("evidence").joinpath("_resources", *name.split("/"))
    if packed.is_dir():
        return packed
    source = Path(str(resources.files("evidence"))).parent.joinpath(*name.split("/"))
    if source.is_dir():
        return source
    raise ConfigError(
        f"the installed package has no {name}/ directory",
        hint="reinstall interp-dossier; the wheel must ship schemas/, templates/ and docs/methods/",
    )


def shipped_fonts() -> Path:
    """The directory of the fonts the PDF and its figures use (``evidence/fonts/``, with their licences)."""
    path = Path(str(resources.files("evidence").joinpath("fonts")))
    if not any(path.glob("*.ttf")):
        raise ConfigError(f"the shipped fonts are missing from {path}", hint="reinstall interp-dossier")
    return path
