"""Settings: the YAML file mirrors the spec's blocks key for key; the environment wins.

Where the file comes from: `--config PATH`, else `$VQ_CONFIG`, else
`$XDG_CONFIG_HOME/vq/config.yaml` (when it exists). With no file, the spec's defaults apply.
Every problem is reported as one line naming the key, as a `ConfigError` (exit code 2).

The models are msgspec Structs, not pydantic models: every CLI call loads the config, and
building 34 pydantic classes (plus importing pydantic) cost about 0.1 s of each start-up
(issue 22). `msgspec.convert(raw, Settings, strict=False)` checks types and the `Meta`
bounds; each `__post_init__` checks what a type cannot say, raising `_InvalidKey` to name the
key it is about.
"""


import os
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, field

from vq.errors import ConfigError

TIERS = ("free", "basic", "pro", "enterprise")
# The daemon's housekeeping chores (vq/chores.py), the keys of daemon.chores.
CHORE_NAMES = ("trim-ended", "age-waiting", "enqueue-dependents", "mark-unrouted", "forget-idle-marks",
               "recover-stalled", "check-health", "copy-recurring", "report-presence", "prune-artifacts", "autoscale")
PRIORITIES = ("high", "normal", "low")


class _InvalidKey(ValueError):
    """A check in `__post_init__` failed for one key of the block: the error line names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Unknown keys are errors: a typo must never be silently ignored."""


class SentinelSettings(_Strict):
    """Redis Sentinel: vq asks the sentinels for the current master of `service`, and asks
    again after a failover (README: Scale-out)."""

    hosts: Annotated[list[str], Meta(min_length=1, description="sentinels as HOST:PORT")]
    service: Annotated[str, Meta(description="the master's name in the sentinels' config")] = "mymaster"
    password: Annotated[str, Meta(description="the sentinels' own password, when they have one")] | None = None

    def __post_init__(self) -> None:
        for item in self.hosts:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _InvalidKey("hosts", f"{item!r} is not HOST:PORT")

    def addresses(self) -> list[tuple[str, int]]:
        return [(h.rpartition(":")[0].strip("[]"), int(h.rpartition(":")[2])) for h in self.hosts]


class RedisSettings(_Strict):
    url: str | None = None
    host: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] = 6379
    password: str | None = None
    db: Annotated[int, Meta(ge=0)] = 0
    socket: str | None = None
    sentinel: SentinelSettings | None = None

    @property
    def configured(self) -> bool:
        """True when an operator named a Redis; vq then never uses the embedded one."""
        return bool(self.url or self.host or self.socket or self.sentinel)


class Backoff(_Strict):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: Annotated[int, Meta(ge=0, description="milliseconds")] = 2000
    factor: Annotated[float, Meta(ge=1.0)] = 2.0
    max: Annotated[int, Meta(ge=0, description="milliseconds")] = 3_600_000
    jitter: Annotated[float, Meta(ge=0.0, le=1.0, description="up to this share is added to each wait, "
                                                              "at random")] = 0.1


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class KeepJobs(_Strict):
    """BullMQ's `{age, count}` form of removeOnComplete / removeOnFail: an ended job is
    removed once it is older than `age` or beyond the newest `count` of its type, whichever
    comes first; a job that a job still waiting or running depends on is kept regardless
    (vq/maintenance.py)."""

    age: Annotated[int, Meta(ge=0, description="milliseconds since the job ended")] | None = None
    count: Annotated[int, Meta(ge=0, description="the newest this many per type and state")] | None = None

    def __post_init__(self) -> None:
        if self.age is None and self.count is None:
            raise ValueError("give age (ms), count, or both")


class Retention(msgspec.Struct, kw_only=True):
    """A removeOnComplete / removeOnFail value in one form: None in a field means no bound
    of that kind; `forever` (the spec's `false`) means never removed."""

    age_ms: int | None = None
    count: int | None = None
    forever: bool = False


def retention_of(option: "bool | int | KeepJobs") -> Retention:
    """The spec's forms: `true` removes a job as soon as nothing waits on it (count 0: at the
    next trim), `false` keeps every job, a number keeps that many per type, `{age, count}`
    either or both."""
    if option is True:
        return Retention(count=0)
    if option is False:
        return Retention(forever=True)
    if isinstance(option, KeepJobs):
        return Retention(age_ms=option.age, count=option.count)
    return Retention(count=int(option))


def _keep_form(value: object) -> str | None:
    """What is wrong with a removeOnComplete / removeOnFail value as written, relative to its
    key (": message" or ".age: message"), else None. Checked before the models are built
    (`_before`), so a bad value gets one line, not one per form the union tried."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value >= 0 else ": a count of jobs must be 0 or more"
    if isinstance(value, dict):
        try:
            msgspec.convert(value, KeepJobs, strict=False)
        except msgspec.ValidationError as exc:
            keys, message = _locate(exc, value, KeepJobs)
            return "".join(f".{key}" for key in keys) + f": {message}"
        return None
    return f": {value!r}: expected true, false, a number of jobs or {{age: ms, count: n}}"


class DefaultJobOptions(_Strict):
    # Finished jobs: a day, at most 1,000 per type (README, "How the spec's settings map
    # onto RQ"); failed ones a week, at most 5,000 per type, to be looked at after a weekend.
    removeOnComplete: bool | int | KeepJobs = field(default_factory=lambda: KeepJobs(age=DAY_MS, count=1000))
    removeOnFail: bool | int | KeepJobs = field(default_factory=lambda: KeepJobs(age=7 * DAY_MS, count=5000))
    attempts: Annotated[int, Meta(ge=1)] = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: Annotated[int, Meta(ge=1000, description="milliseconds")] = 600_000


class QueueSettingsBlock(_Strict):
    stalledInterval: Annotated[int, Meta(ge=1000)] = 30_000
    maxStalledCount: Annotated[int, Meta(ge=0)] = 1
    lockDuration: Annotated[int, Meta(ge=1000)] = 30_000


class QueueSettings(_Strict):
    defaultJobOptions: DefaultJobOptions = field(default_factory=DefaultJobOptions)
    settings: QueueSettingsBlock = field(default_factory=QueueSettingsBlock)


DEFAULT_USER_LIMITS = {"free": 1, "basic": 2, "pro": 5, "enterprise": 10}
DEFAULT_TYPE_LIMITS = {
    "video-generation": 2,
    "script-generation": 5,
    "scene-creation": 3,
    "audio-synthesis": 3,
    "image-generation": 5,
    "world-building": 2,
    "content-analysis": 10,
    "video-composition": 1,
    "personalization": 5,
    "ai-processing": 3,
}


class ConcurrencySettings(_Strict):
    user: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_USER_LIMITS))
    type: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TYPE_LIMITS))

    def __post_init__(self) -> None:
        for tier, limit in self.user.items():
            if tier not in TIERS:
                raise _InvalidKey("user", f"unknown subscription tier {tier!r} (expected one of {', '.join(TIERS)})")
            if limit < 1:
                raise _InvalidKey("user", f"limit for {tier!r} must be at least 1")
        for name, limit in self.type.items():
            if limit < 1:
                raise _InvalidKey("type", f"limit for {name!r} must be at least 1")
        self.user = {**DEFAULT_USER_LIMITS, **self.user}
        self.type = {**DEFAULT_TYPE_LIMITS, **self.type}


Priority = Literal["high", "normal", "low"]
Tier = Literal["free", "basic", "pro", "enterprise"]


class PrioritySettings(_Strict):
    """Priority from the subscription tier, and the highest a tier may ask for."""

    byTier: dict[Tier, Priority] = field(
        default_factory=lambda: {"free": "low", "basic": "normal", "pro": "normal", "enterprise": "high"}
    )
    maxByTier: dict[Tier, Priority] = field(
        default_factory=lambda: {"free": "normal", "basic": "normal", "pro": "high", "enterprise": "high"}
    )
    defaultSubscription: Tier = "free"
    agingThreshold: Annotated[int, Meta(ge=1000, description="ms a job waits before it is admitted one level "
                                                             "up")] = 600_000


class LimitsSettings(_Strict):
    maxDataBytes: Annotated[int, Meta(ge=1, description="bytes: the largest job data accepted (compact "
                                                        "JSON)")] = 1_048_576
    maxDataDepth: Annotated[int, Meta(ge=1, le=100, description="how deeply job data's objects and arrays may "
                                                                "nest")] = 32
    maxResultBytes: Annotated[int, Meta(ge=1, description="bytes: the largest result a handler may return "
                                                          "(compact JSON); larger fails the job, "
                                                          "permanently")] = 1_048_576
    maxRateLimitDelay: Annotated[int, Meta(ge=0, description="ms: the longest a provider's retry-after is "
                                                             "honoured")] = 3_600_000
    idempotencyWindow: Annotated[int, Meta(ge=1000, description="ms an idempotencyKey keeps returning its "
                                                                "job")] = 86_400_000
    maxDelay: Annotated[int, Meta(ge=1000, description="ms: the longest delay (or `at` ahead) "
                                                       "accepted")] = 90 * 86_400_000


class AutoscaleSettings(_Strict):
    """Worker processes grow and shrink with the work that could start (README: Autoscaling)."""

    min: Annotated[int, Meta(ge=1, description="worker processes always running")] = 1
    max: Annotated[int, Meta(ge=1, le=256, description="the most worker processes on this host")] = 8
    scaleDownAfter: Annotated[int, Meta(ge=1000, description="ms a worker does no work before it is "
                                                             "retired")] = 30_000
    interval: Annotated[int, Meta(ge=200, description="ms between looks at the backlog")] = 1000

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise _InvalidKey("max", f"{self.max} is below min ({self.min})")


class DaemonSettings(_Strict):
    workers: Annotated[int, Meta(ge=1, description="worker processes; default the CPU count")] | None = None
    queues: list[str] | None = None
    shutdownGrace: Annotated[int, Meta(ge=0, description="milliseconds")] = 30_000
    maxJobsPerWorker: Annotated[int, Meta(ge=1, description="a worker process is replaced after this many "
                                                            "jobs")] = 10_000
    maxMemoryPerWorker: Annotated[int, Meta(ge=16, description="MB of resident memory after which a worker "
                                            "process finishes its job and is replaced; null: no limit")] | None = 2048
    schedulerInterval: Annotated[int, Meta(ge=10, description="ms: the longest the timer sleeps between checks "
                                           "(it wakes at each due time and at each announcement anyway)")] = 1000
    weight: Annotated[float, Meta(gt=0, le=1000, description="this host's share of new workers when several "
                                                             "autoscaling hosts see the same backlog")] = 1.0
    autoscale: Annotated[AutoscaleSettings, Meta(description="grow and shrink the workers between min and max "
                                                             "instead of running `workers` of them")] | None = None
    chores: Annotated[dict[str, Annotated[int, Meta(ge=10)]],
                      Meta(description="ms between runs of a housekeeping chore, by name (vq/chores.py); "
                                       "unnamed ones keep their defaults")] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.chores:
            if name not in CHORE_NAMES:
                raise _InvalidKey("chores", f"{name!r} is not a chore (one of {', '.join(CHORE_NAMES)})")


class RecurringSettings(_Strict):
    """How recurring jobs treat ticks that came due while no daemon ran."""

    catchUp: Annotated[Literal["none", "one", "all"], Meta(description="default policy for new recurring "
                                                                       "jobs")] = "one"
    misfireGrace: Annotated[int, Meta(ge=0, description="ms late a tick may fire and still count as on "
                                                        "time")] = 60_000
    maxCatchUp: Annotated[int, Meta(ge=1, description="the most missed ticks `catch_up: all` runs at once")] = 100
    keepRuns: Annotated[int, Meta(ge=1, description="runs remembered per recurring job for `vq recurring "
                                                    "show`")] = 100
    lease: Annotated[int, Meta(ge=1000, description="ms one daemon holds a recurring job while it fires a "
                                                    "tick")] = 10_000


class HistorySettings(_Strict):
    """The archiver: events -> the SQLite history database and the metrics in Redis."""

    enabled: Annotated[bool, Meta(description="run an archiver in this daemon (one runs at a time, by "
                                              "lock)")] = True
    path: Annotated[str, Meta(description="the SQLite file; default <data_dir>/history.db")] | None = None
    retentionDays: Annotated[int, Meta(ge=1, description="days job rows and transitions are kept (aggregates "
                                                         "stay)")] = 90
    batchSize: Annotated[int, Meta(ge=1, le=100_000, description="events written per transaction")] = 1000
    linger: Annotated[int, Meta(ge=0, le=10_000, description="ms the archiver waits after a short batch for "
                                                             "more events")] = 200
    handoverAfter: Annotated[int, Meta(ge=0, description="s without the history file's archiver before "
                                                         "another host's file takes over (0: never)")] = 600
    maxResultBytes: Annotated[int, Meta(ge=0, description="a finished job's result is copied to the history "
                                                          "database when its JSON is at most this long (0: "
                                                          "never)")] = 65_536


class Thresholds(_Strict):
    degraded: float
    unhealthy: float


class HealthSettings(_Strict):
    """When a queue (and so the system) counts as degraded or unhealthy; see README."""

    window: Annotated[int, Meta(ge=10_000, description="ms of recent activity judged")] = 300_000
    minEnded: Annotated[int, Meta(ge=1, description="ended jobs a window needs before its failure rate "
                                                    "counts")] = 5
    failureRate: Thresholds = field(default_factory=lambda: Thresholds(degraded=0.10, unhealthy=0.50))
    errorTrend: Annotated[float, Meta(ge=1.0, description="failures this window / the window before: degraded "
                                                          "at or above")] = 2.0
    backlogAge: Thresholds = field(default_factory=lambda: Thresholds(degraded=300_000, unhealthy=1_800_000))
    stalled: Thresholds = field(default_factory=lambda: Thresholds(degraded=1, unhealthy=5))
    redisMemory: Thresholds = field(default_factory=lambda: Thresholds(degraded=0.80, unhealthy=0.95))
    heartbeatAge: Annotated[int, Meta(ge=1000, description="ms without a heartbeat after which a worker is "
                                                           "dead")] = 60_000
    checkInterval: Annotated[int, Meta(ge=1000, description="ms between the daemon's checks (alerts)")] = 15_000
    webhooks: Annotated[list[str], Meta(description="URLs POSTed a JSON alert when health changes")] = field(
        default_factory=list)


class RateLimitSettings(_Strict):
    requests: Annotated[int, Meta(ge=0, description="requests per window per user; 0 turns the limit off")] = 600
    window: Annotated[int, Meta(ge=1000, description="ms")] = 60_000


class HttpSettings(_Strict):
    """The daemon's HTTP API (README: HTTP API)."""

    listen: Annotated[str, Meta(description="HOST:PORT the daemon serves the API on")] = "127.0.0.1:8765"
    enabled: bool = True
    jwt_secret: Annotated[str, Meta(description="HS256 secret; else $VQ_JWT_SECRET, else "
                                                "<data_dir>/jwt.secret")] | None = None
    jwt_public_key: Annotated[str, Meta(description="a PEM file: verify RS256 tokens with it "
                                                    "instead")] | None = None
    rateLimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    maxBodyBytes: Annotated[int, Meta(ge=1024, description="largest request body accepted")] = 2_097_152

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _InvalidKey("listen", f"{self.listen!r} is not HOST:PORT")


class TemplateSettings(_Strict):
    """A named preset for `vq submit --template NAME` (README: Job templates)."""

    jobType: Annotated[str, Meta(description="the job type it submits")]
    data: Annotated[dict, Meta(description="the job's data; --set key=value changes a field")] = field(
        default_factory=dict)
    priority: Annotated[str, Meta(description="high, normal or low (default: from the tier)")] | None = None
    options: Annotated[dict, Meta(description="skipCache: true")] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.priority is not None and self.priority not in PRIORITIES:
            raise _InvalidKey("priority", f"{self.priority!r} is not one of {', '.join(PRIORITIES)}")
        unknown = sorted(set(self.options) - {"skipCache"})
        if unknown:
            raise _InvalidKey("options", f"{unknown[0]}: unknown option (known: skipCache)")


class WebhookSettings(_Strict):
    """Job webhooks (README: Webhooks): a job's webhookUrl is POSTed its JSON when it ends."""

    enabled: Annotated[bool, Meta(description="run a notifier in each daemon")] = True
    timeout: Annotated[int, Meta(ge=100, description="ms a receiver has to answer")] = 5000
    attempts: Annotated[int, Meta(ge=1, le=20, description="deliveries tried before giving up")] = 5
    backoff: Annotated[int, Meta(ge=10, description="ms before the 2nd attempt, doubling each time")] = 2000
    concurrency: Annotated[int, Meta(ge=1, le=64, description="deliveries in flight per daemon")] = 8
    secret: Annotated[str, Meta(description="sign bodies (X-Vq-Signature); else "
                                            "$VQ_WEBHOOK_SECRET")] | None = None
    allowHosts: Annotated[list[str], Meta(description="host names a webhookUrl may name even when they are or "
                                                      "resolve to internal addresses (vq/egress.py)")] = field(
        default_factory=list)
    allowNetworks: Annotated[list[str], Meta(description="networks (CIDR, e.g. 10.0.0.0/8) a webhookUrl may "
                                                         "reach though they are not public (loopback, private, "
                                                         "...)")] = field(default_factory=list)

    def __post_init__(self) -> None:
        for host in self.allowHosts:
            if not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host or "") or host.strip(".") == "":
                raise _InvalidKey("allowHosts", f"{host!r} is not a host name (no scheme, port or path: "
                                              "hooks.example.com)")
        if self.allowNetworks:
            import ipaddress

            for network in self.allowNetworks:
                try:
                    ipaddress.ip_network(network)
                except ValueError as exc:
                    raise _InvalidKey("allowNetworks", f"{network!r} is not a network such as 10.0.0.0/8 or "
                                                     f"fd00::/8 ({exc})") from None


class SecuritySettings(_Strict):
    """Data protection (README: Data protection)."""

    sensitiveFields: Annotated[list[str], Meta(description="data fields whose names contain one of these (as "
                                                           "whole words) are encrypted at rest")] = field(
        default_factory=lambda: ["api_key", "token", "secret", "password", "passphrase", "credentials",
                                 "private_key", "authorization"])
    encryptionKey: Annotated[str, Meta(description="Fernet key(s), comma-separated, newest first; else "
                                                   "$VQ_ENCRYPTION_KEY, else "
                                                   "<data_dir>/encryption.key")] | None = None

    def __post_init__(self) -> None:
        if not self.encryptionKey:
            return
        import base64
        import binascii

        for key in self.encryptionKey.split(","):
            try:
                ok = len(base64.urlsafe_b64decode(key.strip().encode())) == 32
            except (binascii.Error, ValueError):
                ok = False
            if key.strip() and not ok:
                raise _InvalidKey("encryptionKey", "not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                                "`python -c 'from cryptography.fernet import Fernet; "
                                "print(Fernet.generate_key().decode())'`)")


class BreakerSettings(_Strict):
    failureThreshold: Annotated[int, Meta(ge=1, description="provider failures within `window` that open the "
                                                            "breaker")] = 5
    window: Annotated[int, Meta(ge=1000, description="ms")] = 60_000
    cooldown: Annotated[int, Meta(ge=100, description="ms the breaker stays open before one probe is let "
                                                      "through")] = 30_000


class ProviderRateLimit(_Strict):
    """A provider's own limits, held by every host together (counted in Redis)."""

    requests: Annotated[int, Meta(ge=0, description="requests per `window`; 0: no request limit")] = 0
    window: Annotated[int, Meta(ge=1000, description="ms, whole seconds")] = 60_000
    concurrent: Annotated[int, Meta(ge=0, description="requests in flight at once; 0: no limit")] = 0
    maxWait: Annotated[int, Meta(ge=0, description="ms a job waits for this provider before it fails over to "
                                                   "the next one its type allows")] = 10_000

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
    cost: Annotated[dict[str, float], Meta(description="price per unit (characters, images, seconds, tokens "
                                                       "...) in costs.currency")] = field(default_factory=dict)

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
        default_factory=dict)
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
    retention: Annotated[int, Meta(ge=0, description="ms a finished job's files are kept after it ended (a "
                                                     "type's artifactRetention wins); 0: kept until the job is "
                                                     "removed")] = 7 * 86_400_000
    failedRetention: Annotated[int, Meta(ge=0, description="ms the files of a failed or canceled job are "
                                                           "kept")] = 0
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
    providers: list[str] | None = None
    cache: CacheSettings | None = None
    isolation: Annotated[Literal["process", "fork"], Meta(
        description="process: run in the long-lived worker (default); fork: a fresh child process per "
                    "job")] | None = None
    concurrencyPerWorker: Annotated[int, Meta(
        ge=1, le=64, description="jobs of this type one worker process runs at once, in threads (I/O-bound "
                                 "handlers); every concurrency limit still holds")] | None = None
    artifactRetention: Annotated[int, Meta(ge=0, description="ms this type's finished jobs' files are "
                                                             "kept")] | None = None
    maxMemory: Annotated[int, Meta(ge=16, description="MB a job may allocate; past it the job fails (category "
                                                      "resource). Runs the type's jobs forked")] | None = None
    maxCpuTime: Annotated[int, Meta(ge=1000, description="ms of CPU a job may use, counted in whole seconds; "
                                                         "past it the job fails (resource). Runs them "
                                                         "forked")] | None = None


class Settings(_Strict):
    redis: RedisSettings = field(default_factory=RedisSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    concurrency: ConcurrencySettings = field(default_factory=ConcurrencySettings)
    priority: PrioritySettings = field(default_factory=PrioritySettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    recurring: RecurringSettings = field(default_factory=RecurringSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    templates: Annotated[dict[str, TemplateSettings], Meta(description="named presets for vq submit "
                                                                       "--template")] = field(default_factory=dict)
    subscriptions: Annotated[dict[str, str], Meta(description="userId -> subscription tier, for users whose "
                                                              "token carries no tier")] = field(default_factory=dict)
    data_dir: str | None = None
    job_types: dict[str, JobTypeSettings] = field(default_factory=dict)
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    costs: CostSettings = field(default_factory=CostSettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)

    def __post_init__(self) -> None:
        for user, tier in self.subscriptions.items():
            if tier not in TIERS:
                raise _InvalidKey("subscriptions", f"{user}: {tier!r} is not one of {', '.join(TIERS)}")

    def subscription_of(self, user_id: str | None) -> str:
        """A user's tier when nothing more trusted names it: this config, else the default."""
        return self.subscriptions.get(user_id or "") or self.priority.defaultSubscription

    @property
    def data_path(self) -> Path:
        """Where vq keeps the embedded Redis, artifacts and the history database."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "vq"


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vq" / "config.yaml"


# msgspec's errors read "<message> - at `$.queue.defaultJobOptions`" (or "... - at `key` in
# `$.priority.byTier`" for a mapping's key); a mapping's value is "[...]", not its key.
_AT = re.compile(r"(?s)(.*) - at (`key` in )?`\$(.*)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _unwrap(kind: object) -> object:
    """The type a path steps into: Annotated's own type; of a union, the Struct, mapping or
    list in it (vq's unions hold at most one)."""
    from typing import Union, get_args, get_origin

    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin is Union or type(kind).__name__ == "UnionType":
            inner = [arg for arg in get_args(kind) if arg is not type(None)]
            kind = next((arg for arg in inner if get_origin(_unwrap(arg)) in (dict, list)
                         or isinstance(_unwrap(arg), type) and issubclass(_unwrap(arg), msgspec.Struct)), inner[0])
        else:
            return kind


def _choices(kind: object) -> tuple | None:
    from typing import Union, get_args, get_origin

    if get_origin(kind) is Annotated:
        return _choices(get_args(kind)[0])
    if get_origin(kind) is Literal:
        return get_args(kind)
    if get_origin(kind) is Union or type(kind).__name__ == "UnionType":
        return next((found for found in map(_choices, get_args(kind)) if found), None)
    return None


def _locate(exc: msgspec.ValidationError, raw: object, kind: object) -> tuple[list[str], str]:
    """The dotted key an error is about, and its message: msgspec names a mapping's value
    `[...]`, so the value that fails is found again by converting each in turn."""
    from typing import get_args

    text = str(exc)
    match = _AT.fullmatch(text)
    message, in_key, path = (match[1], match[2], match[3]) if match else (text, None, "")
    keys: list[str] = []
    for name, index in _STEP.findall(path):
        kind = _unwrap(kind)
        if name:
            keys.append(name)
            kind = next(f.type for f in msgspec.structs.fields(kind) if f.name == name)
            raw = raw.get(name) if isinstance(raw, dict) else None
        elif index == "...":
            value_kind = get_args(kind)[1]
            for key, value in (raw.items() if isinstance(raw, dict) else ()):
                try:
                    msgspec.convert(value, value_kind, strict=False)
                except msgspec.ValidationError as inner:
                    more, message = _locate(inner, value, value_kind)
                    return [*keys, str(key), *more], message
            keys.append("[...]")
            break
        else:
            keys.append(index)
            kind = get_args(kind)[0]
            raw = raw[int(index)] if isinstance(raw, list) and int(index) < len(raw) else None
    if isinstance(exc.__cause__, _InvalidKey):
        keys.append(exc.__cause__.key)
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", message):
        return [*keys, found[1]], "unknown key"
    if found := re.fullmatch(r"Object missing required field `(.*)`", message):
        return [*keys, found[1]], "missing (required)"
    if found := re.fullmatch(r"Invalid enum value (.*)", message):
        choices = _choices(get_args(_unwrap(kind))[0] if in_key else kind)
        if choices:
            message = f"{found[1]} is not one of {', '.join(map(str, choices))}"
    return keys, message


def _apply_env(raw: dict, env: dict[str, str]) -> dict:
    """Overlay REDIS_URL / REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_DB (and VQ_DATA_DIR)."""
    redis_block = dict(raw.get("redis") or {})
    if env.get("REDIS_URL"):
        redis_block = {"url": env["REDIS_URL"]}
    elif env.get("REDIS_HOST") or env.get("REDIS_PORT"):
        redis_block.pop("url", None)
        redis_block.pop("socket", None)
        redis_block["host"] = env.get("REDIS_HOST") or redis_block.get("host") or "localhost"
    for name, key in (("REDIS_PORT", "port"), ("REDIS_DB", "db")):
        if env.get(name):
            try:
                redis_block[key] = int(env[name])
            except ValueError:
                raise ConfigError(f"{name}: expected a whole number, got {env[name]!r}") from None
    if env.get("REDIS_PASSWORD"):
        redis_block["password"] = env["REDIS_PASSWORD"]
    out = dict(raw)
    if redis_block:
        out["redis"] = redis_block
    if env.get("VQ_DATA_DIR"):
        out["data_dir"] = env["VQ_DATA_DIR"]
    return out


def _before(raw: dict) -> str | None:
    """The checks that look at a value as written, before it is converted: removeOnComplete /
    removeOnFail, whose forms (true, false, a number, {age, count}) a union would otherwise
    report one error per form for. The problem as one line, else None."""
    queue = raw.get("queue")
    options = queue.get("defaultJobOptions") if isinstance(queue, dict) else None
    for name in ("removeOnComplete", "removeOnFail"):
        if isinstance(options, dict) and name in options:
            problem = _keep_form(options[name])
            if problem:
                return f"queue.defaultJobOptions.{name}{problem}"
    return None


def settings_from(raw: dict, source: str | Path = "config") -> Settings:
    """Validate a mapping of settings (a parsed config file) into Settings. Raises ConfigError
    with one line, `<source>: <dotted.key>: <message>`."""
    problem = _before(raw)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        keys, message = _locate(exc, raw, Settings)
        raise ConfigError(f"{source}: {'.'.join(keys) or '(top level)'}: {message}") from None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read, overlay the environment and validate. Raises ConfigError with one line."""
    env = dict(os.environ) if env is None else env
    explicit = path or env.get("VQ_CONFIG")
    source = Path(explicit).expanduser() if explicit else default_config_path()
    raw: dict = {}
    if source.exists():
        import yaml  # here: with no config file (the default), a command does without it (~10 ms)

        try:
            loaded = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read ({exc.strerror})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of settings at the top level")
        raw = loaded
    elif explicit:
        raise ConfigError(f"{source}: config file not found")
    settings = settings_from(_apply_env(raw, env), source)
    from vq.jobtypes import validate_job_type_settings

    validate_job_type_settings(settings, source)
    return settings
