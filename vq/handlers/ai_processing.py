"""ai-processing: a generic AI task (summarize, classify, extract-keywords, echo) sent to a provider.

PROVIDERS maps a provider name to its tasks, each a function (input, params) -> output. The
built-in "local" provider does the work with text statistics instead of a model: a summary
is the input's highest-scoring sentences by keyword frequency, kept in their order; a class
is the label whose vocabulary the text uses most. A remote provider registers the same way
and raises vq.errors.ProviderError / RateLimitError so the worker can retry and trip breakers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vq.errors import PermanentError
from vq.handlers._common import int_field, keyword_counts, keywords, options, sentences, words, write_json

CATEGORIES = {
    "technology": "ai software computer data digital robot technology internet code algorithm device network",
    "science": "research experiment scientist study physics biology chemistry space planet climate theory",
    "business": "market company revenue customer sales profit startup investor price economy product",
    "sports": "game team player match score season coach league win championship goal",
    "health": "health doctor patient disease medicine hospital treatment exercise diet sleep",
    "entertainment": "film movie music show actor song series celebrity festival video story",
    "environment": "energy solar wind power climate carbon emissions pollution forest ocean recycling",
    "politics": "government election policy minister law vote president parliament party campaign",
}


def summarize(text: str, params: dict) -> dict:
    n = int_field(params, "sentences", 2, 1, 50, label="options.sentences")
    sents = sentences(text)
    counts = keyword_counts(text)

    def score(s: str) -> float:
        toks = [w.lower() for w in words(s)]
        return sum(counts.get(t, 0) for t in toks) / max(1, len(toks)) ** 0.5

    best = sorted(range(len(sents)), key=lambda i: (-score(sents[i]), i))[:n]
    summary = " ".join(sents[i] for i in sorted(best))
    ratio = round(len(words(summary)) / max(1, len(words(text))), 3)
    return {"summary": summary, "sentences": len(best), "ratio": ratio}


def classify(text: str, params: dict) -> dict:
    labels = params.get("labels") or list(CATEGORIES)
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise PermanentError("options.labels: expected a list of label names")
    toks = [w.lower() for w in words(text)]
    scores = {}
    for label in labels:
        vocab = set(CATEGORIES.get(label.lower(), "").split()) | {w.lower() for w in words(label)}
        stems = {v[:5] for v in vocab if len(v) >= 5}
        scores[label] = sum(t in vocab or (len(t) >= 5 and t[:5] in stems) for t in toks)
    total = sum(scores.values())
    best = max(labels, key=lambda x: scores[x]) if total else None
    return {"label": best or "unknown", "scores": {k: round(v / total, 3) if total else 0.0 for k, v in scores.items()}}


def extract_keywords(text: str, params: dict) -> dict:
    n = int_field(params, "limit", 10, 1, 100, label="options.limit")
    counts = keyword_counts(text)
    return {"keywords": [{"word": w, "count": counts[w]} for w in keywords(text, n)]}


def echo(value, params: dict) -> dict:
    return {"echo": value}


# The input is JSON whose shape depends on the task: handle() checks that text tasks get a
# non-empty str before calling them, echo takes anything.
Task = Callable[[Any, dict], dict]
PROVIDERS: dict[str, dict[str, Task]] = {
    "local": {"summarize": summarize, "classify": classify, "extract-keywords": extract_keywords, "echo": echo},
}
TEXT_TASKS = {"summarize", "classify", "extract-keywords"}


def _local(data: dict, provider: str) -> tuple[dict, str, object]:
    """(the provider's tasks, the task, its input) for a built-in provider."""
    tasks = PROVIDERS[provider]
    task = data.get("task")
    if not task:
        raise PermanentError(f"task: required, one of {', '.join(tasks)}")
    if not isinstance(task, str) or task not in tasks:
        raise PermanentError(f"task: {provider} cannot do {task!r} (it can: {', '.join(tasks)})")
    value = data.get("input", data.get("text"))
    if value is None or (task in TEXT_TASKS and not (isinstance(value, str) and words(value))):
        raise PermanentError(f"input: required{', a non-empty text' if task in TEXT_TASKS else ''} for {task}")
    return tasks, task, value


def _named(data: dict) -> str | None:
    """data.provider: the provider asked for first, or None."""
    name = data.get("provider")
    if name is not None and not isinstance(name, str):
        raise PermanentError(f"provider: expected a provider's name, got {name!r}")
    return name or None


def check(data: dict) -> None:
    """At submit (vq/submission/validation.py): a job for a built-in provider. Without
    `provider`, which one serves it depends on the type's configured HTTP providers,
    known where it runs; there only `task` is checked here."""
    provider = _named(data)
    if provider in PROVIDERS:
        _local(data, provider)
    elif provider is None and not (isinstance(data.get("task"), str) and data["task"]):
        raise PermanentError(f"task: required (the built-in provider's: {', '.join(PROVIDERS['local'])})")


def handle(ctx, data: dict) -> dict:
    provider = _named(data) or ("local" if not ctx.providers else None)
    if provider not in PROVIDERS:  # an HTTP provider: the one named first, then the type's
        return _remote(ctx, data)
    tasks, task, value = _local(data, provider)
    params = {**options(data), **{k: data[k] for k in ("sentences", "labels", "limit") if k in data}}
    ctx.progress(10, f"{provider}: {task}")
    ctx.log.info("ai-processing %s/%s", provider, task)
    output = tasks[task](value, params)
    ctx.progress(80, "task done")
    result = {"provider": provider, "task": task, "model": f"{provider}-heuristic", "output": output}
    path = write_json(ctx, "output.json", result)
    ctx.progress(100, "result saved")
    return {**result, "path": str(path), "artifacts": [str(path)]}


def _remote(ctx, data: dict) -> dict:
    """Providers declared in config: the request goes to the first that can take it, with
    failover (vq/providers/calls.py); the characters sent are the units priced."""
    value = data.get("input", data.get("text"))
    ctx.progress(10, f"sending {data.get('task')} to {', '.join(ctx.providers) or 'its provider'}")
    output = ctx.call_provider(
        {"task": data.get("task"), "input": value, "options": options(data)},
        units={"characters": len(value) if isinstance(value, str) else len(str(value or ""))},
    )
    provider = ctx.provider_used
    ctx.progress(80, f"{provider} answered")
    result = {"provider": provider, "task": data.get("task"), "model": output.get("model", provider), "output": output}
    path = write_json(ctx, "output.json", result)
    ctx.progress(100, "result saved")
    return {**result, "path": str(path), "artifacts": [str(path)]}
