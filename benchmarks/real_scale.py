"""The suite at real scale: 124M-parameter GPT-2- and Llama-shaped checkpoints, measured against their cost floor.

One command measures, side by side in one run on this machine, and writes the tables into
``benchmarks/README.md`` (between the ``real_scale`` markers, replacing the previous ones):

* **suite**: the full default suite (``interp-dossier run --model DIR``: the natural-language
  spec for chat models) on a GPT-2-small-shaped and a Llama-shaped checkpoint (random weights,
  saved with ``transformers`` under ``~/.cache/interp-dossier-bench/``, a sub-word tokenizer and a
  chat template as ``tests/hf_models.py`` builds them), each in a child process: wall and CPU time
  per measurement and in total, peak RSS, and per measurement the forward and backward passes it
  made, counted by wrapping ``TransformerBridge.forward`` and autograd's backward in that process;
* the **cost floor** of each: the FLOPs of those passes (``2 x parameters`` per token for the
  weight products, plus attention's scores and weighted sum; a backward pass twice its forward)
  over this machine's float32 matrix-product throughput, timed with torch in the same run, and
  measured / floor;
* **attribution**: attribution patching and EAP-IG against exhaustive activation patching over
  every node of the GPT-2-shaped model: time ratio, Spearman agreement, each against its floor;
* **forward**: batched against one prompt at a time, throughput by batch size, hooks only where
  needed (``capture_at``) against caching everything (``run_with_cache``), the bridge against the
  plain ``transformers`` model;
* **tiny**: users' tiny checkpoints against the ``demo`` organism (3 layers x 64), on the same four
  measurements and prompt sets, alternating: a trained GPT-2-style checkpoint saved with
  ``transformers`` (a population member, 2 x 48) and a random 3 x 64 Llama-style one; per measurement
  and per forward pass;
* **profile**: one measurement on the GPT-2-shaped checkpoint under cProfile, its time split by
  where it goes.

Every part records when it ran and the load average; with other work on the machine, CPU time of
the measuring process is the steadier number. Run with the project's environment::

    .venv/bin/python benchmarks/real_scale.py            # everything (about two hours on 2 cores)
    .venv/bin/python benchmarks/real_scale.py --quick --phases attribution,forward,tiny
    .venv/bin/python benchmarks/real_scale.py --phases suite --models llama

Results (JSON) and the suite's bundles go to ``--results`` (default
``~/.cache/interp-dossier-bench/results``); the table is written from every part found there, so a
run of some phases keeps the others' last results (each says when it was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "interp-dossier-bench"


# --- the checkpoints -------------------------------------------------------------------------------


def _corpus(data: Path, spec: Path) -> str:
    """Every prompt and answer of the prompt sets in ``data`` and the markers of ``spec``: what a tokenizer learns."""
    texts = []
    answers: set[str] = set()
    for path in sorted(data.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            texts.extend(m["content"] for m in item.get("messages", []))
            texts.extend(str(a) for a in item.get("answers", []))
            if "text" in item:
                texts.append(item["text"])
            answers.update(str(a) for a in item.get("answers", []))
    # Answers and markers as a reply starts them (after the chat template's line break), often enough to
    # be whole tokens there, as they are in the tokenizers of real chat models.
    with spec.open("rb") as f:
        markers = tomllib.load(f)["markers"]
    answers.update(phrase for phrases in markers.values() for phrase in phrases)
    replies = "".join(f"\n{word} " for word in sorted(answers))
    return " ".join(texts) + replies * 200


def build(kind: str, directory: Path) -> Path:
    """A random-weight checkpoint of GPT-2 small's shape (``gpt2``), a Llama of similar size (``llama``), or tiny.

    The tokenizer is the tests' sub-word BPE (``tests/hf_models.py``) with their chat template,
    trained on the natural-language prompt sets as well, so that their words are sub-words and
    not single characters. Built once into ``directory`` (outside the repository) and reused.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if (directory / "config.json").exists():
        return directory
    sys.path.insert(0, str(ROOT))
    from tests.hf_models import bpe_tokenizer, build_llama

    specs = ROOT / "evidence" / "specs"
    if kind == "tiny-llama":  # as the tests build theirs, 3 layers x 64, knowing the organisms' prompt words
        words = _corpus(ROOT / "evidence" / "organisms" / "data", specs / "default.toml")
        return build_llama(directory, n_layer=3, d_model=64, words=words)
    style = "byte-level" if kind == "gpt2" else "metaspace"
    tokenizer = bpe_tokenizer(
        vocab_size=8192, style=style, words=_corpus(specs / "natural-language", specs / "natural-language.toml")
    )
    torch.manual_seed(0)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if kind == "gpt2":  # GPT2Config's defaults are GPT-2 small: 12 layers, 768 wide, 12 heads, vocab 50257
        model: Any = GPT2LMHeadModel(GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids))
    elif kind == "llama":
        config = LlamaConfig(
            vocab_size=32000,
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=4,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
            **ids,
        )
        model = LlamaForCausalLM(config)
    else:
        raise SystemExit(f"unknown model kind {kind!r}")
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --- counting the passes (in the process that runs the suite) ---------------------------------------

_EMBEDDING = re.compile(r"(^|\.)(wte|wpe|embed_tokens|lm_head|embed|pos_embed|unembed|W_E|W_pos|W_U)(\.|$)")


def matmul_parameters(bridge: Any) -> tuple[int, int, int]:
    """``(parameters in matrix products per token, layers, width)``: the blocks' weights plus the unembedding.

    Embedding lookups (token and position tables) cost no multiply-adds; the unembedding
    is a ``d_model x d_vocab`` product whether or not it shares the token table's weights.
    """
    cfg = bridge.cfg
    # A bridge over a Hugging Face model with fused attention weights (GPT-2's c_attn, listed as ``qkv``) also
    # lists split copies (``q``, ``k``, ``v``); the forward pass multiplies by one of the two, counted once.
    named = dict(bridge.named_parameters())
    fused = {name.split(".qkv.")[0] for name in named if ".qkv." in name}
    split = re.compile(r"^(.*)\.[qkv]\.")

    def counted(name: str) -> bool:
        found = split.match(name)
        return not _EMBEDDING.search(name) and not (found and found.group(1) in fused)

    blocks = sum(p.numel() for name, p in named.items() if counted(name))
    return blocks + int(cfg.d_model) * int(cfg.d_vocab), int(cfg.n_layers), int(cfg.d_model)


def flops_per_pass(params: int, layers: int, width: int, rows: int, new: int, keys: int) -> float:
    """A forward pass of ``rows`` sequences of ``new`` tokens attending to ``keys`` positions.

    ``2 x parameters`` per token for the matrix products with weights, plus attention's scores and
    weighted sum, ``2 x 2 x layers x keys x width`` per token (Kaplan et al. 2020, eq. 2.2, with
    both attention products counted).
    """
    return rows * new * (2.0 * params + 4.0 * layers * keys * width)


class PassCounter:
    """Counts the model's forward and backward passes, their FLOPs and the time inside them, per measurement.

    Installed for a whole run: every call of ``TransformerBridge.forward`` (the entry point
    of every hooked run, cached or not, of organisms and checkpoints alike) is counted with
    its rows and tokens; every ``backward`` / ``autograd.grad`` is charged twice the FLOPs
    of the grad-enabled forward passes since the previous one. The current measurement is
    the one ``evidence.measure.runner.run_task`` is running.
    """

    def __init__(self) -> None:
        self.current = "(outside measurements)"
        self.stats: dict[str, dict[str, float]] = {}
        #: each finished measurement's record status and error (``type: message``)
        self.outcomes: dict[str, dict[str, str | None]] = {}
        #: each measurement's time estimate (seconds) from the run's own pre-run estimate
        self.estimates: dict[str, float | None] = {}
        self._pending = 0.0  # FLOPs of grad-enabled forward passes not yet run backward
        self._depth = 0
        self._shapes: dict[int, tuple[int, int, int]] = {}

    def _row(self) -> dict[str, float]:
        keys = (
            "forward_calls",
            "forward_tokens",
            "forward_flops",
            "forward_s",
            "backward_calls",
            "backward_flops",
            "backward_s",
        )
        return self.stats.setdefault(self.current, dict.fromkeys(keys, 0.0))

    def install(self, after: Callable[[], None] | None = None) -> None:
        """Wrap the bridge's forward, backward passes and ``run_task``; ``after`` is called after each measurement."""
        import torch
        from transformer_lens.model_bridge import TransformerBridge

        import evidence.measure.cost as cost
        import evidence.measure.runner as runner

        counter = self
        estimate_seconds = cost.estimate_seconds

        def recorded(definition: Any, *args: Any, **kwargs: Any) -> float | None:
            seconds = estimate_seconds(definition, *args, **kwargs)
            counter.estimates[definition.id] = seconds
            return seconds

        cost.estimate_seconds = recorded  # type: ignore[assignment]
        forward = TransformerBridge.forward

        def counted_forward(bridge: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            if counter._depth or not isinstance(input, torch.Tensor):
                return forward(bridge, input, *args, **kwargs)
            shape = counter._shapes.get(id(bridge))
            if shape is None:
                shape = counter._shapes[id(bridge)] = matmul_parameters(bridge)
            rows, new = int(input.shape[0]), int(input.shape[1]) if input.dim() > 1 else 1
            mask = kwargs.get("attention_mask")
            keys = int(mask.shape[-1]) if isinstance(mask, torch.Tensor) else new
            flops = flops_per_pass(*shape, rows, new, keys)
            counter._depth += 1
            start = time.perf_counter()
            try:
                out = forward(bridge, input, *args, **kwargs)
            finally:
                counter._depth -= 1
            row = counter._row()
            row["forward_s"] += time.perf_counter() - start
            row["forward_calls"] += 1
            row["forward_tokens"] += rows * new
            row["forward_flops"] += flops
            if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad:
                counter._pending += flops
            return out

        def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if counter._depth:
                    return fn(*args, **kwargs)
                counter._depth += 1
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    counter._depth -= 1
                    row = counter._row()
                    row["backward_s"] += time.perf_counter() - start
                    row["backward_calls"] += 1
                    row["backward_flops"] += 2.0 * counter._pending
                    counter._pending = 0.0

            return wrapper

        TransformerBridge.forward = counted_forward  # type: ignore[method-assign]
        torch.Tensor.backward = counted(torch.Tensor.backward)  # type: ignore[method-assign]
        torch.autograd.backward = counted(torch.autograd.backward)
        torch.autograd.grad = counted(torch.autograd.grad)
        run_task = runner.run_task

        def announced(task: Any, *args: Any, **kwargs: Any) -> Any:
            if os.environ.get(ESTIMATE_ONLY):  # the estimates are made: stop before measuring anything
                if after is not None:
                    after()
                raise KeyboardInterrupt
            counter.current, counter._pending = task.measurement_id, 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            record = None
            try:
                record = run_task(task, *args, **kwargs)
                return record
            finally:
                row = counter._row()
                error = getattr(record, "error", None)
                counter.outcomes[task.measurement_id] = {
                    "status": getattr(record, "status", "crashed"),
                    "error": None if error is None else f"{error.type}: {error.message}",
                }
                row["cpu_s"] = row.get("cpu_s", 0.0) + time.process_time() - cpu
                row["wall_s"] = row.get("wall_s", 0.0) + time.perf_counter() - wall
                row["load_average"] = os.getloadavg()[0]
                counter.current = "(outside measurements)"
                if after is not None:
                    after()

        runner.run_task = announced  # type: ignore[assignment]


#: Set by the profile phase: ``run --limit N`` (at most N prompts of each dataset) in the child.
LIMIT_VARIABLE = "REAL_SCALE_LIMIT"
#: Set by the estimate phase: the child stops the run once its time estimates are made.
ESTIMATE_ONLY = "REAL_SCALE_ESTIMATE_ONLY"


def _counted(counter: PassCounter, **more: Any) -> dict[str, Any]:
    """What the child has counted so far, with its own peak RSS (bytes)."""
    import resource

    return {
        "records": [],
        "passes": counter.stats,
        "outcomes": counter.outcomes,
        "estimates": counter.estimates,
        "child_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **more,
    }


def child_suite(model: Path, profile: str, spec: Path | None, out: Path, result: Path) -> int:
    """Run ``interp-dossier run`` in this process with the passes counted; write what was counted to ``result``.

    ``result`` is rewritten after every measurement, so that an interrupted run leaves what it counted.
    """
    from evidence.cli import main as cli

    counter = PassCounter()
    counter.install(after=lambda: result.write_text(json.dumps(_counted(counter, exit=None))))
    argv = [
        "run",
        *([str(spec)] if spec else []),
        "--model",
        str(model),
        "--out",
        str(out),
        "--no-sign",
        "--no-cache",
        "--force",
        "--profile",
        profile,
        *(["--limit", os.environ[LIMIT_VARIABLE]] if os.environ.get(LIMIT_VARIABLE) else []),
    ]
    start = time.perf_counter()
    try:
        code = cli(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    wall = time.perf_counter() - start
    records = []
    if (out / "dossier.json").exists():
        dossier = json.loads((out / "dossier.json").read_text(encoding="utf-8"))
        for record in dossier["records"]:
            records.append(
                {
                    "id": record["measurement"]["id"],
                    "status": record["status"],
                    "duration_s": record.get("duration_s"),
                    "error": record.get("error"),
                }
            )
    result.write_text(json.dumps({**_counted(counter, exit=code, wall_s=wall), "records": records}, indent=1))
    return code


# --- phases: each writes its results as JSON into the results directory ------------------------------


def _median_times(
    variants: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Median wall and CPU seconds of each variant (``{"wall": .., "cpu": ..}``), alternating, after one warm-up
    round; and each one's last result. CPU time is this process's (all its threads): on a shared machine it
    moves far less than the wall time does."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    results: dict[str, Any] = {}
    for run in range(repeats + 1):
        for name, fn in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            if run > 0:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    medians = {
        name: {"wall": statistics.median(w for w, _ in t), "cpu": statistics.median(c for _, c in t)}
        for name, t in times.items()
    }
    return medians, results


def matmul_flops(size: int = 2048, repeats: int = 7) -> dict[str, float]:
    """This machine's float32 matrix-product throughput: FLOPs per wall second and per CPU second of this process.

    The median of ``repeats`` products of two ``size``-square matrices, with torch's threads.
    """
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    times, _ = _median_times({"mm": lambda: torch.mm(a, b)}, repeats)
    flops = 2.0 * size**3
    return {"wall": flops / times["mm"]["wall"], "cpu": flops / times["mm"]["cpu"], "threads": torch.get_num_threads()}


def phase_suite(model: Path, profile: str, spec: Path, work: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The suite in a child process (``interp-dossier run`` with its passes counted): records, passes, peak RSS."""
    out, result = work / "out", work / "result.json"
    work.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-suite",
        str(model),
        profile,
        str(spec),
        str(out),
        str(result),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with (work / "log").open("w") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    measured = json.loads(result.read_text()) if result.exists() else {"records": [], "passes": {}}
    tail = (work / "log").read_text(errors="replace").strip().splitlines()[-3:]
    return {
        **measured,
        "process_wall_s": wall,
        "exit_status": os.waitstatus_to_exitcode(status),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "profile": profile,
        "log_tail": tail,
    }


def phase_attribution(gpt2: Path, examples: int, seq_len: int, repeats: int, ig_steps: int) -> dict[str, Any]:
    """Attribution patching (plain and EAP-IG) against exhaustive activation patching over every head and MLP."""
    import numpy as np

    from evidence.measure.methods.attribution import attribution_scores
    from evidence.measure.methods.patching import (
        PatchingInputs,
        activation_patching_effects,
        induction_task,
        model_nodes,
    )
    from evidence.measure.stats import spearman
    from evidence.model import ModelSpec, load_model

    counter = PassCounter()
    counter.install()
    model = load_model(ModelSpec(path=str(gpt2)))
    nodes = model_nodes(model)
    task = induction_task(model, examples, seq_len, np.random.default_rng(0))
    inputs = PatchingInputs(model, nodes, task, "logprob", "corrupted", examples)
    everything = list(range(len(nodes)))

    def labelled(label: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            counter.current = label
            try:
                return fn()
            finally:
                counter.current = "(outside measurements)"

        return run

    times, results = _median_times(
        {
            "atp": labelled("atp", lambda: attribution_scores(inputs)[0]),
            "eap-ig": labelled("eap-ig", lambda: attribution_scores(inputs, "eap-ig", ig_steps)[0]),
            "patching": labelled("patching", lambda: activation_patching_effects(inputs, everything)[0]),
        },
        repeats,
    )
    effects = results["patching"].mean(axis=0)
    rounds = repeats + 1
    per_run = {k: {f: v / rounds for f, v in counter.stats[k].items()} for k in ("atp", "eap-ig", "patching")}
    return {
        "examples": examples,
        "tokens": int(task.length),
        "nodes": len(nodes),
        "ig_steps": ig_steps,
        "repeats": repeats,
        "median_s": times,
        "passes": per_run,
        "spearman": {k: float(spearman(results[k].mean(axis=0), effects)[0]) for k in ("atp", "eap-ig")},
    }


def _chat_prompts(model: Any, n: int) -> list[list[int]]:
    from evidence.datasets import read_dataset
    from evidence.measure.methods.behaviour import prompt_ids

    path = ROOT / "evidence" / "specs" / "natural-language" / "refusal.harmful.jsonl"
    dataset = read_dataset("refusal.harmful", path, {"refusal.harmful": frozenset({"harmful"})})
    return [prompt_ids(model.tokenizer, p) for p in dataset.prompts[:n]]


def phase_forward(directory: Path, repeats: int, prompts: int, batch_sizes: list[int], length: int) -> dict[str, Any]:
    """Forward paths on one checkpoint: batched vs one at a time, throughput by batch, hooks vs cache, bridge vs HF."""
    import torch

    from evidence.measure.methods.behaviour import last_position_logits
    from evidence.measure.methods.directions import activations_at
    from evidence.model import ModelSpec, load_model

    model = load_model(ModelSpec(path=str(directory)))
    bridge = model.bridge
    params, layers, width = matmul_parameters(bridge)
    hf_parameters = int(sum(p.numel() for p in bridge.original_model.parameters()))
    out: dict[str, Any] = {"parameters": hf_parameters, "matmul_parameters": params}

    seqs = _chat_prompts(model, prompts)
    out["prompt_tokens"] = [min(map(len, seqs)), max(map(len, seqs))]
    times, results = _median_times(
        {
            "batched": lambda: last_position_logits(bridge, seqs, prompts),
            "one at a time": lambda: last_position_logits(bridge, seqs, 1),
        },
        repeats,
    )
    out["batched_vs_single"] = {
        "median_s": times,
        "max_abs_diff": float((results["batched"] - results["one at a time"]).abs().max()),
    }

    generator = torch.Generator().manual_seed(0)
    vocab = int(bridge.cfg.d_vocab)
    rows = max(batch_sizes)
    tokens = torch.randint(100, min(vocab, 8000), (rows, length), generator=generator)

    def forward(batch: int) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return bridge(tokens[:batch])

        return run

    times, _ = _median_times({str(b): forward(b) for b in batch_sizes}, repeats)
    out["throughput"] = {
        b: {
            "median_s": times[str(b)],
            "tokens": b * length,
            "flops": flops_per_pass(params, layers, width, b, length, length),
        }
        for b in batch_sizes
    }

    names = [f"blocks.{layer}.hook_resid_post" for layer in range(layers)]
    batch = min(8, rows)
    fixed = tokens[:batch].tolist()

    def cache_everything() -> Any:
        with torch.no_grad():
            _, cache = bridge.run_with_cache(tokens[:batch])
        return torch.stack([cache[n][:, -1, :] for n in names], dim=1), len(cache)

    times, results = _median_times(
        {
            "hooks where needed": lambda: activations_at(model, fixed, names, [-1], batch),
            "cache everything": cache_everything,
        },
        repeats,
    )
    kept, cached_points = results["cache everything"]
    out["hooks_vs_cache"] = {
        "median_s": times,
        "batch": batch,
        "length": length,
        "hook_points_cached": cached_points,
        "blocks": layers,
        "max_abs_diff": float((results["hooks where needed"][:, :, 0, :] - kept).abs().max()),
    }

    # A separate plain model: the bridge rewires the modules of the one it wraps (``original_model``).
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(directory).eval()

    def plain() -> Any:
        with torch.no_grad():
            return hf(input_ids=tokens[:batch]).logits

    times, results = _median_times({"bridge": forward(batch), "transformers": plain}, repeats)
    out["bridge_vs_hf"] = {
        "median_s": times,
        "batch": batch,
        "length": length,
        "max_abs_diff": float((results["bridge"] - results["transformers"]).abs().max()),
    }
    return out


def phase_profile(model: Path, measurement: str, profile: str, limit: int, work: Path) -> dict[str, Any]:
    """One measurement under cProfile in a child process, at most ``limit`` prompts per dataset; where its time goes."""
    work.mkdir(parents=True, exist_ok=True)
    spec = spec_with(ROOT / "evidence" / "specs" / "natural-language.toml", work, "one", measurements=[measurement])
    stats_file = work / "profile.pstats"
    argv = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats_file),
        str(Path(__file__).resolve()),
        "--child-suite",
        str(model),
        profile,
        str(spec),
        str(work / "out"),
        str(work / "result.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", LIMIT_VARIABLE: str(limit)}
    with (work / "log").open("w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    result = json.loads((work / "result.json").read_text())
    split = profile_split(stats_file)
    return {"measurement": measurement, "profile": profile, "limit": limit, "result": result, "split": split}


#: Where a measurement's time goes: (label, module path fragment, function name or "" for any). Each label's
#: seconds are cumulative (what its functions call included), so labels nest: generation includes forward passes.
PROFILE_BUCKETS = [
    ("model forward passes (bridge, hooks included)", "transformer_lens/model_bridge/transformer_bridge.py", "forward"),
    ("hook points (TransformerLens HookPoint, hook functions included)", "transformer_lens/hook_points.py", "forward"),
    ("matrix products (torch linear / matmul / addmm / attention)", "~", "<built-in method torch._C._nn.linear>"),
    ("matrix products (torch linear / matmul / addmm / attention)", "~", "<built-in method torch.matmul>"),
    ("matrix products (torch linear / matmul / addmm / attention)", "~", "<built-in method torch.addmm>"),
    (
        "matrix products (torch linear / matmul / addmm / attention)",
        "~",
        "<built-in method torch._C._nn.scaled_dot_product_attention>",
    ),
    ("backward passes", "torch/_tensor.py", "backward"),
    ("backward passes", "torch/autograd/__init__.py", "backward"),
    ("backward passes", "torch/autograd/__init__.py", "grad"),
    (  # every greedy decoding (greedy_generate, generated_matches) runs its batches through _greedy_batch
        "generation (greedy decoding, its forward passes included)",
        "evidence/measure/methods/behaviour.py",
        "_greedy_batch",
    ),
    ("tokenization and chat templates", "evidence/measure/methods/behaviour.py", "prompt_ids"),
    ("tokenization and chat templates", "evidence/measure/methods/behaviour.py", "marker_tokens"),
    ("bootstrap and statistics (evidence/measure/stats.py)", "evidence/measure/stats.py", ""),
    ("probe fitting (evidence/measure/methods/probes.py)", "evidence/measure/methods/probes.py", ""),
]


def profile_split(stats_file: Path) -> dict[str, Any]:
    """Cumulative seconds under each bucket's functions (outermost calls), and the top functions by own time.

    A function's cumulative time counts once however deeply it recurses; calls into a bucket from
    a function of the same bucket are taken out so that nested calls are not counted twice.
    """
    import pstats

    stats = pstats.Stats(str(stats_file))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in raw.values())
    buckets: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, _tt, ct, callers) in raw.items():
        for label, fragment, function in PROFILE_BUCKETS:
            if fragment in path and (not function or function == name):
                # only the calls that do not come from another function of the same bucket
                inner = sum(c[3] for caller, c in callers.items() if _bucket(caller) == label)
                buckets[label] = buckets.get(label, 0.0) + ct - inner
                break
    own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:12]
    top = [
        {"function": f"{Path(path).name}:{name}", "own_s": tt, "calls": nc}
        for (path, _l, name), (_cc, nc, tt, _ct, _callers) in own
    ]
    return {"total_s": total, "buckets": buckets, "top_own": top}


def _bucket(key: Any) -> str | None:
    path, _line, name = key
    for label, fragment, function in PROFILE_BUCKETS:
        if fragment in path and (not function or function == name):
            return label
    return None


def spec_with(
    source: Path, directory: Path, name: str, overrides: str = "", measurements: list[str] | None = None
) -> Path:
    """A copy of run spec ``source`` in ``directory``: its files named by absolute path, ``overrides`` (TOML) appended.

    ``measurements``: run only these (in this order).
    """
    text = source.read_text(encoding="utf-8")
    for relative in ('"natural-language/', '"../organisms/data/', '"policy-'):
        text = text.replace(relative, f'"{source.parent}/{relative[1:]}')
    if measurements is not None:
        listed = "measurements = [" + ", ".join(f'"{m}"' for m in measurements) + "]"
        text = re.sub(r"measurements = \[[^\]]*\]", listed, text, count=1)
        # the parameter tables of the measurements left out go too (a spec may not set what it does not run)
        table = re.compile(r'^\[measurements\."([^"]+)"\]\n(?:(?!\[).*\n?)*', re.MULTILINE)
        text = table.sub(lambda m: m.group(0) if m.group(1) in measurements else "", text)
    path = directory / f"{name}.toml"
    path.write_text(text + "\n" + overrides, encoding="utf-8")
    return path


PHASES = ("estimate", "suite", "attribution", "forward", "tiny", "profile")
NATURAL = ROOT / "evidence" / "specs" / "natural-language.toml"
#: The natural-language spec's measurements, the ones with the fewest passes first, so that a run cut short
#: (the machine is shared) has measured as many as it could; each still runs on its own task and seed.
SUITE_ORDER = [
    "model.batch_invariance",
    "refusal.direction",
    "deception.probe",
    "probe.causality",
    "goal.proxy_reliance",
    "refusal.stability",
    "deception.robustness",
    "calibration.organisms",
    "circuit.faithfulness",
    "heads.inventory",
]
FOUR = ["refusal.direction", "refusal.stability", "probe.causality", "deception.robustness"]
#: A trained checkpoint saved with ``transformers`` (a GPT-2-style population member, 2 layers x 48, in the
#: organisms' own language L1): loaded from its directory exactly as a user's checkpoint is, and behaving like
#: an organism (its replies end), so that it makes the organisms' number of passes.
HF_MEMBER = ROOT / "evidence" / "population" / "members" / "refusal-planted-gpt2-L1-s7211"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,llama", help="the 124M checkpoints: gpt2, llama (default: both)")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"what to measure (default: {','.join(PHASES)}; empty: only write the tables)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and examples (a smoke run)")
    parser.add_argument(
        "--suite-profile",
        choices=["quick", "standard"],
        default="quick",
        help="the suite's budget profile (default: quick; see the README for why)",
    )
    parser.add_argument(
        "--suite-measurements",
        default=",".join(SUITE_ORDER),
        help="the suite phase measures these (default: all ten); the others are given their time estimate",
    )
    parser.add_argument(
        "--suite-resume",
        action="store_true",
        help="keep the measurements of the last suite run of each model and add these to them",
    )
    parser.add_argument("--results", type=Path, default=CACHE / "results", help="where results and bundles go")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--child-suite", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        print(build(args.build, CACHE / args.build))
        return 0
    if args.child_suite:
        model, profile, spec, out, result = args.child_suite
        return child_suite(Path(model), profile, Path(spec) if spec != "-" else None, Path(out), Path(result))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    models = [m for m in args.models.split(",") if m]
    phases = [p for p in args.phases.split(",") if p]
    directories = {kind: build(kind, CACHE / kind) for kind in {*models, "gpt2", "tiny-llama"}}
    repeats = 1 if args.quick else 3

    def save(name: str, value: dict[str, Any]) -> None:
        value = {
            **value,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "matmul_flops_after": matmul_flops(),
            "load_average_after": os.getloadavg()[0],
        }
        (results / f"{name}.json").write_text(json.dumps(value, indent=1))
        print(f"[{time.strftime('%H:%M:%S')}] {name} done", flush=True)

    if phases:  # none: only the tables, from the results already there
        save("matmul-start", {"flops": matmul_flops()})
    if "estimate" in phases:  # each measurement's time estimate by the run's own pre-run estimate, nothing measured
        suite_spec = spec_with(NATURAL, results, "natural-language-suite", measurements=SUITE_ORDER)
        for kind in models:
            estimated = phase_suite(
                directories[kind], args.suite_profile, suite_spec, results / f"estimate-{kind}", {ESTIMATE_ONLY: "1"}
            )
            save(f"estimate-{kind}", {"estimates": estimated.get("estimates", {}), "profile": args.suite_profile})
    if "suite" in phases:
        chosen = [m for m in SUITE_ORDER if m in args.suite_measurements.split(",")]
        suite_spec = spec_with(NATURAL, results, "natural-language-suite-run", measurements=chosen)
        for kind in models:
            measured = phase_suite(directories[kind], args.suite_profile, suite_spec, results / f"suite-{kind}")
            earlier = _load(results, f"suite-{kind}") if args.suite_resume else None
            save(f"suite-{kind}", measured if earlier is None else merge_suites(earlier, measured))
    if "attribution" in phases:
        examples, seq_len = 8, 16
        save("attribution", phase_attribution(directories["gpt2"], examples, seq_len, min(repeats, 2), 8))
    if "forward" in phases:
        for kind in models:
            save(f"forward-{kind}", phase_forward(directories[kind], repeats, 32, [1, 2, 4, 8, 16, 32], 64))
    if "tiny" in phases:
        four = spec_with(ROOT / "evidence" / "specs" / "default.toml", results, "organisms-four", measurements=FOUR)
        checkpoints = {"demo": Path("demo"), "hf-member": HF_MEMBER, "tiny-llama": directories["tiny-llama"]}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in checkpoints}
        for round_ in range(1 if args.quick else 2):  # alternating: demo, member, tiny, demo, member, tiny
            for name, model in checkpoints.items():
                runs[name].append(phase_suite(model, "standard", four, results / f"tiny-{name}-{round_}"))
        save("tiny", runs)
    if "profile" in phases:
        save("profile", phase_profile(directories["gpt2"], "refusal.direction", "quick", 32, results / "profile"))
    if phases:
        save("matmul-end", {"flops": matmul_flops()})

    table = write_table(results, models)
    print(table)
    if not args.no_readme:
        readme = ROOT / "benchmarks" / "README.md"
        text = readme.read_text(encoding="utf-8")
        begin, end = "<!-- real_scale: begin -->", "<!-- real_scale: end -->"
        block = f"{begin}\n{table}\n{end}"
        if begin in text:
            text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        readme.write_text(text, encoding="utf-8")
    return 0


def merge_suites(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """One suite result from two runs of one model (``--suite-resume``): each measurement as its latest run measured it.

    Times and peak RSS are the runs' sums and maximum; the merged result counts as finished only if the later run is.
    """
    later = {**later, "measured_at": later.get("measured_at") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    parts = [*earlier.get("parts", [earlier]), later]
    merged = {**later, "parts": [{k: v for k, v in part.items() if k not in ("passes", "parts")} for part in parts]}
    for key in ("passes", "outcomes", "estimates"):
        merged[key] = {**earlier.get(key, {}), **later.get(key, {})}
    merged["passes"].pop("(outside measurements)", None)  # each run has its own; the table states the latest's
    if "(outside measurements)" in later.get("passes", {}):
        merged["passes"]["(outside measurements)"] = later["passes"]["(outside measurements)"]
    merged["records"] = [*earlier.get("records", []), *later.get("records", [])]
    merged["process_wall_s"] = sum(float(part.get("process_wall_s") or 0.0) for part in parts)
    merged["wall_s"] = sum(float(part.get("wall_s") or part.get("process_wall_s") or 0.0) for part in parts)
    merged["cpu_s"] = sum(float(part.get("cpu_s") or 0.0) for part in parts)
    merged["peak_rss_bytes"] = max(
        int(part.get("peak_rss_bytes") or part.get("child_peak_rss_bytes") or 0) for part in parts
    )
    merged["load_average_start"] = earlier.get("load_average_start", later.get("load_average_start"))
    merged["measured_at"] = earlier.get("measured_at", later.get("measured_at"))
    return merged


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _part_line(part: dict[str, Any]) -> str:
    """One run of a merged suite result: when, what it measured, its totals."""
    measured = [name for name in SUITE_ORDER if name in part.get("outcomes", {})]
    line = f"{part.get('measured_at', 'at an unrecorded time')}, {', '.join(f'`{m}`' for m in measured) or 'nothing'}"
    notes = [part["stopped_from_outside"]] if part.get("stopped_from_outside") else []
    wall, cpu = part.get("wall_s") or part.get("process_wall_s"), part.get("cpu_s")
    if wall is not None and cpu is not None:
        notes.append(f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU")
    whole, finished = part.get("peak_rss_bytes"), part.get("child_peak_rss_bytes")
    if part.get("exit") is None and finished:  # stopped: its measurements' peak, and the stopped one's
        notes.append(f"peak RSS {finished / 2**30:.2f} GiB by the end of its last finished measurement")
        if whole and whole > finished:
            notes.append(f"{whole / 2**30:.2f} GiB with the measurement it was stopped in")
    elif whole:
        notes.append(f"peak RSS {whole / 2**30:.2f} GiB")
    return f"{line} ({'; '.join(notes)})" if notes else line


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}" if seconds >= 100 else f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.3f}"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _flops(value: float) -> str:
    return f"{value / 1e12:.2f} T" if value >= 1e11 else f"{value / 1e9:.2f} G"


def _target(ratio: float | None, limit: float) -> str:
    if ratio is None:
        return "-"
    return "met" if ratio <= limit else f"missed by {ratio / limit:.1f}x"


def write_table(results: Path, models: list[str]) -> str:
    """The markdown tables, from the results directory (each part says when it was measured)."""
    lines: list[str] = []
    start = _load(results, "matmul-start")
    if start is not None:
        peak = start["flops"]
        lines += [
            f"Matrix-product throughput of this machine (float32, {peak['threads']} threads, 2048-square, "
            f"median of 7), measured at the start of the run ({start['measured_at']}): "
            f"{peak['wall'] / 1e9:.0f} GFLOP/s per wall second, {peak['cpu'] / 1e9:.0f} GFLOP/s per CPU "
            f"second; load average {start['load_average_after']:.1f}. Each part below is measured against "
            "the throughput measured right after it (its *floor*: the FLOPs of the passes it made, counted "
            "by wrapping the bridge's forward and autograd's backward, over that throughput; a backward "
            "pass counts as twice its forward pass). On this shared machine the CPU time of the measuring "
            "process is the steadier number: ratios to the floor are given in CPU seconds (process CPU "
            "over matrix-product CPU), wall-clock in brackets.",
            "",
        ]
    for kind in models:
        lines += _suite_table(results, kind)
    lines += _attribution_table(results)
    lines += _forward_table(results, models)
    lines += _tiny_table(results)
    lines += _profile_table(results)
    return "\n".join(lines).rstrip() + "\n"


NAMES = {
    "gpt2": "GPT-2 small shape (12 x 768, 12 heads, vocab 50257)",
    "llama": "Llama shape (12 x 768, 12 query / 4 key-value heads, SwiGLU 2048, vocab 32000)",
}


def _suite_table(results: Path, kind: str) -> list[str]:
    suite = _load(results, f"suite-{kind}")
    if suite is None:
        return []
    peak = suite["matmul_flops_after"]
    passes = suite.get("passes", {})
    outcomes = suite.get("outcomes", {})
    durations = {r["id"]: r.get("duration_s") for r in suite.get("records", [])}
    profile = suite["profile"]
    finished = suite.get("exit") is not None
    total_wall = suite.get("wall_s") or suite["process_wall_s"]
    lines = [
        f"### Full default suite: {NAMES.get(kind, kind)}, profile `{profile}`",
        "",
        f"Measured {suite['measured_at']}: `interp-dossier run --model DIR --profile {profile} --no-sign "
        "--no-cache` with the natural-language spec (its measurements in the order below), in a child process; "
        f"load average {suite['load_average_start']:.1f} at its start, {suite['load_average_end']:.1f} at its end."
        + (
            ""
            if profile == "standard"
            else " **Profile `quick`, not `standard`**: fewer bootstrap resamples, random baselines and attack "
            "steps (`interp-dossier measurements ID` lists each profile's overrides); no standard-profile "
            "number is given here."
        ),
        "",
        "| measurement | status | wall s | CPU s | forward calls / tokens | backward calls | FLOPs | floor CPU s "
        "| CPU / floor (wall / floor) | wall in model passes | target: at most 3x floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    estimated = {**((_load(results, f"estimate-{kind}") or {}).get("estimates") or {}), **suite.get("estimates", {})}
    for name in SUITE_ORDER:
        counted, outcome = passes.get(name), outcomes.get(name)
        if counted is None or outcome is None:
            reached = "not reached: the run was stopped" if not finished else "not run"
            if estimated.get(name) is not None:
                reached += f" (the run's own estimate: {_duration(estimated[name])})"
            lines.append(f"| {name} | {reached} | - | - | - | - | - | - | - | - | - |")
            continue
        status = outcome["status"] if not outcome.get("error") else f"{outcome['status']}: {outcome['error']}"
        flops = counted["forward_flops"] + counted["backward_flops"]
        floor_cpu, floor_wall = flops / peak["cpu"], flops / peak["wall"]
        cpu, wall = counted["cpu_s"], durations.get(name) or counted["wall_s"]
        ratio = cpu / floor_cpu if floor_cpu else None
        wall_ratio = wall / floor_wall if floor_wall else None
        inside = (counted["forward_s"] + counted["backward_s"]) / wall if wall else None
        lines.append(
            f"| {name} | {status} | {_s(wall)} | {_s(cpu)} | {int(counted['forward_calls']):,} / "
            f"{int(counted['forward_tokens']):,} | {int(counted['backward_calls']):,} | {_flops(flops)} | "
            f"{_s(floor_cpu)} | {_x(ratio)} ({_x(wall_ratio)}) | "
            f"{'-' if inside is None else f'{inside:.0%}'} | {_target(ratio, 3.0)} |"
        )
    outside = passes.get("(outside measurements)")
    gib = (suite.get("peak_rss_bytes") or 0) / 2**30
    done = sum(1 for name in SUITE_ORDER if name in outcomes)
    parts = suite.get("parts", [suite])
    finished_gib = (
        max(((p.get("child_peak_rss_bytes") if p.get("exit") is None else p.get("peak_rss_bytes")) or 0) for p in parts)
        / 2**30
    )
    any_gib = max(finished_gib, max((p.get("peak_rss_bytes") or 0) for p in parts) / 2**30)
    if len(parts) > 1 or any(part.get("stopped_from_outside") for part in parts):
        whole = (
            f"The measurements above come from {len(parts)} runs of the suite on this checkpoint, each measuring "
            "some of them (`real_scale.py --suite-measurements ... --suite-resume`): "
            + "; ".join(_part_line(part) for part in parts)
            + f". {done} of {len(SUITE_ORDER)} measurements were measured."
        )
        if estimated:
            known = [v for v in estimated.values() if v is not None]
            whole += (
                f" The run's own estimate for the whole suite (declared passes times a forward pass timed at its "
                f"start, `{profile}` profile): {_duration(sum(known))} for {len(known)} measurements. Target (the "
                "whole suite under 15 min on 2 cores, peak RSS under 4 GiB): time "
                + (_target(sum(known) / 60, 15.0) if done < len(SUITE_ORDER) else "see above")
                + f" by that estimate; memory {_target(any_gib, 4.0)} ({any_gib:.2f} GiB at the most"
                + (f", {finished_gib:.2f} GiB by the measurements that finished)." if any_gib > finished_gib else ").")
            )
        lines += ["", whole, ""]
        return lines
    if finished and done < len(SUITE_ORDER):
        missing = [name for name in SUITE_ORDER if name not in outcomes]
        rest = sum(estimated.get(name) or 0.0 for name in missing)
        whole = (
            f"This run measured {done} of the suite's {len(SUITE_ORDER)} measurements (`--suite-measurements`), "
            f"leaving out {', '.join(f'`{m}`' for m in missing)}: {total_wall / 60:.1f} min wall (loading, "
            f"checks, numerics certificate, those measurements, the dossier and its PDF), {suite['cpu_s'] / 60:.1f} "
            f"min CPU, peak RSS {gib:.2f} GiB, exit status {suite['exit_status']}. With the measurements left out "
            f"at the run's own estimate ({_duration(rest)}), the whole suite would take about "
            f"{_duration(total_wall + rest)}. Target (under 15 min on 2 cores, peak RSS under 4 GiB): time "
            f"{_target((total_wall + rest) / 60, 15.0)} by that estimate ({_target(total_wall / 60, 15.0)} by the "
            f"measurements run alone), memory {_target(gib, 4.0)} by the measurements run."
        )
    elif finished:
        whole = (
            f"Whole run (loading, checks, numerics certificate, every measurement, the dossier and its PDF): "
            f"{total_wall / 60:.1f} min wall, {suite['cpu_s'] / 60:.1f} min CPU, peak RSS {gib:.2f} GiB, exit "
            f"status {suite['exit_status']}. Target (under 15 min on 2 cores, peak RSS under 4 GiB): time "
            f"{_target(total_wall / 60, 15.0)}, memory {_target(gib, 4.0)}"
            + ("" if profile == "standard" else " (and this was the quick profile)")
            + "."
        )
    else:
        whole = (
            f"The run was stopped after {total_wall / 60:.1f} min wall ({suite['cpu_s'] / 60:.1f} min CPU), with "
            f"{done} of {len(SUITE_ORDER)} measurements finished; peak RSS until then {gib:.2f} GiB. Target "
            f"(the whole suite under 15 min on 2 cores, peak RSS under 4 GiB): time not settled (stopped after "
            f"{total_wall / 60:.0f} min on this shared machine), memory {_target(gib, 4.0)} so far."
        )
    if outside:
        whole += (
            f" Outside the measurements (the pre-run check's timing and the numerics certificate) the model made "
            f"{int(outside['forward_calls']):,} forward calls ({outside['forward_s']:.0f} s wall)."
        )
    lines += ["", whole, ""]
    if finished and suite["exit_status"] != 0:
        lines += ["Last lines of its output: " + " / ".join(f"`{t.strip()}`" for t in suite["log_tail"]), ""]
    return lines


def _attribution_table(results: Path) -> list[str]:
    att = _load(results, "attribution")
    if att is None:
        return []
    peak = att["matmul_flops_after"]
    patching = att["median_s"]["patching"]
    lines = [
        "### Attribution vs exhaustive activation patching (GPT-2 small shape, 124M)",
        "",
        f"Measured {att['measured_at']}: {att['examples']} induction examples of {att['tokens']} tokens, one "
        f"batch, every node ({att['nodes']}: 144 heads and 12 MLPs), log-prob metric, median of "
        f"{att['repeats']} alternating runs after a warm-up; Spearman against the patching effects.",
        "",
        "| method | forward / backward passes | FLOPs | CPU s (wall s) | floor CPU s | CPU / floor (wall) "
        "| speed-up vs patching, CPU (wall) | Spearman | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    rounds = 1
    for key, label in (
        ("atp", "attribution patching"),
        ("eap-ig", f"EAP-IG ({att['ig_steps']} steps)"),
        ("patching", "exhaustive activation patching"),
    ):
        counted, median = att["passes"][key], att["median_s"][key]
        flops = (counted["forward_flops"] + counted["backward_flops"]) / rounds
        floor_cpu, floor_wall = flops / peak["cpu"], flops / peak["wall"]
        ratio = median["cpu"] / floor_cpu
        speed = patching["cpu"] / median["cpu"]
        rho = att["spearman"].get(key)
        speed_cell = "-" if key == "patching" else f"{_x(speed)} ({_x(patching['wall'] / median['wall'])})"
        if key == "patching":
            target = _target(ratio, 3.0)
        else:
            misses = [f"speed-up {speed:.0f}x < 35x"] if speed < 35 else []
            misses += [f"Spearman {rho:.3f} < 0.95"] if rho is not None and rho < 0.95 else []
            misses += [f"{ratio:.2f}x its floor > 1.5x"] if ratio > 1.5 else []
            target = "met" if not misses else "missed: " + "; ".join(misses)
        lines.append(
            f"| {label} | {counted['forward_calls']:.0f} / {counted['backward_calls']:.0f} | {_flops(flops)} | "
            f"{_s(median['cpu'])} ({_s(median['wall'])}) | {_s(floor_cpu)} | {_x(ratio)} "
            f"({_x(median['wall'] / floor_wall)}) | "
            f"{speed_cell} | "
            f"{'-' if rho is None else f'{rho:.3f}'} | {target} |"
        )
    return [*lines, ""]


def _cell(median: dict[str, float]) -> str:
    return f"{_s(median['cpu'])} ({_s(median['wall'])})"


def _compare(label: str, a: dict[str, float], b: dict[str, float], diff: float) -> str:
    ratio = f"{_x(a['cpu'] / b['cpu'])} ({_x(a['wall'] / b['wall'])})"
    return f"| {label} | {_cell(a)} | {_cell(b)} | {ratio} | {diff:.1e} |"


def _forward_table(results: Path, models: list[str]) -> list[str]:
    lines: list[str] = []
    for kind in models:
        fwd = _load(results, f"forward-{kind}")
        if fwd is None:
            continue
        peak = fwd["matmul_flops_after"]
        b, h, x = fwd["batched_vs_single"], fwd["hooks_vs_cache"], fwd["bridge_vs_hf"]
        lo, hi = fwd["prompt_tokens"]
        lines += [
            f"### Forward paths: {NAMES.get(kind, kind)}",
            "",
            f"Measured {fwd['measured_at']}; {fwd['parameters'] / 1e6:.1f}M parameters; median CPU s (wall s) of "
            "alternating runs after a warm-up.",
            "",
            "| comparison | A | B | A / B, CPU (wall) | max abs difference |",
            "| --- | ---: | ---: | ---: | ---: |",
            _compare(
                f"one prompt at a time (A) vs batched, left-padded (B): last-position logits of 32 chat prompts "
                f"of {lo}-{hi} tokens",
                b["median_s"]["one at a time"],
                b["median_s"]["batched"],
                b["max_abs_diff"],
            ),
            _compare(
                f"cache everything (`run_with_cache`, {h['hook_points_cached']} hook points) (A) vs hooks only "
                f"where needed (`capture_at`, last position of {h.get('blocks', 12)} blocks) (B), "
                f"{h['batch']} x {h['length']} tokens",
                h["median_s"]["cache everything"],
                h["median_s"]["hooks where needed"],
                h["max_abs_diff"],
            ),
            _compare(
                f"bridge (A) vs plain `transformers` (B) forward, {x['batch']} x {x['length']} tokens",
                x["median_s"]["bridge"],
                x["median_s"]["transformers"],
                x["max_abs_diff"],
            ),
            "",
            "| batch x 64 tokens (bridge, no grad) | CPU s (wall s) | tokens / wall s | FLOPs | CPU / floor "
            "| share of the matrix-product peak (CPU) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for batch, row in fwd["throughput"].items():
            cpu, wall = row["median_s"]["cpu"], row["median_s"]["wall"]
            floor = row["flops"] / peak["cpu"]
            lines.append(
                f"| {batch} | {_cell(row['median_s'])} | {row['tokens'] / wall:,.0f} | {_flops(row['flops'])} "
                f"| {_x(cpu / floor)} | {floor / cpu:.0%} |"
            )
        lines.append("")
    return lines


TINY_NAMES = {
    "hf-member": "trained GPT-2-style checkpoint (2 x 48)",
    "tiny-llama": "random Llama-style checkpoint (3 x 64)",
}


def _tiny_table(results: Path) -> list[str]:
    tiny = _load(results, "tiny")
    if tiny is None:
        return []
    others = [who for who in TINY_NAMES if tiny.get(who)]
    lines = [
        "### A user's tiny checkpoint vs the `demo` organism",
        "",
        f"Measured {tiny['measured_at']}: four behaviour measurements under the organisms' run spec "
        "(`evidence/specs/default.toml`: their prompt sets, markers and attack budget; profile `standard`), each "
        "model in its own child process, alternating, "
        f"{len(tiny['demo'])} run(s) each, medians; load average {tiny['load_average_after']:.1f} after. "
        "`demo` is a native organism (3 layers x 64). The checkpoints are loaded from their directories "
        "with `transformers` as a user's are: a *trained* GPT-2-style one (the population member "
        f"`{HF_MEMBER.name}`, 2 x 48, trained on the organisms' language, so its replies end as an "
        "organism's do) and a *random* Llama-style one (3 x 64, built as the tests build theirs, "
        "`tests/hf_models.py`, with a sub-word tokenizer that knows the organisms' prompt words). "
        "Wall-clock time is the target's measure on this idle machine; CPU time is given too (`run` "
        "measures an organism on one torch thread and any other model on all of them, so the "
        "checkpoints' CPU time counts both cores).",
        "",
        "| measurement | model | wall s (CPU s) | / demo, wall (CPU) | forward calls / tokens "
        "| wall ms per forward call | target within 1.5x |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in FOUR:
        cells: dict[str, dict[str, float] | None] = {}
        for who in ("demo", *others):
            rows = [run["passes"].get(name) for run in tiny[who] if run["passes"].get(name)]
            cells[who] = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in rows[0]} if rows else None
        demo = cells["demo"]
        for who in ("demo", *others):
            row = cells[who]
            label = "`demo` organism (3 x 64)" if who == "demo" else TINY_NAMES[who]
            if row is None:
                failed = [run["outcomes"].get(name, {}).get("error") for run in tiny[who]]
                why = next((e for e in failed if e), "not measured")
                lines.append(f"| {name} | {label} | - | - | - | - | not measured: {why} |")
                continue
            per_call = 1000 * row["forward_s"] / row["forward_calls"] if row["forward_calls"] else None
            passes = f"{int(row['forward_calls']):,} / {int(row['forward_tokens']):,}"
            ms = f"{per_call:.2f}" if per_call is not None else "-"
            if who == "demo" or demo is None:
                times = f"{_s(row['wall_s'])} ({_s(row['cpu_s'])})"
                lines.append(f"| {name} | {label} | {times} | - | {passes} | {ms} | - |")
                continue
            ratio = row["wall_s"] / demo["wall_s"]
            lines.append(
                f"| {name} | {label} | {_s(row['wall_s'])} ({_s(row['cpu_s'])}) | "
                f"{_x(ratio)} ({_x(row['cpu_s'] / demo['cpu_s'])}) | {passes} | {ms} | {_target(ratio, 1.5)} |"
            )
    return [*lines, ""]


def _profile_table(results: Path) -> list[str]:
    prof = _load(results, "profile")
    if prof is None:
        return []
    split = prof["split"]
    total = split["total_s"]
    lines = [
        f"### Where the time goes: `{prof['measurement']}` on the GPT-2-shaped checkpoint under cProfile",
        "",
        f"Measured {prof['measured_at']}; profile `{prof['profile']}`, `--limit {prof.get('limit')}` (at most that "
        "many prompts of each dataset, to fit the profiler's overhead into the run); the whole child process "
        "(loading and "
        f"checks included) took {total:.0f} s under the profiler. Seconds are cumulative (what a function "
        "calls is included), so rows nest: generation includes the forward passes it makes.",
        "",
        "| where | seconds | share |",
        "| --- | ---: | ---: |",
    ]
    for label, seconds in sorted(split["buckets"].items(), key=lambda item: -item[1]):
        lines.append(f"| {label} | {seconds:.1f} | {seconds / total:.0%} |")
    lines += [
        "",
        "Most time of their own (not counting what they call):",
        "",
        "| function | own seconds | calls |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| `{t['function']}` | {t['own_s']:.1f} | {t['calls']:,} |" for t in split["top_own"]]
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main())
