"""Drill-down screens: a queue's jobs, one job, one user, the dead-letter queue."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from rich.tree import Tree
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from vq.model import Status
from vq.tui import format as fmt
from vq.tui.live import Banner, LiveScreen
from vq.tui.tables import fill, selected_key

STATUS_FILTERS = [None, *(s.value for s in Status)]


class _JobActions:
    """Retry, cancel and remove for a screen that knows its selected job."""

    def selected_job(self) -> str | None:
        raise NotImplementedError

    def action_retry(self) -> None:
        if job_id := self.selected_job():
            self.app.act(self.services.retry, job_id)

    def action_cancel_job(self) -> None:
        if job_id := self.selected_job():
            self.app.confirm(f"Cancel job {job_id}? A running job stops at its next progress report.",
                             self.services.cancel, job_id)

    def action_remove(self) -> None:
        if job_id := self.selected_job():
            self.app.confirm(f"Remove job {job_id} with its result and artifacts?", self.services.remove, job_id)


class _JobList:
    """A screen whose table lists jobs (`TABLE`): enter or a click opens the job."""

    TABLE = ""

    def selected_job(self) -> str | None:
        return selected_key(self.query_one(f"#{self.TABLE}", DataTable))

    def action_open_job(self) -> None:
        if job_id := self.selected_job():
            self.app.push_screen(JobScreen(job_id))

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_job()


JOB_ACTION_KEYS = [Binding("r", "retry", "Retry"), Binding("x", "cancel_job", "Cancel"),
                   Binding("delete", "remove", "Remove")]


class QueueScreen(_JobList, _JobActions, LiveScreen):
    """A job type's jobs, newest first, filtered by status and user, a page at a time."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open_job", "Detail"),
                Binding("s", "next_status", "Status filter"), Binding("f", "filter_user", "User filter"),
                Binding("n", "page(1)", "Next page"), Binding("b", "page(-1)", "Prev page"), *JOB_ACTION_KEYS]

    TABLE = "jobs"

    def __init__(self, job_type: str):
        super().__init__()
        self.job_type = job_type
        self.status_filter: str | None = None
        self.user_filter: str | None = None
        self.page = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "status", "user", "priority", "progress", "attempts", "created")
        yield table
        yield Footer()

    def fetch(self) -> list[dict]:
        return self.services.queue_jobs(self.job_type, self.status_filter, self.user_filter, self.page)

    def summary(self, data: list[dict]) -> str:
        return (f"[b]{self.job_type}[/]  status: {self.status_filter or 'all'}  "
                f"user: {escape(self.user_filter or 'all')}  "
                f"page {self.page + 1}  ({len(data)} shown)")

    def show(self, data: list[dict]) -> None:
        fill(self.query_one("#jobs", DataTable), [
            (v["id"], [v["id"], fmt.status(v["status"]), v["userId"] or "-", v["priority"] or "-",
                       f"{v['progress']['percent']:.0f}%", f"{v['attempts']}/{v['maxAttempts']}",
                       (v["createdAt"] or "")[:19].replace("T", " ")])
            for v in data])


    def action_next_status(self) -> None:
        self.status_filter = STATUS_FILTERS[(STATUS_FILTERS.index(self.status_filter) + 1) % len(STATUS_FILTERS)]
        self.page = 0
        self.reload()

    def action_filter_user(self) -> None:
        def chosen(user: str | None) -> None:
            if user is not None:
                self.user_filter, self.page = user.strip() or None, 0
                self.reload()
        self.app.prompt("Only jobs of user (empty: all users)", chosen)

    def action_page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self.reload()


class JobScreen(_JobActions, LiveScreen):
    """One job: live progress, timings, attempts, error and traceback, history, dependencies."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), *JOB_ACTION_KEYS]

    def __init__(self, job_id: str):
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        yield ProgressBar(total=100, show_eta=False, id="progress")
        with VerticalScroll():
            yield Static(id="detail")
            yield Static(id="tree")
            yield Static(id="timeline")
        yield Footer()

    def selected_job(self) -> str | None:
        return self.job_id

    def fetch(self) -> dict:
        view = self.services.job(self.job_id)
        self.job_id = view["id"]  # a typed prefix is resolved once; actions name the whole id
        return view

    def summary(self, v: dict) -> Text:
        line = Text(f"{v['jobType']} ", style="bold")
        line.append(v["id"] + "  ")
        line.append_text(fmt.status(v["status"]))
        if v["progress"].get("message"):
            line.append(f"  {v['progress']['message']}", style="dim")
        return line

    def show(self, v: dict) -> None:
        self.query_one("#progress", ProgressBar).update(progress=v["progress"]["percent"])
        lines = [
            f"[b]user[/] {escape(str(v['userId']))}  [b]project[/] {escape(str(v['projectId'] or '-'))}  "
            f"[b]priority[/] {v['priority']}  "
            f"[b]tier[/] {v['subscription']}  [b]queue[/] {v['queue']}",
            f"[b]attempts[/] {v['attempts']}/{v['maxAttempts']}  [b]created[/] {v['createdAt']}  "
            f"[b]started[/] {v['startedAt'] or '-'}  [b]finished[/] {v['finishedAt'] or '-'}",
        ]
        if v.get("waitReason"):
            lines.append(f"[b]waiting[/] {escape(str(v['waitReason']))} (position {v.get('position')})")
        if v.get("scheduledFor"):
            lines.append(f"[b]scheduled for[/] {v['scheduledFor']}")
        if v["error"]:
            lines.append(f"[red][b]error[/] {v['error'].get('category')}: {escape(str(v['error'].get('message')))}[/]")
            if v.get("traceback"):
                lines.append(escape("\n".join(v["traceback"].rstrip().splitlines()[-15:])))
        if v["result"] is not None:
            lines.append(f"[b]result[/] {escape(str(v['result'])[:400])}")
        if v["artifactFiles"]:
            lines.append("[b]artifacts[/] " + ", ".join(f"{escape(a['name'])} ({a['bytes']:,} B)"
                                                        for a in v["artifactFiles"]))
        self.query_one("#detail", Static).update("\n".join(lines))
        self.query_one("#tree", Static).update(_tree(v["tree"]) if v["tree"].get("dependsOn") else "")
        steps = v["timeline"]
        self.query_one("#timeline", Static).update(
            "[b]history[/]\n" + "\n".join(
                f"  {s['at'][11:23]}  {s['from_status'] or '·'} → {s['to_status'] or s['event']}"
                f"{'  ' + escape(s['reason']) if s.get('reason') else ''}" for s in steps)
            if steps else "[dim]no history yet (the archiver writes it within a second)[/]")


def _tree(node: dict, tree: Tree | None = None) -> Tree:
    label = Text(f"{node['jobType']} {fmt.short(node['id'])} ")
    label.append_text(fmt.status(node["status"]))
    branch = Tree(label) if tree is None else tree.add(label)
    for child in node.get("dependsOn", []):
        _tree(child, branch)
    return branch


class UserScreen(_JobList, _JobActions, LiveScreen):
    """A user's running jobs against their concurrency limit."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open_job", "Detail"),
                *JOB_ACTION_KEYS]

    TABLE = "running"

    def __init__(self, user_id: str):
        super().__init__()
        self.user_id = user_id

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table = DataTable(id="running", cursor_type="row")
        table.add_columns("id", "type", "progress", "started")
        yield table
        yield Footer()

    def fetch(self) -> dict:
        return self.services.user(self.user_id)

    def summary(self, data: dict) -> str:
        used = len(data["running"])
        colour = "red" if used >= data["limit"] else "green"
        return f"[b]{escape(self.user_id)}[/]  running [{colour}]{used}/{data['limit']}[/] (their concurrency limit)"

    def show(self, data: dict) -> None:
        fill(self.query_one("#running", DataTable), [
            (v["id"], [v["id"], v["jobType"], f"{v['progress']['percent']:.0f}%", (v["startedAt"] or "")[11:19]])
            for v in data["running"]])



class DeadLetterScreen(_JobList, LiveScreen):
    """Jobs that failed for good, newest first; retry one or all."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open_job", "Detail"),
                Binding("r", "retry", "Retry"), Binding("a", "retry_all", "Retry all")]
    TABLE = "dead"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("")
        table = DataTable(id="dead", cursor_type="row", zebra_stripes=True)
        table.add_columns("id", "type", "user", "category", "error", "ended")
        yield table
        yield Footer()

    def fetch(self) -> list[dict]:
        return self.services.dead_letters()

    def summary(self, data: list[dict]) -> str:
        return f"[b]dead-letter queue[/]  {len(data)} job(s)"

    def show(self, data: list[dict]) -> None:
        fill(self.query_one("#dead", DataTable), [
            (v["id"], [v["id"], v["jobType"], v["userId"] or "-", (v["error"] or {}).get("category", "-"),
                       ((v["error"] or {}).get("message") or "")[:60], (v["finishedAt"] or "")[11:19]])
            for v in data])


    def action_retry(self) -> None:
        if job_id := self.selected_job():
            self.app.act(self.services.retry_dead, [job_id])

    def action_retry_all(self) -> None:
        self.app.confirm("Retry every job in the dead-letter queue?", self.services.retry_dead, None)
