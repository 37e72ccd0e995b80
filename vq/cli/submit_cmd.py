"""`vq submit`: create one job, or many from a JSON-lines batch."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer

from vq import audit, capacity, jobs, templates
from vq.cli.helptext import example
from vq.cli.output import emit, error, note, print_json
from vq.cli.render import render_job
from vq.cli.state import JSON_OPTION, PRIORITY_OPTION, SUBSCRIPTION_OPTION, state
from vq.deadlines import parse_deadline
from vq.durations import parse_duration_ms, parse_instant
from vq.errors import InvalidInput
from vq.submission import Submission, submit_each, submit_outcome
from vq.submission.unique import UniqueRequest, request_from


def _read_source(value: str, what: str, *, path_only: bool = False) -> str:
    """'-' is stdin, '@path' is a file; anything else is the text itself, or with
    `path_only` (--batch, whose documented form is a file's name) a file too."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@") or path_only:
        path = Path(value[1:] if value.startswith("@") else value).expanduser()
        try:
            return path.read_text()
        except FileNotFoundError:
            raise InvalidInput(f"{what}: no such file {str(path)!r}") from None
        except IsADirectoryError:
            raise InvalidInput(f"{what}: {str(path)!r} is a directory, not a JSON-lines file") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"{what}: {str(path)!r} is not UTF-8 text") from None
        except OSError as exc:
            raise InvalidInput(f"{what}: cannot read {path} ({exc.strerror})") from None
    return value


def parse_data(value: str | None, option: str = "--data") -> dict:
    """A JSON object given as text, @file or - (stdin); a refusal names `option`, the flag
    it came from (`vq batch create --meta` reads one too)."""
    if value is None:
        return {}
    text = _read_source(value, option)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{option}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:  # thousands of levels: the parser's stack gives out before jobdata's depth check
        raise InvalidInput(f"{option}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{option}: expected a JSON object")
    return data


def register(app: typer.Typer) -> None:
    @app.command(
        "submit",
        epilog=example("vq submit image-generation --user alice --priority high --data '{\"prompt\": \"a sunset\"}'"),
    )
    def submit_command(
        ctx: typer.Context,
        job_type: str | None = typer.Argument(None, metavar="TYPE", help="Job type (see `vq types`)."),
        data: str | None = typer.Option(None, "--data", "-d", help="Job data: JSON, @file, or - for stdin."),
        user: str | None = typer.Option(None, "--user", "-u", help="userId (or put userId in the data)."),
        project: str | None = typer.Option(None, "--project", "-p", help="projectId."),
        priority: str | None = PRIORITY_OPTION,
        subscription: str | None = SUBSCRIPTION_OPTION,
        delay: str | None = typer.Option(None, "--delay", help="Start after this long: 90s, 5m, 300000ms."),
        at: str | None = typer.Option(None, "--at", help="Start at this ISO 8601 time."),
        allow_past: bool = typer.Option(False, "--allow-past", help="An --at in the past runs now instead of failing."),
        deadline: str | None = typer.Option(
            None, "--deadline", help="Not started by then: expired, not run. A duration from now (10m) or ISO time."
        ),
        depends_on: list[str] = typer.Option(
            [], "--depends-on", metavar="<str>", help="Run after this job finished (repeatable)."
        ),
        allow_failure: bool = typer.Option(False, "--allow-failure", help="Run even if a dependency failed."),
        skip_cache: bool = typer.Option(False, "--skip-cache", help="Run even if an identical job's result is cached."),
        idempotency_key: str | None = typer.Option(
            None, "--idempotency-key", help="Submitting the same key again returns the same job."
        ),
        unique_key: str | None = typer.Option(
            None, "--unique-key", help="One job per key: while it waits or runs, submitting again returns it."
        ),
        unique_for: str | None = typer.Option(
            None, "--unique-for", help="With --unique-key: one job per key per window (throttle): 10m."
        ),
        debounce: str | None = typer.Option(
            None, "--debounce", help="With --unique-key: start after this quiet time; a resubmission replaces the data."
        ),
        debounce_max: str | None = typer.Option(
            None, "--debounce-max", help="With --debounce: the longest delay from the first submission."
        ),
        unique_scope: str | None = typer.Option(
            None, "--unique-scope", help="user (each user's own key) or global; default limits.uniqueScope."
        ),
        webhook: str | None = typer.Option(None, "--webhook", help="POST the job's JSON to this URL when it ends."),
        resources: str | None = typer.Option(
            None, "--resources", metavar="NAME=N,...", help="What the job needs of a worker (gpu=1,vram=24)."
        ),
        wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the job to end and print its final state."),
        timeout: float | None = typer.Option(None, "--timeout", help="With --wait: give up after this many seconds."),
        batch: str | None = typer.Option(
            None, "--batch", help="JSON-lines file of submissions (FILE.jsonl or @FILE), or - for stdin."
        ),
        template: str | None = typer.Option(None, "--template", help="Start from this preset in config's templates."),
        sets: list[str] = typer.Option(
            [], "--set", metavar="<str>", help="With --template: key=value into the data (a.b=1; repeatable)."
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Submit a job; prints its id alone, so `id=$(vq submit ...)` works.

        --template NAME starts from a preset of the config, --batch FILE submits one job per JSON line;
        --wait prints the final state (exit 1 if the job did not finish)."""
        st = state(ctx)
        if batch is not None:
            if job_type or data:
                raise InvalidInput("--batch: give either TYPE/--data or --batch, not both")
            per_job = {
                "--user (userId)": user,
                "--project (projectId)": project,
                "--priority (priority)": priority,
                "--subscription (userSubscription)": subscription,
                "--delay (delay, ms)": delay,
                "--at (at)": at,
                "--allow-past": allow_past,
                "--depends-on (dependsOn)": depends_on,
                "--allow-failure (allowFailure)": allow_failure,
                "--skip-cache (options.skipCache)": skip_cache,
                "--idempotency-key (idempotencyKey)": idempotency_key,
                "--unique-key (uniqueKey)": unique_key,
                "--unique-for (uniqueFor)": unique_for,
                "--debounce (debounce)": debounce,
                "--debounce-max (debounceMax)": debounce_max,
                "--unique-scope (uniqueScope)": unique_scope,
                "--webhook (webhookUrl)": webhook,
                "--resources (resources)": resources,
                "--deadline (deadline)": deadline,
                "--wait": wait,
                "--timeout": timeout,
                "--template": template,
                "--set": sets,
            }
            given = [flag for flag, value in per_job.items() if value]
            if given:  # each line says these for itself; silently dropping them would surprise
                raise InvalidInput(f"--batch: {', '.join(given)} set one job; put them in each line's JSON instead")
            raise typer.Exit(_submit_batch(st, batch, as_json))
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            # checked before the job is made: -1 waited not at all and exited 1 with the job just begun
            raise InvalidInput(f"--timeout: {timeout:g} is not a number of seconds above 0")
        payload = parse_data(data)
        unique = _unique_request(unique_key, unique_for, debounce, debounce_max, unique_scope)
        if template:
            preset = templates.get(st.settings, template)
            if job_type and job_type != preset.jobType:
                raise InvalidInput(f"TYPE: template {template!r} submits {preset.jobType}, not {job_type}")
            job_type, priority = preset.jobType, priority or preset.priority
            payload = templates.data_with({**preset.data, **payload}, sets)
            skip_cache = skip_cache or bool(preset.options.get("skipCache"))
            unique = unique or request_from({}, preset.options)
        elif sets:
            raise InvalidInput("--set: only with --template (use --data for a whole job)")
        if not job_type:
            raise InvalidInput("TYPE: missing (see `vq types`), or use --template NAME or --batch FILE")
        sub = Submission(
            job_type=job_type,
            data=payload,
            user_id=user,
            project_id=project,
            priority=priority,
            subscription=subscription,
            delay_ms=parse_duration_ms(delay, "--delay") if delay else None,
            at=parse_instant(at, "--at") if at else None,
            allow_past=allow_past,
            depends_on=list(depends_on),
            allow_failure=allow_failure,
            privileged=True,
            idempotency_key=idempotency_key,
            resources=capacity.parse(resources, "--resources") if resources else None,
            skip_cache=skip_cache,
            webhook_url=webhook,
            deadline=parse_deadline(deadline, "--deadline") if deadline else None,
            unique=unique,
        )
        made = submit_outcome(st.conn, st.settings, sub)
        job_id = made.id
        if not made.deduplicated:
            audit.record(st.conn, audit.cli_actor(), "operator", "create", job_type, job_id)
        if not wait:
            if as_json:
                view = jobs.show(st.conn, job_id)
                if made.outcome is not None:
                    view.update(deduplicated=made.deduplicated, uniqueOutcome=made.outcome)
                print_json(view)
            else:
                print(job_id)
                if made.deduplicated:
                    note(f"{made.outcome}: the job that holds unique key {sub.unique.key if sub.unique else ''!r}")
            return
        view = jobs.wait(st.conn, job_id, timeout, settings=st.settings)
        emit(view, as_json, render_job)
        if view["status"] != "finished":
            raise typer.Exit(1)


def _unique_request(
    key: str | None, for_: str | None, debounce: str | None, most: str | None, scope: str | None
) -> UniqueRequest | None:
    """The --unique-* and --debounce* options, as the JSON fields would say them."""
    given: dict[str, str | int | None] = {
        "uniqueKey": key,
        "uniqueFor": for_,
        "debounce": debounce,
        "debounceMax": most,
        "uniqueScope": scope,
    }
    flags = {"uniqueFor": "--unique-for", "debounce": "--debounce", "debounceMax": "--debounce-max"}
    if key is None:
        named = {**flags, "uniqueScope": "--unique-scope"}
        first = next((flag for name, flag in named.items() if given[name] is not None), None)
        if first:
            raise InvalidInput(f"{first}: only with --unique-key")
        return None
    for name, flag in flags.items():  # the CLI's names in its messages
        if given[name] is not None:
            given[name] = parse_duration_ms(str(given[name]), flag)
    return request_from(given)


def submissions_from(source: str, what: str) -> list[tuple[str, Submission]]:
    """A JSON-lines file (as --batch reads it) as (line label, submission) pairs, or the first
    bad line's fault (`vq batch create` and `add`: a batch is taken whole or not at all)."""
    text = _read_source(source, what, path_only=True)
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{what}: line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise InvalidInput(f"{what}: line {number}: JSON nested too deeply") from None
        try:
            items.append((f"{what}: line {number}", Submission.from_mapping(obj, privileged=True)))
        except InvalidInput as exc:
            raise InvalidInput(f"{what}: line {number}: {exc.message}", field=exc.field) from None
    return items


def _submit_batch(st, source: str, as_json: bool) -> int:
    text = _read_source(source, "--batch", path_only=True)
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]

    def build(item: tuple[int, str]) -> Submission:
        try:
            obj = json.loads(item[1])
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise InvalidInput("JSON nested too deeply") from None
        return Submission.from_mapping(obj, privileged=True)

    outcomes = []
    for outcome in submit_each(st.conn, st.settings, numbered, build):
        line = numbered[outcome["index"]][0]
        if outcome["ok"]:
            outcomes.append({"line": line, "ok": True, "id": outcome["id"]})
            if "unique" in outcome:
                outcomes[-1]["unique"] = outcome["unique"]
        else:
            outcomes.append({"line": line, "ok": False, "error": outcome["error"]["message"]})
    failed = [o for o in outcomes if not o["ok"]]
    if as_json:
        print_json(outcomes)
    else:
        for o in outcomes:
            if o["ok"]:
                print(o["id"])
        for o in failed:
            error(f"line {o['line']}: {o['error']}")
        note(f"{len(outcomes) - len(failed)} submitted, {len(failed)} rejected")
    return 2 if failed else 0
