"""Values from Redis for a TAB: recurring ids and names and the RECENT_JOBS newest job ids,
read over a plain socket (no redis-py) with a short timeout and kept TTL seconds in
complete-redis.json. Redis unreachable: no values from it for TTL seconds. The CLI's
commands that add or remove jobs drop the file (complete_files.forget_redis_values).
"""

from __future__ import annotations

import hashlib
import json
import time

from vq.cli.complete_files import KEEP, cache_dir, read_json, write_json

TTL = 10.0  # seconds the values read from Redis are reused
REDIS_TIMEOUT = 0.1  # seconds for connecting and reading, all told, on a TAB that refreshes the values
RECENT_JOBS = 50


def redis_values(config: dict) -> dict:
    """{"job_ids": [...], "recurring": [[id, name], ...]} from the cache (TTL) or Redis."""
    spec = config.get("redis")
    if not spec:
        return {}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "complete-redis.json"
    cached = read_json(path) or {}
    entries = cached.get("servers")
    if not isinstance(entries, dict):
        entries = {}
    entry = entries.get(key)
    now = time.time()
    if entry and 0 <= now - entry.get("at", 0) < TTL:
        return entry
    try:
        fresh = _read_redis(spec, config.get("config"))
    except Exception:  # noqa: BLE001 -- unreachable, slow, refused: nothing from Redis for TTL seconds
        fresh = {}
    fresh["at"] = now
    entries[key] = fresh
    newest = sorted(entries.items(), key=lambda item: item[1].get("at", 0))[-KEEP:]
    write_json(path, {"servers": dict(newest)})
    return fresh


def _read_redis(spec: dict, config_path: str | None) -> dict:
    """One round trip for the job types seen and the recurring definitions, one for their newest jobs."""
    from vq import keys

    ranked: list[list[tuple[bytes | str, float]]]  # per job type: (job id, created ms), newest first
    recurring: list[bytes | str]  # the hash flattened: id, definition, id, definition...
    if spec["kind"] == "redis-py":
        from vq.config import load_settings
        from vq.connection import make_client

        client = make_client(load_settings(config_path), socket_timeout=REDIS_TIMEOUT)
        seen, defined = client.smembers(keys.JOB_TYPES_SEEN), client.hgetall(keys.RECURRING)
        types = sorted(t.decode() if isinstance(t, bytes) else t for t in seen)
        ranked = []
        for t in types:
            rows = client.zrevrange(keys.type_jobs(t), 0, RECENT_JOBS - 1, withscores=True)
            # with scores every row is a (member, score) pair; redis-py types all range replies alike
            ranked.append([(row[0], row[1]) for row in rows if isinstance(row, (tuple, list))])
        recurring = [item for pair in defined.items() for item in pair]
    else:
        with _Resp(spec) as conn:
            seen, recurring = conn.call([b"SMEMBERS", keys.JOB_TYPES_SEEN], [b"HGETALL", keys.RECURRING])
            types = sorted(t.decode() for t in seen)
            replies = (
                conn.call(
                    *[[b"ZREVRANGE", keys.type_jobs(t), b"0", str(RECENT_JOBS - 1), b"WITHSCORES"] for t in types]
                )
                if types
                else []
            )
            ranked = [[(rows[i], float(rows[i + 1])) for i in range(0, len(rows), 2)] for rows in replies]
    newest = sorted((pair for rows in ranked for pair in rows), key=lambda pair: -pair[1])
    job_ids: list[str] = []
    for member, _ in newest:
        job_id = member.decode() if isinstance(member, bytes) else str(member)
        if job_id not in job_ids:
            job_ids.append(job_id)
        if len(job_ids) >= RECENT_JOBS:
            break
    definitions = []
    for index in range(1, len(recurring), 2):
        try:
            item = json.loads(recurring[index])
            definitions.append((item.get("createdAt") or "", str(item["id"]), item.get("name")))
        except (ValueError, KeyError, TypeError):
            continue
    definitions.sort()
    return {"job_ids": job_ids, "recurring": [[rid, name] for _, rid, name in definitions]}


class _Resp:
    """Just enough of the Redis protocol for a few pipelined reads, with a hard timeout."""

    def __init__(self, spec: dict):
        import socket

        started = time.monotonic()
        if spec["kind"] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(REDIS_TIMEOUT)
            self.sock.connect(spec["path"])
        else:
            self.sock = socket.create_connection((spec["host"], int(spec["port"])), timeout=REDIS_TIMEOUT)
        self.deadline = started + REDIS_TIMEOUT
        self.buffer = b""
        hello = []
        if spec.get("password"):
            hello.append([b"AUTH", *([spec["username"]] if spec.get("username") else []), spec["password"]])
        if spec.get("db"):
            hello.append([b"SELECT", str(spec["db"])])
        if hello:
            self.call(*hello)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def call(self, *commands: list) -> list:
        out = bytearray()
        for command in commands:
            out += b"*%d\r\n" % len(command)
            for part in command:
                part = part if isinstance(part, bytes) else str(part).encode()
                out += b"$%d\r\n%s\r\n" % (len(part), part)
        self.sock.sendall(bytes(out))
        return [self._reply() for _ in commands]

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Redis is slow")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buffer += chunk

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ConnectionError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                self._fill()
            data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
            return data
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from Redis: {line[:40]!r}")
