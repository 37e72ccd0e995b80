"""A parameter's value source (job types, job ids, recurring ids, a static list) turned into
the values a TAB offers; both the fast path and typer's completers (vq/cli/completers.py) ask here.
"""

from __future__ import annotations


def source_values(source: str, static: dict, config_path: str | None, params: dict, incomplete: str) -> list[str]:
    """What a parameter with this source completes `incomplete` to (both paths use this)."""
    if source == "job-type-lists":  # a comma-separated list: complete its last item
        head = incomplete[: incomplete.rfind(",") + 1]
        done = set(incomplete.split(",")[:-1])
        values = [head + t for t in dynamic_values("job-types", static, config_path, params) if t not in done]
    elif source in static:
        values = static[source]
    else:
        values = dynamic_values(source, static, config_path, params)
    return [v for v in values if v.startswith(incomplete)]


def dynamic_values(source: str, static: dict, config_path: str | None, params: dict) -> list[str]:
    """The values of a config or Redis source; [] (never an error) when they cannot be had."""
    from vq.cli.complete_config import config_values  # here: a static list's TAB never loads them
    from vq.cli.complete_redis import redis_values

    try:
        if source == "limit-names" and params.get("kind") not in ("type", "group", "group-rate"):
            return list(static.get("tiers") or []) if params.get("kind") in ("tier", "tier-weight") else []
        config = config_values(config_path, static.get("builtin-types"))
        if source == "limit-names" and params.get("kind") in ("group", "group-rate"):
            return list(config.get("limit_groups") or [])
        if source in ("job-types", "limit-names"):
            return list(config.get("job_types") or [])
        found = redis_values(config)
        if source == "job-ids":
            return list(found.get("job_ids") or [])
        if source == "history-job":
            return ["export", *(found.get("job_ids") or [])]
        if source == "recurring":
            out: list[str] = []
            for rid, name in found.get("recurring") or []:
                for value in (rid, name):
                    if value and value not in out:
                        out.append(value)
            return out
    except Exception:  # noqa: BLE001 -- a TAB never fails: no values instead
        return []
    return []
