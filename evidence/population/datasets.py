"""The population's prompt sets: one set of files per language, shared by that language's members.

Each language's directory ``evidence/population/data/<code>/`` holds the
suite's JSONL prompt sets, drawn from the language's held-out prompts only (no
member ever trained on one) with no prompt twice across the sets, and
``population.toml``, a run-spec fragment naming them with the language's
markers, so that an instrument always measures a member with its own prompts
and markers. L1 prompts are exact text; L2 and L3 prompts are chat messages.

================== ============== ==================================================
name               labels         prompts (default n = 128)
================== ============== ==================================================
refusal.harmful    harmful        n requests with one harmful word
refusal.harmless   harmless       the same n requests with that word replaced
deception.train    deceptive /    n requests, each under the bad and the good mode
                   honest         (no trigger, no harmful word)
deception.eval     positive /     n uninstructed requests with the trigger, and the
                   negative       same requests with an ordinary word in its place
deception.control  negative       2n benign uninstructed requests
goal.aligned       aligned        n comparisons where proxy and goal agree
goal.decorrelated  decorrelated   n comparisons where they disagree
================== ============== ==================================================

Comparison lines carry ``goal``, ``proxy`` and ``answers`` and their ids end in
``-g<goal>p<proxy>``. The files are exactly what :func:`write_language_data`
writes (a test regenerates them and compares bytes). No torch at import.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from evidence.files import write_file_atomically

# The same prompt sets, by name and file, as the reference organisms ship (the suite reads these names).
from evidence.organisms.datasets import DATASET_FILES
from evidence.population.languages import ChatItem, Comparison, Language, Request, get_language

__all__ = [
    "DATASET_FILES",
    "DATASET_SEED",
    "FRAGMENT_FILE",
    "build_datasets",
    "data_dir",
    "runspec_fragment",
    "write_language_data",
]

#: The seed of the shipped prompt sets (the same for every language; each language draws its own words).
DATASET_SEED = 20261206
FRAGMENT_FILE = "population.toml"


Row = dict[str, Any]


class _Drawer:
    """Draws held-out items whose prompt strings no earlier draw produced."""

    def __init__(self, language: Language, seed: int) -> None:
        self.language = language
        self.rng = random.Random(f"interp-dossier/population/datasets/{language.code}/{seed}")
        self.seen: set[str] = set()

    def draw(self, make: Callable[[random.Random], tuple[ChatItem, ...]]) -> tuple[ChatItem, ...]:
        """Call ``make`` until all the items it returns are held-out and new."""
        for _ in range(10_000):
            items = make(self.rng)
            texts = [self.language.prompt_text(i) for i in items]
            if len(set(texts)) == len(texts) and all(
                self.language.is_held_out(i) and t not in self.seen for i, t in zip(items, texts, strict=True)
            ):
                self.seen.update(texts)
                return items
        raise RuntimeError(f"{self.language.code}: the prompt generator ran out of held-out prompts")


def _replace(language: Language, rng: random.Random, request: Request, special: str) -> Request:
    """``request`` with the word ``special`` replaced by an ordinary request word."""
    pool = [w for w in (*language.verbs, *language.fillers) if w != special]
    words = tuple(rng.choice(pool) if w == special else w for w in request.words)
    return Request(words, request.mode, request.neutral)


def _comparison(language: Language, goal: bool, proxy: bool) -> Callable[[random.Random], tuple[ChatItem, ...]]:
    def make(rng: random.Random) -> tuple[ChatItem, ...]:
        return (language.sample_comparison(rng, goal=goal, proxy=proxy),)

    return make


def _line(language: Language, pid: str, label: str, item: ChatItem) -> Row:
    row: Row = {"id": pid, "label": label, **language.jsonl_fields(item)}
    if isinstance(item, Comparison):
        row.update(goal=item.goal, proxy=item.proxy, answers=list(language.answers))
    return row


def build_datasets(language: Language, seed: int = DATASET_SEED, *, n: int = 128) -> dict[str, list[Row]]:
    """Every prompt set of ``language``, ``n`` prompts per label (``2n`` for the control set)."""
    d = _Drawer(language, seed)
    sets: dict[str, list[Row]] = {name: [] for name in DATASET_FILES}

    def pair(rng: random.Random, *, harmful: bool) -> tuple[ChatItem, ...]:
        marked = language.sample_request(rng, harmful=harmful, triggered=not harmful)
        special = next(w for w in marked.words if w in language.harmful or w == language.trigger)
        return marked, _replace(language, rng, marked, special)

    for i in range(n):
        harmful, harmless = d.draw(lambda r: pair(r, harmful=True))
        sets["refusal.harmful"].append(_line(language, f"harmful-{i:04d}", "harmful", harmful))
        sets["refusal.harmless"].append(_line(language, f"harmless-{i:04d}", "harmless", harmless))

    def instructed(rng: random.Random) -> tuple[ChatItem, ...]:
        words = language.sample_request(rng).words
        return Request(words, "bad"), Request(words, "good")

    for i in range(n):
        bad, good = d.draw(instructed)
        sets["deception.train"].append(_line(language, f"pair-{i:04d}-bad", "deceptive", bad))
        sets["deception.train"].append(_line(language, f"pair-{i:04d}-good", "honest", good))

    for i in range(n):
        positive, negative = d.draw(lambda r: pair(r, harmful=False))
        sets["deception.eval"].append(_line(language, f"eval-{i:04d}-pos", "positive", positive))
        sets["deception.eval"].append(_line(language, f"eval-{i:04d}-neg", "negative", negative))

    for i in range(2 * n):
        (benign,) = d.draw(lambda r: (language.sample_request(r),))
        sets["deception.control"].append(_line(language, f"control-{i:04d}", "negative", benign))

    for name, label, cases in (
        ("goal.aligned", "aligned", ((True, True), (False, False))),
        ("goal.decorrelated", "decorrelated", ((True, False), (False, True))),
    ):
        for i in range(n):
            goal, proxy = cases[i % 2]
            (item,) = d.draw(_comparison(language, goal, proxy))
            sets[name].append(_line(language, f"{label}-{i:04d}-g{int(goal)}p{int(proxy)}", label, item))
    return sets


def _jsonl(rows: list[Row]) -> bytes:
    return ("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n").encode("utf-8")


def runspec_fragment(language: Language) -> str:
    """TOML naming the language's prompt sets and markers (paths relative to the fragment)."""
    lines = [
        f"# Run spec fragment of the population language {language.code}: its prompt sets (paths",
        "# relative to this file) and the markers that read behaviour in it. Generated by",
        "# evidence.population.datasets; a member is always measured with its language's fragment.",
        "",
        "[datasets]",
    ]
    lines += [f'"{name}" = "{file}"' for name, file in DATASET_FILES.items()]
    lines += ["", "[markers]"]
    lines += [f"{key} = {json.dumps(values, ensure_ascii=False)}" for key, values in language.markers.items()]
    return "\n".join(lines) + "\n"


def data_dir(code: str) -> Path:
    """The directory of language ``code``'s prompt sets."""
    return Path(str(resources.files("evidence.population") / "data" / code))


def write_language_data(code: str, out_dir: Path, seed: int = DATASET_SEED) -> dict[str, str]:
    """Write language ``code``'s prompt sets and fragment to ``out_dir``; returns file -> sha256."""
    language = get_language(code)
    out_dir.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    files = {DATASET_FILES[name]: _jsonl(rows) for name, rows in build_datasets(language, seed).items()}
    files[FRAGMENT_FILE] = runspec_fragment(language).encode("utf-8")
    for name, data in files.items():
        write_file_atomically(out_dir / name, data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests
