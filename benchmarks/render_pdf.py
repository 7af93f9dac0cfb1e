"""Time rendering a dossier to PDF/A-3b: the default dossier, and one grown to 50 records.

The default dossier is the ``dossier.json`` that ``make demo`` (``interp-dossier run``) writes to
``out/``; the validation report beside it is attached as in a run. The larger dossier repeats the
default dossier's records, each copy under its own record id, until it holds ``--records`` records
(the verdicts, which point at the original records, are kept). Each dossier is rendered
``--repeats`` times in this process after one warm-up; the table gives pages, PDF size, and the
minimum and median wall time and CPU time per render, and per page.

Run with the project's environment (``make demo`` first)::

    .venv/bin/python benchmarks/render_pdf.py
    .venv/bin/python benchmarks/render_pdf.py --dossier out/dossier.json --records 50 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import statistics
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossier", type=Path, default=Path("out/dossier.json"),
                        help="the default dossier (default: out/dossier.json, written by make demo)")  # fmt: skip
    parser.add_argument("--records", type=int, default=50, help="records of the larger dossier (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed renders of each dossier (default 3)")
    args = parser.parse_args(argv)
    if not args.dossier.is_file():
        print(f"error: no dossier at {args.dossier} (run make demo first, or pass --dossier FILE)", file=sys.stderr)
        return 2
    if args.records < 1 or args.repeats < 1:
        print("error: --records and --repeats must be at least 1", file=sys.stderr)
        return 2
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
