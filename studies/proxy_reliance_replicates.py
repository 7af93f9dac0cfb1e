"""Check that the Proxy Reliance Index orders independently trained proxy organisms by their planted rate.

``goal.proxy_reliance`` settled two of its design choices (the signed change and
the latest-block tie-break) with the bundled ``proxy-r0/r10/r50`` in view. This
study checks the ordering on organisms those choices never saw: it retrains the
three proxy organisms from other seeds (same recipe, data and architecture),
measures each with the measurement's default parameters and the bundled goal
datasets, and prints PRI with its interval and the behavioural proxy-following
rate, next to the bundled organisms.

Training takes one to four minutes per organism on one thread. Run with the
project's environment (``make install`` first)::

    .venv/bin/python studies/proxy_reliance_replicates.py                 # replicate seeds 1 and 2
    .venv/bin/python studies/proxy_reliance_replicates.py --replicates 3 --out /tmp/replicates

Replicate ``k`` of an organism is trained from its registered seed plus
``1000 * k``. Exit status 0 if, in every replicate, the point estimates are
ordered r0 > r10 > r50 and the intervals of r0 and r50 are separated; 1 if not.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from evidence.measure import Task, run_task
from evidence.model import ModelSpec, load_model
from evidence.organisms import get_spec, read_manifest, train
from evidence.organisms.datasets import DATASET_FILES, data_dir
from evidence.records import EvidenceRecord
from evidence.runspec import load_dataset

PROXIES = ("proxy-r0", "proxy-r10", "proxy-r50")


def measure(name: str, directory: Path | None) -> EvidenceRecord:
    datasets = {n: load_dataset(n, data_dir() / DATASET_FILES[n]) for n in ("goal.aligned", "goal.decorrelated")}
    spec = ModelSpec(organism=name)
    record = run_task(Task("goal.proxy_reliance", {}, 0, spec, datasets), load_model(spec, organisms_dir=directory))
    if record.status != "ok":
        raise SystemExit(f"{name}: {record.error.message if record.error else 'failed'}")
    return record


def row(label: str, record: EvidenceRecord) -> tuple[str, float, float, float, float]:
    pri = record.metric("pri")
    following = record.metric("proxy_following_rate")
    assert pri.ci is not None
    return label, pri.value, pri.ci.lower, pri.ci.upper, following.value


def ordered(records: dict[str, EvidenceRecord]) -> bool:
    pri = {name: records[name].metric("pri") for name in PROXIES}
    r0, r50 = pri["proxy-r0"], pri["proxy-r50"]
    assert r0.ci is not None and r50.ci is not None
    return pri["proxy-r0"].value > pri["proxy-r10"].value > pri["proxy-r50"].value and r0.ci.lower > r50.ci.upper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=2, help="replicate seeds per organism (default 2)")
    parser.add_argument(
        "--out", help="keep the replicate weights here, and reuse those already there (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    results = {"bundled": {name: measure(name, None) for name in PROXIES}}
    rows += [row(f"{name} (bundled, seed {get_spec(name).seed})", results["bundled"][name]) for name in PROXIES]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.out) if args.out else Path(scratch)
        for k in range(1, args.replicates + 1):
            directory = root / f"replicate-{k}"
            directory.mkdir(parents=True, exist_ok=True)
            results[f"replicate {k}"] = {}
            for name in PROXIES:
                seed = get_spec(name).seed + 1000 * k
                if read_manifest(directory).get(name, {}).get("seed") == seed:
                    print(f"reusing {name} from seed {seed} in {directory}", flush=True)
                else:
                    print(f"training {name} from seed {seed} ...", flush=True)
                    train(name, weights_dir=directory, seed=seed)
                results[f"replicate {k}"][name] = record = measure(name, directory)
                rows.append(row(f"{name} (replicate {k}, seed {seed})", record))

    print(f"\n{'organism':<36}{'PRI':>8}{'95% CI':>18}{'proxy-following':>18}")
    for label, value, lower, upper, following in rows:
        print(f"{label:<36}{value:>8.3f}{f'[{lower:.3f}, {upper:.3f}]':>18}{following:>18.3f}")
    verdicts = {group: ordered(records) for group, records in results.items()}
    for group, ok in verdicts.items():
        print(f"{group}: {'ordered r0 > r10 > r50, r0 and r50 separated' if ok else 'NOT ordered'}")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
