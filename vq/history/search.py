"""`--where` filters on the history database: `vq history --where`, `vq jobs --where` and the
HTTP history route's `where` parameters all turn their terms into SQL here.

A term is FIELD OP VALUE. FIELD is a built-in column (status, userId, projectId, createdAt...)
or a data field the operator declared in `history.indexedFields` (data.projectId): each of
those has an expression index on the job's data copy (render_jobs.data), made when the
database is opened, so a filter reads an index, never every row. Any other field is refused
with the list of those that may be used. Values are always bound parameters; a data field's
path goes into the SQL text (it must, for SQLite to use the index) only after it matched
the configured list, whose entries the config checks (vq/config/services.py INDEXED_FIELD).

Operators: `=`, `!=`, `>`, `>=`, `<`, `<=` and `~` (starts with). A value that reads as a
number is compared as one (and `=` also matches the same digits stored as text); times
(createdAt...) take ISO 8601 and compare as instants; everything else is text, literally.
"""

from __future__ import annotations

import hashlib
import re

from vq.errors import InvalidInput

INDEX_PREFIX = "idx_render_jobs_where_"
OPERATORS = ("!=", ">=", "<=", "=", ">", "<", "~")
_TERM = re.compile(r"(?P<field>[A-Za-z][A-Za-z0-9_.-]*)\s*(?P<op>!=|>=|<=|=|>|<|~)(?P<value>.*)", re.DOTALL)
_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?")

# The built-in fields (the API's names) and their render_jobs columns.
TEXT_FIELDS = {
    "id": "id",
    "status": "status",
    "userId": "user_id",
    "jobType": "job_type",
    "projectId": "project_id",
    "priority": "priority",
    "subscription": "subscription",
    "queue": "queue",
    "parentId": "parent_id",
    "step": "step",
    "recurringId": "recurring_id",
    "worker": "worker",
    "provider": "provider",
    "errorCategory": "error_category",
}
TIME_FIELDS = {
    "createdAt": "created_at",
    "startedAt": "started_at",
    "finishedAt": "finished_at",
    "updatedAt": "updated_at",
}
NUMBER_FIELDS = {"attempts": "attempts", "waitMs": "wait_ms", "runMs": "run_ms", "costMicros": "cost_micros"}
BUILT_IN = {**TEXT_FIELDS, **TIME_FIELDS, **NUMBER_FIELDS}


def data_expression(field: str) -> str:
    """The SQL expression of a configured data field (`data.a.b` -> json_extract(data,
    '$."a"."b"')): the index's and every query's, character for character."""
    path = "$" + "".join(f'."{part}"' for part in field.split(".")[1:])
    return f"json_extract(data, '{path}')"


def index_name(field: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9]", "_", field.partition(".")[2])[:40]
    return f"{INDEX_PREFIX}{readable}_{hashlib.sha1(field.encode()).hexdigest()[:8]}"


def existing_indexes(db) -> set[str]:
    """The names of the search indexes the database has."""
    return {
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'render_jobs' AND name LIKE ?",
            [INDEX_PREFIX + "%"],
        )
    }


def missing_indexes(db, fields: list[str]) -> bool:
    """Whether a field of history.indexedFields has no index yet (one query on opening)."""
    return not {index_name(f) for f in fields} <= existing_indexes(db)


def ensure_indexes(db, fields: list[str]) -> None:
    """One index per configured data field (with created_at, for newest-first pages), built over
    every existing row. Idempotent: the daemon and `vq history` call it on opening when one is
    missing. A field taken off the list keeps its index (hosts sharing the file may still list
    it; DROP INDEX it by hand once none does): it is no longer searchable, the list decides."""
    for field in fields:
        db.execute(
            f'CREATE INDEX IF NOT EXISTS "{index_name(field)}" ON render_jobs ({data_expression(field)}, created_at)'
        )
    refresh_statistics(db)


def refresh_statistics(db) -> None:
    """Sampled statistics (milliseconds, whatever the size) so SQLite picks the index that
    narrows a filter most, e.g. data.projectId=p1 before status=failed: on opening when the
    indexes change, and hourly by the archiver (vq/history/archiver.py prune)."""
    db.execute("PRAGMA analysis_limit = 10000")
    db.execute("ANALYZE render_jobs")


def _refuse(text: str, why: str, indexed: list[str]) -> InvalidInput:
    fields = ", ".join(indexed) if indexed else "none (history.indexedFields is empty)"
    return InvalidInput(
        f"where {text!r}: {why}; indexed data fields: {fields}; built-in: {', '.join(BUILT_IN)}", field="where"
    )


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8 on the command line
        return False
    return True


def _number(value: str) -> int | float | None:
    if not _NUMBER.fullmatch(value):
        return None
    return float(value) if any(c in value for c in ".eE") else int(value)


def clauses(terms: list[str], indexed: list[str]) -> tuple[list[str], list]:
    """SQL conditions (ANDed by the caller) and their parameters for `--where` terms; raises
    InvalidInput (exit 2, HTTP 422) naming the fields that may be used."""
    out: list[str] = []
    params: list = []
    for text in terms:
        match = _TERM.fullmatch(text.lstrip()) if text else None  # the value's own spaces are kept
        if match is not None and not _utf8(match["value"]):
            raise InvalidInput(f"where {text!r}: the value is not valid UTF-8", field="where")
        if match is None:
            raise _refuse(text, f"expected FIELD OP VALUE with OP one of {' '.join(OPERATORS)}", indexed)
        field, op, value = match["field"], match["op"], match["value"]
        if field.startswith("data."):
            if field not in indexed:
                raise _refuse(text, f"{field} is not an indexed field (add it to history.indexedFields)", indexed)
            condition, values = _condition(data_expression(field), op, value, text, kind="data")
        elif field in BUILT_IN:
            kind = "time" if field in TIME_FIELDS else "number" if field in NUMBER_FIELDS else "text"
            condition, values = _condition(BUILT_IN[field], op, value, text, kind=kind)
        else:
            raise _refuse(text, f"unknown field {field}", indexed)
        out.append(condition)
        params.extend(values)
    return out, params


def _condition(expr: str, op: str, value: str, text: str, *, kind: str) -> tuple[str, list]:
    if op == "~":
        if not value:
            raise InvalidInput(f"where {text!r}: ~ needs a prefix to match", field="where")
        last = ord(value[-1])
        if last == 0x10FFFF:  # nothing sorts after it: the range is open, the prefix checked
            return f"({expr} >= ? AND substr({expr}, 1, ?) = ?)", [value, len(value), value]
        upper = value[:-1] + chr(0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1)  # no surrogates
        return f"({expr} >= ? AND {expr} < ?)", [value, upper]  # a range: the index answers it
    number = _number(value) if kind in ("data", "number") else None
    if kind == "number" and number is None:
        raise InvalidInput(f"where {text!r}: {value!r} is not a number", field="where")
    if kind == "time":
        value = _instant(value, text)
    if op in ("=", "!="):
        candidates: list = [number] if kind == "number" else [value] if number is None else [value, number]
        if op == "=":
            marks = ", ".join("?" * len(candidates))
            return (f"{expr} = ?" if len(candidates) == 1 else f"{expr} IN ({marks})"), candidates
        return "(" + " AND ".join(f"{expr} IS NOT ?" for _ in candidates) + ")", candidates
    if number is not None:  # numbers against numbers only (SQLite sorts all text after numbers)
        return f"({expr} {op} ? AND typeof({expr}) IN ('integer', 'real'))", [number]
    return f"({expr} {op} ? AND typeof({expr}) = 'text')", [value]


def _instant(value: str, text: str) -> str:
    """An ISO time as the history stores times (UTC, milliseconds, Z), so text order is time order."""
    from vq.durations import parse_instant
    from vq.model import iso

    try:
        return iso(parse_instant(value, "--where"))
    except InvalidInput:
        raise InvalidInput(f"where {text!r}: {value!r} is not an ISO 8601 time", field="where") from None
