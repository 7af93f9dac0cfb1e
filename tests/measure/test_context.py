"""MeasureContext: derived seeds are recorded by the context; shared results are computed once per key."""

import pytest

from evidence.errors import ConfigError
from evidence.measure import MeasureContext, SharedResults


def test_every_derived_seed_is_recorded_under_its_label():
    ctx = MeasureContext(seed=3)
    a = ctx.derive_seed("tokens")
    ctx.numpy_rng("bootstrap")
    ctx.torch_generator("init")
    assert ctx.seeds == {
        "tokens": a,
        "bootstrap": MeasureContext(seed=3).derive_seed("bootstrap"),
        "init": MeasureContext(seed=3).derive_seed("init"),
    }


def test_a_shared_result_is_computed_once_per_key_and_its_seeds_are_recorded_by_every_user():
    shared = SharedResults()
    calls = []

    def fit(ctx: MeasureContext):
        def compute():
            calls.append(1)
            return ctx.derive_seed("fit")

        return compute

    first = MeasureContext(seed=7, subject_digest="a" * 64, shared_results=shared)
    second = MeasureContext(seed=7, subject_digest="a" * 64, shared_results=shared)
    v1 = first.shared("probe", {"data": "d1", "layer": 2}, fit(first))
    v2 = second.shared("probe", {"layer": 2, "data": "d1"}, fit(second))
    assert v1 == v2 and calls == [1] and shared.hits == 1 and len(shared) == 1
    assert first.seeds == second.seeds == {"fit": v1}


@pytest.mark.parametrize(
    ("seed", "digest", "key"),
    [(8, "a" * 64, {"data": "d1", "layer": 2}),  # another seed
     (7, "b" * 64, {"data": "d1", "layer": 2}),  # another model
     (7, "a" * 64, {"data": "d2", "layer": 2}),  # other data
     (7, "a" * 64, {"data": "d1", "layer": 3})],  # other parameters
)
def test_anything_the_result_depends_on_gives_another_entry(seed, digest, key):
    shared = SharedResults()
    base = MeasureContext(seed=7, subject_digest="a" * 64, shared_results=shared)
    base.shared("probe", {"data": "d1", "layer": 2}, lambda: 1)
    other = MeasureContext(seed=seed, subject_digest=digest, shared_results=shared)
    assert other.shared("probe", key, lambda: 2) == 2
    assert len(shared) == 2 and shared.hits == 0


def test_stages_report_progress_within_their_span():
    seen = []
    ctx = MeasureContext(seed=0, progress=lambda f, m: seen.append((round(f, 3), m)))
    with ctx.stage("scoring", 0.2, 0.6) as advance:
        advance(0.5)
        advance(2.0)  # clipped to the stage's end
    assert seen == [(0.2, "scoring"), (0.4, "scoring"), (0.6, "scoring"), (0.6, "scoring")]


def test_missing_inputs_are_config_errors_with_a_remedy():
    ctx = MeasureContext(seed=0)
    with pytest.raises(ConfigError, match="needs the dataset 'refusal.harmful'") as info:
        ctx.dataset("refusal.harmful")
    assert "[datasets]" in (info.value.hint or "")
    with pytest.raises(ConfigError, match=r"\[markers\]\.refusal"):
        ctx.marker_phrases("refusal")
