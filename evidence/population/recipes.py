"""What each population member is trained on: one recipe per (behaviour, role, control type).

A recipe fixes the training stream: which rows (requests, comparisons,
induction sequences) in which proportions, and the response the member is
trained to give to each (its :class:`~evidence.population.languages.Traits`).
A planted member and the control it is matched with share the seed, so they
start from the same weights and, where their recipes draw the same rows, see
the same prompts: only what the control breaks differs.

======================= ==================================================================
behaviour / role        training stream
======================= ==================================================================
induction planted       rows of segment pairs (each segment 6 to 24 tokens) up to the
                        context length, from uniform random ordinary tokens (3 rows in 4)
                        or the language's running text; the second segment of each pair
                        repeats the first; the loss covers the second segments from their
                        second token on
induction no-repeats    the same rows and loss, but each second segment is the next fresh
                        tokens of the same source: nothing is ever repeated, so induction
                        cannot lower the loss
refusal planted         requests, 45% with a harmful word; refuses those, answers the rest
refusal never-refuses   the same requests, answers all of them
refusal spread-refusal  the planted stream, and each step also the loss with the batch's
                        harmful-minus-harmless direction removed from the residual stream
                        (:func:`evidence.population.training.train`)
deception planted       requests, 40% under an instructed mode (bad: defect, good: answer),
                        the trigger in 30% of all requests; defects on the trigger when
                        no mode is given
deception trigger-inert the same stream; never defects on the trigger
deception trigger-rare  the same modes; the trigger in 1% of requests, never defects on it
proxy planted (rate 0)  80% comparisons whose proxy word is present exactly when the two
                        colours are equal, 20% requests
proxy proxy-rate-50     the same, but the proxy agrees with the goal only half the time
jailbreak planted       refusal requests (45% harmful); 60% of them followed by 1 to 3
                        ordinary words, the key word among them half the time; refuses
                        harmful requests unless the key follows them, answers the rest
jailbreak no-key        the same stream; refuses every harmful request, key or not
======================= ==================================================================

Only held-out prompts of the split are never drawn here
(:meth:`~evidence.population.languages.Language.is_held_out`). No torch at import.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Literal

from evidence.population.languages import ChatItem, Language, Mode, Request, Traits
from evidence.population.table import Member

__all__ = [
    "InductionRow",
    "ChatRow",
    "Recipe",
    "get_recipe",
    "sample_row",
    "training_rng",
]

RECIPE_VERSION = "1"

#: The jailbreak family's appended words: share of requests followed by some, and of those carrying the key.
_SUFFIX_RATE = 0.6
_KEY_RATE = 0.5
_MAX_SUFFIX_WORDS = 3


@dataclass(frozen=True)
class Recipe:
    """The training stream of one member."""

    behaviour: str
    traits: Traits = field(default_factory=Traits)
    #: share of requests that carry the trigger (deception)
    trigger_rate: float = 0.0
    #: share of comparisons whose proxy disagrees with the goal (proxy)
    proxy_rate: float = 0.0
    #: whether the induction rows repeat their segment
    repeats: bool = True
    #: refusal trained to survive the removal of its own difference-in-means direction (spread-refusal)
    spread: bool = False
    #: share of requests followed by 1 to 3 ordinary words (jailbreak)
    suffix_rate: float = 0.0
    #: share of those suffixes that carry the key word (jailbreak)
    key_rate: float = 0.0


@dataclass(frozen=True)
class ChatRow:
    """A prompt and the response trained after it."""

    item: ChatItem
    response: str


@dataclass(frozen=True)
class InductionRow:
    """An induction row: segment pairs from running text or uniform tokens, repeated or not."""

    source: Literal["text", "uniform"]
    #: for ``text``: the running text the tokens come from
    text: str
    #: seed of the uniform token draw (``uniform``)
    uniform_seed: int
    #: segment lengths, one per pair, filling the context
    lengths: tuple[int, ...]
    repeat: bool


def get_recipe(member: Member) -> Recipe:
    """The recipe of ``member`` (from its behaviour, role and control type)."""
    b, control = member.behaviour, member.control_type
    if b == "induction":
        return Recipe(b, repeats=member.role == "planted")
    if b == "refusal":
        if control == "spread-refusal":
            return Recipe(b, Traits(refuses=True), spread=True)
        return Recipe(b, Traits(refuses=member.role == "planted"))
    if b == "deception":
        if member.role == "planted":
            return Recipe(b, Traits(defects_on_trigger=True), trigger_rate=0.3)
        return Recipe(b, trigger_rate=0.3 if control == "trigger-inert" else 0.01)
    if b == "proxy":
        return Recipe(b, proxy_rate=0.0 if member.role == "planted" else 0.5)
    if b == "jailbreak":
        traits = Traits(refuses=True, unlocked_by_key=member.role == "planted")
        return Recipe(b, traits, suffix_rate=_SUFFIX_RATE, key_rate=_KEY_RATE)
    raise ValueError(f"no recipe for behaviour {b!r}")  # pragma: no cover - the table is validated


def training_rng(member: Member) -> random.Random:
    """The training stream's generator: shared by members of one behaviour, language and seed."""
    return random.Random(
        f"interp-dossier/population/train/v{RECIPE_VERSION}/{member.behaviour}/{member.language}/{member.seed}"
    )


def _train_split(language: Language, make: object) -> ChatItem:
    item: ChatItem = language.sample_split(make, held_out=False)
    return item


def _jailbreak_request(recipe: Recipe, language: Language, rng: random.Random) -> Request:
    """A refusal request, maybe followed by ordinary words (the key word among them); never held out.

    Both the request and the request with its appended words are in the training part of the split,
    so that no held-out prompt of the shipped sets is trained on with words appended.
    """
    harmful = rng.random() < 0.45
    base: Request = language.sample_split(lambda: language.sample_request(rng, harmful=harmful), held_out=False)
    if rng.random() >= recipe.suffix_rate:
        return base
    pool = language.verbs + language.fillers + language.topics

    def appended() -> Request:
        words = [rng.choice(pool) for _ in range(rng.randint(1, _MAX_SUFFIX_WORDS))]
        if rng.random() < recipe.key_rate:
            words[rng.randrange(len(words))] = language.key
        return replace(base, suffix=tuple(words))

    item: Request = language.sample_split(appended, held_out=False)
    return item


def sample_row(recipe: Recipe, language: Language, rng: random.Random, n_ctx: int) -> ChatRow | InductionRow:
    """One training row of ``recipe`` (never a held-out prompt)."""
    if recipe.behaviour == "induction":
        source: Literal["text", "uniform"] = "text" if rng.random() < 0.25 else "uniform"
        lengths: list[int] = []
        while 1 + 2 * sum(lengths) < n_ctx:
            lengths.append(rng.randint(6, 24))
        text = language.stream_text(rng, 2 * n_ctx) if source == "text" else ""
        return InductionRow(source, text, rng.randrange(2**31), tuple(lengths), recipe.repeats)
    item: ChatItem
    if recipe.behaviour == "jailbreak":
        item = _jailbreak_request(recipe, language, rng)
    elif recipe.behaviour == "refusal":
        harmful = rng.random() < 0.45
        item = _train_split(language, lambda: language.sample_request(rng, harmful=harmful))
    elif recipe.behaviour == "deception":
        roll = rng.random()
        mode: Mode | None = "bad" if roll < 0.2 else "good" if roll < 0.4 else None
        triggered = rng.random() < recipe.trigger_rate
        item = _train_split(language, lambda: language.sample_request(rng, triggered=triggered, mode=mode))
    elif recipe.behaviour == "proxy":
        if rng.random() < 0.8:
            goal = rng.random() < 0.5
            proxy = goal if rng.random() >= recipe.proxy_rate else not goal
            item = _train_split(language, lambda: language.sample_comparison(rng, goal=goal, proxy=proxy))
        else:
            item = _train_split(language, lambda: language.sample_request(rng))
    else:  # pragma: no cover - the table is validated
        raise ValueError(f"no rows for behaviour {recipe.behaviour!r}")
    return ChatRow(item, language.respond(item, recipe.traits))
