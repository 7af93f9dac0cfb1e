"""Shell completion: the script printed by `completion` completes in a real bash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from evidence.cli import build_parser, main
from evidence.completion import completion_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _complete(script: str, line: list[str], tmp_path) -> list[str]:
    """What bash offers for the last word of ``line`` (words after the program name)."""
    words = ["interp-dossier", *line]
    program = "\n".join(
        [
            script,
            "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            "_interp_dossier_complete",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    out = subprocess.run(["bash", "-c", program], cwd=tmp_path, capture_output=True, text=True, check=True)
    return sorted(w for w in out.stdout.splitlines() if w)


@pytest.fixture(scope="module")
def script() -> str:
    return completion_script(build_parser(), "bash")


def test_completion_prints_the_script(capsys) -> None:
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# bash completion for interp-dossier")
    assert out.rstrip().endswith("complete -o filenames -F _interp_dossier_complete interp-dossier")
    assert main(["completion", "zsh"]) == 0
    assert "bashcompinit" in capsys.readouterr().out


def test_subcommands_and_nested_subcommands(script, tmp_path) -> None:
    assert _complete(script, ["ve"], tmp_path) == ["verify"]
    assert _complete(script, ["re"], tmp_path) == ["render", "reproduce"]
    assert _complete(script, ["population", ""], tmp_path) == ["list", "train"]
    assert _complete(script, ["population", "train", "--m"], tmp_path) == ["--member", "--missing"]


def test_options_of_the_command_and_choices_of_an_option(script, tmp_path) -> None:
    assert _complete(script, ["verify", "bundle", "--rev"], tmp_path) == ["--revocation", "--revocation-data"]
    assert _complete(script, ["verify", "--revocation", ""], tmp_path) == ["hard-fail", "soft-fail"]
    assert _complete(script, ["run", "--level", "B-L"], tmp_path) == ["B-LT", "B-LTA"]
    assert _complete(script, ["completion", ""], tmp_path) == ["bash", "zsh"]


def test_file_names_where_a_file_goes(script, tmp_path) -> None:
    (tmp_path / "spec.toml").write_text("")
    (tmp_path / "signer.p12").write_bytes(b"")
    assert _complete(script, ["run", "sp"], tmp_path) == ["spec.toml"]
    assert _complete(script, ["run", "spec.toml", "--key", "sig"], tmp_path) == ["signer.p12"]


def test_every_command_of_the_parser_is_completed(script, tmp_path) -> None:
    offered = _complete(script, [""], tmp_path)
    parser_commands = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert offered == parser_commands


def test_an_unknown_shell_is_refused(capsys) -> None:
    assert main(["completion", "fish"]) == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
