"""Monitoring over HTTP: statistics, queue health, performance, providers, workers, limits,
costs, and the Prometheus exposition. Each calls the service function the CLI's command calls."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from vq import costs, limits, prometheus, queues, stats, workers
from vq import health as health_service
from vq.api import schemas
from vq.api.context import Context
from vq.api.errors import ERRORS_AS_JSON
from vq.durations import parse_duration_ms
from vq.errors import InvalidInput
from vq.providers import stats as provider_stats
from vq.tokens import Forbidden, Principal


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call = ctx.conn, ctx.settings, ctx.call

    @routes.get(
        "/api/jobs/stats",
        tags=["monitoring"],
        summary="Job statistics (operator)",
        response_model=schemas.JobStats,
        response_model_exclude_unset=True,
    )
    async def job_stats(_: Principal = Depends(ctx.operator)) -> dict:
        return await call(stats.stats, conn, settings)

    @routes.get(
        "/api/jobs/queues/stats",
        tags=["monitoring"],
        summary="Queue statistics (operator)",
        response_model=list[schemas.QueueStats],
        response_model_exclude_unset=True,
    )
    async def queue_stats(_: Principal = Depends(ctx.operator)) -> list:
        return await call(queues.counts, conn, settings)

    @routes.get("/api/jobs/health", tags=["monitoring"], summary="Queue health", responses=schemas.HEALTH_RESPONSES)
    async def queue_health(_: Principal = Depends(ctx.caller)):
        report = await call(health_service.check, conn, settings)
        return JSONResponse(report, status_code=503 if report["status"] == "error" else 200)

    @routes.get("/api/jobs/performance", tags=["monitoring"], summary="Performance metrics (operator)")
    async def performance(
        window: str = Query("1h", description="15m, 1h, 7d"), _: Principal = Depends(ctx.operator)
    ) -> dict:
        return await call(stats.perf, conn, settings, stats.perf_window_ms(window, "window"))

    @routes.get(
        "/api/providers", tags=["monitoring"], summary="AI providers: breaker, limits in use, performance (operator)"
    )
    async def provider_overview(
        window: str = Query("15m", description="15m, 1h, 1d"), _: Principal = Depends(ctx.operator)
    ) -> list:
        window_ms = parse_duration_ms(window, "window")
        if not 60_000 <= window_ms <= 2 * 86_400_000:
            raise InvalidInput("window: between 1m and 2d", field="window")
        return await call(provider_stats.overview, conn, settings, window_ms)

    @routes.get("/api/workers", tags=["monitoring"], summary="Every worker process of every host (operator)")
    async def worker_listing(_: Principal = Depends(ctx.operator)) -> list:
        return await call(workers.listing, conn, settings.health.heartbeatAge)

    @routes.get(
        "/api/limits",
        tags=["monitoring"],
        summary="Concurrency limits: running / limit per type, active user and limit group key (operator)",
    )
    async def limit_overview(_: Principal = Depends(ctx.operator)) -> dict:
        return await call(limits.overview, conn, settings)

    @routes.get("/api/costs", tags=["monitoring"], summary="Provider costs per user, project or provider")
    async def cost_report(
        by: str = Query("user", description="user, project or provider"),
        since: str = Query("30d", description="YYYY-MM-DD, today, or back from today: 7d"),
        until: str = Query("today"),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        """An operator sees everything; anyone else only their own spend (by=user)."""
        if not principal.is_operator and by != "user":
            raise Forbidden("by: only by=user (your own spend) without the operator role")
        only = None if principal.is_operator else principal.user_id
        return await call(costs.query, conn, settings, by, since, until, only)

    @routes.get(
        "/metrics",
        tags=["monitoring"],
        summary="Prometheus metrics (operator, or a scrape-only token: role metrics)",
        response_class=PlainTextResponse,
        responses=ERRORS_AS_JSON,
    )
    async def metrics(request: Request, _: Principal = Depends(ctx.scraper)):
        # OpenMetrics when the scraper asks for it (its run-time buckets carry exemplars).
        if prometheus.wants_openmetrics(request.headers.get("accept")):
            text = await call(prometheus.exposition, conn, settings, True)
            return PlainTextResponse(text, media_type=prometheus.OPENMETRICS)
        text = await call(prometheus.exposition, conn, settings)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return routes
