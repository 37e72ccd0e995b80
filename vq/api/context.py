"""What every router of the HTTP API shares: the Redis clients and settings, the `caller`,
`operator` and `scraper` dependencies (who is asking, checked once per request), and the rules of
whom a request may act for. Built once by `create_app`, handed to each router's factory.
"""

from __future__ import annotations

from functools import partial

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq import audit, jobs
from vq.api.ratelimit import check_rate
from vq.config import Settings
from vq.created_view import created_view
from vq.errors import Ambiguous, NotFound
from vq.submission import Submission, submit_outcome
from vq.tokens import Forbidden, Principal, VerifiedTokens, verify_key

BEARER = HTTPBearer(
    auto_error=False,
    description="A JWT, e.g. from `vq token create` (documents the scheme; the token is checked by vq.tokens)",
)


class Context:
    """The shared state and the request-level checks the routes call."""

    def __init__(self, settings: Settings, conn: Redis, stream_conn):
        self.settings = settings
        self.conn = conn
        self.stream_conn = stream_conn  # event streams wait on Redis without holding a thread
        tokens = VerifiedTokens(settings, verify_key(settings))

        # async, every one: FastAPI runs a plain `def` dependency in the thread pool, a hop
        # (two thread switches) per request for a check that takes microseconds
        async def any_role(request: Request, _bearer: object = Security(BEARER)) -> Principal:
            principal = tokens.decode(request.headers.get("authorization"))
            if settings.http.rateLimit.requests > 0:
                check_rate(conn, settings, principal.user_id)  # on the loop, as `create` (vq/api/ratelimit.py)
            return principal

        async def caller(principal: Principal = Depends(any_role)) -> Principal:
            if principal.role == "metrics":  # a scraper's token: never a user acting on jobs
                raise Forbidden("a metrics token may only read GET /metrics")
            return principal

        async def scraper(principal: Principal = Depends(any_role)) -> Principal:
            if not principal.may_scrape:
                raise Forbidden("this needs the operator or metrics role")
            return principal

        async def operator(principal: Principal = Depends(caller)) -> Principal:
            if not principal.is_operator:
                raise Forbidden("this needs the operator role")
            return principal

        self.caller = caller  # FastAPI dependencies: `Depends(ctx.caller)`
        self.operator = operator
        self.scraper = scraper  # GET /metrics: operators and scrape-only tokens

    @staticmethod
    def call(function, *args, **kwargs):
        """A blocking service function, awaited from the thread pool."""
        return run_in_threadpool(partial(function, *args, **kwargs))

    def audited(self, principal: Principal, action: str, job_type: str | None, target: str, **detail):
        """Record a write with the acting user (the archiver files it in audit_log)."""
        return self.call(audit.record, self.conn, principal.user_id, principal.role, action, job_type, target, **detail)

    def create(self, principal: Principal, body: dict, job_type: str | None, **detail) -> dict:
        """Submit, record who did, answer with the new job (or, for a uniqueKey, the job that
        holds it, with `deduplicated`).

        The create routes call this on the event loop, not through the thread pool (`call`):
        its few Redis round trips (submit's, then the one pipelined read-back) take ~1 ms,
        while the hop to a pool thread and back cost ~0.4 ms of CPU per submission, a fifth
        of the HTTP child's (docs/benchmarks.md, HTTP submit). The price: while it waits on
        Redis, the child's other requests and event streams wait too, ~1 ms per create, and
        as long as Redis does when Redis stalls (the client's 10 s socket timeout at most)."""
        sub = self.own_submission(principal, body, job_type)
        made = submit_outcome(self.conn, self.settings, sub)

        def record(pipe) -> None:
            audit.record(pipe, principal.user_id, principal.role, "create", sub.job_type, made.id, **detail)

        # the audit record and the job read back in one round trip (vq/created_view.py)
        view = created_view(
            self.conn, self.settings, made.id, sub.job_type, principal.user_id, None if made.deduplicated else record
        )
        if made.deduplicated and not principal.may_see(view["userId"], view["projectId"]):
            # a global key held by another user's job: its id and state, not its data or owner
            view = {name: view[name] for name in ("id", "jobType", "status", "unique")}
        if made.outcome is not None:
            view.update(deduplicated=made.deduplicated, uniqueOutcome=made.outcome)
        return view

    def visible_job(self, principal: Principal, job_type: str, job_id: str) -> dict:
        """The job, if it exists, is of this type and the caller may see it; else 404. `job_id`
        may be a unique prefix among the jobs the caller may see of this type (409 `ambiguous`
        names them); a trimmed job is answered from the history database."""
        view = jobs.show(
            self.conn,
            job_id,
            self.settings,
            reveal_to=principal.user_id,
            visible=lambda c: c.job_type == job_type and principal.may_see(c.user_id, c.project_id),
        )
        if view["jobType"] != job_type or not principal.may_see(view["userId"], view["projectId"]):
            raise NotFound(f"no such job {job_id!r}")
        return view

    @staticmethod
    def acting_for(principal: Principal, claimed: str | None, project: str | None, what: str) -> str:
        """The user a write is for. A user acts only as themselves and in their token's
        projects; an operator may act for anyone."""
        if not principal.is_operator:
            if claimed is not None and claimed != principal.user_id:
                raise Forbidden(f"userId: may only {what} as yourself", field="userId")
            if principal.projects is not None and project not in principal.projects:
                raise Forbidden("projectId: not one of your token's projects", field="projectId")
        return claimed or principal.user_id

    def tier_of(self, principal: Principal) -> str:
        """A user's tier comes from their token, else the server's config, never from a request body."""
        return principal.tier or self.settings.subscription_of(principal.user_id)

    def own_submission(self, principal: Principal, body: dict, job_type: str | None) -> Submission:
        """Build a submission for the caller (see `acting_for`), at their token's tier."""
        conn, settings = self.conn, self.settings
        sub = Submission.from_mapping(body, job_type=job_type, privileged=principal.is_operator)
        data = sub.data if isinstance(sub.data, dict) else {}
        data_user = data.get("userId")
        claimed = sub.user_id or (str(data_user) if data_user is not None else None)
        sub.user_id = self.acting_for(principal, claimed, sub.project_id or data.get("projectId"), "submit jobs")
        if not principal.is_operator:
            sub.subscription = self.tier_of(principal)
            sub.allow_past = False
            whole = []
            for dependency in sub.depends_on:  # another user's job cannot feed yours its results
                try:  # a prefix names one of the caller's own jobs only
                    dependency = jobs.resolve(
                        conn, dependency, settings, visible=lambda c: principal.may_see(c.user_id, c.project_id)
                    )
                except (NotFound, Ambiguous) as exc:
                    raise type(exc)(f"dependsOn: {exc.message}", field="dependsOn") from None
                found = jobs.owner(conn, dependency)
                if found is None or not principal.may_see(*found):
                    raise NotFound(f"dependsOn: no such job {dependency!r}", field="dependsOn")
                whole.append(dependency)
            sub.depends_on = whole
        return sub
