"""The three architectures of the population, as configuration data (no torch at import).

============ ========================================================= ==========================
name         what                                                      saved as
============ ========================================================= ==========================
attn-only    TransformerLens-native, attention only: 2 layers, d 48,   ``bridge_config.json`` +
             4 heads, LayerNorm, rotary positions                      ``model.safetensors``
gpt2         ``GPT2LMHeadModel``: LayerNorm, GELU MLP (4x), learned    a Hugging Face directory
             positions, tied embeddings; 2 layers, d 48, 4 heads
llama        ``LlamaForCausalLM``: RMSNorm, SwiGLU MLP (128), rotary,  a Hugging Face directory
             grouped-query attention (4 query, 2 key/value heads),
             tied embeddings; 2 layers, d 48
============ ========================================================= ==========================

All have a context of 64 tokens and the vocabulary of their language's
tokenizer. Every member's directory also holds its tokenizer (with the chat
template): an attention-only member loads through the organism path of
:func:`evidence.model.load_model` (TransformerBridge ``boot_native``), the
others through the path a user's Hugging Face directory takes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["D_MODEL", "N_CTX", "NATIVE_CONFIG_FILE", "NATIVE_FORMAT", "hf_config", "native_architecture"]

N_CTX = 64
D_MODEL = 48
_N_HEADS = 4
_N_LAYERS = 2
_INIT_RANGE = round(0.8 / D_MODEL**0.5, 4)

#: The file that makes a member directory a TransformerLens-native model, and its format tag.
NATIVE_CONFIG_FILE = "bridge_config.json"
NATIVE_FORMAT = "interp-dossier/population/native-bridge/1"


def native_architecture(d_vocab: int) -> dict[str, Any]:
    """``TransformerBridgeConfig`` keyword arguments of an attention-only member (no seed, no device)."""
    return {
        "d_model": D_MODEL,
        "d_head": D_MODEL // _N_HEADS,
        "n_heads": _N_HEADS,
        "n_layers": _N_LAYERS,
        "n_ctx": N_CTX,
        "d_vocab": d_vocab,
        "attn_only": True,
        "normalization_type": "LN",
        "positional_embedding_type": "rotary",
        "init_mode": "gpt2",
    }


def hf_config(architecture: str, vocab_size: int, *, bos: int, eos: int, pad: int) -> dict[str, Any]:
    """Keyword arguments of ``GPT2Config`` or ``LlamaConfig`` for a member of ``architecture``."""
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": True,
        # TransformerLens' default for small models (0.8 / sqrt(d_model)); transformers' 0.02 leaves
        # a model this narrow on long plateaus (e.g. no colour comparison learned in 1500 steps).
        "initializer_range": _INIT_RANGE,
    }
    if architecture == "gpt2":
        return {
            **common,
            "n_positions": N_CTX,
            "n_embd": D_MODEL,
            "n_layer": _N_LAYERS,
            "n_head": _N_HEADS,
            "n_inner": 4 * D_MODEL,
            "activation_function": "gelu_new",
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
        }
    if architecture == "llama":
        return {
            **common,
            "hidden_size": D_MODEL,
            "intermediate_size": 128,
            "num_hidden_layers": _N_LAYERS,
            "num_attention_heads": _N_HEADS,
            "num_key_value_heads": 2,
            "max_position_embeddings": N_CTX,
            "hidden_act": "silu",
        }
    raise ValueError(f"{architecture!r} is not a Hugging Face architecture of the population")
