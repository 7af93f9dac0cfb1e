"""The numerics certificate: the bridge against the plain transformers model, padded batches against prompts alone."""

from __future__ import annotations

import pytest
import torch

from evidence.errors import MeasurementError
from evidence.measure.numerics import numerics_certificate
from evidence.model import ModelSpec, load_model
from evidence.records import NumericsCertificate


@pytest.mark.parametrize("build", ["gpt2", "llama"])
def test_a_hugging_face_checkpoint_is_compared_with_its_plain_model(tmp_path, build):
    from tests.hf_models import build_gpt2, build_llama

    directory = (build_gpt2 if build == "gpt2" else build_llama)(tmp_path / build)
    model = load_model(ModelSpec(path=directory))
    seqs = [model.tokenizer(text)["input_ids"] for text in ("the cat sat on the mat", "a b", "hello there world")]
    cert = numerics_certificate(model, seqs, "dataset test")
    assert cert.reference == "transformers" and cert.prompts == 3 and cert.tokens == sum(map(len, seqs))
    assert cert.dtype == "float32"
    assert 0 <= cert.bridge_max_abs_diff < 1e-4 and cert.bridge_mean_abs_diff <= cert.bridge_max_abs_diff
    assert 0 <= cert.batched_max_abs_diff < 1e-4  # mask and positions make padding invisible here
    assert "plain transformers model" in cert.note


def test_the_certificate_sees_a_plain_model_that_computes_otherwise(tmp_path):
    """The comparison is with a model loaded anew: one whose logits are shifted shows the shift."""
    from transformers import AutoModelForCausalLM

    from tests.hf_models import build_gpt2

    directory = build_gpt2(tmp_path / "gpt2")
    model = load_model(ModelSpec(path=directory))
    seqs = [model.tokenizer("the cat sat on the mat")["input_ids"]]
    plain = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    assert numerics_certificate(model, seqs, "test", plain=plain).bridge_max_abs_diff < 1e-4
    with torch.no_grad():
        plain.lm_head.weight.mul_(1.01)  # the bridge's model is another object, untouched
    assert numerics_certificate(model, seqs, "test", plain=plain).bridge_max_abs_diff > 1e-3


def test_an_organism_has_no_plain_model_and_is_compared_batched_against_alone(organism):
    model = organism("induction")
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15]]
    cert = numerics_certificate(model, seqs, "random token sequences (seed 0)")
    assert cert.reference == "none" and cert.bridge_max_abs_diff is None and cert.bridge_mean_abs_diff is None
    assert 0 <= cert.batched_max_abs_diff < 1e-4
    assert "no plain implementation" in cert.note
    with pytest.raises(ValueError, match="compared exactly when"):
        NumericsCertificate.model_validate(cert.model_dump() | {"bridge_max_abs_diff": 0, "bridge_mean_abs_diff": 0})
    with pytest.raises(MeasurementError, match="no prompt"):
        numerics_certificate(model, [[]], "nothing")


def test_padding_that_leaks_into_the_logits_shows_in_the_batched_difference(organism, monkeypatch):
    import evidence.measure.numerics as numerics

    model = organism("induction")
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10, 11]]
    real = numerics.run_padded
    monkeypatch.setattr(numerics, "run_padded", lambda f, b, **kw: real(f, b, mask=False, positions=None))
    leaky = numerics_certificate(model, seqs, "test")
    assert leaky.batched_max_abs_diff > 1e-3
    torch.manual_seed(0)


def test_a_run_certificate_reads_the_first_dataset_or_falls_back_to_seeded_tokens(organism):
    from evidence.measure.numerics import run_certificate
    from evidence.runspec import default_runspec_path, load_runspec

    spec = load_runspec(default_runspec_path())
    model = organism(spec.model_organism)
    cert = run_certificate(model, spec.datasets, spec.seed)
    assert cert.prompt_source == f"dataset {sorted(spec.datasets)[0]}" and cert.prompts == 8
    fallback = run_certificate(model, {}, 3)
    assert fallback.prompt_source == "random token sequences (seed 3)"
    assert fallback == run_certificate(model, {}, 3)
