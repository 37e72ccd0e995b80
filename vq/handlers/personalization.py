"""personalization: content adjusted to a user's preferences, with a list of what changed.

data.content is a string or an object whose string values are adjusted. data.preferences:
tone (formal, casual, enthusiastic, neutral) rewrites wording by fixed substitution rules;
intensity (0..1, default 1) is the share of those rules applied; length (short, medium,
long) trims to whole sentences within a word budget; name adds a greeting, in the
preferred language when one is known. The same input always gives the same output.
"""

from __future__ import annotations

import math
import re
from typing import Any

from vq.errors import PermanentError
from vq.handlers._common import sentences, words, write_json

TONES = {
    "formal": [
        ("don't", "do not"),
        ("can't", "cannot"),
        ("won't", "will not"),
        ("it's", "it is"),
        ("I'm", "I am"),
        ("gonna", "going to"),
        ("wanna", "want to"),
        ("thanks", "thank you"),
        ("hey", "hello"),
        ("hi", "hello"),
        ("kids", "children"),
        ("buy", "purchase"),
    ],
    "casual": [
        ("do not", "don't"),
        ("cannot", "can't"),
        ("will not", "won't"),
        ("it is", "it's"),
        ("thank you", "thanks"),
        ("hello", "hey"),
        ("purchase", "buy"),
        ("utilize", "use"),
        ("assist", "help"),
        ("therefore", "so"),
        ("however", "but"),
        ("regarding", "about"),
    ],
    "enthusiastic": [
        ("good", "great"),
        ("nice", "amazing"),
        ("interesting", "fascinating"),
        ("important", "crucial"),
        ("like", "love"),
        ("happy", "thrilled"),
    ],
    "neutral": [],
}
LENGTHS = {"short": 40, "medium": 120, "long": None}  # word budget
GREETINGS = {
    "en": ("Dear", "Hi"),
    "es": ("Estimado/a", "Hola"),
    "fr": ("Bonjour", "Salut"),
    "de": ("Guten Tag", "Hallo"),
    "it": ("Gentile", "Ciao"),
    "pt": ("Prezado/a", "Olá"),
}
GREETING_KEYS = ("greeting", "intro", "message", "text", "body", "content", "narration")


def preferences(data: dict) -> dict:
    prefs = data.get("preferences") or {}
    if not isinstance(prefs, dict):
        raise PermanentError("preferences: expected an object")
    tone = prefs.get("tone") or "neutral"
    if tone not in TONES:
        raise PermanentError(f"preferences.tone: must be one of {', '.join(TONES)}, got {tone!r}")
    length = prefs.get("length") or "long"
    if length not in LENGTHS:
        raise PermanentError(f"preferences.length: must be one of {', '.join(LENGTHS)}, got {length!r}")
    intensity = prefs.get("intensity", 1.0)
    if isinstance(intensity, bool) or not isinstance(intensity, (int, float)) or not 0 <= intensity <= 1:
        raise PermanentError(f"preferences.intensity: must be a number from 0 to 1, got {intensity!r}")
    name = prefs.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 100):
        raise PermanentError("preferences.name: expected a string of at most 100 characters")
    language = str(prefs.get("language") or "en").lower()[:2]
    return {
        "tone": tone,
        "length": length,
        "intensity": float(intensity),
        "name": (name or "").strip(),
        "language": language,
    }


def _retone(text: str, prefs: dict, changes: list[str], where: str) -> str:
    rules = TONES[prefs["tone"]]
    for old, new in rules[: math.ceil(prefs["intensity"] * len(rules))]:

        def swap(m, new=new):
            return new[:1].upper() + new[1:] if m.group(0)[:1].isupper() else new

        text, n = re.subn(rf"\b{re.escape(old)}\b", swap, text, flags=re.I)
        if n:
            changes.append(f"{where}tone {prefs['tone']}: '{old}' -> '{new}' ({n}x)")
    if prefs["tone"] == "enthusiastic" and prefs["intensity"] >= 0.5 and text.rstrip().endswith("."):
        text = text.rstrip()[:-1] + "!"
        changes.append(f"{where}tone enthusiastic: ended on an exclamation mark")
    return text


def _shorten(text: str, prefs: dict, changes: list[str], where: str) -> str:
    budget = LENGTHS[prefs["length"]]
    total = len(words(text))
    if budget is None or total <= budget:
        return text
    kept, count = [], 0
    for sentence in sentences(text):
        n = len(words(sentence))
        if count + n > budget:
            break
        kept.append(sentence)
        count += n
    out = " ".join(kept) if kept else " ".join(text.split()[:budget]) + "…"
    changes.append(f"{where}length {prefs['length']}: {total} -> {len(words(out))} words")
    return out


def _greet(text: str, prefs: dict, changes: list[str], where: str) -> str:
    if not prefs["name"]:
        return text
    formal, friendly = GREETINGS.get(prefs["language"], GREETINGS["en"])
    if prefs["language"] not in GREETINGS:
        changes.append(f"language {prefs['language']}: no greeting known, used English")
    greeting = f"{formal if prefs['tone'] == 'formal' else friendly} {prefs['name']},"
    changes.append(f"{where}greeting: added '{greeting}'")
    return f"{greeting} {text}"


def _inputs(data: dict) -> tuple[str | dict, dict]:
    """(content, preferences)."""
    content = data.get("content")
    if not (isinstance(content, str) and content.strip()) and not (isinstance(content, dict) and content):
        raise PermanentError("content: required, a non-empty string or object")
    return content, preferences(data)


def check(data: dict) -> None:
    """At submit (vq/submission/validation.py)."""
    _inputs(data)


def handle(ctx, data: dict) -> dict:
    content, prefs = _inputs(data)
    ctx.progress(10, f"tone {prefs['tone']}, length {prefs['length']}")
    changes: list[str] = []
    out: str | dict[str, Any]
    if isinstance(content, str):
        out = _retone(content, prefs, changes, "")
        ctx.progress(40, "tone adjusted")
        out = _shorten(out, prefs, changes, "")
        ctx.progress(70, "length adjusted")
        out = _greet(out, prefs, changes, "")
    else:
        out = dict(content)
        strings = [k for k, v in out.items() if isinstance(v, str)]
        for i, key in enumerate(strings):
            out[key] = _shorten(_retone(out[key], prefs, changes, f"{key}: "), prefs, changes, f"{key}: ")
            ctx.progress(10 + 70 * (i + 1) / len(strings), f"adjusted {key}")
        target = next((k for k in GREETING_KEYS if k in strings), strings[0] if strings else None)
        if target:
            out[target] = _greet(out[target], prefs, changes, f"{target}: ")
    ctx.progress(85, f"{len(changes)} changes")
    path = write_json(ctx, "personalized.json", {"content": out, "changes": changes, "preferences": prefs})
    ctx.log.info("personalized content: %d changes", len(changes))
    ctx.progress(100, "personalization ready")
    return {"content": out, "changes": changes, "preferences": prefs, "path": str(path), "artifacts": [str(path)]}
