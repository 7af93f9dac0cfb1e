"""Time greedy generation with the key/value cache against the full recompute, on the same prompts.

Both paths are :func:`evidence.measure.methods.behaviour.greedy_generate`:
``cache=False`` re-runs the whole sequence for every new token (the reference
path), ``cache=True`` runs the prompt once and then one token per step. Each
model gets mixed-length prompts of random ordinary tokens (``--prompts`` of
``--min-length``..``--max-length`` tokens, batched by length as the suite does)
and a fixed budget of ``--tokens`` new tokens without stop tokens, so that both
paths do the same number of steps. Optionally (``--ablate``) the generation runs
under directional ablation of a random direction at every block, as
``refusal.direction`` generates.

The two paths alternate, ``--repeats`` times each after one warm-up, in one
process; the table gives the median CPU time of this process for each (with one
thread, CPU time is what the work costs; wall time on a shared machine also
counts the other processes), their ratio, the ratio of the median wall times,
and whether the replies were identical token for token.

With ``--measurement ID`` (e.g. ``refusal.direction``) it also times that whole
measurement on the held-out member, with generation cached and with the cache
switched off (every generation then takes the full-recompute path), alternating,
and compares the two records metric by metric (``evidence.reproduce``).

Models: a held-out population member (``--member``, a native model as the
organisms), the ``demo`` organism, and tiny GPT-2 and Llama checkpoints built
like the tests' (``tests/hf_models.py``; random weights, ``--hf-layers`` layers
of width ``--hf-width``). Run with the project's environment::

    .venv/bin/python benchmarks/generation_kv_cache.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from evidence.measure.hooks import scoped_hooks
from evidence.measure.methods import behaviour
from evidence.measure.methods.behaviour import greedy_generate, ordinary_token_ids
from evidence.measure.methods.directions import ablation_hooks
from evidence.model import LoadedModel, ModelSpec, load_model


def _prompts(model: LoadedModel, n: int, lo: int, hi: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    ordinary = ordinary_token_ids(model)
    return [[int(t) for t in rng.choice(ordinary, size=int(rng.integers(lo, hi + 1)))] for _ in range(n)]


@dataclass
class Timings:
    """CPU and wall seconds of each run, without (``False``) and with (``True``) the cache."""

    cpu: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    wall: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})

    @contextmanager
    def run(self, cache: bool, keep: bool) -> Iterator[None]:
        """Time the block; keep the times unless it is the warm-up."""
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        if keep:
            self.cpu[cache].append(time.process_time() - cpu)
            self.wall[cache].append(time.perf_counter() - wall)

    def row(self) -> str:
        """``old CPU | new CPU | CPU ratio | wall ratio`` (medians)."""
        old, new = statistics.median(self.cpu[False]), statistics.median(self.cpu[True])
        wall = statistics.median(self.wall[False]) / statistics.median(self.wall[True])
        return f"{old:.2f} | {new:.2f} | {old / new:.2f}x | {wall:.2f}x"


HEADER = "full recompute (CPU s) | KV cache (CPU s) | speed-up (CPU) | speed-up (wall)"


def _time(model: LoadedModel, seqs: list[list[int]], args: argparse.Namespace) -> tuple[Timings, bool]:
    """Times without and with the cache, and whether the replies were identical."""
    hooks = []
    if args.ablate:
        g = torch.Generator().manual_seed(0)
        hooks = ablation_hooks(model, torch.randn(model.bridge.cfg.d_model, generator=g))
    timings = Timings()
    replies: dict[bool, list[list[int]]] = {}
    for run in range(args.repeats + 1):
        for cache in (False, True):
            with timings.run(cache, keep=run > 0), scoped_hooks(model.bridge, hooks):
                replies[cache] = greedy_generate(
                    model.bridge, seqs, args.tokens, args.batch_size, stop_ids=(), cache=cache
                )
    return timings, replies[False] == replies[True]


@contextmanager
def _no_cache() -> Iterator[None]:
    """Every generation inside the block takes the full-recompute path (as before the cache existed)."""
    saved = behaviour.kv_cache

    @contextmanager
    def none(forward: object) -> Iterator[None]:
        yield None

    behaviour.kv_cache = none  # type: ignore[assignment]
    try:
        yield
    finally:
        behaviour.kv_cache = saved


def _time_measurement(member_name: str, measurement: str, repeats: int) -> tuple[Timings, str]:
    """Times of ``measurement`` on the member without and with the cache, and how the records agree."""
    from evidence.measure.registry import DEFAULT_TOLERANCE
    from evidence.reproduce import compare_records
    from evidence.validation import _Measurer, population_split

    (member,) = population_split("heldout", names=[member_name]).members
    measurer = _Measurer()
    timings = Timings()
    records = {}
    for run in range(repeats + 1):
        for cache in (False, True):
            measurer.shared.clear()  # nothing carried over between runs
            with timings.run(cache, keep=run > 0), (nullcontext() if cache else _no_cache()):
                record, why = measurer.measure(member, measurement, {}, seed=0)
            if record is None:
                raise SystemExit(f"{measurement} failed on {member_name}: {why}")
            records[cache] = record
    comparison = compare_records(records[False], records[True], DEFAULT_TOLERANCE)
    agreement = Counter(m.agreement for m in comparison.metrics)
    verdict = ", ".join(f"{n} {a}" for a, n in sorted(agreement.items()))
    return timings, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", default="refusal-planted-llama-L3-s7222", help="a held-out population member")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--min-length", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per reply")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hf-layers", type=int, default=3)
    parser.add_argument("--hf-width", type=int, default=64)
    parser.add_argument("--ablate", action="store_true", help="generate under directional ablation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="member,demo,gpt2,llama", help="which of member,demo,gpt2,llama")
    parser.add_argument("--measurement", help="also time this whole measurement on the member, e.g. refusal.direction")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.hf_models import build_gpt2, build_llama

    with tempfile.TemporaryDirectory() as tmp:
        size = f"{args.hf_layers}x{args.hf_width}"
        build = {
            "member": (f"member {args.member}", lambda: ModelSpec(organism=args.member)),
            "demo": ("organism demo", lambda: ModelSpec(organism="demo")),
            "gpt2": (f"GPT-2 {size} (HF)", lambda: ModelSpec(path=build_gpt2(Path(tmp) / "gpt2",
                                                                            n_layer=args.hf_layers,
                                                                            d_model=args.hf_width))),
            "llama": (f"Llama {size} GQA (HF)", lambda: ModelSpec(path=build_llama(Path(tmp) / "llama",
                                                                                 n_layer=args.hf_layers,
                                                                                 d_model=args.hf_width))),
        }  # fmt: skip
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(wanted) - set(build))
        if unknown:
            parser.error(f"unknown models {unknown}; choose from {sorted(build)}")
        models = {build[m][0]: load_model(build[m][1]()) for m in wanted}
        print(f"{args.prompts} prompts of {args.min_length}-{args.max_length} tokens, {args.tokens} new tokens each, "
              f"batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}"
              f"{', under directional ablation' if args.ablate else ''}")  # fmt: skip
        print()
        print(f"| model | {HEADER} | identical replies |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for name, model in models.items():
            seqs = _prompts(model, args.prompts, args.min_length, args.max_length, seed=0)
            timings, same = _time(model, seqs, args)
            print(f"| {name} | {timings.row()} | {'yes' if same else 'NO'} |")
    if args.measurement:
        timings, verdict = _time_measurement(args.member, args.measurement, args.repeats)
        print()
        print(f"| measurement on {args.member} | {HEADER} | metrics |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        print(f"| {args.measurement} | {timings.row()} | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
