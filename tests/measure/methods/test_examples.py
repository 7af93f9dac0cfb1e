"""The example-outputs table: exact text, control characters escaped, long text shortened."""

from evidence.measure.methods.examples import EXAMPLES_COLUMNS, MAX_CHARS, Example, examples_table, shown_text


class _Tokenizer:
    """Decodes ids as characters (id 0 is a special token, skipped)."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == 0))


def test_control_characters_are_escaped_and_line_breaks_shown():
    assert shown_text("a\nb\tc\x07d\u200b", keep="start") == "a\u21b5 b c\\u0007d\\u200b"


def test_prompts_keep_their_end_and_replies_their_start():
    text = "x" * 10 + "y" * (2 * MAX_CHARS)
    assert shown_text(text, keep="start") == text[: MAX_CHARS - 1] + "\u2026"
    assert shown_text(text, keep="end") == "\u2026" + text[-(MAX_CHARS - 1) :]
    assert len(shown_text(text, keep="end")) == MAX_CHARS


def test_the_table_decodes_without_special_tokens_and_names_an_empty_reply():
    examples = [
        Example("plain", "p-1", [0, ord("h"), ord("i")], [ord("o"), ord("k"), 0], "refused"),
        Example("plain", "p-2", [ord("q")], [0], "not refused"),
    ]
    table = examples_table(_Tokenizer(), examples, "two examples")
    assert table.name == "example_outputs" and table.columns == EXAMPLES_COLUMNS
    assert table.rows == [
        ["plain", "p-1", "hi", "ok", "refused"],
        ["plain", "p-2", "q", "(no text before the stop token)", "not refused"],
    ]
