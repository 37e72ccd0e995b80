"""Drill-down screens: a queue's jobs, one job, the dead-letter queue (a user's and the
limits: vq/tui/limits_screens.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from rich.tree import Tree
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from vq import capacity, groups, job_log_store
from vq.model import Status
from vq.tui import format as fmt
from vq.tui.live import Banner, LiveScreen
from vq.tui.tables import Cell, fill, selected_key

STATUS_FILTERS = [None, *(s.value for s in Status)]
RESULT_LINES, DATA_LINES, ERROR_LINES, TRACEBACK_LINES = 200, 40, 20, 40  # of a job's screen; the CLI has all
LOG_LINES, LOG_CELLS = 50, 300  # a job's own log on its screen: its last lines, each cut; `vq logs` has all
LOG_STYLE = {"DEBUG": "dim", "INFO": "cyan", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}
ERROR_CELLS = 60  # an error message in the dead-letter list, cut (after rendering) with an ellipsis


class JobActions(LiveScreen):
    """Retry, cancel and remove for a screen that knows its selected job."""

    def selected_job(self) -> str | None:
        raise NotImplementedError

    def action_retry(self) -> None:
        if job_id := self.selected_job():
            self.dashboard.act(self.services.retry, job_id)

    def action_cancel_job(self) -> None:
        if job_id := self.selected_job():
            self.dashboard.confirm_cancel(job_id)

    def action_remove(self) -> None:
        if job_id := self.selected_job():
            self.dashboard.confirm(f"Remove job {job_id} with its result and artifacts?", self.services.remove, job_id)


class JobList(LiveScreen):
    """A screen whose table lists jobs (`TABLE`): enter or a click opens the job."""

    TABLE = ""

    def selected_job(self) -> str | None:
        return selected_key(self.query_one(f"#{self.TABLE}", DataTable))

    def action_open_job(self) -> None:
        if job_id := self.selected_job():
            self.app.push_screen(JobScreen(job_id))

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_job()


class FilteredPages(LiveScreen):
    """A list filtered by user and by a cycled value (a job's status, a batch's state), a page
    at a time: the keys the job and batch lists share. `f` asks for the user, `n`/`b` page."""

    ITEMS = "jobs"  # what the user prompt says is listed

    def __init__(self) -> None:
        super().__init__()
        self.user_filter: str | None = None
        self.page = 0

    def cycled(self, choices: Sequence[str | None], current: str | None) -> str | None:
        """The next of `choices` after `current`, back to the first page."""
        self.page = 0
        return choices[(list(choices).index(current) + 1) % len(choices)]

    def action_filter_user(self) -> None:
        def chosen(user: str | None) -> None:
            if user is not None:
                self.user_filter, self.page = user.strip() or None, 0
                self.reload()

        self.dashboard.prompt(f"Only {self.ITEMS} of user (empty: all users)", chosen)

    def action_page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self.reload()


JOB_ACTION_KEYS = [
    Binding("r", "retry", "Retry"),
    Binding("x", "cancel_job", "Cancel"),
    Binding("delete", "remove", "Remove"),
]


class QueueScreen(JobList, JobActions, FilteredPages):
    """A job type's jobs, newest first, filtered by status and user, a page at a time."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_job", "Detail"),
        Binding("s", "next_status", "Status filter"),
        Binding("f", "filter_user", "User filter"),
        Binding("n", "page(1)", "Next page"),
        Binding("b", "page(-1)", "Prev page"),
        *JOB_ACTION_KEYS,
    ]

    TABLE = "jobs"

    def __init__(self, job_type: str):
        super().__init__()
        self.job_type = job_type
        self.status_filter: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table: DataTable[Cell] = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "status", "user", "priority", "progress", "attempts", "created")
        yield table
        yield Footer()

    def fetch(self) -> list[dict]:
        return self.services.queue_jobs(self.job_type, self.status_filter, self.user_filter, self.page)

    def summary(self, data: list[dict]) -> Text:
        line = Text(fmt.literal(self.job_type), style="bold")
        line.append(f"  status: {self.status_filter or 'all'}  user: ")
        line.append(fmt.literal(self.user_filter or "all"))
        line.append(f"  page {self.page + 1}  ({len(data)} shown)")
        return line

    def show(self, data: list[dict]) -> None:
        fill(
            self.query_one("#jobs", DataTable),
            [
                (
                    v["id"],
                    [
                        fmt.short(v["id"]),
                        fmt.status(v["status"]),
                        v["userId"],
                        v["priority"],
                        fmt.percent(v["progress"].get("percent")),
                        f"{v['attempts']}/{v['maxAttempts']}",
                        (v["createdAt"] or "")[:19].replace("T", " "),
                    ],
                )
                for v in data
            ],
        )

    def action_next_status(self) -> None:
        self.status_filter = self.cycled(STATUS_FILTERS, self.status_filter)
        self.reload()


class JobScreen(JobActions, LiveScreen):
    """One job: live progress, timings, attempts, why it waits, its deadline, limit groups and
    resources (needed, held), error and traceback, history, dependencies."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), *JOB_ACTION_KEYS, Binding("b", "open_batch", "Batch")]

    def __init__(self, job_id: str):
        super().__init__()
        self.job_id = job_id
        self.batch_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        yield ProgressBar(total=100, show_eta=False, id="progress")
        with VerticalScroll():
            yield Static(id="detail")
            yield Static(id="tree")
            yield Static(id="timeline")
            yield Static(id="log")
        yield Footer()

    def selected_job(self) -> str | None:
        return self.job_id

    def fetch(self) -> dict:
        view = self.services.job(self.job_id)
        self.job_id = view["id"]  # a typed prefix is resolved once; actions name the whole id
        self.batch_id = view.get("batchId")
        return view

    def action_open_batch(self) -> None:
        from vq.tui.batch_screens import BatchScreen

        if self.batch_id:
            self.app.push_screen(BatchScreen(self.batch_id))
        else:
            self.notify("this job is not in a batch", timeout=3)

    def summary(self, v: dict) -> Text:
        line = Text(fmt.literal(v["jobType"]) + " ", style="bold")
        line.append(v["id"] + "  ")
        line.append_text(fmt.status(v["status"]))
        if v["progress"].get("message"):
            message = fmt.cell(v["progress"]["message"])
            message.stylize("dim")
            line.append("  ")
            line.append_text(message)
        return line

    def show(self, v: dict) -> None:
        self.query_one("#progress", ProgressBar).update(
            progress=v["progress"]["percent"] if isinstance(v["progress"].get("percent"), (int, float)) else 0
        )
        self.query_one("#detail", Static).update(Text("\n").join(_detail(v)))
        self.query_one("#tree", Static).update(_tree(v["tree"]) if v["tree"].get("dependsOn") else "")
        self.query_one("#timeline", Static).update(_timeline(v["timeline"]))
        self.query_one("#log", Static).update(_log(v.get("log") or [], v["id"]))


def _detail(v: dict) -> list[Text]:
    """The job's fields, error, traceback, result and data: every value literal text."""
    more = f": vq show {v['id']} --json"
    lines = [
        fmt.fields(
            ("user", v["userId"]),
            ("project", v["projectId"]),
            ("priority", v["priority"]),
            ("tier", v["subscription"]),
            ("queue", v["queue"]),
        ),
        fmt.fields(
            ("attempts", f"{v['attempts']}/{v['maxAttempts']}"),
            ("created", v["createdAt"]),
            ("started", v["startedAt"]),
            ("finished", v["finishedAt"]),
        ),
    ]
    if v.get("waitReason"):
        lines.append(fmt.fields(("waiting", v["waitReason"]), ("position", v.get("position"))))
    if v.get("deadline"):
        lines.append(fmt.fields(("deadline", f"{v['deadline']} ({fmt.deadline(v)})")))
    admission = [
        ("groups", groups.text_of(v.get("groups") or {})),
        ("needs", capacity.text_of(v.get("resources") or {})),
        ("holds", capacity.held_text(v.get("resourcesHeld") or {})),
    ]
    if any(value for _name, value in admission):
        lines.append(fmt.fields(*((name, value) for name, value in admission if value)))
    if v.get("scheduledFor"):
        lines.append(fmt.fields(("scheduled for", v["scheduledFor"])))
    if v.get("batchId") or v.get("checkpoint") or v.get("resumed"):
        lines.append(_batch_and_checkpoint(v))
    if v["error"]:
        error = v["error"]
        kinds = [error.get("category"), error.get("type")]
        if str(kinds[0]).lower() == str(kinds[1]).lower():
            kinds.pop()  # canceled: Canceled
        kind = " ".join(fmt.literal(part) for part in kinds if part)
        head = Text("error", style="bold red")
        head.append(f" {kind}:" if kind else ":", style="red")
        lines += [head, fmt.block(fmt.literal(error.get("message"), ""), ERROR_LINES, more=more)]
        if v.get("traceback"):
            lines.append(fmt.block(v["traceback"].rstrip(), TRACEBACK_LINES, keep="tail", more=more))
    if v["result"] is not None:
        lines += [
            Text("result", style="bold"),
            fmt.as_json(v["result"], RESULT_LINES, more=f": vq result {v['id']} --json"),
        ]
    if v.get("data"):
        lines += [Text("data", style="bold"), fmt.as_json(v["data"], DATA_LINES, more=more)]
    if v["artifactFiles"]:
        line = Text("artifacts ", style="bold")
        line.append_text(
            Text(", ").join(Text(f"{fmt.literal(a['name'])} ({a['bytes']:,} B)") for a in v["artifactFiles"])
        )
        lines.append(line)
    return lines


def _batch_and_checkpoint(v: dict) -> Text:
    """The job's batch (b opens it), its checkpoint kept for the next attempt (size, when,
    which attempt saved it) or `none kept`, and the checkpoint this attempt resumed from:
    `vq show`'s fields (vq/checkpoints.py)."""
    pairs: list[tuple[str, object]] = []
    if v.get("batchId"):
        pairs.append(("batch", v["batchId"]))
    kept = v.get("checkpoint")
    pairs.append(
        (
            "checkpoint",
            f"{kept['bytes']:,} B saved {fmt.literal(kept['at'])} by attempt {kept['attempt']}"
            if kept
            else "none kept",
        )
    )
    resumed = v.get("resumed")
    if resumed:
        pairs.append(
            (
                "resumed",
                f"attempt {resumed['attempt']} from the checkpoint saved {fmt.literal(resumed['checkpointAt'])}",
            )
        )
    return fmt.fields(*pairs)


def _timeline(steps: list[dict]) -> Text:
    if not steps:
        return Text("no history yet (the archiver writes it within a second)", style="dim")
    lines = [Text("history", style="bold")]
    for s in steps:
        line = Text(
            f"  {fmt.literal(s['at'])[11:23]}  {fmt.literal(s['from_status'], '·')} → "
            f"{fmt.literal(s['to_status'] or s['event'])}"
        )
        if s.get("reason"):
            line.append("  " + fmt.literal(s["reason"]))
        lines.append(line)
    return Text("\n").join(lines)


def _log(lines: list[dict], job_id: str) -> Text:
    """The job's own log (what its handler logged), its last LOG_LINES lines, each literal
    and cut to one screen line; live while the job runs (the screen's refresh)."""
    if not lines:
        return Text("")
    shown = [Text("log", style="bold")]
    if len(lines) > LOG_LINES:
        shown.append(Text(f"… {len(lines) - LOG_LINES} earlier line(s): vq logs {job_id}", style="dim"))
    for line in lines[-LOG_LINES:]:
        if "dropped" in line:
            shown.append(Text(f"  … {line['dropped']} line(s) dropped (limits.maxLogLines)", style="dim"))
            continue
        text = Text(f"  {datetime.fromtimestamp(line['time'], UTC).strftime('%H:%M:%S.%f')[:-3]} ", style="dim")
        text.append(f"{line['level']:<8} ", style=LOG_STYLE.get(line["level"], ""))
        text.append(job_log_store.printable(line["message"]))  # newlines and escapes spelt out
        text.truncate(LOG_CELLS, overflow="ellipsis")
        shown.append(text)
    return Text("\n").join(shown)


def _tree(node: dict, tree: Tree | None = None) -> Tree:
    label = Text(f"{fmt.literal(node['jobType'])} {fmt.short(node['id'])} ")
    label.append_text(fmt.status(node["status"]))
    branch = Tree(label) if tree is None else tree.add(label)
    for child in node.get("dependsOn", []):
        _tree(child, branch)
    return branch


class DeadLetterScreen(JobList, LiveScreen):
    """Jobs that failed for good, newest first; retry one or all."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_job", "Detail"),
        Binding("r", "retry", "Retry"),
        Binding("a", "retry_all", "Retry all"),
    ]
    TABLE = "dead"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table: DataTable[Cell] = DataTable(id="dead", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "type", "user", "category", "error", "ended")
        yield table
        yield Footer()

    def fetch(self) -> list[dict]:
        return self.services.dead_letters()

    def summary(self, data: list[dict]) -> Text:
        return Text.assemble(("dead-letter queue", "bold"), f"  {len(data)} job(s)")

    def show(self, data: list[dict]) -> None:
        fill(
            self.query_one("#dead", DataTable),
            [
                (
                    v["id"],
                    [
                        fmt.short(v["id"]),
                        v["jobType"],
                        v["userId"],
                        (v["error"] or {}).get("category"),
                        fmt.cell((v["error"] or {}).get("message"), ERROR_CELLS),
                        (v["finishedAt"] or "")[11:19],
                    ],
                )
                for v in data
            ],
        )

    def action_retry(self) -> None:
        if job_id := self.selected_job():
            self.dashboard.act(self.services.retry_dead, [job_id])

    def action_retry_all(self) -> None:
        self.dashboard.confirm("Retry every job in the dead-letter queue?", self.services.retry_dead, None)
