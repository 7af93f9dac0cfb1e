"""Prompt sets read with the labels the caller knows, without the measurement registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.datasets import read_dataset
from evidence.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KNOWN = {"refusal.harmful": frozenset({"harmful"})}


def test_reads_a_prompt_set_by_the_labels_given(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"id": "a", "label": "harmful", "text": "x"}) + "\n")
    ds = read_dataset("refusal.harmful", path, KNOWN)
    assert ds.count == 1 and ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="unknown dataset name"):
        read_dataset("refusal.harmless", path, KNOWN)
    path.write_text(json.dumps({"id": "a", "label": "harmless", "text": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"h\.jsonl:1: unknown label 'harmless'"):
        read_dataset("refusal.harmful", path, KNOWN)


def test_the_dataset_layer_loads_no_measurement_code() -> None:
    code = "import json, sys, evidence.datasets; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout))
    assert not {m for m in loaded if m.startswith("evidence.measure") or m.split(".")[0] in {"numpy", "torch"}}


def test_the_public_names_are_pinned() -> None:
    import evidence.datasets

    assert evidence.datasets.__all__ == ["Dataset", "Prompt", "group_keys", "limit_prompts", "read_dataset"]


def test_a_group_is_read_and_an_unknown_field_is_still_refused(tmp_path: Path) -> None:
    from evidence.datasets import group_keys

    path = tmp_path / "h.jsonl"
    rows = [
        {"id": "x7", "label": "harmful", "group": "g1", "text": "a"},
        {"id": "q2", "label": "harmful", "group": "g1", "text": "b"},
        {"id": "zz", "label": "harmful", "text": "c"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = read_dataset("refusal.harmful", path, KNOWN)
    assert [p.group for p in ds.prompts] == ["g1", "g1", None]
    # prompts without a group are units of their own; group and id keys never collide
    assert group_keys(ds.prompts) == ["group:g1", "group:g1", "id:zz"]
    assert group_keys([p.model_copy(update={"group": None}) for p in ds.prompts]) is None
    path.write_text(json.dumps({"id": "a", "label": "harmful", "group": "", "text": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"h\.jsonl:1"):
        read_dataset("refusal.harmful", path, KNOWN)
    path.write_text(json.dumps({"id": "a", "label": "harmful", "groups": "g1", "text": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"h\.jsonl:1.*groups"):
        read_dataset("refusal.harmful", path, KNOWN)
