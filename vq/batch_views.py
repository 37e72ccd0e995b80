"""How a batch looks to its readers (`vq batch show` and `list`, /api/batches, the dashboard):
its record, counts and callbacks as one dict, built in one place so the listing and the
single batch never disagree."""

from __future__ import annotations

import json

from vq.batch_callbacks import KINDS

STATES = ("open", "closed", "complete")
"""open: takes more jobs; closed: takes none, some still pending; complete: closed and every job ended."""


def text_map(raw: dict) -> dict[str, str]:
    """A hash as Redis answered it (bytes or text), as text."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


def state_of(record: dict) -> str:
    if record.get("completedAt"):
        return "complete"
    return "closed" if record.get("closed") == "1" else "open"


def header(record: dict, total: int, counted: int) -> dict:
    """The batch without its jobs: `total` of them are members, `counted` of those ended."""
    return {
        "id": record["id"],
        "userId": record["userId"],
        "description": record.get("description"),
        "meta": json.loads(record["meta"]) if record.get("meta") else {},
        "state": state_of(record),
        "open": record.get("closed") != "1",
        "complete": bool(record.get("completedAt")),
        "createdAt": int(record["createdAt"]),
        "closedAt": int(record["closedAt"]) if record.get("closedAt") else None,
        "completedAt": int(record["completedAt"]) if record.get("completedAt") else None,
        "counts": {
            "total": total,
            **{name: int(record.get(name, 0)) for name in ("done", "failed", "canceled")},
            "pending": total - counted,
        },
        "callbacks": {kind: callback_view(record, kind) for kind in KINDS if record.get(f"cb:{kind}")},
    }


def callback_view(record: dict, kind: str) -> dict:
    spec = json.loads(record[f"cb:{kind}"])
    delivered = record.get(f"delivered:{kind}")
    return {
        **spec,
        "fired": bool(record.get(f"fired:{kind}")),
        "delivered": json.loads(delivered) if delivered else None,
        "undelivered": record.get(f"undelivered:{kind}"),
    }


def fired_text(view: dict) -> str:
    """`1/2 fired`: how many of the batch's callbacks fired; `-`: it has none."""
    callbacks = view["callbacks"]
    if not callbacks:
        return "-"
    return f"{sum(1 for cb in callbacks.values() if cb['fired'])}/{len(callbacks)} fired"
