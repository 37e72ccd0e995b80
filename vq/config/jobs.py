"""The blocks of what a job runs with: providers (their breakers and rate limits), costs and
budgets, artifacts, the result cache and the job types. The daemon's and its services'
blocks are in vq/config/services.py."""

from typing import Annotated, Literal

from msgspec import Meta, field

from vq.config.base import TIERS, ResourceAmounts, _InvalidKey, _Strict, check_resources
from vq.config.queue import Backoff


class BreakerSettings(_Strict):
    failureThreshold: Annotated[
        int, Meta(ge=1, description="provider failures within `window` that open the breaker")
    ] = 5
    window: Annotated[int, Meta(ge=1000, description="ms")] = 60_000
    cooldown: Annotated[int, Meta(ge=100, description="ms the breaker stays open before one probe is let through")] = (
        30_000
    )


class ProviderRateLimit(_Strict):
    """A provider's own limits, held by every host together (counted in Redis)."""

    requests: Annotated[int, Meta(ge=0, description="requests per `window`; 0: no request limit")] = 0
    window: Annotated[int, Meta(ge=1000, description="ms, whole seconds")] = 60_000
    concurrent: Annotated[int, Meta(ge=0, description="requests in flight at once; 0: no limit")] = 0
    maxWait: Annotated[
        int,
        Meta(ge=0, description="ms a job waits for this provider before it fails over to the next one its type allows"),
    ] = 10_000

    def __post_init__(self) -> None:
        if self.window % 1000:
            raise _InvalidKey("window", f"{self.window} ms is not a whole number of seconds")


class ProviderSettings(_Strict):
    kind: Literal["http", "local"] = "http"
    url: str | None = None
    apiKeyEnv: str | None = None
    timeout: Annotated[int, Meta(ge=100, description="ms")] = 30_000
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    rateLimit: ProviderRateLimit = field(default_factory=ProviderRateLimit)
    cost: Annotated[
        dict[str, float], Meta(description="price per unit (characters, images, seconds, tokens ...) in costs.currency")
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for unit, price in self.cost.items():
            if price < 0:
                raise _InvalidKey("cost", f"{unit}: a price cannot be negative")


class Budget(_Strict):
    daily: Annotated[float, Meta(ge=0, description="most spent per UTC day, in costs.currency")] | None = None
    monthly: Annotated[float, Meta(ge=0, description="most spent per UTC calendar month")] | None = None


class BudgetSettings(_Strict):
    """Spend limits: past one, a user's (or project's) further provider jobs are held, not failed."""

    users: dict[str, Budget] = field(default_factory=dict)
    tiers: Annotated[dict[str, Budget], Meta(description="for users without their own entry")] = field(
        default_factory=dict
    )
    projects: dict[str, Budget] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tier in self.tiers:
            if tier not in TIERS:
                raise _InvalidKey("tiers", f"{tier}: not one of {', '.join(TIERS)}")


class CostSettings(_Strict):
    currency: Annotated[str, Meta(min_length=1, max_length=8)] = "USD"
    budgets: BudgetSettings = field(default_factory=BudgetSettings)


class ArtifactSettings(_Strict):
    """Where jobs' files live and how long (README: Artifacts)."""

    root: Annotated[str, Meta(description="the storage root; default <data_dir>/artifacts")] | None = None
    retention: Annotated[
        int,
        Meta(
            ge=0,
            description="ms a finished job's files are kept after it ended (a "
            "type's artifactRetention wins); 0: kept until the job is "
            "removed",
        ),
    ] = 7 * 86_400_000
    failedRetention: Annotated[int, Meta(ge=0, description="ms the files of a failed or canceled job are kept")] = 0
    sweepInterval: Annotated[int, Meta(ge=200, description="ms between the daemon's clean-ups")] = 60_000


class CacheSettings(_Strict):
    ttl: Annotated[int, Meta(ge=0, description="ms a finished result is reused; 0 turns caching off")] = 3_600_000
    scope: Literal["user", "global"] = "user"


class JobTypeSettings(_Strict):
    handler: str | None = None
    description: str | None = None
    timeout: Annotated[int, Meta(ge=1000, description="milliseconds")] | None = None
    attempts: Annotated[int, Meta(ge=1)] | None = None
    backoff: Backoff | None = None
    unknownErrors: Literal["temporary", "permanent"] | None = None
    onDeadline: (
        Annotated[
            Literal["expire", "run"],
            Meta(description="a job whose deadline passed before it started: expire (canceled, default) or run"),
        ]
        | None
    ) = None
    providers: list[str] | None = None
    cache: CacheSettings | None = None
    isolation: (
        Annotated[
            Literal["process", "fork"],
            Meta(description="process: run in the long-lived worker (default); fork: a fresh child process per job"),
        ]
        | None
    ) = None
    stopAtCheckpoint: (
        Annotated[
            bool,
            Meta(
                description="on stop, requeue a running job at its next ctx.checkpoint (default daemon.stopAtCheckpoint)"
            ),
        ]
        | None
    ) = None
    concurrencyPerWorker: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=64,
                description="jobs of this type one worker process runs at once, in threads (I/O-bound "
                "handlers); every concurrency limit still holds",
            ),
        ]
        | None
    ) = None
    artifactRetention: Annotated[int, Meta(ge=0, description="ms this type's finished jobs' files are kept")] | None = (
        None
    )
    maxMemory: (
        Annotated[
            int,
            Meta(
                ge=16,
                description="MB a job may allocate; past it the job fails (category "
                "resource). Runs the type's jobs forked",
            ),
        ]
        | None
    ) = None
    maxCpuTime: (
        Annotated[
            int,
            Meta(
                ge=1000,
                description="ms of CPU a job may use, counted in whole seconds; "
                "past it the job fails (resource). Runs them "
                "forked",
            ),
        ]
        | None
    ) = None
    resources: (
        Annotated[
            ResourceAmounts,
            Meta(
                description="what each job needs of a worker's resources, e.g. {gpu: 1, vram: 24}; "
                "admitted only to a worker whose free share covers it (vq/capacity.py)"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        check_resources(self, "resources")
