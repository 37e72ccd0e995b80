"""How a job, a list of jobs and a dependency tree look to a person."""

from __future__ import annotations

import json

from vq import capacity, checkpoints, groups
from vq.cli.output import escape, out, status_text, table


def _short(value, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_job(view: dict) -> None:
    from rich.panel import Panel
    from rich.table import Table

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
        (
            "progress",
            f"{progress.get('percent', 0):.0f}%"
            + (f"  {escape(progress['message'])}" if progress.get("message") else ""),
        ),
        ("waiting for", view.get("waitReason")),
        ("position", _place(view)),
        ("aged to", view.get("agedTo")),
        ("attempts", f"{view['attempts']}/{view['maxAttempts']}"),
        ("created", view.get("createdAt")),
        ("scheduled for", view.get("scheduledFor")),
        ("deadline", _deadline(view)),
        ("groups", groups.text_of(view.get("groups") or {})),
        ("needs", capacity.text_of(view.get("resources") or {})),
        ("holds", capacity.held_text(view.get("resourcesHeld") or {})),
        ("unique", _unique(view.get("unique"))),
        ("batch", view.get("batchId")),
        ("checkpoint", checkpoints.text_of(view)),
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
        grid.add_row(
            "trimmed",
            "[dim]no longer in Redis (its retention, removeOnComplete / removeOnFail); "
            "shown from the history database, which keeps no data or progress[/]",
        )
    out.print(Panel(grid, title=f"job {view['id'][:12]}", expand=False))


def format_ms(ms: int) -> str:
    """A duration as its largest whole unit: 600000 -> 10m, 1500 -> 1500ms."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _unique(unique: dict | None) -> str | None:
    """The job's uniqueKey and the mode that applied: `report-7 (simple, user)`,
    `sync (throttle 10m, user)`, `idx (debounce 30s, at most 5m; 4 submissions, global)`."""
    if not unique:
        return None
    mode = unique.get("mode") or "simple"
    if mode == "throttle" and unique.get("forMs"):
        mode += f" {format_ms(unique['forMs'])}"
    if mode == "debounce" and unique.get("debounceMs"):
        mode += f" {format_ms(unique['debounceMs'])}"
        if unique.get("debounceMaxMs"):
            mode += f", at most {format_ms(unique['debounceMaxMs'])}"
        mode += f"; {unique.get('submissions', 1)} submission" + ("s" if unique.get("submissions", 1) != 1 else "")
    return f"{unique.get('key')} ({mode}, {unique.get('scope') or 'user'})"


def _deadline(view: dict) -> str | None:
    """The deadline, and while the job waits how long is left (or that it has passed)."""
    if not view.get("deadline"):
        return None
    left = view.get("timeToDeadlineMs")
    if left is None:
        return view["deadline"]
    return f"{view['deadline']} ({'in ' + format(left / 1000, '.1f') + ' s' if left > 0 else 'passed'})"


def _place(view: dict) -> str | None:
    """Where a limited job stands: its place in its user's line and the users before it."""
    if view.get("position") is None:
        return None
    ahead = view.get("usersAhead")
    return f"{view['position']} in {view.get('userId') or 'its user'}'s line" + (
        f", {ahead} user(s) ahead" if ahead is not None else ""
    )


def _cost(view: dict) -> str:
    from vq.costs import format_amount

    units = ", ".join(f"{v:g} {k}" for k, v in (view.get("units") or {}).items())
    return format_amount(view.get("costMicros") or 0) + (f"  ({units})" if units else "")


def _parent(v: dict) -> str:
    """The pipeline parent a job is a step of, as `parent-id-prefix/step`; '-' for a job of its own."""
    if not v.get("parentId") and not v.get("step"):
        return "-"
    return f"{(v.get('parentId') or '?')[:12]}/{v.get('step') or '?'}"


def page_footer(listing: dict) -> str:
    """`41–60 of 1,204`: which of how many matching jobs the page shows."""
    shown = len(listing["jobs"])
    if not shown:
        return f"0 of {listing['total']:,}"
    first = listing["offset"] + 1
    return f"{first:,}–{listing['offset'] + shown:,} of {listing['total']:,}"


def render_jobs(listing: dict | list) -> None:
    views = listing["jobs"] if isinstance(listing, dict) else listing
    if not views:
        out.print("[dim]no jobs[/]" + (f" ({page_footer(listing)})" if isinstance(listing, dict) else ""))
        return
    rows = [
        [
            v["id"],
            v["jobType"],
            status_text(v["status"]),
            v.get("priority"),
            v.get("userId"),
            _parent(v),
            f"{(v.get('progress') or {}).get('percent', 0):.0f}%",
            f"{v['attempts']}/{v['maxAttempts']}",
            v.get("createdAt"),
        ]
        for v in views
    ]
    out.print(
        table(["id", "type", "status", "priority", "user", "parent/step", "progress", "attempts", "created"], rows)
    )
    if isinstance(listing, dict):
        out.print(page_footer(listing))


def render_tree(node: dict) -> None:
    def label(n: dict) -> str:
        step = f" [dim]({escape(n['step'])})[/]" if n.get("step") else ""
        seen = " [dim]↑ shown above[/]" if n.get("repeated") else ""
        gone = " [dim](trimmed)[/]" if n.get("trimmed") else ""
        return f"{n['id'][:12]} {escape(n.get('jobType') or '?')}{step} {status_text(n['status'])}{gone}{seen}"

    from rich.tree import Tree

    root = Tree(label(node))

    def add(parent: Tree, n: dict) -> None:
        for child in n.get("dependsOn", []):
            add(parent.add(label(child)), child)

    add(root, node)
    out.print(root)
