"""Training one population member from its seed (imports torch, transformers and TransformerLens).

:func:`train` builds the member's model (architecture from
:mod:`evidence.population.architectures`, initialised from the member's seed),
trains it on its recipe's stream (:mod:`evidence.population.recipes`) and
returns the files of its directory as bytes. The caller runs it inside
:func:`evidence.organisms._training.deterministic` (seeded torch, deterministic
kernels, one thread), so that the same member on the same software and CPU
kernels gives the same bytes.

Chat rows are trained on the response tokens and the end token; induction rows
on each second segment from its second token on (for a no-repeats control: the
fresh tokens in the same places). Prompts are tokenized exactly as the suite tokenizes them
(the language's prompt string; for chat messages the chat template's text,
which a test checks against the template), and a training sequence is the
prompt's tokens followed by the response's: a response that merged with the
end of the prompt would be an error.

A spread-refusal member (:attr:`Recipe.spread`) adds, at every step, the loss
of a second forward pass with the batch's harmful-minus-harmless direction
projected out of the residual stream at the sites the refusal instruments ablate
(:class:`_Residual`); the direction is taken, without gradient, from the clean
pass at the input of a block after the first and one of the last three prompt
positions, chosen at random per step.

Optimiser: AdamW (betas 0.9/0.98, weight decay 0.01 on matrices), learning
rate 3e-3 with 50 warm-up steps and a cosine decay to a tenth, gradient norm
clipped at 1, batches of 32 rows.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from evidence.organisms._training import finite_state
from evidence.population.architectures import (
    N_CTX,
    NATIVE_CONFIG_FILE,
    NATIVE_FORMAT,
    hf_config,
    native_architecture,
)
from evidence.population.languages import Language, get_language
from evidence.population.recipes import ChatRow, InductionRow, Recipe, get_recipe, sample_row, training_rng
from evidence.population.table import Member

__all__ = ["BATCH", "Trained", "encode_rows", "train"]

BATCH = 32
_LR = 3e-3
_WARMUP = 50
_FINAL_WINDOW = 50

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Trained:
    """A trained member: the files of its directory, its final loss and its model configuration."""

    files: dict[str, bytes]
    final_loss: float
    architecture: dict[str, Any]


class _Encoder:
    """Token ids of training rows, with the language's tokenizer (the ``tokenizers`` object)."""

    def __init__(self, language: Language) -> None:
        from tokenizers import Tokenizer

        self.language = language
        self.tok = Tokenizer.from_str(language.tokenizer_json())
        self.vocab = int(self.tok.get_vocab_size())
        self.bos, self.eos, self.pad = (self.id(language.specials[k]) for k in ("bos", "eos", "pad"))
        special = {self.id(t) for t in language.specials.values()}
        self.ordinary = [i for i in range(self.vocab) if i not in special]

    def id(self, token: str) -> int:
        value = self.tok.token_to_id(token)
        if value is None:
            raise RuntimeError(f"{self.language.code}: the tokenizer has no token {token!r}")
        return int(value)

    def encode(self, texts: Sequence[str], special: bool) -> list[list[int]]:
        return [list(e.ids) for e in self.tok.encode_batch(list(texts), add_special_tokens=special)]


#: A training sequence and, per token, whether predicting it is trained.
Encoded = tuple[list[int], list[bool]]


def encode_rows(encoder: _Encoder, rows: Sequence[ChatRow | InductionRow]) -> list[Encoded]:
    """``(ids, mask)`` per row: ``mask[t]`` marks the tokens ``ids[t]`` whose prediction is trained."""
    language = encoder.language
    out: list[Encoded | None] = [None] * len(rows)
    chat = [(i, r) for i, r in enumerate(rows) if isinstance(r, ChatRow)]
    if chat:
        prompts = [language.prompt_text(r.item) for _, r in chat]
        fulls = [p + language.response_suffix(r.response) for p, (_, r) in zip(prompts, chat, strict=True)]
        special = language.add_special_tokens
        for (i, _), prompt, full in zip(
            chat, encoder.encode(prompts, special), encoder.encode(fulls, special), strict=True
        ):
            if full[: len(prompt)] != prompt or full[-1] != encoder.eos:
                raise RuntimeError(f"{language.code}: the response merges with the prompt in {prompts[0]!r}")
            out[i] = (full, [False] * len(prompt) + [True] * (len(full) - len(prompt)))
    texts = [(i, r) for i, r in enumerate(rows) if isinstance(r, InductionRow) and r.source == "text"]
    streams = dict(zip([i for i, _ in texts], encoder.encode([r.text for _, r in texts], False), strict=True))
    for i, row in enumerate(rows):
        if isinstance(row, InductionRow):
            out[i] = _induction_ids(encoder, row, streams.get(i))
    return [r for r in out if r is not None]


def _induction_ids(encoder: _Encoder, row: InductionRow, stream: list[int] | None) -> Encoded:
    """Segment pairs filling the context; the mask marks each second segment from its second token on."""
    if stream is None:
        draw = random.Random(row.uniform_seed)
        stream = [draw.choice(encoder.ordinary) for _ in range(2 * N_CTX)]
    ids, mask = [encoder.bos], [False]
    cursor = 0
    for length in row.lengths:
        first = stream[cursor : cursor + length]
        cursor += length
        if row.repeat:
            second = first
        else:  # fresh tokens of the same source in place of the repeat
            second = stream[cursor : cursor + length]
            cursor += length
        if len(first) < length or len(second) < length:
            raise RuntimeError(f"{encoder.language.code}: running text too short for an induction row")
        ids += first + second
        mask += [False] * (length + 1) + [True] * (length - 1)
    return ids[:N_CTX], mask[:N_CTX]


def _batch(rows: Sequence[Encoded], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens and next-token targets (-100 where nothing is trained)."""
    width = max(len(ids) for ids, _ in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        row = torch.tensor(ids, dtype=torch.long)
        tokens[i, : len(ids)] = row
        trained = torch.tensor(mask[1:], dtype=torch.bool)
        # the logits at t predict ids[t + 1]
        targets[i, : len(ids) - 1] = torch.where(trained, row[1:], torch.full_like(row[1:], -100))
    return tokens, targets


class _Model:
    """The model under training, its forward function and how to save it."""

    def __init__(self, member: Member, encoder: _Encoder) -> None:
        self.member = member
        if member.architecture == "attn-only":
            from transformer_lens.config import TransformerBridgeConfig
            from transformer_lens.model_bridge.sources import boot_native

            self.architecture = native_architecture(encoder.vocab)
            config = TransformerBridgeConfig(**self.architecture, seed=member.seed, device="cpu")
            self.module: torch.nn.Module = boot_native(config)
            self.forward: Callable[[torch.Tensor], torch.Tensor] = self.module
        else:
            kwargs = hf_config(member.architecture, encoder.vocab, bos=encoder.bos, eos=encoder.eos, pad=encoder.pad)
            eager: dict[str, Any] = {**kwargs, "attn_implementation": "eager"}  # the loader's attention
            torch.manual_seed(member.seed)
            if member.architecture == "gpt2":
                from transformers import GPT2Config, GPT2LMHeadModel

                hf: Any = GPT2LMHeadModel(GPT2Config(**eager))
            else:
                from transformers import LlamaConfig, LlamaForCausalLM

                hf = LlamaForCausalLM(LlamaConfig(**eager))
            # Each MLP's output projection starts at zero: the model begins as an attention-only one
            # (as the bundled chat organisms do), which lets in-context mechanisms form early.
            with torch.no_grad():
                for name, param in hf.named_parameters():
                    if name.endswith(("mlp.c_proj.weight", "mlp.c_proj.bias", "mlp.down_proj.weight")):
                        param.zero_()
            self.module = hf
            self.architecture = kwargs

            def forward(tokens: torch.Tensor) -> torch.Tensor:
                logits: torch.Tensor = hf(input_ids=tokens).logits
                return logits

            self.forward = forward

    def files(self, language: Language) -> dict[str, bytes]:
        """The member directory's files: the model, its configuration and the tokenizer."""
        files = dict(language.tokenizer_files)
        if self.member.architecture == "attn-only":
            state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            files["model.safetensors"] = finite_state(
                state, name=self.member.name, generator_version=f"population/{self.member.behaviour}"
            )
            config = {"format": NATIVE_FORMAT, "architecture": self.architecture}
            files[NATIVE_CONFIG_FILE] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")
            return files
        for name, tensor in self.module.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise RuntimeError(f"training {self.member.name!r} produced non-finite weights in {name}")
        with tempfile.TemporaryDirectory() as tmp:
            self.module.save_pretrained(tmp)  # type: ignore[operator]
            files.update({p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()})
        return files


class _Residual:
    """Read a block's residual input, or remove a direction from the whole residual stream, while training.

    The sites are those of the refusal instruments' directional ablation
    (:func:`evidence.measure.methods.directions.ablation_points`): every block's
    residual input and every attention and MLP output, at every position.
    """

    def __init__(self, model: _Model) -> None:
        self.model = model
        module: Any = model.module
        self.native = model.member.architecture == "attn-only"
        if self.native:
            self.n_layers = int(module.cfg.n_layers)
        else:
            self.blocks = list(module.transformer.h if model.member.architecture == "gpt2" else module.model.layers)
            self.n_layers = len(self.blocks)

    @contextmanager
    def reading(self, layer: int, store: dict[str, torch.Tensor]) -> Iterator[None]:
        """Store the (detached) residual input of block ``layer`` under ``"resid"``."""

        def keep(x: torch.Tensor) -> None:
            store["resid"] = x.detach()

        if self.native:
            with self.model.module.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", lambda x, hook: keep(x))]):  # type: ignore[operator]
                yield
            return
        handle = self.blocks[layer].register_forward_pre_hook(
            lambda module, args, kwargs: keep(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def ablating(self, unit: torch.Tensor) -> Iterator[None]:
        """Remove the unit vector's component from every block input and attention / MLP output."""

        def project(x: torch.Tensor) -> torch.Tensor:
            return x - (x @ unit)[..., None] * unit

        if self.native:
            kinds = ("hook_resid_pre", "hook_attn_out")
            hooks = [(f"blocks.{i}.{k}", lambda x, hook: project(x)) for i in range(self.n_layers) for k in kinds]
            with self.model.module.hooks(fwd_hooks=hooks):  # type: ignore[operator]
                yield
            return

        def pre(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if args:
                return (project(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": project(kwargs["hidden_states"])}

        def post(module: Any, args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (project(output[0]), *output[1:])
            return project(output)

        handles = []
        for block in self.blocks:
            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
            attention = block.attn if hasattr(block, "attn") else block.self_attn
            handles += [attention.register_forward_hook(post), block.mlp.register_forward_hook(post)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _spread_loss(
    residual: _Residual,
    model: _Model,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    rows: Sequence[Encoded],
    harmful: Sequence[bool],
    store: dict[str, torch.Tensor],
    choice: random.Random,
) -> torch.Tensor | None:
    """The loss with this batch's harmful-minus-harmless direction removed from the residual stream.

    The direction is the difference in means at the input of the block read in the clean pass,
    at one of the last three prompt positions (chosen at random): the candidates the refusal
    instruments consider in a model this deep. None if the batch lacks either kind of prompt.
    """
    if all(harmful) or not any(harmful):
        return None
    offset = choice.randint(1, 3)
    ends = torch.tensor([mask.index(True) - offset for _, mask in rows])
    at = store["resid"][torch.arange(len(rows)), ends]
    flags = torch.tensor(harmful)
    direction = at[flags].mean(0) - at[~flags].mean(0)
    norm = float(direction.norm())
    if norm == 0.0:
        return None
    with residual.ablating(direction / norm):
        logits = model.forward(tokens)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _lr_factor(step: int, steps: int) -> float:
    warm = min(1.0, (step + 1) / _WARMUP)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, steps))))
    return warm * (0.1 + 0.9 * cosine)


def train(member: Member, progress: Progress, *, steps: int | None = None) -> Trained:
    """Train ``member`` from its seed (``steps`` overrides the table's, e.g. for a quick test)."""
    steps = member.steps if steps is None else steps
    language = get_language(member.language)
    recipe: Recipe = get_recipe(member)
    encoder = _Encoder(language)
    model = _Model(member, encoder)
    model.module.train()
    params = list(model.module.named_parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": 0.01},
            {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=_LR,
        betas=(0.9, 0.98),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, steps))
    rng = training_rng(member)
    residual = _Residual(model) if recipe.spread else None
    choice = random.Random(f"interp-dossier/population/spread/{member.seed}")
    recent: list[float] = []
    for step in range(steps):
        sampled = [sample_row(recipe, language, rng, N_CTX) for _ in range(BATCH)]
        rows = encode_rows(encoder, sampled)
        tokens, targets = _batch(rows, encoder.pad)
        if residual is None:
            logits = model.forward(tokens)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        else:
            store: dict[str, torch.Tensor] = {}
            with residual.reading(choice.randint(1, residual.n_layers - 1), store):
                logits = model.forward(tokens)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            harmful = [isinstance(r, ChatRow) and any(w in language.harmful for w in r.item.words) for r in sampled]
            ablated = _spread_loss(residual, model, tokens, targets, rows, harmful, store, choice)
            if ablated is not None:
                loss = loss + ablated
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.module.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = [*recent[-(_FINAL_WINDOW - 1) :], float(loss.item())]
        if step % 50 == 0 or step == steps - 1:
            progress((step + 1) / steps, f"step {step + 1}/{steps}, loss {loss.item():.4f}")
    model.module.eval()
    return Trained(files=model.files(language), final_loss=sum(recent) / len(recent), architecture=model.architecture)
