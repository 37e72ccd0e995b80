"""Who runs and who waits against which limit: one user's screen, and the limits in force
(types, users with their weights, limit groups per key, resources of the live workers) as
`vq limits` shows them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static

from vq.tui import format as fmt
from vq.tui.live import Banner, LiveScreen
from vq.tui.screens import JOB_ACTION_KEYS, JobActions, JobList
from vq.tui.tables import Cell, fill, selected_key


def _rate_used(row: dict) -> Text:
    """A group key's starts in its rate's window: `3 of 10/1m`, red when spent; `-`: no rate."""
    if not row.get("rate"):
        return Text("-")
    allowed = int(str(row["rate"]).partition("/")[0])
    return Text(f"{row['starts']} of {row['rate']}", style="red" if row["starts"] >= allowed else "green")


def _used(running: int, limit: int | None) -> Text:
    """`2/4`, red when full, yellow when nearly (as `vq limits` colours it); `2/-`: no limit."""
    if limit is None:
        return Text(f"{running}/-")
    return Text(
        f"{running}/{limit}", style="red" if running >= limit else "yellow" if running >= 0.8 * limit else "green"
    )


class UserScreen(JobList, JobActions, LiveScreen):
    """A user's running jobs against their concurrency limit, and their jobs waiting in line
    with why each waits."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open_job", "Detail"), *JOB_ACTION_KEYS]
    DEFAULT_CSS = """
    UserScreen DataTable { height: 1fr; border-title-align: left; }
    """

    TABLE = "running"

    def __init__(self, user_id: str):
        super().__init__()
        self.user_id = user_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        running: DataTable[Cell] = DataTable(id="running", cursor_type="row")
        running.add_columns("id", "type", "progress", "started")
        running.border_title = "running"
        yield running
        waiting: DataTable[Cell] = DataTable(id="waiting", cursor_type="row")
        waiting.add_columns("id", "type", "status", "priority", "deadline", "waiting for")
        waiting.border_title = "waiting"
        yield waiting
        yield Footer()

    def selected_job(self) -> str | None:
        """The job under the cursor of the table in focus (running, or waiting)."""
        focused = self.focused if isinstance(self.focused, DataTable) else self.query_one("#running", DataTable)
        return selected_key(focused)

    def fetch(self) -> dict:
        return self.services.user(self.user_id)

    def summary(self, data: dict) -> Text:
        used = len(data["running"])
        line = Text(fmt.literal(self.user_id), style="bold")
        line.append("  running ")
        line.append(f"{used}/{data['limit']}", style="red" if used >= data["limit"] else "green")
        line.append(" (their concurrency limit)")
        line.append(f"  waiting {data['waitingCount']}  weight {data['weight']}")
        return line

    def show(self, data: dict) -> None:
        fill(
            self.query_one("#running", DataTable),
            [
                (
                    v["id"],
                    [
                        fmt.short(v["id"]),
                        v["jobType"],
                        fmt.percent(v["progress"].get("percent")),
                        (v["startedAt"] or "")[11:19],
                    ],
                )
                for v in data["running"]
            ],
        )
        fill(
            self.query_one("#waiting", DataTable),
            [
                (
                    v["id"],
                    [
                        fmt.short(v["id"]),
                        v["jobType"],
                        fmt.status(v["status"]),
                        v["agedTo"] or v["priority"],
                        fmt.deadline(v),
                        v["waitReason"],
                    ],
                )
                for v in data["waiting"]
            ],
        )
        shown = len(data["waiting"])
        more = f", the first {shown} shown" if shown < data["waitingCount"] else ""
        self.query_one("#waiting", DataTable).border_title = f"waiting ({data['waitingCount']}{more})"


class LimitsScreen(LiveScreen):
    """The limits in force and how full each is: job types, active users (with their tier and
    weight), limit groups per key, and the resources of the live workers."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    LimitsScreen DataTable { height: auto; max-height: 12; margin-bottom: 1; border-title-align: left; }
    LimitsScreen Static { padding: 0 1; }
    """
    TABLES = {
        "limit-types": ("job types", ("type", "running/limit", "waiting")),
        "limit-users": ("active users", ("user", "tier", "running/limit", "waiting", "weight")),
        "limit-groups": ("limit groups", ("group", "key", "running/limit", "waiting", "starts/rate")),
        "limit-resources": ("resources (live workers)", ("resource", "in use/has", "workers")),
    }

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        with VerticalScroll():
            for table_id, (title, columns) in self.TABLES.items():
                table: DataTable[Cell] = DataTable(id=table_id, cursor_type="row")
                table.add_columns(*columns)
                table.border_title = title
                yield table
            yield Static(id="limit-notes")
        yield Footer()

    def fetch(self) -> dict:
        return self.services.limits()

    def summary(self, data: dict) -> Text:
        return Text.assemble(
            ("limits", "bold"),
            f"  {len(data['types'])} type(s), {len(data['users'])} active user(s), "
            f"{len(data['groups'])} group(s), {len(data['resources'])} resource(s)",
        )

    def show(self, data: dict) -> None:
        fill(
            self.query_one("#limit-types", DataTable),
            [(t["jobType"], [t["jobType"], _used(t["running"], t["limit"]), t["waiting"]]) for t in data["types"]],
        )
        fill(
            self.query_one("#limit-users", DataTable),
            [
                (u["userId"], [u["userId"], u["tier"], _used(u["running"], u["limit"]), u["waiting"], u["weight"]])
                for u in data["users"]
            ],
        )
        fill(
            self.query_one("#limit-groups", DataTable),
            [
                (
                    f"{g['group']}={row['key']}",
                    [g["group"], row["key"], _used(row["running"], row["limit"]), row["waiting"], _rate_used(row)],
                )
                for g in data["groups"]
                for row in g["keys"]
            ],
        )
        fill(
            self.query_one("#limit-resources", DataTable),
            [
                (r["resource"], [r["resource"], f"{r['inUse']:g}/{r['capacity']:g}", r["workers"]])
                for r in data["resources"]
            ],
        )
        notes = [
            fmt.fields(("per-user limit by tier", ", ".join(f"{k} {v}" for k, v in data["tiers"].items()))),
            fmt.fields(
                ("weight (starts per turn) by tier", ", ".join(f"{k} {v}" for k, v in data["tierWeights"].items()))
            ),
        ]
        if data["groups"]:
            defaults = ", ".join(f"{g['group']} {fmt.literal(g['default'])}" for g in data["groups"])
            notes.append(fmt.fields(("groups' default limit per key", defaults)))
            if rates := ", ".join(f"{g['group']} {g['defaultRate']}" for g in data["groups"] if g.get("defaultRate")):
                notes.append(fmt.fields(("groups' default rate per key", rates)))
        self.query_one("#limit-notes", Static).update(Text("\n").join(notes))
