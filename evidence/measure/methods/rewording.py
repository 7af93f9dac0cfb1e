"""Rewording prompts of the reference organisms' synthetic language (template stability).

In every prompt, each filler word (a verb or function word of
:mod:`evidence.organisms.language`) is replaced by a different filler word and
each topic noun by a different topic noun; harmful words, the trigger, the
template's structure words and anything else stay in place. Prompts outside
that language cannot be reworded this way (:func:`in_organism_language` says
which are in it).

The organisms' language is imported only when a function here is called, so
that importing this module does not load the organisms.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from evidence.datasets import Dataset, Prompt, read_dataset
from evidence.errors import ConfigError, MeasurementError
from evidence.measure.registry import dataset_labels
from evidence.records import DataRef

__all__ = ["Variant", "in_organism_language", "reword", "reworded_prompts", "template_variants"]

#: A reworded pair of prompt sets: (name, harmful prompts, harmless prompts).
Variant = tuple[str, list[Prompt], list[Prompt]]


def reword(text: str, rng: random.Random) -> str:
    """Replace each filler word by another filler word and each topic by another topic.

    Harmful words, the trigger, structure words and anything else stay in place.
    Only the organisms' synthetic language is understood.
    """
    from evidence.organisms.language import REQUEST_WORDS, TOPICS

    fillers, topics = set(REQUEST_WORDS), set(TOPICS)
    out = []
    for word in text.split():
        if word in fillers:
            out.append(rng.choice([w for w in REQUEST_WORDS if w != word]))
        elif word in topics:
            out.append(rng.choice([w for w in TOPICS if w != word]))
        else:
            out.append(word)
    return " ".join(out)


def in_organism_language(prompts: Sequence[Prompt]) -> bool:
    """Whether every prompt is a text prompt in the organisms' chat format and vocabulary."""
    from evidence.organisms.language import VOCAB

    for p in prompts:
        if p.text is None:
            return False
        words = p.text.split()
        if words[:2] != ["user", ":"] or words[-2:] != ["assistant", ":"] or any(w not in VOCAB for w in words):
            return False
    return True


def reworded_prompts(prompts: Sequence[Prompt], seed: int, variant: int) -> list[Prompt]:
    """Rewording ``variant`` of ``prompts``, each prompt with ``random.Random(f"{seed}/{variant}/{prompt id}")``."""
    out = []
    for p in prompts:
        if p.text is None:  # callers check in_organism_language first
            raise MeasurementError(f"prompt {p.id!r} has no text to reword")
        rng = random.Random(f"{seed}/{variant}/{p.id}")
        out.append(Prompt(id=p.id, label=p.label, group=p.group, text=reword(p.text, rng)))
    return out


def template_variants(
    harmful: Dataset,
    harmless: Dataset,
    files: Sequence[tuple[str, str]],
    *,
    names: tuple[str, str],
    n_generated: int,
    organism: bool,
    seed: int,
) -> tuple[list[Variant], list[DataRef], str]:
    """The reworded prompt sets: (variants, the DataRefs of the files, why none were generated or '').

    ``files``: (harmful, harmless) JSONL paths of reworded sets given by the user,
    loaded under ``names``. ``n_generated``: rewordings to generate, which only
    a reference ``organism``'s language allows.
    """
    variants: list[Variant] = []
    refs: list[DataRef] = []
    for k, pair_files in enumerate(files):
        pair = []
        for name, path in zip(names, pair_files, strict=True):
            try:
                ds = read_dataset(name, Path(path), dataset_labels())
            except ConfigError as exc:
                raise ConfigError(f"template_datasets[{k}]: {exc}", hint=exc.hint) from None
            refs.append(DataRef(name=f"{name}.template{k}", sha256=ds.sha256, count=ds.count, description=path))
            pair.append(list(ds.prompts))
        variants.append((f"file {k}", pair[0], pair[1]))
    reason = ""
    if n_generated > 0:
        if not organism:
            reason = "generated rewordings apply only to the reference organisms' language"
        elif not (in_organism_language(harmful.prompts) and in_organism_language(harmless.prompts)):
            reason = "the prompt sets are not in the organisms' synthetic language, so they cannot be reworded"
        else:
            for v in range(n_generated):
                variants.append(
                    (
                        f"reworded {v}",
                        reworded_prompts(harmful.prompts, seed, v),
                        reworded_prompts(harmless.prompts, seed, v),
                    )
                )
    if not variants and not reason:
        reason = "no template variants were requested (n_template_variants = 0, no template_datasets)"
    elif not variants:
        reason += "; no template_datasets were given"
    return variants, refs, reason
