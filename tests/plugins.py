"""Operator-style custom handlers used by the tests (loaded by dotted path from config)."""

from __future__ import annotations

import os
import time

from vq.errors import PermanentError


def sleeper(ctx, data):
    """Sleeps in steps, reporting progress; used for shutdown, cancel and progress tests."""
    steps = int(data.get("steps", 5))
    for i in range(steps):
        time.sleep(float(data.get("seconds", 1.0)) / steps)
        ctx.progress((i + 1) * 100 / steps, f"step {i + 1}/{steps}")
    return {"slept": data.get("seconds", 1.0), "pid": os.getpid()}


def flaky(ctx, data):
    """Fails until the given attempt, then succeeds."""
    if ctx.attempt < int(data.get("succeed_on", 2)):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def broken(ctx, data):
    raise PermanentError("input can never work")


def echo(ctx, data):
    return {"echo": data, "upstream": [u.result for u in ctx.upstream()]}


def noop(ctx, data):
    return {}


_MAX = "local n = tonumber(ARGV[1]); if n > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], n) end"


def tracked(ctx, data):
    """Counts, in the test's Redis, how many jobs of its type, of its user and of each of its
    limit groups' keys (test:active:group:<group>=<key>, from the groups its hash names) and of
    each GPU it holds (test:active:device:<worker>:<index>) really run at once; what it saw of
    its resources (ctx.resources, CUDA_VISIBLE_DEVICES) in test:resources and test:cuda (and the most ever seen), so tests can check the limits from the inside. It
    runs for data.seconds, or with data.gate until the test opens that gate (wait_at_gate)."""
    import json

    import redis

    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    counters = [f"test:active:type:{ctx.job_type}", f"test:active:user:{ctx.user_id}"]
    in_groups = json.loads(r.hget(f"rq:job:{ctx.job_id}", "vq_groups") or "{}")
    counters += [f"test:active:group:{name}={key}" for name, key in sorted(in_groups.items())]
    # The GPUs it was given, per worker process that owns them (vq/capacity.py): each device's
    # own counter, so a test sees whether two jobs ever used one at once.
    held = json.loads(r.hget(f"rq:job:{ctx.job_id}", "vq_held") or "{}")
    counters += [f"test:active:device:{held.get('holder')}:{d}" for d in ctx.resources.get("gpu", [])]
    r.hset("test:resources", ctx.job_id, json.dumps(ctx.resources))
    r.hset("test:cuda", ctx.job_id, os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    r.set(f"test:pid:{ctx.job_id}", os.getpid())
    r.rpush("test:started", ctx.job_id)
    r.hset("test:started-at", ctx.job_id, time.time())  # its handler's first line, by this host's clock
    for key in counters:
        r.eval(_MAX, 1, key + ":max", r.incr(key))
    try:
        if data.get("gate"):
            wait_at_gate(ctx, r, data["gate"])
        else:
            seconds = float(data.get("seconds", 0.1))
            steps = max(1, int(seconds / 0.1))
            for i in range(steps):  # progress reports also let a cancel stop the job
                time.sleep(seconds / steps)
                ctx.progress((i + 1) * 100 / steps)
    finally:
        for key in counters:
            r.decr(key)
    return {"pid": os.getpid()}


def wait_at_gate(ctx, r, gate: str, limit: float = 60.0) -> None:
    """Hold the job (and its slot) until the test opens the gate: `open_gate` in
    tests/conftest.py pushes a token to `test:gate:<gate>`; each job that takes it puts it
    back, so one push lets every holder through, now and later. Progress is reported
    meanwhile, so a cancel or a stop reaches the job as it reaches a sleeping one."""
    key = f"test:gate:{gate}"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        token = r.blpop([key], timeout=0.2)
        if token is not None:
            r.lpush(key, token[1])
            return
        ctx.progress(0, f"waiting at gate {gate}")
    raise RuntimeError(f"gate {gate} was not opened within {limit:.0f} s")


def rate_limited(ctx, data):
    """The first run is told to come back after `retry_after` seconds; then it succeeds."""
    import redis

    from vq.errors import RateLimitError

    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    r.rpush(f"test:runs:{ctx.job_id}", time.time())
    if r.llen(f"test:runs:{ctx.job_id}") == 1:
        raise RateLimitError("slow down", retry_after=float(data.get("retry_after", 2)))
    return {"attempt": ctx.attempt}


def unknown_error(ctx, data):
    raise KeyError("something odd")


def uses_credential(ctx, data):
    """Proves the handler got the decrypted credential, without echoing it into the result."""
    key = data["auth"]["apiKey"]
    return {"keyLength": len(key), "keyPrefix": key[:3], "prompt": data.get("prompt")}


_HELD = []


def hog(ctx, data):
    """Grows the worker process by `mb` megabytes and keeps them (a leaking handler)."""
    _HELD.append(bytearray(int(data.get("mb", 300)) * 2**20))
    return {"pid": os.getpid()}


def crash(ctx, data):
    """Takes its process down without a word, as a segfault in a native library would."""
    os._exit(3)


def spin(ctx, data):
    """Burns CPU for `seconds` (a runaway computation)."""
    end = time.time() + float(data.get("seconds", 5))
    n = 0
    while time.time() < end:
        n += 1
    return {"spins": n}


def writer(ctx, data):
    """Writes data.text to out.txt in its artifacts folder; with data.fail, fails after writing."""
    path = ctx.artifacts_dir / "out.txt"
    path.write_text(data.get("text", ""))
    if data.get("fail"):
        raise PermanentError("failed after writing a partial file")
    return {"path": str(path), "artifacts": [str(path)]}


def big_result(ctx, data):
    """Returns a result of `kib` KiB (the result size cap)."""
    return {"blob": "x" * (int(data.get("kib", 2048)) * 1024)}


def not_a_number(ctx, data):
    """Returns NaN in its result: not JSON."""
    return {"score": float("nan")}


class Unprintable(Exception):
    """An exception whose message cannot be made: its __str__ itself raises."""

    def __str__(self):
        raise RuntimeError("no message for you")


def unprintable(ctx, data):
    raise Unprintable()


def provider_down(ctx, data):
    """Reports a provider failure for whatever provider name its data gives."""
    from vq.errors import ProviderError

    raise ProviderError("provider down", provider=data.get("which", "unknown"))


def nan_units(ctx, data):
    """Calls its provider reporting a NaN and an infinite unit beside a real one."""
    ctx.call_provider({"input": "x"}, units={"calls": 1, "seconds": float("nan"), "images": float("inf")})
    return {}


def chatty(ctx, data):
    """Logs through ctx.log and through plain `logging`: both lines should carry the job."""
    import logging

    ctx.log.info("chatty handler says %s", data.get("word", "hello"))
    logging.getLogger("some.library").warning("a library inside the handler speaks")
    return {}


def handler_pid(conn, job_id: str, timeout: float = 15.0) -> int:
    """The pid of the process running the job's `tracked` handler, once it has said so: the
    job reads `started` an instant before the handler's first line runs."""
    deadline = time.monotonic() + timeout
    while (pid := conn.get(f"test:pid:{job_id}")) is None:
        assert time.monotonic() < deadline, f"job {job_id}'s handler never started"
        time.sleep(0.02)
    return int(pid)


def wait_active(conn, name: str, count: int, timeout: float = 10.0) -> None:
    """Until `count` `tracked` handlers of `name` (type:T, user:U, ...) are running, as they
    count themselves: a job reads `started` an instant before its handler's first line."""
    deadline = time.monotonic() + timeout
    while int(conn.get(f"test:active:{name}") or 0) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def checkpointer(ctx, data):
    """Works through data.steps steps of data.seconds each and checkpoints after each one
    ({"next": step}); starts at ctx.resumed_from's step. Records what it does in the test's
    Redis, list test:cp:<job>: "start <pid> <step>", "done <pid> <step>" (the step's work),
    "saved <pid> <step>" (its checkpoint written) or "<Exception> <pid> <step>" (the
    checkpoint raised), and its pid in test:pid:<job>. On attempt 1 it fails at step
    data.fail_at, if given; data.big saves a checkpoint that large (bytes) first."""
    import redis

    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    pid = os.getpid()
    record = f"test:cp:{ctx.job_id}"
    r.set(f"test:pid:{ctx.job_id}", pid)
    start = int((ctx.resumed_from or {}).get("next", 0))
    r.rpush(record, f"start {pid} {start}")
    if data.get("big"):
        ctx.checkpoint({"blob": "x" * int(data["big"])})
    for step in range(start, int(data.get("steps", 5))):
        if ctx.attempt == 1 and step == data.get("fail_at"):
            raise RuntimeError(f"failing at step {step} on attempt 1")
        time.sleep(float(data.get("seconds", 0.2)))
        r.rpush(record, f"done {pid} {step}")
        try:
            ctx.checkpoint({"next": step + 1, "pid": pid})
        except BaseException as exc:
            r.rpush(record, f"{type(exc).__name__} {pid} {step}")
            raise
        r.rpush(record, f"saved {pid} {step}")
    return {"resumedAt": start, "pid": pid}


def cancelable(ctx, data):
    """For `vq cancel --now`: says its pid and whether it runs in the process's main thread
    (test:pid:<id>, test:thread:<id>) and counts itself running (test:active:type:<type>),
    registers clean-up that writes data.cleanup (a file) when the job is canceled, then
    sleeps for data.seconds: in one blocking call, or with data.step in short sleeps (a
    thread job is interrupted between two; with data.cooperative it also returns once
    ctx.canceled). With data.swallow it catches the interruption and returns; with data.deaf
    it blocks the interrupt signal (a handler stuck in native code). With data.stubborn it
    first catches that many interruptions and sleeps on (each recorded in list
    test:swallowed:<id>); with data.in_del it first sleeps in a destructor, where Python
    swallows the interruption (recorded "del" once it returned), then sleeps on; with
    data.then_log it logs through ctx.log after catching one. Its clean-up
    takes data.cleanup_seconds. No progress reports: only --now stops it."""
    import threading
    from pathlib import Path

    import redis

    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    if data.get("cleanup"):

        def cleanup():
            time.sleep(float(data.get("cleanup_seconds", 0)))
            Path(data["cleanup"]).write_text(f"cleaned up {ctx.job_id}")

        ctx.on_cancel(cleanup)
    if data.get("deaf"):  # as a handler stuck in native code: the interrupt never reaches Python
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    r.set(f"test:thread:{ctx.job_id}", "main" if threading.current_thread() is threading.main_thread() else "thread")
    r.set(f"test:pid:{ctx.job_id}", os.getpid())
    r.incr(f"test:active:type:{ctx.job_type}")
    seconds, step = float(data.get("seconds", 30)), data.get("step")

    def sleep():
        if step:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not (data.get("cooperative") and ctx.canceled):
                time.sleep(float(step))
        else:
            time.sleep(seconds)

    try:
        for _ in range(int(data.get("stubborn", 0))):
            try:
                sleep()
            except BaseException as exc:  # noqa: BLE001 - what a careless handler does
                r.rpush(f"test:swallowed:{ctx.job_id}", type(exc).__name__)
                if data.get("then_log"):
                    try:
                        ctx.log.info("caught %s; going on", type(exc).__name__)
                    except BaseException:
                        r.rpush(f"test:swallowed:{ctx.job_id}", "raised at ctx.log")
                        raise
        if data.get("in_del"):
            _SleepsWhenDropped(seconds)  # dropped at once: its __del__ sleeps
            r.rpush(f"test:swallowed:{ctx.job_id}", "del")
        sleep()
    except BaseException:
        if not data.get("swallow"):
            raise
        return {"swallowed": True}  # a handler that catches everything and returns
    finally:
        r.decr(f"test:active:type:{ctx.job_type}")
    return {"pid": os.getpid()}


class _SleepsWhenDropped:
    """An object whose destructor sleeps: an exception raised into it is reported ("Exception
    ignored in") and swallowed by Python, as one landing in a Redis client's __del__ is."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __del__(self):
        time.sleep(self.seconds)


def logger(ctx, data):
    """Logs what data.say lists ([via, level, message]; via "ctx" is ctx.log, "logging" is
    logging.getLogger(__name__)), then data.count numbered lines "line N" through ctx.log;
    with data.gate, the first data.before of them, then it waits at the gate for the rest
    (data.pad: that many "x" after each); attempts before data.fail_until fail after logging.
    Its pid is test:pid:<job>, once it has logged its first lines."""
    import logging

    import redis

    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    plain = logging.getLogger(__name__)
    for via, level, message in data.get("say", []):
        (ctx.log if via == "ctx" else plain).log(getattr(logging, level), message)
    count, before = int(data.get("count", 0)), int(data.get("before", 0))
    for i in range(1, before + 1):
        ctx.log.info("line %d", i)
    r.set(f"test:pid:{ctx.job_id}", os.getpid())
    if data.get("gate"):
        wait_at_gate(ctx, r, data["gate"])
    pad = "x" * int(data.get("pad", 0))
    for i in range(before + 1, count + 1):
        ctx.log.info("line %d%s", i, pad)
    if ctx.attempt < int(data.get("fail_until", 0)):
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return {"pid": os.getpid()}


def replay_probe(ctx, data):
    """Logs two lines, reports its progress once and saves a checkpoint: the writes of a
    running job that tests/test_replayed_writes.py has Redis receive twice."""
    ctx.log.info("probe line one")
    ctx.log.info("probe line two")
    ctx.progress(50, "half way")
    ctx.checkpoint({"step": 1})
    return {"probed": data.get("n")}


_SHARED_POOL: list = []  # a pool kept across jobs, as a module-level executor is


def pooled_logger(ctx, data):
    """Logs from other threads: data.pool lines "pool N" from a ThreadPoolExecutor of its
    own, each of which starts a thread that logs "nested N"; data.shared lines "shared N"
    from a pool kept across jobs; data.stray lines "stray N" from a thread started below
    `threading` (`_thread`, as native libraries do). With data.hold, the periodic write is
    off in this process (only an end, a stop or a cancel writes); data.gate: then it waits."""
    import _thread
    import logging
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import redis

    from vq import job_logs

    if data.get("hold"):
        job_logs.FLUSH_EVERY = 3600.0
    r = redis.Redis.from_url(os.environ["VQ_TEST_REDIS"])
    library = logging.getLogger("some.library")

    def pooled(n: int) -> None:
        library.info("pool %d", n)
        nested = threading.Thread(target=library.info, args=("nested %d", n))
        nested.start()
        nested.join()

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(pooled, range(1, int(data.get("pool", 0)) + 1)))
    if data.get("shared"):
        if not _SHARED_POOL:
            _SHARED_POOL.append(ThreadPoolExecutor(max_workers=1))
        for n in range(1, int(data["shared"]) + 1):
            _SHARED_POOL[0].submit(library.info, "shared %d", n).result()
    if data.get("stray"):
        done = threading.Event()

        def stray() -> None:
            for n in range(1, int(data["stray"]) + 1):
                library.info("stray %d", n)
            done.set()

        _thread.start_new_thread(stray, ())
        assert done.wait(10)
    ctx.log.info("handler done logging")
    r.set(f"test:pid:{ctx.job_id}", os.getpid())
    if data.get("gate"):
        wait_at_gate(ctx, r, data["gate"], limit=float(data.get("limit", 60)))
    return {"pid": os.getpid()}
