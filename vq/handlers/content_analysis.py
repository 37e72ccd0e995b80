"""content-analysis: counts, reading time, keywords and language of a text or a script.

data.content (or data.text) is analysed as plain text (data.type "text", the default) or as
a script (data.type "script": a script object, its JSON, or plain narration), in which case
the narration of its scenes is what is read, and each scene gets its own word count and
spoken length. Reading time assumes 200 words per minute; keywords leave out stopwords.
"""

from __future__ import annotations

import json

from vq.errors import PermanentError
from vq.handlers._common import keyword_counts, keywords, sentences, speech_seconds, words, write_json

READING_WPM = 200
TYPES = ("text", "script")
# a few very common words per language: the language with most hits among the text's words wins
LANGUAGE_HINTS = {
    "en": set("the and of to is in that it for was with you this are on not be have".split()),
    "es": set("el la los las de que y en un una es por con para no se del".split()),
    "fr": set("le la les de des et est un une que pour dans pas sur au du avec".split()),
    "de": set("der die das und ist nicht ein eine zu mit den von auf für auch sich".split()),
    "it": set("il lo la gli le di che e un una per non con del della sono".split()),
    "pt": set("o os as de que e um uma para com não do da em por se".split()),
}


def guess_language(tokens: list[str]) -> dict:
    lowered = [t.lower() for t in tokens]
    hits = {lang: sum(t in hints for t in lowered) for lang, hints in LANGUAGE_HINTS.items()}
    best = max(hits, key=lambda lang: hits[lang])
    if not hits[best]:
        return {"code": "unknown", "confidence": 0.0}
    return {"code": best, "confidence": round(hits[best] / sum(hits.values()), 2)}


def _script_scenes(content) -> list[dict] | None:
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return None  # plain narration text
    if isinstance(content, dict) and isinstance(content.get("scenes"), list):
        return [s if isinstance(s, dict) else {"narration": str(s)} for s in content["scenes"]]
    if isinstance(content, list):
        return [s if isinstance(s, dict) else {"narration": str(s)} for s in content]
    raise PermanentError("content: a script must be an object with scenes, its JSON, or plain text")


def _inputs(data: dict) -> tuple[str, list | None, str]:
    """(kind, a script's scenes or None, the text to analyse)."""
    kind = data.get("type") or "text"
    if kind not in TYPES:
        raise PermanentError(f"type: must be one of {', '.join(TYPES)}, got {kind!r}")
    content = data.get("content") if data.get("content") is not None else data.get("text")
    scenes = _script_scenes(content) if kind == "script" and content else None
    if scenes is not None:
        text = "\n\n".join(str(s.get("narration") or s.get("text") or "") for s in scenes)
    elif isinstance(content, str):
        text = content
    else:
        raise PermanentError("content: required, the text to analyse")
    if not words(text):
        raise PermanentError("content: empty, there are no words to analyse")
    return kind, scenes, text


def check(data: dict) -> None:
    """At submit (vq/submission/validation.py)."""
    _inputs(data)


def handle(ctx, data: dict) -> dict:
    kind, scenes, text = _inputs(data)
    ctx.progress(10, "tokenizing")

    tokens = words(text)
    sents = sentences(text)
    ctx.progress(40, f"{len(tokens)} words, {len(sents)} sentences")
    counts = keyword_counts(text)
    top = [{"word": w, "count": counts[w]} for w in keywords(text, 10)]
    ctx.progress(70, "keywords ranked")

    analysis = {
        "type": kind,
        "characters": len(text),
        "wordCount": len(tokens),
        "uniqueWords": len({t.lower() for t in tokens}),
        "sentenceCount": len(sents),
        "averageSentenceLength": round(len(tokens) / max(1, len(sents)), 2),
        "readingTimeSeconds": round(len(tokens) / READING_WPM * 60, 1),
        "keywords": top,
        "language": guess_language(tokens),
    }
    if scenes is not None:
        analysis["scenes"] = [
            {
                "index": i,
                "wordCount": len(words(str(s.get("narration") or ""))),
                "spokenSeconds": speech_seconds(str(s.get("narration") or "")),
            }
            for i, s in enumerate(scenes)
        ]
    path = write_json(ctx, "analysis.json", analysis)
    ctx.log.info("analysed %d words (%s)", len(tokens), kind)
    ctx.progress(100, "analysis ready")
    return {**analysis, "path": str(path), "artifacts": [str(path)]}
