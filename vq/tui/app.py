"""The dashboard application: screens, key bindings, command palette and actions.

Every read runs in a worker thread (vq/tui/live.py) and every action too (`act`), so
the UI never waits on Redis. Actions call the same service functions as the CLI through
`Services`, and a destructive one asks first (`confirm`). What the app cannot handle ends
it: the error is kept in `crash` for `vq tui` to report in one line and exit 1.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import redis
from rich.console import Console
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import WorkerFailed

from vq.errors import VqError
from vq.tui import format as fmt
from vq.tui.dialogs import CancelScreen, ConfirmScreen, HelpScreen, PromptScreen
from vq.tui.overview import OverviewScreen
from vq.tui.services import Services


class VqDashboard(App):
    TITLE = "vq"
    SUB_TITLE = "job queue dashboard"
    CSS = """
    #queues { height: 1fr; min-height: 6; }
    #below { height: 10; }
    ProgressBar { padding: 0 1; }
    Static#detail, Static#tree, Static#timeline, Static#log { padding: 0 1; }
    """
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("question_mark", "help", "Help")]

    def __init__(self, services: Services, refresh_every: float = 1.0, theme: str = "textual-dark"):
        super().__init__()
        self.services = services
        self.refresh_every = refresh_every
        self.theme = theme  # textual-light for a light terminal
        self.crash: BaseException | None = None

    def _handle_exception(self, error: Exception) -> None:
        """Textual's handler of an unhandled error (it has no public hook): keep the first
        one, the error a worker raised rather than its wrapper, for vq/cli/tui_cmd.py, and
        discard the screenful of traceback with locals Textual would print on stderr."""
        if self.crash is None:
            self.crash = error.error if isinstance(error, WorkerFailed) else error
            self.error_console = Console(file=io.StringIO())
        super()._handle_exception(error)

    def get_default_screen(self) -> Screen:
        return OverviewScreen()

    # --- shared helpers the screens call ---------------------------------------------
    def act(self, action: Callable[..., str], *args) -> None:
        """Run an action off the UI thread; say what it did, or why it could not."""

        def run() -> None:
            severity: SeverityLevel
            try:
                said, severity = action(*args), "information"
            except VqError as exc:
                said, severity = exc.message, "error"
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                said, severity = f"Redis unreachable: {str(exc).splitlines()[0] if str(exc) else exc}", "error"
            self.call_from_thread(self._acted, said, severity)

        self.run_worker(run, thread=True, group="actions")

    def _acted(self, said: str, severity: SeverityLevel) -> None:
        self.notify(said, severity=severity, timeout=6, markup=False)  # it may quote a job id or a name
        reload = getattr(self.screen, "reload", None)
        if reload:
            reload()

    def confirm(self, question: str, action: Callable[..., str], *args) -> None:
        def answered(yes: bool | str | None) -> None:
            if yes:
                self.act(action, *args)

        self.push_screen(ConfirmScreen(question), answered)

    def confirm_cancel(self, job_id: str) -> None:
        """Cancel asks: at a running job's next progress report (y), or now (i)."""

        def answered(choice: bool | str | None) -> None:
            if choice:
                self.act(self.services.cancel, job_id, choice == "now")

        question = f"Cancel job {job_id}? y: a running job stops at its next progress report; i: interrupt it now."
        self.push_screen(CancelScreen(question), answered)

    def prompt(self, question: str, then: Callable[[str | None], None]) -> None:
        self.push_screen(PromptScreen(question), then)

    def open_user(self) -> None:
        from vq.tui.limits_screens import UserScreen

        def chosen(user: str | None) -> None:
            if user and user.strip():
                self.push_screen(UserScreen(user.strip()))

        self.prompt("User id", chosen)

    def open_job(self) -> None:
        from vq.tui.screens import JobScreen

        def chosen(job_id: str | None) -> None:
            if job_id and job_id.strip():
                self.push_screen(JobScreen(job_id.strip()))

        self.prompt("Job id", chosen)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # --- command palette: one entry per action ------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Every key of the dashboard", self.action_help)
        yield SystemCommand("Dead-letter queue", "Jobs that failed for good; retry them", self._dead_letters)
        yield SystemCommand("Open a user", "A user's running and waiting jobs against their limit", self.open_user)
        yield SystemCommand("Limits", "Types, users, groups, resources and weights in force", self._limits)
        yield SystemCommand("Open a job", "A job by id: progress, error, history, dependencies", self.open_job)
        yield SystemCommand("Batches", "Every batch with its progress and callbacks", self._batches)
        for row in getattr(self._overview(), "data", {}).get("queues", []):  # the palette reads markup
            name, shown = row["jobType"], fmt.markup_literal(row["jobType"])
            yield SystemCommand(f"Jobs of {shown}", f"The {shown} queue's jobs", lambda n=name: self._open_queue(n))
            yield SystemCommand(
                f"Pause {shown}",
                "Stop starting its jobs on every host",
                lambda n=name: self.act(self.services.pause, n),
            )
            yield SystemCommand(
                f"Resume {shown}", "Start its jobs again", lambda n=name: self.act(self.services.resume, n)
            )
            yield SystemCommand(
                f"Clear {shown}",
                "Delete its waiting jobs (asks first)",
                lambda n=name: self.confirm(f"Delete every waiting job of {n}?", self.services.clear, n),
            )
        # the screen under the palette: its selected job, with what that screen's keys do to it
        # (the dead-letter list retries only; it has no cancel or remove)
        from vq.tui.screens import DeadLetterScreen, JobActions

        if isinstance(screen, JobActions | DeadLetterScreen) and (job_id := screen.selected_job()):
            shown = fmt.markup_literal(job_id)  # typed at "Open a job": anything
            yield SystemCommand("Retry this job", shown, screen.action_retry)
            if isinstance(screen, JobActions):
                yield SystemCommand("Cancel this job", shown, screen.action_cancel_job)
                yield SystemCommand("Remove this job", shown, screen.action_remove)

    def _overview(self) -> OverviewScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, OverviewScreen)), None)

    def _open_queue(self, job_type: str) -> None:
        from vq.tui.screens import QueueScreen

        self.push_screen(QueueScreen(job_type))

    def _limits(self) -> None:
        from vq.tui.limits_screens import LimitsScreen

        self.push_screen(LimitsScreen())

    def _batches(self) -> None:
        from vq.tui.batch_screens import BatchesScreen

        self.push_screen(BatchesScreen())

    def _dead_letters(self) -> None:
        from vq.tui.screens import DeadLetterScreen

        self.push_screen(DeadLetterScreen())
