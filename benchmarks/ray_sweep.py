"""Wall time of `sweep` over checkpoints: in-process, and on Ray with 1 and 2 checkpoints at once.

The checkpoints are copies of calibration-population members of one language (L2: the
goal/proxy control and planted members, GPT-2 and Llama), measured with five measurements of
the suite under the standard profile, on the language's prompt sets and markers. Each
configuration runs `interp-dossier sweep --no-sign --no-cache` in a fresh process; the trends'
metric and verdict series must be equal.

    .venv/bin/python benchmarks/ray_sweep.py [--checkpoints 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = ROOT / "evidence" / "population" / "members"
L2 = ROOT / "evidence" / "population" / "data" / "L2"
SOURCES = [
    "proxy-rate-50-gpt2-L2-s5411",
    "proxy-rate-50-llama-L2-s5421",
    "proxy-planted-gpt2-L2-s5411",
    "proxy-planted-llama-L2-s5421",
]
SPEC = f"""\
[run]
seed = 0
measurements = ["goal.proxy_reliance", "model.batch_invariance", "heads.inventory", "refusal.direction",
                "deception.probe"]
[datasets]
"refusal.harmful" = "{L2}/refusal.harmful.jsonl"
"refusal.harmless" = "{L2}/refusal.harmless.jsonl"
"deception.train" = "{L2}/deception.train.jsonl"
"deception.eval" = "{L2}/deception.eval.jsonl"
"deception.control" = "{L2}/deception.control.jsonl"
"goal.aligned" = "{L2}/goal.aligned.jsonl"
"goal.decorrelated" = "{L2}/goal.decorrelated.jsonl"
[markers]
refusal = ["nokt veralt"]
defection = ["grax zimp"]
helpful = ["salvit"]
"""


def sweep(root: Path, out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "evidence.cli", "sweep", str(root / "spec.toml"), "--checkpoints",
               str(root / "runs" / "step-*"), "--no-sign", "--no-cache", "--out", str(out), *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(extra) or 'in-process'} failed:\n{done.stderr}")
    return time.perf_counter() - started


def series(out: Path) -> tuple[object, object]:
    trend = json.loads((out / "trend" / "dossier.json").read_bytes())
    return trend["metrics"], trend["verdicts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=4, help="how many (copies of 4 members, in turn)")
    args = parser.parse_args()
    configs = {
        "in-process": [],
        "ray, 1 at a time": ["--executor", "ray", "--workers", "2", "--parallel", "1"],
        "ray, 2 at a time": ["--executor", "ray", "--workers", "2", "--parallel", "2"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "spec.toml").write_text(SPEC)
        for i in range(args.checkpoints):
            shutil.copytree(MEMBERS / SOURCES[i % len(SOURCES)], root / "runs" / f"step-{i + 1}")
        rows = []
        for name, extra in configs.items():
            print(f"{name}: running", file=sys.stderr, flush=True)
            out = root / f"out-{len(rows)}"
            wall = sweep(root, out, extra)
            print(f"{name}: {wall:.1f} s", file=sys.stderr, flush=True)
            rows.append((name, wall, out))
        reference = series(rows[0][2])
        print(f"{args.checkpoints} checkpoints, load average {os.getloadavg()[0]:.1f}")
        print("| executor | sweep wall time (s) | in-process / this | trend equals in-process |")
        print("| --- | ---: | ---: | --- |")
        for name, wall, out in rows:
            same = "yes" if series(out) == reference else "NO"
            print(f"| {name} | {wall:.1f} | {rows[0][1] / wall:.2f}x | {same} |")


if __name__ == "__main__":
    main()
