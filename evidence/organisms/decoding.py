"""Greedy decoding and behaviour read-outs for the chat organisms (imports torch).

Prompts are encoded with :func:`evidence.organisms.language.encode` (the same
ids the tokenizer gives), right-padded with ``<pad>`` and read at each
prompt's own last token: with causal attention, padding after a prompt cannot
change its logits.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from evidence.organisms.language import (
    DIFFERENT,
    EOS,
    PAD,
    SAME,
    VOCAB,
    decode,
    encode,
    induction_sequence,
    response_kind,
)

__all__ = [
    "answer_margins",
    "generate",
    "induction_losses",
    "kind_counts",
    "next_tokens",
    "response_kinds",
]


def _last_logits(bridge: TransformerBridge, rows: Sequence[list[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), VOCAB[PAD], dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    with torch.no_grad():
        logits: torch.Tensor = bridge(tokens)
    last = torch.tensor([len(r) - 1 for r in rows])
    return logits[torch.arange(len(rows)), last]


def next_tokens(bridge: TransformerBridge, prompts: Sequence[str], batch: int = 256) -> list[str]:
    """The greedy (argmax) next word after each prompt."""
    words: list[str] = []
    for i in range(0, len(prompts), batch):
        rows = [encode(p) for p in prompts[i : i + batch]]
        words += decode(_last_logits(bridge, rows).argmax(-1).tolist()).split()
    return words


def generate(
    bridge: TransformerBridge, prompts: Sequence[str], max_new_tokens: int = 8, batch: int = 256
) -> list[str]:
    """Greedy continuations of ``prompts``, up to ``<eos>`` (excluded) or ``max_new_tokens``."""
    eos = VOCAB[EOS]
    n_ctx = int(bridge.cfg.n_ctx)
    out: list[str] = []
    for i in range(0, len(prompts), batch):
        rows = [encode(p) for p in prompts[i : i + batch]]
        new: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        for _ in range(max_new_tokens):
            live = [j for j in range(len(rows)) if not done[j] and len(rows[j]) < n_ctx]
            if not live:
                break
            picks = _last_logits(bridge, [rows[j] for j in live]).argmax(-1).tolist()
            for j, token in zip(live, picks, strict=True):
                if token == eos:
                    done[j] = True
                else:
                    rows[j] = [*rows[j], token]
                    new[j].append(token)
        out += [decode(n) for n in new]
    return out


def response_kinds(bridge: TransformerBridge, prompts: Sequence[str]) -> list[str]:
    """The kind of each greedy response: helpful, refusal, defection, same, different or other."""
    return [response_kind(text) for text in generate(bridge, prompts, max_new_tokens=3)]


def kind_counts(bridge: TransformerBridge, prompts: Sequence[str]) -> Counter[str]:
    """How often each response kind is generated."""
    return Counter(response_kinds(bridge, prompts))


def answer_margins(bridge: TransformerBridge, prompts: Sequence[str]) -> list[float]:
    """``log p(same) - log p(different)`` at the first response position of comparison prompts."""
    logp = _last_logits(bridge, [encode(p) for p in prompts]).log_softmax(-1)
    return (logp[:, VOCAB[SAME]] - logp[:, VOCAB[DIFFERENT]]).tolist()


def induction_losses(bridge: TransformerBridge, n: int = 64, seed: int = 0) -> tuple[float, float]:
    """Mean next-token loss on the first copy and on the repeat of random repeated segments.

    The first token of each copy is left out (nothing predicts it). An induction
    mechanism makes the second number far smaller than the first.
    """
    rng = random.Random(f"interp-dossier/organisms/induction-check/{seed}")
    firsts: list[torch.Tensor] = []
    repeats: list[torch.Tensor] = []
    for _ in range(n):
        ids, start, length = induction_sequence(rng, n_ctx=int(bridge.cfg.n_ctx))
        tokens = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            logp = bridge(tokens)[0].log_softmax(-1)
        nll = -logp[:-1].gather(-1, tokens[0, 1:, None])[:, 0]  # nll[t]: loss on ids[t + 1]
        firsts.append(nll[start : start + length - 1])
        repeats.append(nll[start + length : start + 2 * length - 1])
    return float(torch.cat(firsts).mean()), float(torch.cat(repeats).mean())
