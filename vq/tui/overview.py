"""The dashboard's first screen: one row per job type, then workers, hosts (resources in
use), breakers and recurring jobs; the banner says how the whole system is."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane

from vq import capacity, workers
from vq.tui import format as fmt
from vq.tui.live import Banner, LiveScreen
from vq.tui.tables import Cell, fill, selected_key

SPARK_SHOWN = 10  # minutes of the throughput sparkline that fit at 80 columns

QUEUE_COLUMNS = ("type", "wait", "lim", "run", "delay", "defer", "fail", "done", "ended/min")
"""Compact, to fit 80 columns: waiting, limited (waiting for a slot), running/limit,
delayed, deferred (dependencies), failed, finished, and a sparkline of jobs ended per
minute. The type's name is coloured by its health and marked ⏸ when paused."""


class OverviewScreen(LiveScreen):
    # At 80 columns the footer holds about seven keys: the two that explain the rest come first
    # (the app's own q and ?, named here so they lead; `?` lists every key).
    BINDINGS = [
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
        Binding("enter", "open_queue", "Jobs"),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("c", "clear", "Clear"),
        Binding("d", "dead_letters", "Dead letters"),
        Binding("u", "user", "User"),
        Binding("j", "job", "Job"),
        Binding("l", "limits", "Limits"),
        Binding("b", "batches", "Batches"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner("connecting to Redis…")
        queues: DataTable[Cell] = DataTable(id="queues", cursor_type="row", zebra_stripes=True)
        queues.add_columns(*QUEUE_COLUMNS)
        yield queues
        with TabbedContent(id="below"):
            with TabPane("Workers", id="workers-tab"):
                yield DataTable(id="workers", cursor_type="row")
            with TabPane("Hosts", id="hosts-tab"):
                yield DataTable(id="hosts", cursor_type="row")
            with TabPane("Breakers", id="breakers-tab"):
                yield DataTable(id="breakers", cursor_type="row")
            with TabPane("Recurring", id="recurring-tab"):
                yield DataTable(id="recurring", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#workers", DataTable).add_columns(
            "worker", "state", "current job", "heartbeat", "queues", "resources in use/has"
        )
        self.query_one("#hosts", DataTable).add_columns("host", "workers alive", "resources in use/has")
        self.query_one("#breakers", DataTable).add_columns(
            "provider", "state", "failures", "next probe", "calls 15m", "errors", "p50 ms", "p95 ms"
        )
        self.query_one("#recurring", DataTable).add_columns("id", "name", "type", "cron", "tz", "next run")
        self.query_one("#queues", DataTable).focus()
        super().on_mount()

    def fetch(self) -> dict:
        return self.services.overview()

    def summary(self, data: dict) -> Text:
        workers = data["workers"]
        alive = sum(1 for w in workers if w["alive"])
        line = fmt.health(data["status"])
        line.append(f"   workers {alive}/{len(workers)} alive", style="")
        if data["redis"].get("memoryRatio") is not None:
            line.append(f"   Redis memory {data['redis']['memoryRatio']:.0%} of maxmemory", style="")
        if data["reasons"]:
            line.append("   " + "; ".join(fmt.literal(r) for r in data["reasons"][:2]), style="dim")
        return line

    def show(self, data: dict) -> None:
        self.data = data
        fill(
            self.query_one("#queues", DataTable),
            [
                (
                    row["jobType"],
                    [
                        fmt.queue_name(row["jobType"], row["health"], row["paused"]),
                        row["queued"],
                        row["limited"],
                        f"{row['running']}/{row['limit']}",
                        row["scheduled"],
                        row["deferred"],
                        Text(str(row["failed"]), style="red" if row["failed"] else ""),
                        row["finished"],
                        fmt.sparkline(row["throughput"][-SPARK_SHOWN:]),
                    ],
                )
                for row in data["queues"]
            ],
        )
        fill(
            self.query_one("#workers", DataTable),
            [
                (
                    w["name"],
                    [
                        w["name"],
                        w["state"],
                        fmt.short(w["currentJob"], 32),
                        Text(fmt.age(w["heartbeatAgeMs"]), style="" if w["alive"] else "red"),
                        str(len(w["queues"])),
                        capacity.usage_text(w["resources"]["capacity"], w["resources"]["inUse"])
                        if w.get("resources")
                        else "",
                    ],
                )
                for w in data["workers"]
            ],
        )
        fill(
            self.query_one("#hosts", DataTable),
            [
                (
                    h["host"],
                    [h["host"], f"{h['alive']}/{h['workers']}", workers.resources_text(h["resources"])],
                )
                for h in data["hosts"]
            ],
        )
        fill(
            self.query_one("#breakers", DataTable),
            [
                (
                    b["provider"],
                    [
                        b["provider"],
                        Text(b["state"], style="red" if b["state"] == "open" else "green"),
                        f"{b['failures']}/{b['threshold']}",
                        b["nextProbe"] or "-",
                        str(b.get("calls", 0)),
                        "-" if b.get("errorRate") is None else f"{b['errorRate']:.0%}",
                        str(b.get("p50Ms") or "-"),
                        str(b.get("p95Ms") or "-"),
                    ],
                )
                for b in data["breakers"]
            ],
        )
        fill(
            self.query_one("#recurring", DataTable),
            [
                (
                    r["id"],
                    [
                        r["id"],
                        r["name"] or "",
                        r["jobType"],
                        r["cronExpression"],
                        r["tz"],
                        "paused" if r["paused"] else fmt.until(r["nextRunMs"]),
                    ],
                )
                for r in data["recurring"]
            ],
        )
        tabs = self.query_one(TabbedContent)
        opened = sum(1 for b in data["breakers"] if b["state"] == "open")
        tabs.get_tab("breakers-tab").label = f"Breakers ({opened} open)" if opened else "Breakers"
        tabs.get_tab("workers-tab").label = f"Workers ({len(data['workers'])})"
        tabs.get_tab("hosts-tab").label = f"Hosts ({len(data['hosts'])})"
        tabs.get_tab("recurring-tab").label = f"Recurring ({len(data['recurring'])})"

    # --- actions ---------------------------------------------------------------------
    def selected_type(self) -> str | None:
        return selected_key(self.query_one("#queues", DataTable))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "queues":  # enter or a click on a queue's row
            self.action_open_queue()

    def action_open_queue(self) -> None:
        from vq.tui.screens import QueueScreen

        job_type = self.selected_type()
        if job_type:
            self.app.push_screen(QueueScreen(job_type))

    def action_pause(self) -> None:
        if job_type := self.selected_type():
            self.dashboard.act(self.services.pause, job_type)

    def action_resume(self) -> None:
        if job_type := self.selected_type():
            self.dashboard.act(self.services.resume, job_type)

    def action_clear(self) -> None:
        if job_type := self.selected_type():
            self.dashboard.confirm(
                f"Delete every waiting job of {job_type}? Running and ended jobs stay.", self.services.clear, job_type
            )

    def action_dead_letters(self) -> None:
        from vq.tui.screens import DeadLetterScreen

        self.app.push_screen(DeadLetterScreen())

    def action_user(self) -> None:
        self.dashboard.open_user()

    def action_job(self) -> None:
        self.dashboard.open_job()

    def action_limits(self) -> None:
        from vq.tui.limits_screens import LimitsScreen

        self.app.push_screen(LimitsScreen())

    def action_batches(self) -> None:
        from vq.tui.batch_screens import BatchesScreen

        self.app.push_screen(BatchesScreen())
