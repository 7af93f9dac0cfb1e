"""Example outputs: a handful of prompts per condition and what the model actually said.

A behaviour-based measurement reports rates ("97% of harmful prompts refused");
a reader should also see the behaviour behind a rate. Such a measurement adds
one table, :data:`EXAMPLES_TABLE`, with a few prompts per condition (the first
ones of its evaluation part, not chosen by outcome), the model's greedy reply to
each, and how the measurement judged that reply. The table holds the exact
decoded text, shortened to :data:`MAX_CHARS` characters and with control
characters written as escapes; it changes no metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evidence.records import EXAMPLES_TABLE, Table

__all__ = ["EXAMPLES_COLUMNS", "EXAMPLES_TABLE", "MAX_CHARS", "Example", "examples_table", "shown_text"]

EXAMPLES_COLUMNS = ["condition", "prompt_id", "prompt", "reply", "judged"]
#: The longest prompt or reply text kept, in characters (a prompt keeps its end, a reply its start).
MAX_CHARS = 240


@dataclass(frozen=True)
class Example:
    """One prompt under one condition: its token ids, the reply's token ids, and the judgement."""

    condition: str
    prompt_id: str
    prompt: Sequence[int]
    reply: Sequence[int]
    judged: str


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\u21b5 ")  # a visible line break: the table cell stays one paragraph
        elif ch == "\t" or ch == " ":
            out.append(" ")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def shown_text(text: str, *, keep: str) -> str:
    """``text`` with control characters escaped, shortened to :data:`MAX_CHARS` (``keep``: "start" or "end")."""
    shown = _escape(text).strip()
    if len(shown) <= MAX_CHARS:
        return shown
    if keep == "end":
        return "\u2026" + shown[-(MAX_CHARS - 1) :]
    return shown[: MAX_CHARS - 1] + "\u2026"


def _decode(tokenizer: object, ids: Sequence[int]) -> str:
    decode = getattr(tokenizer, "decode", None)
    if decode is None:
        return " ".join(str(i) for i in ids)
    text: str = decode(list(ids), skip_special_tokens=True)
    return text


def examples_table(tokenizer: object, examples: Sequence[Example], description: str) -> Table:
    """The table of ``examples``: prompt (its end) and reply (its start) decoded, each judgement."""
    rows: list[list[str | float | int | None]] = [
        [
            e.condition,
            e.prompt_id,
            shown_text(_decode(tokenizer, e.prompt), keep="end"),
            shown_text(_decode(tokenizer, e.reply), keep="start") or "(no text before the stop token)",
            e.judged,
        ]
        for e in examples
    ]
    return Table(name=EXAMPLES_TABLE, columns=list(EXAMPLES_COLUMNS), rows=rows, description=description)
