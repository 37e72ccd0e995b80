"""How a job, a list of jobs and a dependency tree look to a person."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.tree import Tree

from vq.cli.output import out, status_text, table


def _short(value, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_job(view: dict) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    progress = view.get("progress") or {}
    rows = [
        ("id", view["id"]),
        ("type", view["jobType"]),
        ("status", status_text(view["status"])),
        ("priority", view.get("priority")),
        ("user", view.get("userId")),
        ("project", view.get("projectId")),
        ("progress", f"{progress.get('percent', 0):.0f}%" + (f"  {escape(progress['message'])}" if progress.get("message") else "")),
        ("waiting for", view.get("waitReason")),
        ("position", _place(view)),
        ("aged to", view.get("agedTo")),
        ("attempts", f"{view['attempts']}/{view['maxAttempts']}"),
        ("created", view.get("createdAt")),
        ("scheduled for", view.get("scheduledFor")),
        ("enqueued", view.get("enqueuedAt")),
        ("started", view.get("startedAt")),
        ("finished", view.get("finishedAt")),
        ("depends on", ", ".join(view.get("dependsOn") or []) or None),
        ("parent", view.get("parentId")),
        ("steps", f"{len(view['children'])} child jobs" if view.get("children") else None),
        ("provider", view.get("provider")),
        ("cost", _cost(view) if view.get("provider") else None),
    ]
    for name, value in rows:
        if value not in (None, ""):
            grid.add_row(name, str(value) if name == "status" or name == "progress" else escape(str(value)))
    if view.get("error"):
        e = view["error"]
        grid.add_row("error", f"[red]{escape(e.get('category', ''))}: {escape(e.get('message', ''))}[/]")
    if view.get("result") is not None:
        grid.add_row("result", escape(_short(view["result"], 200)))
    if view.get("trimmed"):
        grid.add_row("trimmed", "[dim]no longer in Redis (its retention, removeOnComplete / removeOnFail); "
                                "shown from the history database, which keeps no data or progress[/]")
    out.print(Panel(grid, title=f"job {view['id'][:12]}", expand=False))


def _place(view: dict) -> str | None:
    """Where a limited job stands: its place in its user's line and the users before it."""
    if view.get("position") is None:
        return None
    ahead = view.get("usersAhead")
    return f"{view['position']} in {view.get('userId') or 'its user'}'s line" + (
        f", {ahead} user(s) ahead" if ahead is not None else "")


def _cost(view: dict) -> str:
    from vq.costs import format_amount

    units = ", ".join(f"{v:g} {k}" for k, v in (view.get("units") or {}).items())
    return format_amount(view.get("costMicros") or 0) + (f"  ({units})" if units else "")


def render_jobs(views: list[dict]) -> None:
    if not views:
        out.print("[dim]no jobs[/]")
        return
    rows = [[v["id"], v["jobType"], status_text(v["status"]), v.get("priority"), v.get("userId"),
             f"{(v.get('progress') or {}).get('percent', 0):.0f}%", f"{v['attempts']}/{v['maxAttempts']}",
             v.get("createdAt")] for v in views]
    out.print(table(["id", "type", "status", "priority", "user", "progress", "attempts", "created"], rows))


def render_tree(node: dict) -> None:
    def label(n: dict) -> str:
        step = f" [dim]({escape(n['step'])})[/]" if n.get("step") else ""
        seen = " [dim]↑ shown above[/]" if n.get("repeated") else ""
        gone = " [dim](trimmed)[/]" if n.get("trimmed") else ""
        return f"{n['id'][:12]} {escape(n.get('jobType') or '?')}{step} {status_text(n['status'])}{gone}{seen}"

    root = Tree(label(node))

    def add(parent: Tree, n: dict) -> None:
        for child in n.get("dependsOn", []):
            add(parent.add(label(child)), child)

    add(root, node)
    out.print(root)
