"""Files written whole or not at all, and the one output-directory check."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from evidence.errors import ConfigError
from evidence.files import check_output_dir, write_directory_atomically, write_file_atomically


def test_file_is_written_with_its_mode_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.p12"
    write_file_atomically(path, b"key", mode=0o600)
    assert path.read_bytes() == b"key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.p12"]


def test_overwrite_replaces_and_no_overwrite_refuses(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_file_atomically(path, b"one")
    write_file_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        write_file_atomically(path, b"three", overwrite=False)
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_directory_replaces_the_previous_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_directory_atomically({"dossier.json": b"old", "extra": b"x"}, out)
    write_directory_atomically({"dossier.json": b"new"}, out)
    assert [p.name for p in out.iterdir()] == ["dossier.json"]
    assert (out / "dossier.json").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_dir_check_is_a_config_error_by_default(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new") == (tmp_path / "new").absolute()
    with pytest.raises(ConfigError, match="does not exist") as info:
        check_output_dir(tmp_path / "missing" / "out")
    assert info.value.hint and "create it first" in info.value.hint
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="does not look like a dossier bundle"):
        check_output_dir(tmp_path / "home")
    (tmp_path / "home" / "dossier.json").write_text("{}")
    assert check_output_dir(tmp_path / "home") == (tmp_path / "home").absolute()
