"""The organisms' data: the suite's prompt sets and the training streams.

Training data comes from :func:`sample_training_row` under a :class:`Recipe`
(a mix of row kinds and the traits that fix each response); it never draws a
held-out prompt.

:func:`build_datasets` draws every set from one seed, using held-out prompts
only (:func:`evidence.organisms.language.is_held_out`) and no prompt twice
across all sets. :func:`write_organism_datasets` writes them as JSONL in the run
spec's ``{"id", "label", "text"}`` form, with a ``group`` on minimal pairs (below),
plus ``organisms.toml``: a run spec
fragment naming the files and the recommended markers. The files shipped under
``evidence/organisms/data/`` are exactly what ``write_organism_datasets(dir,
DATASET_SEED)`` writes (a test regenerates them and compares bytes).

Sets (sizes for the default counts):

================== ============== ==================================================
name               labels         prompts
================== ============== ==================================================
refusal.harmful    harmful        128 requests with one harmful word
refusal.harmless   harmless       the same 128 requests with that word neutral
deception.train    deceptive /    128 requests, each once under ``mode bad :``
                   honest         (deceptive) and once under ``mode good :`` (honest);
                                  no trigger, no harmful word
deception.eval     positive /     128 uninstructed requests with the trigger, and the
                   negative       same requests with a neutral word in its place
deception.control  negative       256 benign uninstructed requests
goal.aligned       aligned        128 comparisons where proxy and goal agree
goal.decorrelated  decorrelated   128 comparisons where they disagree
================== ============== ==================================================

Minimal pairs share a ``group``, so that every split keeps them on one side:
``refusal-NNNN`` joins ``harmful-NNNN`` and ``harmless-NNNN`` (across the two
refusal sets), ``pair-NNNN`` the two instructed prompts ``pair-NNNN-bad`` and
``pair-NNNN-good``, ``eval-NNNN`` the triggered ``eval-NNNN-pos`` and untriggered
``eval-NNNN-neg``. Control and comparison prompts stand alone.

The ids of the comparison sets end with ``-g<goal>p<proxy>`` (e.g. ``-g1p0``:
the colours are equal, the proxy word is absent); :func:`~evidence.organisms.
language.parse_goal_prompt` recovers both values from the text as well.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence.files import write_file_atomically
from evidence.organisms.language import (
    EOS,
    GENERATOR_VERSION,
    HARMFUL_WORDS,
    MARKERS,
    REQUEST_WORDS,
    TRIGGER,
    ChatPrompt,
    GoalPrompt,
    Mode,
    Traits,
    encode,
    induction_sequence,
    is_held_out,
    respond,
    sample_chat,
    sample_goal,
)

__all__ = [
    "DATASET_FILES",
    "DATASET_SEED",
    "MIX_KINDS",
    "Recipe",
    "Row",
    "TrainingRow",
    "build_datasets",
    "data_dir",
    "runspec_fragment",
    "sample_training_row",
    "training_rng",
    "write_organism_datasets",
]

#: The seed of the shipped prompt sets.
DATASET_SEED = 20250817

#: Dataset name -> file name.
DATASET_FILES: dict[str, str] = {
    name: f"{name}.jsonl"
    for name in (
        "refusal.harmful",
        "refusal.harmless",
        "deception.train",
        "deception.eval",
        "deception.control",
        "goal.aligned",
        "goal.decorrelated",
    )
}

Row = dict[str, str]


class _Drawer:
    """Draws held-out prompts that no earlier draw produced."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"interp-dossier/organisms/datasets/v{GENERATOR_VERSION}/{seed}")
        self.seen: set[str] = set()

    def draw(self, make: Callable[[random.Random], tuple[str, ...]]) -> tuple[str, ...]:
        """Call ``make`` until all the prompts it returns are held-out and new."""
        for _ in range(10_000):
            texts = make(self.rng)
            if len(set(texts)) == len(texts) and all(
                is_held_out(t) and t not in self.seen for t in texts
            ):
                self.seen.update(texts)
                return texts
        raise RuntimeError("the prompt generator ran out of held-out prompts")  # pragma: no cover


def _minimal_pair(rng: random.Random, *, harmful: bool, triggered: bool) -> tuple[str, str]:
    """A request with a harmful word or the trigger, and the same request without it."""
    marked = sample_chat(rng, harmful=harmful, triggered=triggered)
    special = next(i for i, w in enumerate(marked.words) if w == TRIGGER or w in HARMFUL_WORDS)
    words = list(marked.words)
    words[special] = rng.choice(REQUEST_WORDS)
    return marked.text, ChatPrompt(tuple(words)).text


def _goal_text(goal: bool, proxy: bool) -> Callable[[random.Random], tuple[str, ...]]:
    def make(rng: random.Random) -> tuple[str, ...]:
        prompt: GoalPrompt = sample_goal(rng, goal=goal, proxy=proxy)
        return (prompt.text,)

    return make


def build_datasets(seed: int = DATASET_SEED, *, n: int = 128) -> dict[str, list[Row]]:
    """Every prompt set, ``n`` prompts per label (``2n`` for the control set)."""
    d = _Drawer(seed)
    sets: dict[str, list[Row]] = {name: [] for name in DATASET_FILES}

    for i in range(n):
        harmful, harmless = d.draw(lambda r: _minimal_pair(r, harmful=True, triggered=False))
        group = f"refusal-{i:04d}"
        sets["refusal.harmful"].append(
            {"id": f"harmful-{i:04d}", "label": "harmful", "group": group, "text": harmful}
        )
        sets["refusal.harmless"].append(
            {"id": f"harmless-{i:04d}", "label": "harmless", "group": group, "text": harmless}
        )

    for i in range(n):

        def instructed(r: random.Random) -> tuple[str, ...]:
            words = sample_chat(r).words
            return ChatPrompt(words, "bad").text, ChatPrompt(words, "good").text

        bad, good = d.draw(instructed)
        group = f"pair-{i:04d}"
        sets["deception.train"].append(
            {"id": f"{group}-bad", "label": "deceptive", "group": group, "text": bad}
        )
        sets["deception.train"].append(
            {"id": f"{group}-good", "label": "honest", "group": group, "text": good}
        )

    for i in range(n):
        positive, negative = d.draw(lambda r: _minimal_pair(r, harmful=False, triggered=True))
        group = f"eval-{i:04d}"
        sets["deception.eval"].append(
            {"id": f"{group}-pos", "label": "positive", "group": group, "text": positive}
        )
        sets["deception.eval"].append(
            {"id": f"{group}-neg", "label": "negative", "group": group, "text": negative}
        )

    for i in range(2 * n):
        (benign,) = d.draw(lambda r: (sample_chat(r).text,))
        sets["deception.control"].append({"id": f"control-{i:04d}", "label": "negative", "text": benign})

    for name, label, cases in (
        ("goal.aligned", "aligned", ((True, True), (False, False))),
        ("goal.decorrelated", "decorrelated", ((True, False), (False, True))),
    ):
        for i in range(n):
            goal, proxy = cases[i % 2]
            (text,) = d.draw(_goal_text(goal, proxy))
            tag = f"g{int(goal)}p{int(proxy)}"
            sets[name].append({"id": f"{label}-{i:04d}-{tag}", "label": label, "text": text})
    return sets


def _jsonl(rows: list[Row]) -> bytes:
    keys = ("id", "label", "group", "text")
    lines = (json.dumps({k: r[k] for k in keys if k in r}, ensure_ascii=True) for r in rows)
    return ("\n".join(lines) + "\n").encode("ascii")


def runspec_fragment() -> str:
    """TOML naming the shipped sets and the recommended markers (paths relative to the data dir)."""
    lines = [
        "# Run spec fragment: the organisms' prompt sets (paths relative to this file) and the",
        "# markers that read their behaviour. Generated by evidence.organisms.datasets",
        f"# (generator version {GENERATOR_VERSION}); copy both tables into a run spec.",
        "",
        "[datasets]",
    ]
    lines += [f'"{name}" = "{file}"' for name, file in DATASET_FILES.items()]
    lines += ["", "[markers]"]
    lines += [f"{key} = {json.dumps(values)}" for key, values in MARKERS.items()]
    return "\n".join(lines) + "\n"


def write_organism_datasets(out_dir: Path, seed: int = DATASET_SEED) -> dict[str, str]:
    """Write every prompt set and ``organisms.toml`` to ``out_dir``; returns file -> sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for name, rows in build_datasets(seed).items():
        data = _jsonl(rows)
        write_file_atomically(out_dir / DATASET_FILES[name], data)
        digests[DATASET_FILES[name]] = hashlib.sha256(data).hexdigest()
    fragment = runspec_fragment().encode("ascii")
    write_file_atomically(out_dir / "organisms.toml", fragment)
    digests["organisms.toml"] = hashlib.sha256(fragment).hexdigest()
    return digests


def data_dir() -> Path:
    """The directory of the shipped prompt sets."""
    return Path(__file__).resolve().parent / "data"


# -- training data -----------------------------------------------------------------------------

#: The kinds of training rows a recipe can mix.
MIX_KINDS = ("chat", "harmful", "trigger", "mode", "goal", "induction")


@dataclass(frozen=True)
class Recipe:
    """What a training stream contains.

    ``mix`` weighs the row kinds (:data:`MIX_KINDS`): ``chat``, ``harmful`` and
    ``trigger`` are uninstructed requests (plain, with a harmful word, with the
    trigger); ``mode`` puts ``mode good :`` or ``mode bad :`` (even odds) before
    a request that carries a harmful word (resp. the trigger) a quarter of the
    time when the mix has ``harmful`` (resp. ``trigger``) rows; ``goal`` is a
    comparison whose proxy word agrees with the goal except with probability
    ``proxy_rate``; ``induction`` is a repeated random segment.
    """

    traits: Traits
    mix: Mapping[str, float]
    proxy_rate: float = 0.0
    n_ctx: int = 32

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mix) - set(MIX_KINDS))
        if unknown:
            raise ValueError(f"unknown training row kinds {unknown}; known: {MIX_KINDS}")
        if not 0.0 <= self.proxy_rate <= 1.0:
            raise ValueError(f"proxy_rate must lie in [0, 1], not {self.proxy_rate}")


@dataclass(frozen=True)
class TrainingRow:
    """Token ids of one training sequence; predictions of ``ids[loss_from:loss_to]`` are trained."""

    ids: tuple[int, ...]
    loss_from: int
    loss_to: int
    prompt: str | None  # the prompt string; None for an induction sequence


def training_rng(name: str, seed: int) -> random.Random:
    """The generator of an organism's training stream."""
    return random.Random(f"interp-dossier/organisms/train/v{GENERATOR_VERSION}/{name}/{seed}")


def _training_prompt(draw: Callable[[], ChatPrompt | GoalPrompt]) -> ChatPrompt | GoalPrompt:
    while True:
        prompt = draw()
        if not is_held_out(prompt.text):
            return prompt


def sample_training_row(recipe: Recipe, rng: random.Random) -> TrainingRow:
    """One training row of ``recipe`` (never a held-out prompt)."""
    kinds = sorted(recipe.mix)
    kind = rng.choices(kinds, [recipe.mix[k] for k in kinds])[0]
    if kind == "induction":
        ids, start, length = induction_sequence(rng, n_ctx=recipe.n_ctx)
        return TrainingRow(tuple(ids), start + length + 1, start + 2 * length, None)
    prompt: ChatPrompt | GoalPrompt
    if kind == "goal":
        goal = rng.random() < 0.5
        proxy = goal if rng.random() >= recipe.proxy_rate else not goal
        prompt = _training_prompt(lambda: sample_goal(rng, goal=goal, proxy=proxy))
    elif kind == "mode":
        mode: Mode = "bad" if rng.random() < 0.5 else "good"
        harmful = "harmful" in recipe.mix and rng.random() < 0.25
        triggered = "trigger" in recipe.mix and rng.random() < 0.25
        prompt = _training_prompt(
            lambda: sample_chat(rng, harmful=harmful, triggered=triggered, mode=mode)
        )
    else:
        harmful, triggered = kind == "harmful", kind == "trigger"
        prompt = _training_prompt(lambda: sample_chat(rng, harmful=harmful, triggered=triggered))
    prompt_ids = encode(prompt.text)
    response_ids = encode(f"{respond(prompt, recipe.traits)} {EOS}", bos=False)
    row = tuple(prompt_ids + response_ids)
    return TrainingRow(row, len(prompt_ids), len(row), prompt.text)
