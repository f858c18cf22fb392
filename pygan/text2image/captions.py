"""Captions for the embedded digits: each meaning (a class, and optionally a thickness and a slant level) is said in
several templates with several synonyms, so that the text encoder has to learn meanings, not strings."""

from __future__ import annotations

import numpy as np

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICKNESS_WORDS = (("thin", "skinny", "light", "fine", "slim"),
                   ("medium", "regular", "normal", "average"),
                   ("thick", "bold", "heavy", "fat", "chunky"))
SLANT_ADJECTIVES = (("left leaning", "left slanted", "backward slanted"),
                    ("upright", "straight", "vertical"),
                    ("right leaning", "right slanted", "italic"))
SLANT_PHRASES = (("leaning left", "slanted to the left", "tilted to the left"),
                 ("standing upright", "standing straight", "with no slant"),
                 ("leaning right", "slanted to the right", "tilted to the right"))
# which attributes a caption mentions: both, thickness only, slant only, neither (class only)
MENTIONS = ((True, True), (True, False), (False, True), (False, False))
MENTION_P = (0.4, 0.25, 0.25, 0.1)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou8" else "a"


def caption(rng: np.random.Generator, cls: int, thickness: int | None, slant: int | None) -> str:
    """One caption of the meaning (cls, thickness level or None, slant level or None), template and words drawn
    from `rng`."""
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    noun = pick((NAMES[cls], NAMES[cls], f"digit {cls}", f"number {cls}", str(cls)))
    t = pick(THICKNESS_WORDS[thickness]) if thickness is not None else None
    s_adj = pick(SLANT_ADJECTIVES[slant]) if slant is not None else None
    s_phr = pick(SLANT_PHRASES[slant]) if slant is not None else None
    if t and s_adj:
        options = [f"{_article(t)} {t} {s_adj} {noun}", f"{_article(t)} {t} {noun} {s_phr}",
                   f"{_article(s_adj)} {s_adj} {noun} drawn with {t} strokes", f"the {noun} is {t} and {s_phr}",
                   f"handwritten {noun}, {t}, {s_phr}"]
    elif t:
        options = [f"{_article(t)} {t} {noun}", f"{_article(noun)} {noun} drawn with {t} strokes",
                   f"handwritten {noun} with {t} lines", f"the {noun} is {t}"]
    elif s_adj:
        options = [f"{_article(s_adj)} {s_adj} {noun}", f"{_article(noun)} {noun} {s_phr}",
                   f"handwritten {noun} {s_phr}"]
    else:
        options = [f"{_article(noun)} {noun}", f"a handwritten {noun}", f"a picture of {_article(noun)} {noun}"]
    return pick(options)


def meaning_captions(rng: np.random.Generator, cls: int, levels: tuple[int, int], n: int,
                     mentions=None) -> tuple[list[str], list[tuple[int, int, int]]]:
    """n captions of an image of class `cls` with attribute levels (thickness, slant), each mentioning the
    attributes drawn by MENTION_P (or `mentions`, a fixed (thickness?, slant?)); with their meanings (class,
    thickness or -1, slant or -1)."""
    caps, meanings = [], []
    for _ in range(n):
        mt, ms = mentions if mentions is not None else MENTIONS[rng.choice(len(MENTIONS), p=MENTION_P)]
        t, s = (levels[0] if mt else None), (levels[1] if ms else None)
        caps.append(caption(rng, cls, t, s))
        meanings.append((cls, -1 if t is None else t, -1 if s is None else s))
    return caps, meanings
