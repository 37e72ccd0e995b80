"""script-generation: a structured script (title, scenes with narration and visuals) from a prompt.

No model is called: the script is derived from the prompt alone, so one prompt always gives
one script. A prompt of several sentences is spread over the scenes as their narration; a
one-line request ("Create a video about AI technology") is turned into an opening /
development / closing arc around its topic and keywords. Scenes may also be given
(data.scenes: strings or {heading, narration, visual}); the script then keeps them. Each
scene lasts as long as its narration takes to say at ~2.5 words per second.
"""

from __future__ import annotations

import re
from typing import Any

from vq.errors import PermanentError
from vq.handlers._common import (
    PROMPT_STOPWORDS,
    SCENES_NOT_A_LIST,
    int_field,
    keywords,
    options,
    sentences,
    speech_seconds,
    text_field,
    words,
    write_json,
)

MAX_SCENES = 20
SHOTS = ["Wide establishing shot", "Close-up", "Tracking shot", "Aerial view", "Medium shot"]
_REQUEST = re.compile(
    r"^(please\s+)?(create|make|generate|produce|write|show|build)\s+(me\s+)?"
    r"((a|an|the)\s+)?((short|quick|brief)\s+)?"
    r"((video|film|clip|story|script|movie)\s+)?((about|on|of|explaining|showing)\s+)?",
    re.I,
)


def topic_of(prompt: str) -> str:
    """The subject of a prompt: its first sentence without a leading 'create a video about'."""
    first = sentences(prompt)[0].rstrip(".!? ")
    return _REQUEST.sub("", first).strip() or first


def _narrate(i: int, count: int, topic: str, kw: list[str]) -> str:
    k = kw[i % len(kw)] if kw else topic
    if count == 1:
        return f"A short look at {topic}: what {k} is, how it works, and why it matters."
    if i == 0:
        return f"This is a story about {topic}. It begins with {k}, and why it caught our attention."
    if i == count - 1:
        return f"Finally, we look at where {topic} goes from here, and what it means for all of us."
    return f"Next comes {k}: how it works, who it touches, and why it matters for {topic}."


def _given_scene(entry, i: int) -> dict:
    if isinstance(entry, str):
        return {"narration": entry}
    if not isinstance(entry, dict):
        raise PermanentError(f"scenes[{i}]: expected a string or an object")
    return {
        "heading": entry.get("heading") or entry.get("title"),
        "narration": entry.get("narration") or entry.get("text"),
        "visual": entry.get("visual") or entry.get("description") or entry.get("prompt"),
        "durationSeconds": entry.get("durationSeconds"),
    }


def _inputs(data: dict) -> tuple[str, str, list | None, int]:
    """(prompt, style, the scenes given, how many scenes)."""
    prompt = text_field(data, "prompt")
    style = text_field(data, "style", required=False) or str(options(data).get("style") or "cinematic")
    given = data.get("scenes")
    if given is not None and not isinstance(given, list):
        raise PermanentError(SCENES_NOT_A_LIST)
    if given:
        if len(given) > MAX_SCENES:
            raise PermanentError(f"scenes: at most {MAX_SCENES} scenes, got {len(given)}")
        return prompt, style, given, len(given)
    return prompt, style, given, int_field(data, "sceneCount", 3, 1, MAX_SCENES)


def check(data: dict) -> None:
    """At submit (vq/submission/validation.py)."""
    _inputs(data)


def handle(ctx, data: dict) -> dict:
    prompt, style, given, count = _inputs(data)
    ctx.progress(10, "reading the prompt")

    topic = topic_of(prompt)
    kw = keywords(prompt, 12, PROMPT_STOPWORDS)
    prompt_kw = set(kw)
    original = {w.lower(): w for w in reversed(words(prompt))}  # keep the prompt's casing
    kw = [original.get(k, k) for k in kw]
    sents = sentences(prompt)
    sents = sents if len(sents) > 1 else []  # a one-line prompt is a request, not narration
    title = text_field(data, "title", required=False) or " ".join(topic.split()[:8])
    title = title[:1].upper() + title[1:]
    ctx.log.info("script %r: %d scenes, style %s, keywords %s", title, count, style, kw[:5])
    ctx.progress(25, f"planning {count} scenes")

    scenes: list[dict[str, Any]] = []
    for i in range(count):
        own = _given_scene(given[i], i) if given else {}
        if len(sents) >= count:  # every scene gets its share of the prompt's sentences
            share = sents[i * len(sents) // count : (i + 1) * len(sents) // count]
        else:  # one sentence each while they last, then the arc
            share = sents[i : i + 1]
        narration = own.get("narration") or (" ".join(share) if share else _narrate(i, count, topic, kw))
        focus = next((k for k in keywords(narration, 50, PROMPT_STOPWORDS) if k in prompt_kw), None)
        focus = original.get(focus, focus) if focus else (kw[i % len(kw)] if kw else topic)
        role = "Opening" if i == 0 and count > 1 else "Closing" if i == count - 1 and count > 1 else f"Scene {i + 1}"
        about = share[0].rstrip(".!? ") if share and not own.get("narration") else topic
        duration = own.get("durationSeconds")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
            duration = speech_seconds(narration)
        scenes.append(
            {
                "index": i,
                "heading": own.get("heading") or f"{role}: {focus[:1].upper() + focus[1:]}",
                "narration": narration,
                "visual": own.get("visual") or f"{SHOTS[i % len(SHOTS)]} of {focus}: {about}, {style} style",
                "durationSeconds": round(float(duration), 2),
            }
        )
        ctx.progress(25 + 65 * (i + 1) / count, f"scene {i + 1}/{count} written")

    script = {
        "title": title,
        "style": style,
        "prompt": prompt,
        "scenes": scenes,
        "durationSeconds": round(sum(s["durationSeconds"] for s in scenes), 2),
    }
    path = write_json(ctx, "script.json", script)
    ctx.progress(100, "script ready")
    return {**script, "path": str(path), "artifacts": [str(path)]}
