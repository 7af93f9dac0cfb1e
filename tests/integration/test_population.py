"""Population members: retraining is deterministic, loading goes through the manifest, the build refuses misfits."""

from __future__ import annotations

import hashlib

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
    if same_kernels(committed):
        assert digests == committed["files"]
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
