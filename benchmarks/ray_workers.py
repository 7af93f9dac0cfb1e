"""Wall time of `validate` over part of the calibration population: in-process vs Ray with 1 and 2 workers.

Each configuration runs `interp-dossier validate` in a fresh process on the same members and
measurement, and reports the command's wall time and, for Ray, the time from the first member
task submitted to the last one finished (the command's own "members measured in" line), which
leaves out starting and stopping the local cluster. The reports are compared: they must be equal
but for their creation time and the records' digests (which cover each record's duration).

    .venv/bin/python benchmarks/ray_workers.py [--measurement ID ...] [--members NAME ...]

By default the whole development split of the calibration population, every detector.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def comparable(path: Path) -> dict:
    report = json.loads(path.read_bytes())
    report.pop("created_at")
    for detector in report["detectors"]:
        for organism in detector["organisms"]:
            organism.pop("record_digest", None)
    return report


def run(members: list[str], measurements: list[str], out: Path, extra: list[str]) -> tuple[float, float | None]:
    command = [sys.executable, "-m", "evidence.cli", "validate", "--population", "dev", "--out", str(out), *extra]
    for measurement in measurements:
        command += ["--measurement", measurement]
    for member in members:
        command += ["--member", member]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'in-process'} failed:\n{done.stderr}")
    found = re.search(r"members measured in ([0-9.]+) s", done.stderr)
    return wall, float(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurement", nargs="+", default=[], help="default: every detector")
    parser.add_argument("--members", nargs="+", default=[], help="default: every member of the dev split")
    args = parser.parse_args()
    configs = {
        "in-process": [],
        "ray, 1 worker": ["--executor", "ray", "--workers", "1"],
        "ray, 2 workers": ["--executor", "ray", "--workers", "2"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, extra in configs.items():
            out = Path(tmp) / f"{len(rows)}.json"
            print(f"{name}: running", file=sys.stderr, flush=True)
            wall, measuring = run(args.members, args.measurement, out, extra)
            print(f"{name}: {wall:.1f} s", file=sys.stderr, flush=True)
            rows.append((name, wall, measuring, out))
        reference = comparable(rows[0][3])
        members = f"{len(args.members)} members" if args.members else "the dev split"
        measured = ", ".join(args.measurement) or "every detector"
        print(f"{members} x {measured}, load average {os.getloadavg()[0]:.1f}")
        one = rows[1][2]
        print("| executor | command wall time (s) | members measured (s) | 1 worker / this (members measured) "
              "| report equals in-process |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | --- |")
        for name, wall, measuring, out in rows:
            same = "yes" if comparable(out) == reference else "NO"
            shown = f"{measuring:.1f}" if measuring is not None else "-"
            ratio = f"{one / measuring:.2f}x" if measuring and one else "-"
            print(f"| {name} | {wall:.1f} | {shown} | {ratio} | {same} |")


if __name__ == "__main__":
    main()
