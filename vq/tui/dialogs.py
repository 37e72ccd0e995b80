"""Modal dialogs: confirm a destructive action, ask for a value, show the keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown

HELP = """\
# vq dashboard

Live every second; a slow or unreachable Redis shows a red banner and the last data,
and the dashboard recovers by itself.

| key | where | does |
|---|---|---|
| ↑ ↓, mouse | tables | move |
| enter | overview, lists | open the queue's jobs / the job |
| p / r / c | overview | pause / resume / clear (asks) the selected queue |
| d | overview | the dead-letter queue |
| u | overview | a user's running jobs against their limit |
| j | overview | a job by id |
| s / f | a queue's jobs | cycle the status filter / filter by user |
| n / b | a queue's jobs | next / previous page |
| r | job lists, job | retry the job |
| x | job lists, job | cancel the job (asks) |
| delete | job lists, job | remove the job with its artifacts (asks) |
| r / a | dead letters | retry the selected one / all (asks) |
| escape | | back |
| ctrl+p | | command palette: every action by name |
| ? | | this help |
| q | | quit |
"""


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 64; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    ConfirmScreen Horizontal { height: auto; margin-top: 1; }
    ConfirmScreen Button { margin-right: 2; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 64; height: auto; border: thick $accent; padding: 1 2; background: $surface; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Markdown { width: 78; height: auto; max-height: 22; border: thick $accent; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        yield Markdown(HELP)
