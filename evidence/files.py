"""Files and directories written whole or not at all, and the one check of an output directory.

Every file interp-dossier writes goes through :func:`write_file_atomically`
(keys, certificates, schemas, organism weights, a rendered PDF) and every
bundle through :func:`write_directory_atomically`: a reader sees the old
content or the new, never half of either, and an interrupted write leaves no
temporary file behind. Both raise :class:`OSError`; the caller turns it into
its own error, naming what was being written.

Standard library only (and :mod:`evidence.errors`): part of the light core
that :mod:`signing` may use.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from evidence.errors import ConfigError, UserFacingError

__all__ = [
    "BUNDLE_MARKER",
    "check_output_dir",
    "replace_directory",
    "write_directory_atomically",
    "write_file_atomically",
]

#: The file whose presence makes a directory a previous bundle, which may be replaced.
BUNDLE_MARKER = "dossier.json"


def write_file_atomically(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, then rename it into place.

    The file's ``mode`` is set before any byte is written (key files are never
    readable by others, not even briefly). With ``overwrite=False`` an existing
    ``path`` -- also one that appears while writing -- raises
    :class:`FileExistsError` and is left untouched.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb", closefd=True) as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if path exists or appeared meanwhile: never clobbers
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            if path.exists():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o644)


def write_directory_atomically(
    files: Mapping[str, bytes], out_dir: Path, *, replaceable: Collection[str] | None = None
) -> Path | None:
    """Write ``files`` (name -> bytes) as the directory ``out_dir``, all at once or not at all.

    The files go into a temporary directory beside ``out_dir``, which is then
    renamed into place; an existing ``out_dir`` is moved aside first. Once the
    new one is in place, the previous one is removed if it held nothing but
    regular files named in ``replaceable`` (every name, when None); otherwise it
    is kept beside the new one as ``<out_dir>.previous-<UTC time>`` and that path
    is returned, so that nothing a user put there is lost. On any failure
    nothing new is left behind and the previous ``out_dir`` is put back.
    Callers check the target first with :func:`check_output_dir` and the names
    themselves.
    """
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        for name, data in files.items():
            _write_file(staging / name, data)
        staging.chmod(0o755)
        kept = replace_directory(staging, out_dir, disposable=lambda old: _only_replaceable(old, replaceable))
        staging = None
        return kept
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: Path, out_dir: Path, *, disposable: Callable[[Path], bool]) -> Path | None:
    """Rename the finished directory ``staging`` to ``out_dir`` (beside it), replacing what is there.

    An existing ``out_dir`` is moved aside first, and put back if the rename fails. Once the new
    one is in place, the previous one is removed if ``disposable(previous)`` (it holds nothing of the
    user's); otherwise it is kept beside the new one as ``<out_dir>.previous-<UTC time>`` and that
    path is returned.
    """
    parent = out_dir.parent
    previous: Path | None = None
    if out_dir.exists():
        previous = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=parent))
        os.replace(out_dir, previous)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if previous is not None and not out_dir.exists():
            os.replace(previous, out_dir)  # put the previous directory back
        raise
    if previous is None:
        return None
    if disposable(previous):
        shutil.rmtree(previous, ignore_errors=True)
        return None
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = parent / f"{out_dir.name}.previous-{stamp}"
    suffix = 1
    while kept.exists():
        suffix += 1
        kept = parent / f"{out_dir.name}.previous-{stamp}-{suffix}"
    os.replace(previous, kept)
    return kept


def _only_replaceable(directory: Path, replaceable: Collection[str] | None) -> bool:
    """Whether ``directory`` holds only regular files named in ``replaceable`` (None: any name)."""
    for entry in directory.iterdir():
        if entry.is_symlink() or not entry.is_file():
            return False
        if replaceable is not None and entry.name not in replaceable:
            return False
    return True


def check_output_dir(
    out_dir: Path, *, error: type[UserFacingError] = ConfigError, replace: bool = False
) -> Path:
    """Refuse, before any work, an output directory that cannot be written; returns it absolute.

    The directory's parent must exist; the directory itself may be absent,
    empty, or -- with ``replace`` (``--force``) -- a previous bundle (it holds a
    :data:`BUNDLE_MARKER`), which is then replaced. Anything else raises ``error``.
    """
    out_dir = out_dir.expanduser().absolute()
    parent = out_dir.parent
    if not parent.is_dir():
        raise error(
            f"cannot write the bundle to {out_dir}: its parent directory {parent} does not exist",
            hint="create it first, or choose another --out",
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise error(
            f"cannot write the bundle to {out_dir}: it exists and is not a directory",
            hint="choose another --out",
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / BUNDLE_MARKER).is_file():
        raise error(
            f"refusing to replace {out_dir}: it is not empty and does not look like a "
            f"dossier bundle (no {BUNDLE_MARKER})",
            hint="choose a new or empty --out directory; only a previous bundle is replaced",
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replace:
        raise error(
            f"refusing to replace the bundle in {out_dir}",
            hint="choose another --out, or pass --force to replace it (the old bundle is moved aside, and kept as "
            f"{out_dir.name}.previous-TIME if it holds anything besides the bundle's own files)",
        )
    return out_dir
