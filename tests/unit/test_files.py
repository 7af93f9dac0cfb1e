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
    assert check_output_dir(tmp_path / "home", replace=True) == (tmp_path / "home").absolute()


def test_an_existing_bundle_is_replaced_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_directory_atomically({"dossier.json": b"old"}, out)
    with pytest.raises(ConfigError, match="refusing to replace the bundle") as info:
        check_output_dir(out)
    assert "--force" in (info.value.hint or "")
    assert check_output_dir(out, replace=True) == out.absolute()


def test_a_replaced_bundle_holding_a_users_file_is_kept_aside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_directory_atomically({"dossier.json": b"old", "dossier.pdf": b"%PDF"}, out)
    (out / "notes.txt").write_text("mine")
    kept = write_directory_atomically({"dossier.json": b"new"}, out, replaceable={"dossier.json", "dossier.pdf"})
    assert kept is not None and kept.name.startswith("out.previous-")
    assert (kept / "notes.txt").read_text() == "mine" and (kept / "dossier.json").read_bytes() == b"old"
    assert (out / "dossier.json").read_bytes() == b"new"
    # a bundle of the bundle's own files alone is removed once the new one is in place
    assert write_directory_atomically({"dossier.json": b"newer"}, out, replaceable={"dossier.json"}) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", kept.name])


def test_sign_refuses_to_replace_a_bundle_without_force_and_keeps_a_users_file(tmp_path: Path, capsys) -> None:
    from evidence.cli import main
    from evidence.run import publish
    from tests.factories import make_dossier

    draft, out = tmp_path / "draft", tmp_path / "signed"
    publish(make_dossier(), draft, signer=None)
    assert main(["sign", str(draft), "--out", str(out)]) == 0
    before = (out / "dossier.pdf").read_bytes()
    capsys.readouterr()
    assert main(["sign", str(draft), "--out", str(out)]) == 2
    assert "refusing to replace the bundle" in capsys.readouterr().err
    assert (out / "dossier.pdf").read_bytes() == before
    (out / "review-notes.txt").write_text("the committee's notes")
    assert main(["sign", str(draft), "--out", str(out), "--force"]) == 0
    said = capsys.readouterr().out
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("signed.previous-")]
    assert len(kept) == 1 and f"kept as {kept[0]}" in said
    assert (kept[0] / "review-notes.txt").read_text() == "the committee's notes"
    assert not (out / "review-notes.txt").exists() and (out / "dossier.json").is_file()
