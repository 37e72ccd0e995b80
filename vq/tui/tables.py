"""DataTable helpers every screen uses: refill keeping the cursor, read the selected key."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from vq.tui import format as fmt

Cell = Text | int | float
"""What a table's cells hold: `fill` turns every string (and None) into literal Text."""


def selected_key(table: DataTable) -> str | None:
    """The row key under the cursor, or None for an empty table."""
    if not table.row_count:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def fill(table: DataTable[Cell], rows: list[tuple[str, list]]) -> None:
    """Replace the table's rows, keeping the cursor on the same row when it still exists."""
    keep = selected_key(table)
    table.clear()
    for key, cells in rows:  # strings as literal text (DataTable would take them as markup), one line each
        table.add_row(*(fmt.cell(c) if isinstance(c, str) or c is None else c for c in cells), key=key)
    keys = [key for key, _cells in rows]
    if keep in keys:
        table.move_cursor(row=keys.index(keep), animate=False)
