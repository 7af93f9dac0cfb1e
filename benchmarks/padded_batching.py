"""Time batching by length against left-padded batches, and whole-sequence captures against position-only ones.

One run, one tiny Llama-style checkpoint built like the tests' (``tests/hf_models.py``:
RMSNorm, SwiGLU, rotary embeddings, grouped-query attention, a sub-word tokenizer;
random weights, ``--layers`` layers of width ``--width``), and one prompt set of
mixed length: ``--prompts`` chat-formatted requests of ``--min-words``..``--max-words``
words, as natural-language prompt sets are.

Side by side, each with the model's batching forced (``batched_as``):

* **last-position logits** (:func:`~evidence.measure.methods.behaviour.last_position_logits`)
  and **greedy replies** with the key/value cache (``greedy_generate``, ``--tokens`` new
  tokens, no stop token): by length against left-padded; the largest logit difference and
  whether the replies are identical token for token;
* **activations at the last position of every block** (what probes and directions read):
  the whole-sequence capture (``capture`` of every hook point, a copy of each whole
  activation, then the last position sliced), batched by length, against
  :func:`~evidence.measure.methods.directions.activations_at` (the position picked inside
  the hook into one preallocated buffer), by length and left-padded; the largest
  difference and the bytes each keeps per batch at its peak.

Each variant runs ``--repeats`` times after one warm-up, alternating, in one process; the
tables give the median CPU time of this process (with one thread, what the work costs)
and the ratio against the old path. Run with the project's environment::

    .venv/bin/python benchmarks/padded_batching.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evidence.measure.hooks import capture
from evidence.measure.methods.batching import batched_as, prompt_batches
from evidence.measure.methods.behaviour import batches_by_length, greedy_generate, last_position_logits, prompt_ids
from evidence.measure.methods.directions import activations_at
from evidence.model import LoadedModel, ModelSpec, load_model
from evidence.runspec import Prompt


def _prompts(model: LoadedModel, words: list[str], n: int, lo: int, hi: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(lo, hi + 1))))
        prompt = Prompt(id=str(i), label="x", messages=[{"role": "user", "content": text}])
        out.append(prompt_ids(model.tokenizer, prompt))
    return out


def _median_cpu(variants: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median CPU seconds of each variant (alternating, after one warm-up) and each one's last result."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    results: dict[str, Any] = {}
    for run in range(repeats + 1):
        for name, fn in variants.items():
            start = time.process_time()
            results[name] = fn()
            if run > 0:
                times[name].append(time.process_time() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def _whole_sequence_capture(model: LoadedModel, seqs: list[list[int]], names: list[str], batch: int) -> Any:
    """The old path: every hook point's whole activation copied, then the last position sliced."""
    out = torch.zeros((len(seqs), len(names), 1, model.bridge.cfg.d_model))
    peak = 0
    for idx, tokens in batches_by_length(seqs, batch):
        acts = capture(model.bridge, names, tokens)
        peak = max(peak, sum(a.numel() * a.element_size() for a in acts.values()))
        out[idx] = torch.stack([acts[n][:, -1:, :] for n in names], dim=1).float()
    return out, peak


def _position_only(model: LoadedModel, seqs: list[list[int]], names: list[str], batch: int) -> Any:
    widest = max(len(b.lengths) for _, b in prompt_batches(model.bridge, seqs, batch))
    values = activations_at(model, seqs, names, [-1], batch)
    return values, widest * len(names) * values.shape[-1] * values.element_size()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--min-words", type=int, default=3)
    parser.add_argument("--max-words", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per reply")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.hf_models import WORDS, build_llama

    with tempfile.TemporaryDirectory() as tmp:
        directory = build_llama(Path(tmp) / "llama", n_layer=args.layers, d_model=args.width)
        model = load_model(ModelSpec(path=str(directory)))
    bridge = model.bridge
    seqs = _prompts(model, WORDS.split(), args.prompts, args.min_words, args.max_words)
    lengths = sorted({len(s) for s in seqs})
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(model.n_layers)]
    batch = args.batch_size
    print(f"Llama {args.layers}x{args.width} GQA (HF), mode probed: {model.identity.processing['batching']}; "
          f"{len(seqs)} prompts of {lengths[0]}-{lengths[-1]} tokens ({len(lengths)} distinct lengths); "
          f"batch {batch}, {args.threads} thread(s), median CPU of {args.repeats}")  # fmt: skip
    batches = {mode: sum(1 for _ in _with(bridge, mode, lambda: list(prompt_batches(bridge, seqs, batch))))
               for mode in ("by-length", "left-padded")}  # fmt: skip
    print(f"forward passes per sweep: {batches['by-length']} by length, {batches['left-padded']} left-padded")
    print()

    def forced(mode: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: _with(bridge, mode, fn)

    logits = lambda: last_position_logits(bridge, seqs, batch)  # noqa: E731
    replies = lambda: greedy_generate(bridge, seqs, args.tokens, batch, stop_ids=())  # noqa: E731
    times, results = _median_cpu(
        {
            "logits by length": forced("by-length", logits),
            "logits padded": forced("left-padded", logits),
            "greedy by length": forced("by-length", replies),
            "greedy padded": forced("left-padded", replies),
        },
        args.repeats,
    )
    print("| path | by length (CPU s) | left-padded (CPU s) | speed-up | agreement |")
    print("| --- | ---: | ---: | ---: | --- |")
    diff = float((results["logits by length"] - results["logits padded"]).abs().max())
    old, new = times["logits by length"], times["logits padded"]
    print(f"| last-position logits | {old:.3f} | {new:.3f} | {old / new:.2f}x | max abs diff {diff:.1e} |")
    same = results["greedy by length"] == results["greedy padded"]
    old, new = times["greedy by length"], times["greedy padded"]
    print(f"| greedy, KV cache, {args.tokens} tokens | {old:.3f} | {new:.3f} | {old / new:.2f}x | "
          f"{'identical replies' if same else 'REPLIES DIFFER'} |")  # fmt: skip
    print()

    times, results = _median_cpu(
        {
            "whole": forced("by-length", lambda: _whole_sequence_capture(model, seqs, names, batch)),
            "positions by length": forced("by-length", lambda: _position_only(model, seqs, names, batch)),
            "positions padded": forced("left-padded", lambda: _position_only(model, seqs, names, batch)),
        },
        args.repeats,
    )
    reference, kept = results["whole"]
    print(f"| last position of {len(names)} blocks | CPU s | speed-up | bytes kept per batch | max abs diff |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| whole-sequence capture, by length | {times['whole']:.3f} | 1.00x | {kept:,} | - |")
    for label, key in (("position-only, by length", "positions by length"), ("position-only, left-padded",
                                                                             "positions padded")):  # fmt: skip
        values, size = results[key]
        diff = float((values - reference).abs().max())
        print(f"| {label} | {times[key]:.3f} | {times['whole'] / times[key]:.2f}x | {size:,} | {diff:.1e} |")
    return 0


def _with(bridge: Any, mode: str, fn: Callable[[], Any]) -> Any:
    with batched_as(bridge, mode):  # type: ignore[arg-type]
        return fn()


if __name__ == "__main__":
    raise SystemExit(main())
