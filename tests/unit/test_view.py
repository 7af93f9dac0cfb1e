"""`interp-dossier view`: a browsable HTML view of a dossier, checked in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence.canonical import sha256_hex
from evidence.cli import main
from evidence.dossier import dossier_bytes
from evidence.policy import evaluate, roll_up
from tests.factories import (
    make_dossier,
    make_heads_record,
    make_policy,
    make_probe_record,
    make_record,
    make_refusal_direction_record,
)

RECORDS = ("heads.inventory:demo", "deception.probe:demo", "refusal.direction:demo")


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A directory holding a dossier.json with figures, a policy and a gate (the view reads nothing else)."""
    records = [make_heads_record(), make_probe_record(), make_refusal_direction_record()]
    policy = make_policy()
    verdicts = evaluate(policy, records, subject="demo")
    dossier = make_dossier(records=records, policy=policy, verdicts=verdicts, gate=roll_up(verdicts))
    directory = tmp_path_factory.mktemp("view") / "bundle"
    directory.mkdir()
    (directory / "dossier.json").write_bytes(dossier_bytes(dossier))
    return directory


@pytest.fixture(scope="module")
def view(bundle) -> Path:
    assert main(["view", str(bundle)]) == 0
    return bundle.with_name("bundle.view")


def test_view_writes_a_self_contained_directory(view, bundle, capsys) -> None:
    names = sorted(p.name for p in view.iterdir())
    assert {"index.html", "dossier.css", "view.css", "view.js", "DejaVuSans.ttf"} <= set(names)
    page = (view / "index.html").read_text(encoding="utf-8")
    # Everything is local: no address outside the directory.
    assert not re.search(r"""(?:src|href)=["'](?:https?:|//)""", page)
    assert sha256_hex((bundle / "dossier.json").read_bytes()) in page
    assert "not a verification" in page
    for record_id in RECORDS:
        assert record_id in page
    assert page.count("<svg") >= 3  # head-score heatmap, probe curve, refusal rates
    assert 'class="gate"' in page


def test_view_is_never_written_over_without_force(view, bundle, capsys) -> None:
    before = (view / "index.html").read_bytes()
    assert main(["view", str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: refusing to replace the view in {view} (choose another --out, or pass --force)"
    assert (view / "index.html").read_bytes() == before
    assert main(["view", str(bundle), "--force"]) == 0
    assert (view / "index.html").read_bytes() == before  # the same dossier gives the same page


def test_a_directory_that_is_not_a_view_is_refused(bundle, tmp_path, capsys) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["view", str(bundle), "--out", str(mine), "--force"]) == 2
    assert "it is not empty and is not a view" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_missing_or_broken_dossier_is_one_line(tmp_path, capsys) -> None:
    assert main(["view", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "dossier.json").write_text("{not json")
    assert main(["view", str(tmp_path / "dossier.json"), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a dossier this release can show" in err
    assert not (tmp_path / "v").exists()


def _dump_dom(index: Path, fragment: str = "") -> str:
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium here (.ci/system-packages.sh installs Debian's chromium)")
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--allow-file-access-from-files", "--virtual-time-budget=5000",
        "--dump-dom", index.as_uri() + fragment,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_view_loads_in_a_headless_browser(view) -> None:
    dom = _dump_dom(view / "index.html")
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None
    assert 'data-view-ready="1"' in root.group(0), "the view's script did not run"
    assert "data-view-errors" not in root.group(0), root.group(0)
    assert 'data-view-shown="3"' in root.group(0)
    assert "3 records" in dom
    assert dom.count("<svg") >= 3
    assert re.search(r'class="verdict verdict-(pass|fail|inconclusive)"', dom)


def test_the_search_finds_records_in_the_browser(view) -> None:
    dom = _dump_dom(view / "index.html", "#q=deception.probe")
    root = re.search(r"<html[^>]*>", dom)
    assert root is not None and 'data-view-shown="1"' in root.group(0)
    assert "1 of 3 records match" in dom
    hidden = re.findall(r'<section class="record([^"]*)" id="record-\d+"', dom)
    assert sorted("view-hidden" in classes for classes in hidden) == [False, True, True]


def test_long_tables_are_collapsed_and_expandable(tmp_path) -> None:
    """A table longer than a screen shows its first rows and a button for the rest."""
    record = make_heads_record(layers=4, heads=8)  # 32 rows
    directory = tmp_path / "b"
    directory.mkdir()
    (directory / "dossier.json").write_bytes(dossier_bytes(make_dossier(records=[record, make_record()])))
    assert main(["view", str(directory), "--out", str(tmp_path / "v")]) == 0
    dom = _dump_dom(tmp_path / "v" / "index.html")
    buttons = [int(n) for n in re.findall(r"show all (\d+) rows", dom)]
    assert 32 in buttons  # the head-score table
    # every long table shows its first 12 rows; the rest wait behind its button
    assert len(re.findall(r'<tr class="[^"]*view-collapsed view-hidden"', dom)) == sum(n - 12 for n in buttons)


def test_the_cited_validation_report_is_shown_only_when_it_is_the_one_cited(tmp_path, capsys) -> None:
    from evidence.validation_report import cite, shipped_report, shipped_report_file

    shipped = shipped_report()
    assert shipped is not None, "this release ships a validation report"
    report, digest = shipped
    records = [make_probe_record(), make_refusal_direction_record()]
    dossier = make_dossier(records=records, validation=cite(report, digest, records))
    directory = tmp_path / "b"
    directory.mkdir()
    (directory / "dossier.json").write_bytes(dossier_bytes(dossier))
    name = dossier.validation.file

    assert main(["view", str(directory), "--out", str(tmp_path / "v1")]) == 0
    page = (tmp_path / "v1" / "index.html").read_text(encoding="utf-8")
    assert f"the validation report it cites ({name}) is not beside it" in page
    assert "Organism by organism" not in page

    (directory / name).write_bytes(b'{"tampered": true}')
    assert main(["view", str(directory), "--out", str(tmp_path / "v2")]) == 0
    page = (tmp_path / "v2" / "index.html").read_text(encoding="utf-8")
    assert f"{name} beside it is not the report it cites (its sha256 differs)" in page

    (directory / name).write_bytes(shipped_report_file())
    assert main(["view", str(directory), "--out", str(tmp_path / "v3")]) == 0
    page = (tmp_path / "v3" / "index.html").read_text(encoding="utf-8")
    assert "calibration appendix is not shown" not in page
    assert "Organism by organism" in page  # the report's per-organism tables


def test_the_view_of_a_bundles_dossier_json_goes_beside_the_bundle_not_into_it(bundle, tmp_path, capsys):
    copy = tmp_path / "filed"
    copy.mkdir()
    (copy / "dossier.json").write_bytes((bundle / "dossier.json").read_bytes())
    assert main(["view", str(copy / "dossier.json")]) == 0
    assert (tmp_path / "filed.view" / "index.html").is_file()
    assert sorted(p.name for p in copy.iterdir()) == ["dossier.json"]
