"""Modal dialogs: confirm a destructive action, ask for a value, show the keys."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

KEYS = [
    ("↑ ↓ / mouse", "tables", "move"),
    ("enter", "overview, lists", "open the queue's jobs / batch / job"),
    ("p  r  c", "overview", "pause / resume / clear (asks) the queue"),
    ("d", "overview", "the dead-letter queue"),
    ("u", "overview", "a user's running and waiting jobs"),
    ("l", "overview", "limits: types, users, groups, GPUs"),
    ("j", "overview", "a job by id"),
    ("b", "overview, job", "the batches / the job's batch"),
    ("s  f", "a queue's jobs", "cycle the status filter / filter by user"),
    ("n  b", "a queue's jobs", "next / previous page"),
    ("r", "jobs, job", "retry the job"),
    ("x", "jobs, job", "cancel the job (asks)"),
    ("delete", "jobs, job", "remove the job and its artifacts (asks)"),
    ("r  a", "dead letters", "retry the selected one / all (asks)"),
    ("s  f  n  b", "batches", "state filter / user filter / pages"),
    ("c", "a batch", "close the open batch (asks)"),
    ("escape", "", "back"),
    ("ctrl+p", "", "every action by name; also the colour theme"),
    ("q", "", "quit"),
]
INTRO = (
    "Refreshes every second. A slow or unreachable Redis turns the banner red and keeps "
    "the last data; the dashboard recovers by itself."
)


class ConfirmScreen(ModalScreen[bool | str]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 60; height: auto; border: round $warning; padding: 1 2; background: $surface; }
    ConfirmScreen Label { width: 100%; }
    ConfirmScreen Horizontal { height: auto; width: 100%; margin-top: 1; align-horizontal: center; }
    ConfirmScreen Button { margin: 0 1; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)  # it names a job or a type: literal text
            with Horizontal():
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class CancelScreen(ConfirmScreen):
    """Cancel a job: yes (at a running job's next progress report), now (interrupt it at
    once: `vq cancel --now`), or no. Answers True, "now" or False."""

    BINDINGS = [*ConfirmScreen.BINDINGS, Binding("i", "now", "Now")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            with Horizontal():
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("Now (i)", variant="error", id="now")
                yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("now" if event.button.id == "now" else event.button.id == "yes")

    def action_now(self) -> None:
        self.dismiss("now")


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 60; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    PromptScreen Label { width: 100%; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield Input(id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 78; height: auto; max-height: 22; border: round $accent;
                                  background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=True)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("does")
        for row in KEYS:
            table.add_row(*row)
        with VerticalScroll():
            yield Static(Text(INTRO, style="italic"))
            yield Static(table)
