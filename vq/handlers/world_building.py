"""world-building: a world concept (setting, era, palette, themes, places, characters) for a video.

Derived from the prompt alone, so one prompt always gives one world: the genre is data.genre
or guessed from the prompt's words; themes are its keywords; names, the colour palette and
the choice of places and traits come from a hash of the prompt. The concept is written to
world.json so scripts and images for the same project can share it.
"""

from __future__ import annotations

import colorsys
import random

from vq.handlers._common import PROMPT_STOPWORDS, keywords, seed, text_field, words, write_json

GENRES = {  # hint words, era, setting pattern, kinds of place, roles
    "fantasy": (
        "dragon magic wizard kingdom elf sword quest castle myth legend",
        "an age of myth",
        "a realm where {a} meets {b}",
        ["Citadel", "Wildwood", "Ruins", "Harbor", "Spire"],
        ["reluctant hero", "exiled mage", "scheming regent"],
    ),
    "sci-fi": (
        "space robot ai future planet galaxy cyber alien starship technology",
        "the 24th century",
        "a future shaped by {a} and {b}",
        ["Orbital Station", "Megacity", "Outpost", "Drift Colony", "Archive Core"],
        ["rogue engineer", "synthetic envoy", "corporate captain"],
    ),
    "noir": (
        "crime detective murder night rain mystery gangster heist",
        "the late 1940s",
        "a rain-soaked city of {a} and {b}",
        ["Precinct", "Jazz Club", "Docks", "Penthouse", "Back Alley"],
        ["weary detective", "informant with a debt", "polished crime boss"],
    ),
    "post-apocalyptic": (
        "ruin wasteland survival collapse zombie apocalypse fallout",
        "forty years after the collapse",
        "a broken land where {a} outlasts {b}",
        ["Scrap Fort", "Dead Mall", "Dry Riverbed", "Signal Tower", "Seed Vault"],
        ["scavenger", "settlement elder", "raider turned guard"],
    ),
    "historical": (
        "history ancient war empire medieval roman century revolution pharaoh",
        "a turning point of the past",
        "an era defined by {a} and {b}",
        ["Palace", "Market Square", "Battlefield", "Monastery", "Port"],
        ["ambitious scribe", "aging general", "merchant with secrets"],
    ),
    "contemporary": (
        "",
        "the present day",
        "today's world of {a} and {b}",
        ["Café", "Transit Hub", "Rooftop Garden", "Community Hall", "Waterfront"],
        ["curious reporter", "local organizer", "skeptical expert"],
    ),
}
TRAITS = ["stubborn", "generous", "secretive", "fearless", "witty", "haunted", "idealistic", "patient", "restless"]
SYLLABLES = ["ka", "ly", "mor", "then", "va", "dri", "el", "os", "quin", "ra", "sel", "tor", "un", "zeph", "ari", "bel"]


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def guess_genre(text: str) -> str:
    toks = {w.lower() for w in words(text)}
    hits = {g: len(toks & set(spec[0].split())) for g, spec in GENRES.items()}
    best = max(hits, key=lambda g: hits[g])
    return best if hits[best] else "contemporary"


def palette(rng: random.Random, n: int = 5) -> list[str]:
    hue = rng.random()
    out = []
    for offset, light in zip((0.0, 0.06, 0.5, 0.56, 0.92), (0.25, 0.45, 0.55, 0.7, 0.85), strict=True):
        r, g, b = colorsys.hls_to_rgb((hue + offset) % 1.0, light, 0.55 + 0.35 * rng.random())
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out[:n]


def _inputs(data: dict) -> tuple[str, str]:
    """(prompt, the genre asked for or "")."""
    genre_given = text_field(data, "genre", required=False).lower()
    prompt = text_field(data, "prompt", "description", required=not genre_given, label="prompt") or genre_given
    return prompt, genre_given


def check(data: dict) -> None:
    """At submit (vq/submission/validation.py)."""
    _inputs(data)


def handle(ctx, data: dict) -> dict:
    prompt, genre_given = _inputs(data)
    rng = random.Random(seed(f"{prompt}|{genre_given}"))
    genre = genre_given or guess_genre(prompt)
    hints, era, pattern, places, roles = GENRES.get(genre, GENRES["contemporary"])
    ctx.progress(10, f"genre {genre}")

    themes = keywords(prompt, 5, PROMPT_STOPWORDS)
    for hint in hints.split():  # a bare genre has few keywords: borrow the genre's own words
        if len(themes) < 3 and hint not in themes:
            themes.append(hint)
    themes = themes or [genre]
    a, b = themes[0], themes[1] if len(themes) > 1 else "change"
    name = text_field(data, "name", required=False) or _name(rng, 3)
    world: dict[str, object] = {
        "name": name,
        "genre": genre,
        "era": text_field(data, "era", required=False) or era,
        "setting": f"{name}, {pattern.format(a=a, b=b)}",
        "palette": palette(rng),
        "themes": themes,
    }
    ctx.progress(40, "setting, palette and themes chosen")

    kinds = rng.sample(places, 4)
    moods = ["A hidden", "A crowded", "An ancient", "A gleaming", "A quiet"]
    world["locations"] = [
        {
            "name": f"The {themes[i % len(themes)].capitalize()} {kind}",
            "description": f"{rng.choice(moods)} {kind.lower()} where {themes[i % len(themes)]} is felt most.",
        }
        for i, kind in enumerate(kinds)
    ]
    ctx.progress(70, f"{len(kinds)} locations")
    world["characters"] = [
        {
            "name": _name(rng, 2),
            "role": role,
            "trait": rng.choice(TRAITS),
            "motivation": f"to {rng.choice(['protect', 'uncover', 'control', 'escape'])} "
            f"the {themes[(i + 1) % len(themes)]}",
        }
        for i, role in enumerate(roles)
    ]
    path = write_json(ctx, "world.json", world)
    ctx.log.info("world %r (%s): %s", name, genre, themes)
    ctx.progress(100, "world ready")
    return {**world, "prompt": prompt, "path": str(path), "artifacts": [str(path)]}
