"""CLI start-up: `vq` commands against RQ's own CLI, in one run (issue 22).

Starts a private redis-server on a free port, then runs each vq command N times, alternating
with its rq counterpart, and prints the median vq / rq ratio per command:
  vq --version, vq --help        vs  rq --version
  vq show ID, vq queues, vq submit  vs  rq info (the same redis-server)
  deps import                       vs  rq info: a Python that only imports redis, rq, typer, rich,
                                    yaml and msgspec, the floor under any vq command that reads Redis
and a shell's TAB (bash's protocol, `vq show <TAB>`: recent job ids from Redis), in seconds
against the 0.2 s target: cold (no cache: the full app builds it), a refresh (the cached
tables, the values read from Redis again: the first TAB after their 10 s) and warm (both
cached), and a TAB completing a static list (`vq jobs --status <TAB>`).
Run: python3 scripts/bench/cli.py [-n 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SCRUB_ENV, PrivateRedis


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    vq, rq = shutil.which("vq"), shutil.which("rq")
    if not (vq and rq):
        raise SystemExit("needs `vq` and `rq` on PATH")
    work = Path(tempfile.mkdtemp(prefix="vq-bench-cli-"))
    server = PrivateRedis(work)
    try:
        server.start()
        url = server.url
        config = work / "config.yaml"
        config.write_text(f"redis:\n  url: {url}\n")
        env = {
            **{name: value for name, value in os.environ.items() if name not in SCRUB_ENV},
            "VQ_CONFIG": str(config),
            "HOME": str(work),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"),
        }
        # As installed: pip byte-compiles a wheel, so rq's modules load from .pyc. A checkout run under
        # PYTHONDONTWRITEBYTECODE=1 would compile ~30 of vq's modules from source on every call (~50 ms).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        submit = [vq, "submit", "content-analysis", "--user", "bench", "--data", '{"content": "a b"}']
        job_id = subprocess.run(submit, env=env, capture_output=True, text=True, check=True).stdout.strip()
        rq_version, rq_info = [rq, "--version"], [rq, "info", "--url", url]
        pairs = {
            "vq --version": ([vq, "--version"], rq_version),
            "vq --help": ([vq, "--help"], rq_version),
            "vq show ID": ([vq, "show", job_id], rq_info),
            "vq queues": ([vq, "queues"], rq_info),
            "vq submit": (submit, rq_info),
            # The floor: only importing the libraries the product names (no vq code, no work).
            "deps import": (
                [sys.executable, "-c", "import redis, rq, typer, rich.console, rich.table, yaml, msgspec"],
                rq_info,
            ),
        }
        targets = {
            "vq --version": 0.5,
            "vq --help": 0.5,
            "vq show ID": 1.0,
            "vq queues": 1.0,
            "vq submit": 1.0,
            "deps import": None,
        }
        rows = {}
        for name, (ours, theirs) in pairs.items():
            timed(ours, env), timed(theirs, env)  # warm the page cache
            mine, peer = [], []
            for _ in range(args.n):
                mine.append(timed(ours, env))
                peer.append(timed(theirs, env))
            rows[name] = {
                "vq_s": round(statistics.median(mine), 4),
                "peer": " ".join(Path(theirs[0]).name.split() + theirs[1:2]),
                "peer_s": round(statistics.median(peer), 4),
                "ratio": round(statistics.median(mine) / statistics.median(peer), 2),
                "target": targets[name],
            }
        tabs = tab_times(vq, env, work, args.n)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"runs": args.n, "python": sys.version.split()[0], "commands": rows, "tab": tabs}, indent=2))
        return
    print(f"{'command':<14} {'vq s':>7} {'peer':<13} {'peer s':>7} {'ratio':>6} {'target':>7}")
    for name, row in rows.items():
        target = "-" if row["target"] is None else f"{row['target']:.1f}x"
        print(
            f"{name:<14} {row['vq_s']:>7.3f} {row['peer']:<13} {row['peer_s']:>7.3f} {row['ratio']:>6.2f} {target:>7}"
        )
    print(f"\n{'TAB (bash)':<36} {'median s':>9} {'max s':>7} {'target':>7}")
    for name, row in tabs.items():
        print(f"{name:<36} {row['median_s']:>9.3f} {row['max_s']:>7.3f} {row['target']:>7}")


def tab_times(vq: str, env: dict[str, str], work: Path, n: int) -> dict:
    """A TAB as bash's completion function runs it, in seconds: cold, refresh, warm, static."""
    cache = Path(env["XDG_CACHE_HOME"])

    def tab(line: str, cache_home: Path) -> float:
        words = line.split(" ")
        return timed(
            [vq],
            {
                **env,
                "XDG_CACHE_HOME": str(cache_home),
                "_VQ_COMPLETE": "complete_bash",
                "COMP_WORDS": line,
                "COMP_CWORD": str(len(words) - 1),
            },
        )

    cold, refresh, warm, static = [], [], [], []
    for index in range(n):
        cold.append(tab("vq show ", work / f"cold-{index}"))
    tab("vq show ", cache)
    for _ in range(n):
        (cache / "vq" / "complete-redis.json").unlink(missing_ok=True)
        refresh.append(tab("vq show ", cache))
        warm.append(tab("vq show ", cache))
        static.append(tab("vq jobs --status ", cache))

    def row(times: list[float], target: str) -> dict:
        return {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4), "target": target}

    return {
        "vq show <TAB>, cold (no cache)": row(cold, "-"),
        "vq show <TAB>, values from Redis": row(refresh, "<=0.2"),
        "vq show <TAB>, warm": row(warm, "<=0.2"),
        "vq jobs --status <TAB>, warm": row(static, "<=0.2"),
    }


if __name__ == "__main__":
    main()
