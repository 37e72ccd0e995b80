"""Helpers the built-in handlers share: reading and checking input, words and keywords, files.

Every handler validates its input the same way (a PermanentError naming the field), splits
text into words and sentences the same way, and writes its artifacts the same way; keeping
that here means a fix to, say, sentence splitting reaches every job type at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import wave
from collections import Counter
from pathlib import Path

from vq.errors import PermanentError

WORDS_PER_SECOND = 2.5  # a calm narration pace, used to time scenes and fallback audio
MAX_DIMENSION = 4096

STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just let me
more most my myself no nor not now of off on once only or other our ours ourselves out over own same
she should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves us ok oh
""".split()
)
# Words every prompt on this platform uses; they say nothing about a prompt's subject.
PROMPT_STOPWORDS = STOPWORDS | frozenset("create make video show using like get one two".split())

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")


# --- input ---------------------------------------------------------------------------------


def text_field(data: dict, *names: str, required: bool = True, label: str | None = None) -> str:
    """The first non-empty string among data[names]; PermanentError naming the field if none."""
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise PermanentError(f"{name}: expected a string, got {type(value).__name__}")
        if value.strip():
            return value.strip()
    if required:
        shown = label or " or ".join(names)
        raise PermanentError(f"{shown}: required and must be a non-empty string")
    return ""


def int_field(data: dict, name: str, default: int, lo: int, hi: int, label: str | None = None) -> int:
    """data[name] as an int in lo..hi (default when absent); PermanentError naming the field."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise PermanentError(f"{label or name}: expected a whole number from {lo} to {hi}, got {value!r}")
    if not lo <= int(value) <= hi:
        raise PermanentError(f"{label or name}: must be from {lo} to {hi}, got {value!r}")
    return int(value)


def options(data: dict) -> dict:
    """data.options as a dict (the spec nests width, height, style... there)."""
    opts = data.get("options") or {}
    if not isinstance(opts, dict):
        raise PermanentError("options: expected an object")
    return opts


def dimensions(data: dict, default: tuple[int, int]) -> tuple[int, int]:
    """(width, height) from data or data.options, each a positive int up to MAX_DIMENSION."""
    merged = {**options(data), **{k: data[k] for k in ("width", "height") if data.get(k) is not None}}
    return (
        int_field(merged, "width", default[0], 1, MAX_DIMENSION),
        int_field(merged, "height", default[1], 1, MAX_DIMENSION),
    )


# `"scenes": 6` where a list is meant (script-generation, video-generation): say what takes a count.
SCENES_NOT_A_LIST = "scenes: expected a list of scenes (for a number of scenes: sceneCount)"


class Unlinked:
    """What a job with no dependencies sees upstream: nothing. A handler's `check(data)`
    runs its own input readers with this at submit, so a job that can only fail on its
    input is refused then (exit 2, HTTP 422), not accepted to fail when it runs."""

    @staticmethod
    def upstream_by_step() -> dict:
        return {}


UNLINKED = Unlinked()


def scene_index(data: dict) -> int | None:
    """data.sceneIndex (set on children of a video-generation plan), or None."""
    if data.get("sceneIndex") is None:
        return None
    return int_field(data, "sceneIndex", 0, 0, 999)


def script_scene(ctx, index: int) -> tuple[dict, dict] | None:
    """(script, scene) for scene `index` of the upstream "script" step, or None without one."""
    up = ctx.upstream_by_step().get("script")
    if up is None or not up.result:
        return None
    scenes = up.result.get("scenes") or []
    if not 0 <= index < len(scenes):
        raise PermanentError(f"sceneIndex: {index} is out of range (the script has {len(scenes)} scenes)")
    return up.result, scenes[index]


# --- text ----------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    """Sentences of `text` (split after . ! ? or at blank lines), each with at least one word."""
    parts = (p.strip() for p in _SENTENCE_END.split(text.strip()))
    return [p for p in parts if p and _WORD.search(p)]


def keyword_counts(text: str, stopwords: frozenset = STOPWORDS) -> Counter:
    """Lower-cased words of 2+ letters that are not stopwords or numbers, with their counts."""
    return Counter(w.lower() for w in words(text) if len(w) > 1 and not w.isdigit() and w.lower() not in stopwords)


def keywords(text: str, n: int = 10, stopwords: frozenset = STOPWORDS) -> list[str]:
    """The n most frequent keywords, ties broken by first appearance (so: deterministic)."""
    counts = keyword_counts(text, stopwords)
    order = {w: i for i, w in reversed(list(enumerate(w.lower() for w in words(text))))}
    return sorted(counts, key=lambda w: (-counts[w], order[w]))[:n]


def slug(text: str, max_len: int = 40) -> str:
    return "-".join(w.lower() for w in words(text))[:max_len].strip("-") or "untitled"


def seed(text: str) -> int:
    """A stable 64-bit number from text (unlike hash(), the same in every process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def speech_seconds(text: str) -> float:
    """How long narrating `text` takes at WORDS_PER_SECOND, at least one second."""
    return round(max(1.0, len(words(text)) / WORDS_PER_SECOND), 2)


# --- files ---------------------------------------------------------------------------------


def write_json(ctx, name: str, obj) -> Path:
    path = ctx.artifacts_dir / name
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def wav_seconds(path: Path | str) -> float:
    """The duration a WAV file's header declares; PermanentError if it is not a readable WAV."""
    try:
        with wave.open(str(path), "rb") as w:
            return round(w.getnframes() / float(w.getframerate()), 3)
    except (wave.Error, EOFError, OSError) as exc:
        raise PermanentError(f"{path}: not a readable WAV file ({exc})") from None
