"""Part 3 of scripts/bench/history.py ("search"): `--where` over a million history rows.

A history database (the daemon's schema, vq.history.db.open_db, with
`history.indexedFields: [data.projectId, data.model]`) is filled with `--rows` job rows
(default 1,000,000) directly by executemany in batches of 20,000: 1,000 projects, 5 models,
users, types and statuses in rotation, created one second apart. Then each filter below is
answered `--calls` times (after one warm-up) through `vq.history.queries.jobs` (what
`vq history --where` and the HTTP history route call; `vq jobs --where` reads the same),
limit 50, and timed: p50 and p99. The same filters are then timed without the indexes (the
search indexes dropped: SQLite walks the rows newest first, checking each, until it has 50),
and the ratio scan / indexed reported. Statistics are refreshed after the fill (the
archiver does it hourly), as SQLite's choice of index depends on them.
Target: p99 under 100 ms with the indexes.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from vq.config import load_settings
from vq.history import db as historydb
from vq.history import queries, search

INDEXED = ["data.projectId", "data.model"]
FILTERS = {
    "data.projectId=p1": ["data.projectId=p1"],
    "data.projectId=p1 status=failed": ["data.projectId=p1", "status=failed"],
    "data.model=m3 createdAt>=(last day)": ["data.model=m3", "createdAt>=@DAY"],
    "data.projectId~p99": ["data.projectId~p99"],
    "status=failed": ["status=failed"],
    "projectId=proj-3 userId=user-7": ["projectId=proj-3", "userId=user-7"],
}
TARGET_MS = 100.0
STATUSES = ("finished", "finished", "finished", "failed", "canceled", "queued")


def fill(db, rows: int, progress, batch: int = 20_000) -> float:
    """`rows` job rows, bulk inserted; returns the seconds it took."""
    started = time.monotonic()
    base = int(time.time()) - rows
    sql = (
        "INSERT INTO render_jobs (id, job_type, user_id, project_id, priority, queue, status, created_at, "
        "updated_at, attempts, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    )
    for start in range(0, rows, batch):
        chunk = []
        for n in range(start, min(rows, start + batch)):
            at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(base + n))
            data = json.dumps({"projectId": f"p{n % 1000}", "model": f"m{n % 5}", "prompt": f"prompt {n}"})
            chunk.append(
                (f"job-{n:08d}", f"type-{n % 4}", f"user-{n % 300}", f"proj-{n % 20}", "normal", "q",
                 STATUSES[n % len(STATUSES)], at, at, 1, data)
            )  # fmt: skip
        with db.conn:
            db.conn.executemany(sql, chunk)
        progress.print(f"[dim]search: {min(rows, start + batch):,} / {rows:,} rows[/]") if (
            start // batch
        ) % 10 == 9 else None
    return time.monotonic() - started


def _terms(terms: list[str], day: str) -> list[str]:
    return [t.replace("@DAY", day) for t in terms]


def time_filters(db, calls: int, day: str) -> dict[str, dict]:
    out = {}
    for name, terms in FILTERS.items():
        where = _terms(terms, day)
        found = len(queries.jobs(db, where=where, indexed=INDEXED, limit=50))  # warm-up
        samples = []
        for _ in range(calls):
            t0 = time.perf_counter()
            queries.jobs(db, where=where, indexed=INDEXED, limit=50)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out[name] = {
            "rows": found,
            "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        }
    return out


def uses_index(db, terms: list[str]) -> bool:
    conditions, params = search.clauses(terms, INDEXED)
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM render_jobs WHERE " + " AND ".join(conditions), params
    ).fetchall()
    return all("USING INDEX" in row[-1] for row in plan if str(row[-1]).startswith(("SEARCH", "SCAN")))


def part_search(args, workdir: Path, progress) -> dict:
    config = workdir / "search.yaml"
    (workdir / "search").mkdir(exist_ok=True)
    config.write_text(
        json.dumps({"data_dir": str(workdir / "search"), "history": {"indexedFields": INDEXED}})
    )  # JSON is YAML
    settings = load_settings(config, env={})
    db = historydb.open_db(settings)
    progress.print(f"[dim]search: filling {args.rows:,} history rows[/]")
    fill_s = fill(db, args.rows, progress)
    search.refresh_statistics(db)  # as the archiver does hourly
    size_mb = historydb.path_for(settings).stat().st_size / 1e6
    day = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86_400))
    indexed = time_filters(db, args.calls, day)
    planned = {name: uses_index(db, _terms(terms, day)) for name, terms in FILTERS.items()}
    progress.print("[dim]search: the same filters without the indexes (a scan)[/]")
    for name in search.existing_indexes(db):
        db.execute(f'DROP INDEX "{name}"')
    search.refresh_statistics(db)
    scan = time_filters(db, max(3, args.calls // 10), day)  # built-in fields keep their indexes: ~1x
    db.conn.close()
    return {
        "rows": args.rows,
        "fill_s": round(fill_s, 1),
        "db_mb": round(size_mb, 1),
        "calls": args.calls,
        "indexed": indexed,
        "uses_index": planned,
        "scan": scan,
        "ratio_scan_over_indexed": {n: round(scan[n]["p50_ms"] / max(indexed[n]["p50_ms"], 0.01), 1) for n in FILTERS},
        "target_p99_ms": TARGET_MS,
    }


def print_search(console, result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"--where over {result['rows']:,} history rows (limit 50; filled in {result['fill_s']} s)")
    for column in ("filter", "rows", "p50 ms", "p99 ms", "index", "scan p50 ms", "scan / indexed"):
        table.add_column(column)
    for name, r in result["indexed"].items():
        table.add_row(
            name,
            str(r["rows"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            "yes" if result["uses_index"][name] else "NO",
            f"{result['scan'][name]['p50_ms']:.1f}",
            f"{result['ratio_scan_over_indexed'][name]}x",
        )
    console.print(table)
    worst = max(r["p99_ms"] for r in result["indexed"].values())
    verdict = "meets" if worst < result["target_p99_ms"] else "MISSES"
    console.print(f"worst p99 {worst:.2f} ms: {verdict} the {result['target_p99_ms']:.0f} ms target")
