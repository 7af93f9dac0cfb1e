"""Shell completion for the command line, generated from its argument parser.

``interp-dossier completion bash`` prints a bash completion function; ``zsh``
prints the same function behind zsh's ``bashcompinit``. The script is derived
from :func:`evidence.cli.build_parser` when it is printed, so it never falls
behind the commands: it completes sub-commands (also nested ones, such as
``population train``), each command's options, the values of options that
have a fixed set of choices, and file names everywhere else.

Nothing in the script runs the program: completing a word costs no Python
start-up.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

__all__ = ["SHELLS", "completion_script"]

#: The shells a script can be printed for.
SHELLS = ("bash", "zsh")

_FUNCTION = "_interp_dossier_complete"
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.:/=+-]+$")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (space-joined command path, parser), the top level as ``""``."""
    yield " ".join(path), parser
    for name, sub in _subcommands(parser).items():
        yield from _commands(sub, (*path, name))


def _words(values: list[str]) -> str:
    for value in values:
        if not _SAFE_WORD.match(value):
            raise ValueError(f"completion word {value!r} needs quoting; keep option names and choices plain")
    return " ".join(values)


def _cases(parser: argparse.ArgumentParser) -> tuple[list[str], list[str], list[str]]:
    """The ``case`` arms: words per command path, options taking a value, choices per option."""
    words_arms, value_arms, choice_arms = [], [], []
    for path, command in _commands(parser):
        # Words expected where a positional argument goes: sub-commands, or a positional's choices.
        subs = sorted(_subcommands(command)) or sorted(
            str(c) for a in command._actions if not a.option_strings and a.choices for c in a.choices
        )
        options = sorted(
            s for a in command._actions for s in a.option_strings if s.startswith("--") or len(a.option_strings) == 1
        )
        words_arms.append(f'        "{path}") words="{_words(subs + options)}" subs="{_words(subs)}" ;;')
        takes_value = sorted(s for a in command._actions if a.option_strings and a.nargs != 0 for s in a.option_strings)
        if takes_value:
            value_arms.append(f'        "{path}") takes="{_words(takes_value)}" ;;')
        for action in command._actions:
            if action.option_strings and action.choices:
                choices = _words([str(c) for c in action.choices])
                for option in action.option_strings:
                    choice_arms.append(f'        "{path}|{option}") choices="{choices}" ;;')
    return words_arms, value_arms, choice_arms


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (one of :data:`SHELLS`) of the program ``parser`` describes."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for shell {shell!r}; one of {', '.join(SHELLS)}")
    prog = parser.prog
    words_arms, value_arms, choice_arms = _cases(parser)
    known = {path for path, _ in _commands(parser)}
    commands = sorted(p for p in known if p)
    body = "\n".join(
        [
            f"# {shell} completion for {prog}; load it with: source <({prog} completion {shell})",
            *(["autoload -U +X bashcompinit && bashcompinit"] if shell == "zsh" else []),
            f"{_FUNCTION}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" path="" word i',
            '    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"',
            "    # The command path: the leading words that name (nested) sub-commands.",
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        word="${COMP_WORDS[i]}"',
            '        case "${path:+$path }$word" in',
            *(f'            "{c}") path="{c}" ;;' for c in commands),
            "            *) break ;;",
            "        esac",
            "    done",
            '    local words="" subs="" takes="" choices=""',
            '    case "$path" in',
            *words_arms,
            "    esac",
            '    case "$path" in',
            *value_arms,
            "    esac",
            '    case "$path|$prev" in',
            *choice_arms,
            "    esac",
            '    if [ -n "$choices" ]; then',
            '        COMPREPLY=($(compgen -W "$choices" -- "$cur"))',
            "        return 0",
            "    fi",
            "    # An option that takes a value: a file name (or any word) comes next.",
            '    case " $takes " in',
            '        *" $prev "*) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;',
            "    esac",
            "    # An option, or the name of a sub-command where one is expected; otherwise a file name.",
            '    if [[ "$cur" == -* ]]; then',
            '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            '    elif [ -n "$subs" ]; then',
            '        COMPREPLY=($(compgen -W "$subs" -- "$cur"))',
            "    else",
            '        COMPREPLY=($(compgen -f -- "$cur"))',
            "    fi",
            "    return 0",
            "}",
            f"complete -o filenames -F {_FUNCTION} {prog}",
            "",
        ]
    )
    return body
