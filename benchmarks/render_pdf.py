"""Time rendering a dossier to PDF/A-3a (PDF/UA-1): the default dossier, and one grown to 50 records.

The default dossier is the ``dossier.json`` that ``make demo`` (``interp-dossier run``) writes to
``out/``; the validation report beside it is attached as in a run. The larger dossier repeats the
default dossier's records, each copy under its own record id, until it holds ``--records`` records
(the verdicts, which point at the original records, are kept). Each dossier is rendered
``--repeats`` times in this process after one warm-up; the table gives pages, PDF size, and the
minimum and median wall time and CPU time per render, and per page.

``--compare SRC`` times another source tree of the project (e.g. ``git archive`` of an earlier
commit, unpacked) against this one, side by side: each round renders every dossier once in a fresh
process with the other tree's ``evidence`` package and once with this tree's (after a warm-up render
in each process, of the dossier as it is), alternating, and the table gives both CPU times per render, their ratio, and
whether the two trees wrote the same PDF bytes.

Run with the project's environment (``make demo`` first)::

    .venv/bin/python benchmarks/render_pdf.py
    .venv/bin/python benchmarks/render_pdf.py --dossier out/dossier.json --records 50 --repeats 3
    .venv/bin/python benchmarks/render_pdf.py --compare /tmp/before --repeats 2
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pypdf

from evidence.canonical import canonical_bytes
from evidence.records import Dossier
from evidence.render import render_pdf

REPORT = "validation-report.json"


def grown(dossier: Dossier, n: int) -> Dossier:
    """``dossier`` with its records repeated, each copy under a new record id, up to ``n`` records."""
    records = list(dossier.records)
    copy = 1
    while len(records) < n:
        for record in dossier.records:
            if len(records) == n:
                break
            records.append(record.model_copy(update={"record_id": f"{record.record_id}/copy{copy}"}))
        copy += 1
    data = dossier.model_dump(mode="json")
    data["records"] = [r.model_dump(mode="json") for r in records]
    return Dossier.model_validate(data)


def measure(name: str, dossier: Dossier, attachments: dict[str, bytes], repeats: int) -> dict[str, object]:
    data = canonical_bytes(dossier)
    pdf = render_pdf(dossier, data, attachments=attachments)  # warm-up: fonts, templates, matplotlib
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        pdf = render_pdf(dossier, data, attachments=attachments)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    pages = len(pypdf.PdfReader(io.BytesIO(pdf)).pages)
    return {
        "dossier": name,
        "records": len(dossier.records),
        "pages": pages,
        "size": len(pdf),
        "wall_min": min(walls),
        "wall_median": statistics.median(walls),
        "cpu_median": statistics.median(cpus),
        "per_page": statistics.median(walls) / pages,
    }


def _load(path: Path, records: int | None) -> tuple[str, Dossier, dict[str, bytes]]:
    """The dossier at ``path`` (grown to ``records`` records if given), its name, and its attachments."""
    dossier = Dossier.model_validate_json(path.read_bytes())
    report = path.parent / REPORT
    attachments = {REPORT: report.read_bytes()} if dossier.validation is not None and report.is_file() else {}
    if records is None:
        return "default", dossier, attachments
    return f"{records} records", grown(dossier, records), attachments


def child(path: Path, records: int | None) -> None:
    """One process's render of one dossier, after a warm-up render of the dossier as it is: a JSON line of times."""
    _, plain, plain_attachments = _load(path, None)
    render_pdf(plain, canonical_bytes(plain), attachments=plain_attachments)  # warm-up: fonts, templates, figures
    _, dossier, attachments = _load(path, records)
    data = canonical_bytes(dossier)
    wall, cpu = time.perf_counter(), time.process_time()
    pdf = render_pdf(dossier, data, attachments=attachments)
    out = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "size": len(pdf),
           "pages": len(pypdf.PdfReader(io.BytesIO(pdf)).pages), "sha256": hashlib.sha256(pdf).hexdigest()}  # fmt: skip
    print(json.dumps(out))


def _run_child(source: Path, path: Path, records: int | None) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    argv = [sys.executable, __file__, "--child", "--dossier", str(path), "--records", str(records or 0)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)  # type: ignore[arg-type]


def compare(before: Path, path: Path, sizes: list[int | None], repeats: int) -> int:
    """Both trees side by side, alternating per round: CPU per render, ratio, same bytes or not."""
    after = Path(__file__).resolve().parents[1]
    print(f"before: {before}\nafter: {after}\n")
    print("| dossier | pages (before / after) | CPU before (s) | CPU after (s) | before / after | wall before (s) "
          "| wall after (s) | same PDF bytes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for size in sizes:
        runs: dict[str, list[dict[str, object]]] = {"before": [], "after": []}
        for _ in range(repeats):
            runs["before"].append(_run_child(before, path, size))
            runs["after"].append(_run_child(after, path, size))

        b, a = _median(runs["before"], "cpu"), _median(runs["after"], "cpu")
        same = {str(r["sha256"]) for r in runs["before"]} == {str(r["sha256"]) for r in runs["after"]}
        name = "default" if size is None else f"{size} records"
        print(f"| {name} | {runs['before'][0]['pages']} / {runs['after'][0]['pages']} | {b:.2f} | {a:.2f} "
              f"| {b / a:.2f}x | {_median(runs['before'], 'wall'):.2f} | {_median(runs['after'], 'wall'):.2f} "
              f"| {'yes' if same else 'no'} |")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossier", type=Path, default=Path("out/dossier.json"),
                        help="the default dossier (default: out/dossier.json, written by make demo)")  # fmt: skip
    parser.add_argument("--records", type=int, default=50, help="records of the larger dossier (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed renders of each dossier (default 3)")
    parser.add_argument("--compare", type=Path, metavar="SRC",
                        help="another source tree of the project to time side by side with this one")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.dossier, args.records or None)  # --records 0: the dossier as it is
        return 0
    if not args.dossier.is_file():
        print(f"error: no dossier at {args.dossier} (run make demo first, or pass --dossier FILE)", file=sys.stderr)
        return 2
    if args.records < 1 or args.repeats < 1:
        print("error: --records and --repeats must be at least 1", file=sys.stderr)
        return 2
    if args.compare is not None:
        if not (args.compare / "evidence" / "render.py").is_file():
            print(f"error: {args.compare} is not a source tree of the project (no evidence/render.py)", file=sys.stderr)
            return 2
        return compare(args.compare.resolve(), args.dossier.resolve(), [None, args.records], args.repeats)
    dossier = Dossier.model_validate_json(args.dossier.read_bytes())
    report = args.dossier.parent / REPORT
    attachments = {REPORT: report.read_bytes()} if dossier.validation is not None and report.is_file() else {}
    rows = [
        measure("default", dossier, attachments, args.repeats),
        measure(f"{args.records} records", grown(dossier, args.records), attachments, args.repeats),
    ]
    print(
        "| dossier | records | pages | PDF size | wall min (s) | wall median (s) | CPU median (s) | wall per page (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['dossier']} | {r['records']} | {r['pages']} | {int(r['size']) / 1e6:.2f} MB "  # type: ignore[call-overload]
            f"| {r['wall_min']:.2f} | {r['wall_median']:.2f} | {r['cpu_median']:.2f} | {r['per_page']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
