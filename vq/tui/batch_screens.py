"""Batches on the dashboard: every batch with its progress (`vq batch list`), and one batch
with its callbacks and jobs (`vq batch show`), read through the same service functions."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from vq.batch_views import STATES, fired_text
from vq.tui import format as fmt
from vq.tui.live import Banner, LiveScreen
from vq.tui.screens import JOB_ACTION_KEYS, FilteredPages, JobActions, JobList
from vq.tui.tables import Cell, fill, selected_key

STATE_FILTERS: list[str | None] = [None, *STATES]
STATE_STYLE = {"open": "yellow", "closed": "cyan", "complete": "green"}
OUTCOME_STYLE = {"done": "green", "failed": "red", "canceled": "dim"}


def when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def state(name: str) -> Text:
    return Text(name, style=STATE_STYLE.get(name, ""))


def counts_line(view: dict) -> Text:
    """`done 3  failed 1  canceled 0  pending 2 of 6`, each figure in its colour."""
    counts = view["counts"]
    line = Text()
    for name, style in (("done", "green"), ("failed", "red"), ("canceled", "dim"), ("pending", "")):
        line.append(f"{name} ")
        line.append(str(counts[name]), style=style if counts[name] else "")
        line.append("  ")
    line.append(f"of {counts['total']}")
    return line


class BatchesScreen(FilteredPages):
    """Every batch, newest first, filtered by state and user, a page at a time."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_batch", "Detail"),
        Binding("s", "next_state", "State filter"),
        Binding("f", "filter_user", "User filter"),
        Binding("n", "page(1)", "Next page"),
        Binding("b", "page(-1)", "Prev page"),
    ]

    ITEMS = "batches"

    def __init__(self) -> None:
        super().__init__()
        self.state_filter: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table: DataTable[Cell] = DataTable(id="batches", cursor_type="row", zebra_stripes=True)
        table.add_columns("batch", "user", "state", "done", "failed", "pending", "jobs", "fired", "created")
        yield table
        yield Footer()

    def fetch(self) -> dict:
        return self.services.batches(self.state_filter, self.user_filter, self.page)

    def summary(self, data: dict) -> Text:
        line = Text("batches", style="bold")
        line.append(f"  state: {self.state_filter or 'all'}  user: ")
        line.append(fmt.literal(self.user_filter or "all"))
        line.append(f"  page {self.page + 1}  ({len(data['batches'])} of {data['total']})")
        return line

    def show(self, data: dict) -> None:
        fill(
            self.query_one("#batches", DataTable),
            [
                (
                    v["id"],
                    [
                        fmt.short(v["id"]),
                        v["userId"],
                        state(v["state"]),
                        Text(str(v["counts"]["done"]), style="green" if v["counts"]["done"] else ""),
                        Text(str(v["counts"]["failed"]), style="red" if v["counts"]["failed"] else ""),
                        v["counts"]["pending"],
                        v["counts"]["total"],
                        fired_text(v).removesuffix(" fired"),  # callbacks fired / had: `1/2`
                        when(v["createdAt"])[5:16],
                    ],
                )
                for v in data["batches"]
            ],
        )

    def action_open_batch(self) -> None:
        if batch_id := selected_key(self.query_one("#batches", DataTable)):
            self.app.push_screen(BatchScreen(batch_id))

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_batch()

    def action_next_state(self) -> None:
        self.state_filter = self.cycled(STATE_FILTERS, self.state_filter)
        self.reload()


class BatchScreen(JobList, JobActions, LiveScreen):
    """One batch: its progress, each callback (fired, delivered), and its jobs with their
    outcome or status; enter opens a job, `c` closes an open batch (asks first)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_job", "Detail"),
        Binding("c", "close_batch", "Close batch"),
        *JOB_ACTION_KEYS,
    ]
    DEFAULT_CSS = """
    BatchScreen #batch-info { height: auto; max-height: 10; padding: 0 1; }
    BatchScreen DataTable { height: 1fr; }
    """
    TABLE = "batch-jobs"

    def __init__(self, batch_id: str):
        super().__init__()
        self.batch_id = batch_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        yield Static(id="batch-info")
        table: DataTable[Cell] = DataTable(id="batch-jobs", cursor_type="row", zebra_stripes=True)
        table.add_columns("job", "outcome / status")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#batch-jobs", DataTable).focus()  # the arrows move through the jobs
        super().on_mount()

    def fetch(self) -> dict:
        return self.services.batch(self.batch_id)

    def summary(self, v: dict) -> Text:
        line = Text("batch ", style="bold")
        line.append(v["id"] + "  ")
        line.append_text(state(v["state"]))
        line.append("  user ")
        line.append(fmt.literal(v["userId"]))
        return line

    def show(self, v: dict) -> None:
        self.query_one("#batch-info", Static).update(Text("\n").join(_detail(v)))
        fill(
            self.query_one("#batch-jobs", DataTable),
            [
                (
                    j["id"],
                    [
                        fmt.short(j["id"]),
                        Text(j["outcome"], style=OUTCOME_STYLE.get(j["outcome"], ""))
                        if j.get("outcome")
                        else fmt.status(j.get("status") or "-"),
                    ],
                )
                for j in v.get("jobs", [])
            ],
        )

    def action_close_batch(self) -> None:
        self.dashboard.confirm(
            f"Close batch {self.batch_id}? It takes no more jobs; on success and on complete may fire.",
            self.services.close_batch,
            self.batch_id,
        )


def _detail(v: dict) -> list[Text]:
    """The batch's description, counts, times and callbacks: every value literal text."""
    lines = []
    if v.get("description"):
        lines.append(Text(fmt.literal(v["description"]), style="italic"))
    lines.append(counts_line(v))
    lines.append(
        fmt.fields(
            ("created", when(v["createdAt"])), ("closed", when(v["closedAt"])), ("complete", when(v["completedAt"]))
        )
    )
    for kind, cb in v["callbacks"].items():
        line = Text(f"on {kind} ", style="bold")
        line.append(fmt.literal(cb.get("url") or cb.get("jobType")) + "  ")
        line.append_text(_delivery(cb))
        lines.append(line)
    return lines


def _delivery(cb: dict) -> Text:
    if cb["delivered"]:
        return Text(f"delivered {fmt.literal(cb['delivered'].get('jobId') or '')}".rstrip(), style="green")
    if cb["undelivered"]:
        return Text(f"not delivered: {fmt.literal(cb['undelivered'])}", style="red")
    return Text("fired, delivering", style="yellow") if cb["fired"] else Text("not fired", style="dim")
