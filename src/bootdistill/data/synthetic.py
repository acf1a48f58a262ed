"""Deterministic synthetic text in WikiText raw layout: the last-resort corpus, so the pipeline always runs.

The text is English-like (real function words, a few hundred content words, invented proper names, numbers
written the WikiText way with `@,@` / `@.@`) and laid out exactly like WikiText raw:

     (blank line: one space)
     = Title =
     (blank line)
     Paragraph , with spaces around punctuation .
     (blank line)
     = = Section = =

Articles are generated lazily from a seeded `random.Random`, so the same (seed, size) always yields the same
text and memory stays flat. It is NOT real data: anything trained on it says nothing about the paper's results,
which is why `meta.json` records `synthetic: true` and a loud warning is printed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

GENERATOR_VERSION = 1

SYNTHETIC_WARNING = (
    "WARNING: no real corpus was found, so bootdistill is using SYNTHETIC text (generated, English-like, "
    "WikiText layout). Losses on it mean nothing for the paper's results. Give a real corpus: "
    "data.corpus=DIR (WikiText .raw/.txt[.xz|.gz]), a .jsonl/.parquet file, hf:wikitext:wikitext-103-raw-v1, "
    "or set BOOTDISTILL_CORPUS."
)

# split -> (seed offset, default size in MB)
SPLIT_SEEDS = {"train": 0, "valid": 1_000_003, "test": 2_000_003}
DEFAULT_MB = {"train": 8.0, "valid": 0.5, "test": 0.5}

_NOUNS = (
    "river city village church army battle ship station album song film season game player team school "
    "university bridge road railway castle island mountain valley forest lake species bird fish plant tree "
    "king queen emperor bishop general soldier officer captain writer poet painter singer band company "
    "government council parliament election party law court war treaty empire kingdom province district "
    "county region town harbour port tower temple museum library garden park stadium league championship "
    "record single tour novel book story character series episode role actor director producer "
    "engine aircraft vessel fleet division regiment brigade campaign siege storm hurricane flood earthquake "
    "population economy industry trade market coal iron steel gold silver cotton wheat farm mill factory "
    "design structure building wall roof window tower bell organ painting statue coin stamp flag symbol "
    "family father mother son daughter brother sister wife husband child student teacher member leader"
).split()
_ADJS = (
    "large small early late first second third new old major minor northern southern eastern western "
    "central local national royal military naval public private popular famous important significant "
    "original final main modern ancient medieval common rare heavy light strong weak long short high low "
    "successful critical commercial political religious historical natural economic cultural musical"
).split()
_VERBS = (
    "built founded destroyed captured defeated released recorded published wrote designed opened closed "
    "completed replaced described named married joined left returned moved attacked defended received "
    "won lost established introduced produced reached crossed discovered led served supported elected "
    "appointed announced acquired restored extended reduced increased formed covered"
).split()
_ADVS = "later also then eventually initially soon finally subsequently again still largely".split()
_PREPS = "in of at near from during after before with under across along against between into".split()
_MONTHS = "January February March April May June July August September October November December".split()
_SECTIONS = (
    "History|Background|Early life|Career|Description|Reception|Legacy|Design|Plot|Production|Release|"
    "Geography|Ecology|Personal life|Death|Aftermath|Construction|Composition|Critical reception|"
    "Distribution|Biology|Service history|Route description|Later life|Music|Track listing|Etymology"
).split("|")
_SUBSECTIONS = "Early years|Later years|Development|Writing|Casting|Filming|Commercial performance|Awards".split("|")
_SYLLABLES = (
    "an ar bel ber bur ca car cor da dal den dor el en er fal fen gar gor ha hal har hel in is ka kar "
    "kel lan lar len lor ma mar mel mor na nar nel nor or ra ran ren ror sa sal sen sor ta tal ten tor "
    "ul ur va val ven vor wen win"
).split()
_CONNECT = ["and", "but", "while", "although", "because", "after", "when"]


def _name(rng: random.Random, syllables: int | None = None) -> str:
    n = syllables or rng.choice((2, 2, 3))
    return "".join(rng.choice(_SYLLABLES) for _ in range(n)).capitalize()


def _plural(noun: str) -> str:
    if noun in ("species", "series"):
        return noun
    if noun == "child":
        return "children"
    if noun == "wife":
        return "wives"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "ch", "sh", "x")):
        return noun + "es"
    return noun + "s"


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return str(rng.randint(2, 99))
    if kind < 0.7:
        return f"{rng.randint(1, 99)} @,@ {rng.randint(0, 999):03d}"
    return f"{rng.randint(0, 99)} @.@ {rng.randint(0, 9)}"


class _Article:
    """One article's cast of names and topic words, so that text within an article is coherent."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.people = [f"{_name(rng)} {_name(rng)}" for _ in range(rng.randint(2, 4))]
        self.places = [_name(rng) for _ in range(rng.randint(2, 3))]
        self.topic = rng.sample(_NOUNS, 4)
        self.year = rng.randint(1700, 2010)
        kind = rng.random()
        if kind < 0.35:
            self.title = self.people[0]
        elif kind < 0.6:
            self.title = f"{self.places[0]} {self.topic[0].capitalize()}"
        elif kind < 0.8:
            self.title = f"{self.topic[0].capitalize()} of {self.places[0]}"
        else:
            self.title = f"{_name(rng)} ( {self.year} {rng.choice(('film', 'album', 'song', 'ship', 'novel'))} )"

    def noun(self) -> str:
        rng = self.rng
        return rng.choice(self.topic) if rng.random() < 0.45 else rng.choice(_NOUNS)

    def np(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            return rng.choice(self.people)
        if r < 0.3:
            return rng.choice(self.places)
        det = rng.choice(("the", "the", "the", "a", "its", "their"))
        adj = f"{rng.choice(_ADJS)} " if rng.random() < 0.5 else ""
        noun = self.noun()
        if rng.random() < 0.25:
            return f"{det} {adj}{noun} of {rng.choice(self.places)}"
        return f"{det} {adj}{noun}"

    def date(self) -> str:
        rng = self.rng
        year = self.year + rng.randint(-20, 40)
        if rng.random() < 0.5:
            return f"in {year}"
        return f"on {rng.randint(1, 28)} {rng.choice(_MONTHS)} {year}"

    def clause(self) -> str:
        rng = self.rng
        subj = self.np()
        r = rng.random()
        if r < 0.35:
            out = f"{subj} {rng.choice(_VERBS)} {self.np()} {self.date()}"
        elif r < 0.55:
            out = f"{subj} was {rng.choice(_VERBS)} {rng.choice(_PREPS)} {self.np()}"
        elif r < 0.7:
            out = f"{subj} had {_number(rng)} {_plural(rng.choice(_NOUNS))}"
        elif r < 0.85:
            out = f"{subj} {rng.choice(_ADVS)} {rng.choice(_VERBS)} {self.np()} {rng.choice(_PREPS)} {self.np()}"
        else:
            out = f"{subj} is {rng.choice(('one of the', 'the'))} {rng.choice(_ADJS)} {_plural(self.noun())} {rng.choice(_PREPS)} {self.np()}"
        return out

    def sentence(self) -> str:
        rng = self.rng
        s = self.clause()
        if rng.random() < 0.35:
            s += f" , {rng.choice(_CONNECT)} {self.clause()}"
        if rng.random() < 0.15:
            s += f" ( {self.np()} )"
        return s[0].upper() + s[1:] + " ."

    def paragraph(self) -> str:
        return " " + " ".join(self.sentence() for _ in range(self.rng.randint(2, 7))) + " \n"

    def text(self) -> str:
        rng = self.rng
        lines = [" \n", f" = {self.title} = \n", " \n"]
        for _ in range(rng.randint(1, 3)):
            lines += [self.paragraph()]
        lines.append(" \n")
        for section in rng.sample(_SECTIONS, rng.randint(2, 6)):
            lines += [f" = = {section} = = \n", " \n"]
            for _ in range(rng.randint(1, 4)):
                lines.append(self.paragraph())
            lines.append(" \n")
            if rng.random() < 0.2:
                lines += [f" = = = {rng.choice(_SUBSECTIONS)} = = = \n", " \n", self.paragraph(), " \n"]
        return "".join(lines)


def synthetic_articles(split: str = "train", seed: int = 0, mb: float | None = None) -> Iterator[str]:
    """Yield WikiText-layout articles until about `mb` MB (UTF-8 bytes, 1 MB = 1e6) have been produced."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}")
    limit = int((DEFAULT_MB[split] if mb is None else mb) * 1e6)
    rng = random.Random(seed * 7919 + SPLIT_SEEDS[split])
    produced = 0
    while produced < limit:
        text = _Article(rng).text()
        produced += len(text)  # the text is ASCII, so characters == bytes
        yield text
