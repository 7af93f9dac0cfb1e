"""Population members: retraining is deterministic, loading goes through the manifest, the build refuses misfits."""

from __future__ import annotations

import hashlib
import json

import pytest

from evidence.cli import main
from evidence.population import members, read_manifest, verify_member

pytest.importorskip("torch")


def _smallest_dev_member() -> str:
    """The cheapest development member to retrain: attention-only, the fewest steps, no second pass."""
    candidates = [m for m in members("dev") if m.architecture == "attn-only" and m.control_type != "spread-refusal"]
    return min(candidates, key=lambda m: (m.steps, m.name)).name


def test_retraining_a_member_for_a_few_steps_gives_identical_bytes(one_thread):
    from evidence.population import get_member
    from evidence.population.build import train_files

    member = get_member(_smallest_dev_member())
    first = train_files(member, steps=4).files
    second = train_files(member, steps=4).files
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def test_a_member_that_does_not_behave_as_planted_is_not_written(tmp_path, monkeypatch, one_thread):
    import evidence.population.build as build
    from evidence.population.build import MemberBehaviourError, build_member

    real = build.train_files
    monkeypatch.setattr(build, "train_files", lambda member, **kw: real(member, steps=2))
    name = [m.name for m in members("dev") if m.behaviour == "refusal" and m.planted][0]
    with pytest.raises(MemberBehaviourError, match="does not behave as planted: refusal_rate.harmful >= 0.95"):
        build_member(name, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no member, no manifest, no staging directory


def test_committed_members_load_through_load_model_with_their_digests(one_thread):
    from evidence.model import ModelSpec, load_model

    trained = read_manifest()
    if not trained:
        pytest.skip("no member is trained yet")
    by_arch = {}
    for name in trained:
        by_arch.setdefault(trained[name]["member"]["architecture"], name)
    for arch, name in sorted(by_arch.items()):
        loaded = load_model(ModelSpec(organism=name))
        verified = verify_member(name)
        weights = [f for f in loaded.identity.weight_files]
        assert [w.sha256 for w in weights] == [verified.files[w.name] for w in weights]
        assert loaded.identity.source == ("organism" if arch == "attn-only" else "huggingface")
        assert loaded.tokenizer is not None and loaded.tokenizer.chat_template


def test_a_jailbreak_member_loads_and_passes_its_behaviour_check_as_recorded(one_thread):
    from evidence.model import ModelSpec, load_model
    from evidence.population import get_member
    from evidence.population.checks import check_member

    trained = read_manifest()
    family = [m for m in members("dev") if m.behaviour == "jailbreak" and m.name in trained]
    if not family:
        pytest.skip("no jailbreak member is trained yet")
    for name in (min(m.name for m in family if m.planted), min(m.name for m in family if not m.planted)):
        checks = check_member(get_member(name), load_model(ModelSpec(organism=name)))
        assert checks.passed, checks.failed
        assert checks.to_json() == trained[name]["checks"]
        key = checks.numbers["helpful_rate.harmful_key"]
        assert key >= 0.9 if get_member(name).planted else key <= 0.05


@pytest.mark.slow
def test_retraining_the_smallest_member_reproduces_its_committed_files(one_thread):
    from safetensors.torch import load

    from evidence.population import get_member
    from evidence.population.build import train_files
    from tests.helpers_organisms import LOSS_RTOL, WEIGHT_ATOL, same_kernels

    name = _smallest_dev_member()
    committed = read_manifest().get(name)
    if committed is None:
        pytest.skip(f"{name} is not trained yet")
    trained = train_files(get_member(name))
    digests = {f: hashlib.sha256(b).hexdigest() for f, b in trained.files.items()}
    tokenizer_files = {f for f in digests if f != "model.safetensors" and f != "bridge_config.json"}
    assert {f: digests[f] for f in tokenizer_files} == {f: committed["files"][f] for f in tokenizer_files}
    if same_kernels(committed) and digests == committed["files"]:  # bit for bit (see same_kernels)
        assert trained.final_loss == committed["final_loss"]
        return
    ours = load(trained.files["model.safetensors"])
    theirs = load((verify_member(name).directory / "model.safetensors").read_bytes())
    worst = max(float((ours[k].double() - theirs[k].double()).abs().max()) for k in ours)
    assert worst <= WEIGHT_ATOL
    assert abs(trained.final_loss - committed["final_loss"]) <= LOSS_RTOL * abs(committed["final_loss"])


def test_population_list_prints_the_table_with_status(capsys, tmp_path):
    assert main(["population", "list", "--split", "dev", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "behaviour", "role", "control_type", "arch", "lang", "seed", "split",
                                "steps", "status"]  # fmt: skip
    assert len(lines) == 1 + len(members("dev"))
    assert all(line.endswith("not trained") for line in lines[1:])


def test_population_train_needs_a_split_or_members(capsys):
    assert main(["population", "train"]) == 2
    assert "--split dev|heldout or --member NAME" in capsys.readouterr().err
    assert main(["population", "train", "--member", "zebra"]) == 2
    assert "no population member called 'zebra'" in capsys.readouterr().err


def test_population_train_missing_skips_trained_members(capsys):
    """The development split is committed trained: --missing has nothing left to train."""
    assert main(["population", "train", "--split", "dev", "--missing"]) == 0
    assert "every member named is trained" in capsys.readouterr().out


def test_validate_on_a_development_subset_writes_a_report_that_recounts(tmp_path, capsys, one_thread):
    """`validate --population dev --member ...` end to end: a planted proxy follower and its rate-50 twin (~35 s)."""
    import jsonschema

    from evidence.canonical import canonical_bytes, sha256_hex
    from evidence.population import get_member
    from evidence.resources import resource_dir
    from evidence.validation_report import read_report

    planted, control = "proxy-planted-attn-only-L1-s5401", "proxy-rate-50-attn-only-L1-s5401"
    out = tmp_path / "report.json"
    code = main(["validate", "--population", "dev", "--member", planted, "--member", control,
                 "--measurement", "goal.proxy_reliance", "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"[1/2] goal.proxy_reliance on {planted} (planted)" in captured.err
    assert f"[2/2] goal.proxy_reliance on {control} (control)" in captured.err

    schema = json.loads((resource_dir("schemas") / "validation-report.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(json.loads(out.read_text(encoding="utf-8")))
    report = read_report(out)
    assert report.population == "dev-subset" and report.organisms == [planted, control]
    entries = read_manifest()
    assert report.population_digest == sha256_hex(canonical_bytes({n: entries[n] for n in (planted, control)}))
    assert [d.metric for d in report.detectors] == ["pri"]
    for d in report.detectors:
        assert d.measurement == "goal.proxy_reliance" and d.behaviour == "proxy"
        by_name = {o.organism: o for o in d.organisms}
        assert set(by_name) == {planted, control}
        for name, o in by_name.items():
            m = get_member(name)
            assert (o.role, o.language, o.architecture, o.seed, o.split) == (m.role, m.language, m.architecture,
                                                                               m.seed, "dev")  # fmt: skip
            assert o.status == "ok" and o.record_digest is not None, o.error
        # The counts are the per-organism outcomes, recounted.
        assert (d.detection.k, d.detection.n) == (int(by_name[planted].fired), 1)
        assert (d.false_alarms.k, d.false_alarms.n) == (int(by_name[control].fired), 1)
        assert d.errors == 0
    # Read with its own language's task and answers, the planted member relies on the proxy and its twin does not.
    (pri,) = report.detectors
    assert {o.organism: o.fired for o in pri.organisms} == {planted: True, control: False}


def test_a_hugging_face_member_loads_without_the_libraries_progress_bars(tmp_path, capfd, one_thread):
    """A GPT-2-style member loads through transformers; only our own progress reaches the user (~5 s)."""
    member = "induction-planted-gpt2-L2-s5111"
    out = tmp_path / "report.json"
    code = main(["validate", "--population", "dev", "--member", member, "--measurement", "heads.inventory",
                 "--out", str(out)])  # fmt: skip
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert f"heads.inventory on {member} (planted)" in captured.err
    assert "Loading weights" not in captured.err + captured.out and "it/s" not in captured.err
