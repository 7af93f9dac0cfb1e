"""Reading behaviour from a model's own output: prompts in, refusal / defection rates out.

Shared by every measurement that scores behaviour. Prompts are batched by
length, so no batch carries padding (padding effects are measured separately,
by ``model.batch_invariance``). Interventions are not applied here: callers
wrap these functions in :func:`evidence.measure.hooks.scoped_hooks`.

Two scorings of the same behaviour, both from the model's output:

* **log-odds** of the marker's first token at the first response position:
  ``log p(marker) - log(1 - p(marker))``, summed over the marker set's first tokens;
* **generated text**: greedy decoding of a few tokens, matched against the marker
  phrases (whitespace-normalised, case-insensitive prefix match).

Markers are tokenized *in context*: the tokens a phrase contributes when it
follows the prompt (``encode(prompt + phrase)`` minus ``encode(prompt)``), not
the phrase encoded alone: with sub-word tokenizers ``" I"`` and ``"I"`` are
different tokens, and which one follows a prompt depends on how the template
ends (:func:`marker_tokens`, :func:`first_token_ids` with ``contexts``).
Generation runs long enough to judge: :func:`generation_length`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from evidence.datasets import Prompt
from evidence.errors import ConfigError, MeasurementError

if TYPE_CHECKING:
    from evidence.model import LoadedModel

__all__ = [
    "Markers",
    "batches_by_length",
    "bos_token_id",
    "first_token_ids",
    "generated_matches",
    "generation_length",
    "greedy_generate",
    "last_position_logits",
    "marker_length",
    "marker_log_odds",
    "marker_tokens",
    "matches_marker",
    "ordinary_token_ids",
    "prompt_ids",
]

Forward = Callable[[torch.Tensor], torch.Tensor]


def bos_token_id(model: LoadedModel) -> int | None:
    """The tokenizer's BOS id, if it has one inside the model's vocabulary."""
    tokenizer = model.tokenizer
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    return int(bos) if bos is not None and 0 <= int(bos) < model.d_vocab else None


def ordinary_token_ids(model: LoadedModel) -> np.ndarray:
    """Every id of the model's vocabulary except the tokenizer's special tokens, ascending (int64)."""
    special: set[int] = set()
    if model.tokenizer is not None:
        special = {int(i) for i in getattr(model.tokenizer, "all_special_ids", []) or []}
    return np.array([i for i in range(model.d_vocab) if i not in special], dtype=np.int64)


@dataclass(frozen=True)
class Markers:
    """How behaviour is read from output: phrases that open a refusal, a defection, a helpful answer."""

    refusal: tuple[str, ...] = ()
    defection: tuple[str, ...] = ()
    helpful: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, markers: Mapping[str, Sequence[str]]) -> Markers:
        """From a run spec's ``[markers]`` table; unknown kinds are refused."""
        unknown = sorted(set(markers) - {"refusal", "defection", "helpful"})
        if unknown:
            raise ConfigError(f"unknown marker kinds {unknown}", hint="use refusal, defection, helpful")
        return cls(**{k: tuple(v) for k, v in markers.items()})

    def require(self, kind: str) -> tuple[str, ...]:
        """The phrases of ``kind``; a clear error if the run spec gave none."""
        phrases: tuple[str, ...] = getattr(self, kind)
        if not phrases:
            raise ConfigError(
                f"this measurement needs [markers].{kind} in the run spec",
                hint=f'e.g. {kind} = ["I cannot"]',
            )
        return phrases


def prompt_ids(tokenizer: object, prompt: Prompt, max_tokens: int | None = None) -> list[int]:
    """Token ids of a prompt: the exact text, or messages through the model's chat template.

    With ``max_tokens`` (the model's context minus the room the caller needs after
    the prompt), a longer prompt is an error naming it; prompts are never cut.
    """
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer, so text prompts cannot be encoded")
    if prompt.text is not None:
        ids = tokenizer(prompt.text)["input_ids"]  # type: ignore[operator]
    else:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"prompt {prompt.id!r} uses messages but the tokenizer has no chat template",
                hint='give the prompt as "text" instead',
            )
        messages = [m.model_dump() for m in prompt.messages or []]
        # Render to text, then tokenize as the template's own tokens (it writes any BOS itself): the
        # same ids as tokenize=True, whatever container a given transformers release returns for that.
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
        if not isinstance(text, str):
            raise ConfigError(f"prompt {prompt.id!r}: the chat template did not render to text")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    if max_tokens is not None and len(ids) > max_tokens:
        raise MeasurementError(
            f"prompt {prompt.id!r} has {len(ids)} tokens; with the room needed after it, at most {max_tokens} fit "
            "the model's context",
            hint="shorten the prompt (prompts are not cut)",
        )
    return [int(i) for i in ids]


def _encode(tokenizer: object, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]  # type: ignore[operator]


def marker_tokens(tokenizer: object, phrase: str, context: Sequence[int] | None = None) -> list[int]:
    """The tokens ``phrase`` contributes when it follows ``context`` (prompt ids); alone without a context.

    ``encode(text + phrase)`` must start with ``encode(text)`` (``text`` the decoded
    context); when the phrase's first characters merge with the prompt's last
    token instead, no in-context split exists and the phrase encoded alone is used.
    """
    alone = _encode(tokenizer, phrase)
    if not alone:
        raise ConfigError(f"marker {phrase!r} encodes to no token")
    if not context:
        return alone
    text = tokenizer.decode(list(context), skip_special_tokens=False)  # type: ignore[attr-defined]
    base = _encode(tokenizer, text)
    joined = _encode(tokenizer, text + phrase)
    if len(joined) > len(base) and joined[: len(base)] == base:
        return joined[len(base) :]
    return alone


def _distinct_contexts(contexts: Sequence[Sequence[int]], limit: int = 64, tail: int = 16) -> list[list[int]]:
    """Contexts with distinct endings (the last ``tail`` ids decide how a marker is split), at most ``limit``."""
    seen: dict[tuple[int, ...], list[int]] = {}
    for c in contexts:
        key = tuple(c[-tail:])
        if key not in seen and len(seen) < limit:
            seen[key] = list(c)
    return list(seen.values())


def first_token_ids(
    tokenizer: object, phrases: Sequence[str], contexts: Sequence[Sequence[int]] | None = None
) -> list[int]:
    """The first token of each phrase as it follows the prompts ``contexts`` (all of them; alone without any)."""
    ids: set[int] = set()
    for phrase in phrases:
        if not contexts:
            ids.add(marker_tokens(tokenizer, phrase)[0])
        for context in _distinct_contexts(contexts or []):
            ids.add(marker_tokens(tokenizer, phrase, context)[0])
    return sorted(ids)


def marker_length(tokenizer: object, phrases: Sequence[str], contexts: Sequence[Sequence[int]] | None) -> int:
    """Tokens of the longest phrase as it follows the prompts ``contexts`` (alone without any)."""
    longest = 0
    distinct: list[list[int] | None] = [*_distinct_contexts(contexts or [])] or [None]
    for phrase in phrases:
        for context in distinct:
            longest = max(longest, len(marker_tokens(tokenizer, phrase, context)))
    return longest


def generation_length(
    tokenizer: object,
    phrases: Sequence[str],
    contexts: Sequence[Sequence[int]] | None,
    minimum: int,
    margin: int = 4,
) -> int:
    """Tokens to generate to judge behaviour: ``max(longest marker in context + margin, minimum)``."""
    return max(marker_length(tokenizer, phrases, contexts) + margin, minimum)


def batches_by_length(seqs: Sequence[Sequence[int]], batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Groups of equal-length sequences (original indices, token tensor); no padding anywhere."""
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_len.setdefault(len(s), []).append(i)
    for length in sorted(by_len):
        idx = by_len[length]
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            yield chunk, torch.tensor([list(seqs[i]) for i in chunk], dtype=torch.long)


def _check_finite(t: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(t).all():
        raise MeasurementError(f"the model produced non-finite {what}", hint="check the weights and dtype")
    return t


@torch.no_grad()
def last_position_logits(forward: Forward, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
    """Logits at the last position of every sequence, shape [N, vocab], in input order."""
    out: list[torch.Tensor | None] = [None] * len(seqs)
    for idx, tokens in batches_by_length(seqs, batch_size):
        logits = _check_finite(forward(tokens)[:, -1, :].float(), "logits")
        for row, i in enumerate(idx):
            out[i] = logits[row]
    return torch.stack([t for t in out if t is not None])


def marker_log_odds(logits: torch.Tensor, marker_ids: Sequence[int]) -> torch.Tensor:
    """Log p(any marker first token) - log(1 - p), per row."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    hit = torch.logsumexp(logp[:, list(marker_ids)], dim=-1)
    miss = torch.log1p(-torch.exp(hit).clamp(max=1 - 1e-15))
    return (hit - miss).float()


@torch.no_grad()
def greedy_generate(
    forward: Forward, seqs: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int = 32
) -> list[list[int]]:
    """The greedy continuation of each sequence (new tokens only), in input order."""
    out: list[list[int]] = [[] for _ in seqs]
    for idx, tokens in batches_by_length(seqs, batch_size):
        current = tokens
        for _ in range(max_new_tokens):
            nxt = _check_finite(forward(current)[:, -1, :], "logits").argmax(dim=-1, keepdim=True)
            current = torch.cat([current, nxt], dim=1)
        new = current[:, tokens.shape[1] :].tolist()
        for row, i in enumerate(idx):
            out[i] = new[row]
    return out


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


@torch.no_grad()
def generated_matches(
    forward: Forward,
    tokenizer: object,
    seqs: Sequence[Sequence[int]],
    phrases: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
) -> np.ndarray:
    """``matches_marker(greedy_generate(...))``, generating each batch only until every row is decided.

    A row is decided once its normalised text opens with a phrase, or is no longer the
    start of any phrase: more tokens cannot change a prefix match, so the flags equal
    those of the full ``max_new_tokens`` continuation.
    """
    wanted = [_normalise(p) for p in phrases]
    out = np.zeros(len(seqs), dtype=bool)
    for idx, tokens in batches_by_length(seqs, batch_size):
        current = tokens
        flags = [False] * len(idx)
        for _ in range(max_new_tokens):
            nxt = _check_finite(forward(current)[:, -1, :], "logits").argmax(dim=-1, keepdim=True)
            current = torch.cat([current, nxt], dim=1)
            decided = True
            for row, ids in enumerate(current[:, tokens.shape[1] :].tolist()):
                text = _normalise(tokenizer.decode(ids, skip_special_tokens=True))  # type: ignore[attr-defined]
                flags[row] = any(text.startswith(w) for w in wanted)
                if not flags[row] and any(w.startswith(text) for w in wanted):
                    decided = False
            if decided:
                break
        out[idx] = flags
    return out


def matches_marker(tokenizer: object, generated: Sequence[Sequence[int]], phrases: Sequence[str]) -> np.ndarray:
    """Whether each generated continuation opens with one of the phrases."""
    wanted = [_normalise(p) for p in phrases]
    flags = []
    for ids in generated:
        text = _normalise(tokenizer.decode(list(ids), skip_special_tokens=True))  # type: ignore[attr-defined]
        flags.append(any(text.startswith(w) for w in wanted))
    return np.asarray(flags, dtype=bool)
