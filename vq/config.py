"""Settings: the YAML file mirrors the spec's blocks key for key; the environment wins.

Where the file comes from: `--config PATH`, else `$VQ_CONFIG`, else
`$XDG_CONFIG_HOME/vq/config.yaml` (when it exists). With no file, the spec's defaults apply.
Every problem is reported as one line naming the key, as a `ConfigError` (exit code 2).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vq.errors import ConfigError

TIERS = ("free", "basic", "pro", "enterprise")
PRIORITIES = ("high", "normal", "low")


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SentinelSettings(_Strict):
    """Redis Sentinel: vq asks the sentinels for the current master of `service`, and asks
    again after a failover (README: Scale-out)."""

    hosts: list[str] = Field(min_length=1, description="sentinels as HOST:PORT")
    service: str = Field("mymaster", description="the master's name in the sentinels' config")
    password: str | None = Field(None, description="the sentinels' own password, when they have one")

    @field_validator("hosts")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not HOST:PORT")
        return value

    def addresses(self) -> list[tuple[str, int]]:
        return [(h.rpartition(":")[0].strip("[]"), int(h.rpartition(":")[2])) for h in self.hosts]


class RedisSettings(_Strict):
    url: str | None = None
    host: str | None = None
    port: int = Field(6379, ge=1, le=65535)
    password: str | None = None
    db: int = Field(0, ge=0)
    socket: str | None = None
    sentinel: SentinelSettings | None = None

    @property
    def configured(self) -> bool:
        """True when an operator named a Redis; vq then never uses the embedded one."""
        return bool(self.url or self.host or self.socket or self.sentinel)


class Backoff(_Strict):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: int = Field(2000, ge=0, description="milliseconds")
    factor: float = Field(2.0, ge=1.0)
    max: int = Field(3_600_000, ge=0, description="milliseconds")
    jitter: float = Field(0.1, ge=0.0, le=1.0, description="up to this share is added to each wait, at random")


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class KeepJobs(_Strict):
    """BullMQ's `{age, count}` form of removeOnComplete / removeOnFail: an ended job is
    removed once it is older than `age` or beyond the newest `count` of its type, whichever
    comes first; a job that a job still waiting or running depends on is kept regardless
    (vq/maintenance.py)."""

    age: int | None = Field(None, ge=0, description="milliseconds since the job ended")
    count: int | None = Field(None, ge=0, description="the newest this many per type and state")

    @model_validator(mode="after")
    def _one_at_least(self) -> "KeepJobs":
        if self.age is None and self.count is None:
            raise ValueError("give age (ms), count, or both")
        return self


class Retention(BaseModel):
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


class DefaultJobOptions(_Strict):
    # Finished jobs: a day, at most 1,000 per type (README, "How the spec's settings map
    # onto RQ"); failed ones a week, at most 5,000 per type, to be looked at after a weekend.
    removeOnComplete: bool | int | KeepJobs = KeepJobs(age=DAY_MS, count=1000)
    removeOnFail: bool | int | KeepJobs = KeepJobs(age=7 * DAY_MS, count=5000)
    attempts: int = Field(3, ge=1)
    backoff: Backoff = Backoff()
    timeout: int = Field(600_000, ge=1000, description="milliseconds")

    @field_validator("removeOnComplete", "removeOnFail", mode="before")
    @classmethod
    def _keep_form(cls, value):
        """One line for a bad value, not one per form the union tried."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            if value < 0:
                raise ValueError("a count of jobs must be 0 or more")
            return value
        if isinstance(value, dict):
            try:
                return KeepJobs.model_validate(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(_describe(first) if first["loc"] else first["msg"].removeprefix("Value error, ")) \
                    from None
        raise ValueError(f"{value!r}: expected true, false, a number of jobs or {{age: ms, count: n}}")


class QueueSettingsBlock(_Strict):
    stalledInterval: int = Field(30_000, ge=1000)
    maxStalledCount: int = Field(1, ge=0)
    lockDuration: int = Field(30_000, ge=1000)


class QueueSettings(_Strict):
    defaultJobOptions: DefaultJobOptions = DefaultJobOptions()
    settings: QueueSettingsBlock = QueueSettingsBlock()


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
    user: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_USER_LIMITS))
    type: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TYPE_LIMITS))

    @field_validator("user")
    @classmethod
    def _known_tiers(cls, value: dict[str, int]) -> dict[str, int]:
        for tier, limit in value.items():
            if tier not in TIERS:
                raise ValueError(f"unknown subscription tier {tier!r} (expected one of {', '.join(TIERS)})")
            if limit < 1:
                raise ValueError(f"limit for {tier!r} must be at least 1")
        return {**DEFAULT_USER_LIMITS, **value}

    @field_validator("type")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if limit < 1:
                raise ValueError(f"limit for {name!r} must be at least 1")
        return {**DEFAULT_TYPE_LIMITS, **value}


Priority = Literal["high", "normal", "low"]


class PrioritySettings(_Strict):
    """Priority from the subscription tier, and the highest a tier may ask for."""

    byTier: dict[Literal["free", "basic", "pro", "enterprise"], Priority] = Field(
        default_factory=lambda: {"free": "low", "basic": "normal", "pro": "normal", "enterprise": "high"}
    )
    maxByTier: dict[Literal["free", "basic", "pro", "enterprise"], Priority] = Field(
        default_factory=lambda: {"free": "normal", "basic": "normal", "pro": "high", "enterprise": "high"}
    )
    defaultSubscription: Literal["free", "basic", "pro", "enterprise"] = "free"
    agingThreshold: int = Field(600_000, ge=1000, description="ms a job waits before it is admitted one level up")


class LimitsSettings(_Strict):
    maxDataBytes: int = Field(1_048_576, ge=1, description="bytes: the largest job data accepted (compact JSON)")
    maxDataDepth: int = Field(32, ge=1, le=100, description="how deeply job data's objects and arrays may nest")
    maxResultBytes: int = Field(1_048_576, ge=1, description="bytes: the largest result a handler may return "
                                "(compact JSON); larger fails the job, permanently")
    maxRateLimitDelay: int = Field(3_600_000, ge=0, description="ms: the longest a provider's retry-after is honoured")
    idempotencyWindow: int = Field(86_400_000, ge=1000, description="ms an idempotencyKey keeps returning its job")
    maxDelay: int = Field(90 * 86_400_000, ge=1000, description="ms: the longest delay (or `at` ahead) accepted")


class AutoscaleSettings(_Strict):
    """Worker processes grow and shrink with the work that could start (README: Autoscaling)."""

    min: int = Field(1, ge=1, description="worker processes always running")
    max: int = Field(8, ge=1, le=256, description="the most worker processes on this host")
    scaleDownAfter: int = Field(30_000, ge=1000, description="ms a worker does no work before it is retired")
    interval: int = Field(1000, ge=200, description="ms between looks at the backlog")

    @field_validator("max")
    @classmethod
    def _max_at_least_min(cls, value: int, info) -> int:
        if value < info.data.get("min", 1):
            raise ValueError(f"{value} is below min ({info.data.get('min')})")
        return value


class DaemonSettings(_Strict):
    workers: int | None = Field(None, ge=1, description="worker processes; default the CPU count")
    queues: list[str] | None = None
    shutdownGrace: int = Field(30_000, ge=0, description="milliseconds")
    maxJobsPerWorker: int = Field(10_000, ge=1, description="a worker process is replaced after this many jobs")
    maxMemoryPerWorker: int | None = Field(2048, ge=16, description="MB of resident memory after which a worker "
                                           "process finishes its job and is replaced; null: no limit")
    schedulerInterval: int = Field(1000, ge=10, description="ms: the longest the timer sleeps between checks "
                                   "(it wakes at each due time and at each announcement anyway)")
    weight: float = Field(1.0, gt=0, le=1000, description="this host's share of new workers when several "
                                                          "autoscaling hosts see the same backlog")
    autoscale: AutoscaleSettings | None = Field(None, description="grow and shrink the workers between min and "
                                                "max instead of running `workers` of them")


class RecurringSettings(_Strict):
    """How recurring jobs treat ticks that came due while no daemon ran."""

    catchUp: Literal["none", "one", "all"] = Field("one", description="default policy for new recurring jobs")
    misfireGrace: int = Field(60_000, ge=0, description="ms late a tick may fire and still count as on time")
    maxCatchUp: int = Field(100, ge=1, description="the most missed ticks `catch_up: all` runs at once")
    keepRuns: int = Field(100, ge=1, description="runs remembered per recurring job for `vq recurring show`")
    lease: int = Field(10_000, ge=1000, description="ms one daemon holds a recurring job while it fires a tick")


class HistorySettings(_Strict):
    """The archiver: events -> the SQLite history database and the metrics in Redis."""

    enabled: bool = Field(True, description="run an archiver in this daemon (one runs at a time, by lock)")
    path: str | None = Field(None, description="the SQLite file; default <data_dir>/history.db")
    retentionDays: int = Field(90, ge=1, description="days job rows and transitions are kept (aggregates stay)")
    batchSize: int = Field(1000, ge=1, le=100_000, description="events written per transaction")
    linger: int = Field(200, ge=0, le=10_000, description="ms the archiver waits after a short batch for more events")
    handoverAfter: int = Field(600, ge=0, description="s without the history file's archiver before another "
                                                      "host's file takes over (0: never)")
    maxResultBytes: int = Field(65_536, ge=0, description="a finished job's result is copied to the history "
                                                          "database when its JSON is at most this long (0: never)")


class Thresholds(_Strict):
    degraded: float
    unhealthy: float


class HealthSettings(_Strict):
    """When a queue (and so the system) counts as degraded or unhealthy; see README."""

    window: int = Field(300_000, ge=10_000, description="ms of recent activity judged")
    minEnded: int = Field(5, ge=1, description="ended jobs a window needs before its failure rate counts")
    failureRate: Thresholds = Thresholds(degraded=0.10, unhealthy=0.50)
    errorTrend: float = Field(2.0, ge=1.0, description="failures this window / the window before: degraded at or above")
    backlogAge: Thresholds = Thresholds(degraded=300_000, unhealthy=1_800_000)
    stalled: Thresholds = Thresholds(degraded=1, unhealthy=5)
    redisMemory: Thresholds = Thresholds(degraded=0.80, unhealthy=0.95)
    heartbeatAge: int = Field(60_000, ge=1000, description="ms without a heartbeat after which a worker is dead")
    checkInterval: int = Field(15_000, ge=1000, description="ms between the daemon's checks (alerts)")
    webhooks: list[str] = Field(default_factory=list, description="URLs POSTed a JSON alert when health changes")


class RateLimitSettings(_Strict):
    requests: int = Field(600, ge=0, description="requests per window per user; 0 turns the limit off")
    window: int = Field(60_000, ge=1000, description="ms")


class HttpSettings(_Strict):
    """The daemon's HTTP API (README: HTTP API)."""

    listen: str = Field("127.0.0.1:8765", description="HOST:PORT the daemon serves the API on")
    enabled: bool = True
    jwt_secret: str | None = Field(None, description="HS256 secret; else $VQ_JWT_SECRET, else <data_dir>/jwt.secret")
    jwt_public_key: str | None = Field(None, description="a PEM file: verify RS256 tokens with it instead")
    rateLimit: RateLimitSettings = RateLimitSettings()
    maxBodyBytes: int = Field(2_097_152, ge=1024, description="largest request body accepted")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value


class TemplateSettings(_Strict):
    """A named preset for `vq submit --template NAME` (README: Job templates)."""

    jobType: str = Field(description="the job type it submits")
    data: dict = Field(default_factory=dict, description="the job's data; --set key=value changes a field")
    priority: str | None = Field(None, description="high, normal or low (default: from the tier)")
    options: dict = Field(default_factory=dict, description="skipCache: true")

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str | None) -> str | None:
        if value is not None and value not in PRIORITIES:
            raise ValueError(f"{value!r} is not one of {', '.join(PRIORITIES)}")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict) -> dict:
        unknown = sorted(set(value) - {"skipCache"})
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown option (known: skipCache)")
        return value


class WebhookSettings(_Strict):
    """Job webhooks (README: Webhooks): a job's webhookUrl is POSTed its JSON when it ends."""

    enabled: bool = Field(True, description="run a notifier in each daemon")
    timeout: int = Field(5000, ge=100, description="ms a receiver has to answer")
    attempts: int = Field(5, ge=1, le=20, description="deliveries tried before giving up")
    backoff: int = Field(2000, ge=10, description="ms before the 2nd attempt, doubling each time")
    concurrency: int = Field(8, ge=1, le=64, description="deliveries in flight per daemon")
    secret: str | None = Field(None, description="sign bodies (X-Vq-Signature); else $VQ_WEBHOOK_SECRET")
    allowHosts: list[str] = Field(default_factory=list, description="host names a webhookUrl may name even when "
                                  "they are or resolve to internal addresses (vq/egress.py)")
    allowNetworks: list[str] = Field(default_factory=list, description="networks (CIDR, e.g. 10.0.0.0/8) a "
                                     "webhookUrl may reach though they are not public (loopback, private, ...)")

    @field_validator("allowHosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for host in value:
            if not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host or "") or host.strip(".") == "":
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path: hooks.example.com)")
        return value

    @field_validator("allowNetworks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not a network such as 10.0.0.0/8 or fd00::/8 ({exc})") from None
        return value


class SecuritySettings(_Strict):
    """Data protection (README: Data protection)."""

    sensitiveFields: list[str] = Field(
        default_factory=lambda: ["api_key", "token", "secret", "password", "passphrase", "credentials",
                                 "private_key", "authorization"],
        description="data fields whose names contain one of these (as whole words) are encrypted at rest")
    encryptionKey: str | None = Field(None, description="Fernet key(s), comma-separated, newest first; else "
                                                        "$VQ_ENCRYPTION_KEY, else <data_dir>/encryption.key")

    @field_validator("encryptionKey")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        import base64
        import binascii

        for key in (value or "").split(","):
            try:
                ok = len(base64.urlsafe_b64decode(key.strip().encode())) == 32
            except (binascii.Error, ValueError):
                ok = False
            if key.strip() and not ok:
                raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                                 "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)")
        return value


class BreakerSettings(_Strict):
    failureThreshold: int = Field(5, ge=1, description="provider failures within `window` that open the breaker")
    window: int = Field(60_000, ge=1000, description="ms")
    cooldown: int = Field(30_000, ge=100, description="ms the breaker stays open before one probe is let through")


class ProviderRateLimit(_Strict):
    """A provider's own limits, held by every host together (counted in Redis)."""

    requests: int = Field(0, ge=0, description="requests per `window`; 0: no request limit")
    window: int = Field(60_000, ge=1000, description="ms, whole seconds")
    concurrent: int = Field(0, ge=0, description="requests in flight at once; 0: no limit")
    maxWait: int = Field(10_000, ge=0, description="ms a job waits for this provider before it fails over to the "
                                                   "next one its type allows")

    @field_validator("window")
    @classmethod
    def _whole_seconds(cls, value: int) -> int:
        if value % 1000:
            raise ValueError(f"{value} ms is not a whole number of seconds")
        return value


class ProviderSettings(_Strict):
    kind: Literal["http", "local"] = "http"
    url: str | None = None
    apiKeyEnv: str | None = None
    timeout: int = Field(30_000, ge=100, description="ms")
    breaker: BreakerSettings = BreakerSettings()
    rateLimit: ProviderRateLimit = ProviderRateLimit()
    cost: dict[str, float] = Field(default_factory=dict, description="price per unit (characters, images, "
                                                                     "seconds, tokens ...) in costs.currency")

    @field_validator("cost")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        for unit, price in value.items():
            if price < 0:
                raise ValueError(f"{unit}: a price cannot be negative")
        return value


class Budget(_Strict):
    daily: float | None = Field(None, ge=0, description="most spent per UTC day, in costs.currency")
    monthly: float | None = Field(None, ge=0, description="most spent per UTC calendar month")


class BudgetSettings(_Strict):
    """Spend limits: past one, a user's (or project's) further provider jobs are held, not failed."""

    users: dict[str, Budget] = Field(default_factory=dict)
    tiers: dict[str, Budget] = Field(default_factory=dict, description="for users without their own entry")
    projects: dict[str, Budget] = Field(default_factory=dict)

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, value: dict[str, Budget]) -> dict[str, Budget]:
        for tier in value:
            if tier not in TIERS:
                raise ValueError(f"{tier}: not one of {', '.join(TIERS)}")
        return value


class CostSettings(_Strict):
    currency: str = Field("USD", min_length=1, max_length=8)
    budgets: BudgetSettings = BudgetSettings()


class ArtifactSettings(_Strict):
    """Where jobs' files live and how long (README: Artifacts)."""

    root: str | None = Field(None, description="the storage root; default <data_dir>/artifacts")
    retention: int = Field(7 * 86_400_000, ge=0, description="ms a finished job's files are kept after it ended "
                                                             "(a type's artifactRetention wins); 0: kept until "
                                                             "the job is removed")
    failedRetention: int = Field(0, ge=0, description="ms the files of a failed or canceled job are kept")
    sweepInterval: int = Field(60_000, ge=200, description="ms between the daemon's clean-ups")


class CacheSettings(_Strict):
    ttl: int = Field(3_600_000, ge=0, description="ms a finished result is reused; 0 turns caching off")
    scope: Literal["user", "global"] = "user"


class JobTypeSettings(_Strict):
    handler: str | None = None
    description: str | None = None
    timeout: int | None = Field(None, ge=1000, description="milliseconds")
    attempts: int | None = Field(None, ge=1)
    backoff: Backoff | None = None
    unknownErrors: Literal["temporary", "permanent"] | None = None
    providers: list[str] | None = None
    cache: CacheSettings | None = None
    isolation: Literal["process", "fork"] | None = Field(
        None, description="process: run in the long-lived worker (default); fork: a fresh child process per job")
    concurrencyPerWorker: int | None = Field(
        None, ge=1, le=64, description="jobs of this type one worker process runs at once, in threads (I/O-bound "
                                       "handlers); every concurrency limit still holds")
    artifactRetention: int | None = Field(None, ge=0, description="ms this type's finished jobs' files are kept")
    maxMemory: int | None = Field(None, ge=16, description="MB a job may allocate; past it the job fails (category "
                                                          "resource). Runs the type's jobs forked")
    maxCpuTime: int | None = Field(None, ge=1000, description="ms of CPU a job may use, counted in whole seconds; "
                                                             "past it the job fails (resource). Runs them forked")


class Settings(_Strict):
    redis: RedisSettings = RedisSettings()
    queue: QueueSettings = QueueSettings()
    concurrency: ConcurrencySettings = ConcurrencySettings()
    priority: PrioritySettings = PrioritySettings()
    limits: LimitsSettings = LimitsSettings()
    daemon: DaemonSettings = DaemonSettings()
    recurring: RecurringSettings = RecurringSettings()
    history: HistorySettings = HistorySettings()
    health: HealthSettings = HealthSettings()
    http: HttpSettings = HttpSettings()
    security: SecuritySettings = SecuritySettings()
    webhooks: WebhookSettings = WebhookSettings()
    templates: dict[str, TemplateSettings] = Field(default_factory=dict, description="named presets for "
                                                                                    "vq submit --template")
    subscriptions: dict[str, str] = Field(default_factory=dict, description="userId -> subscription tier, for "
                                                                           "users whose token carries no tier")
    data_dir: str | None = None
    job_types: dict[str, JobTypeSettings] = Field(default_factory=dict)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    breaker: BreakerSettings = BreakerSettings()
    cache: CacheSettings = CacheSettings()
    costs: CostSettings = CostSettings()
    artifacts: ArtifactSettings = ArtifactSettings()

    @field_validator("subscriptions")
    @classmethod
    def _known_tiers(cls, value: dict[str, str]) -> dict[str, str]:
        for user, tier in value.items():
            if tier not in TIERS:
                raise ValueError(f"{user}: {tier!r} is not one of {', '.join(TIERS)}")
        return value

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


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{key}: {message}"


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


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read, overlay the environment and validate. Raises ConfigError with one line."""
    env = dict(os.environ) if env is None else env
    explicit = path or env.get("VQ_CONFIG")
    source = Path(explicit).expanduser() if explicit else default_config_path()
    raw: dict = {}
    if source.exists():
        try:
            loaded = yaml.safe_load(source.read_text())
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
    raw = _apply_env(raw, env)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0])}") from None
    from vq.jobtypes import validate_job_type_settings

    validate_job_type_settings(settings, source)
    return settings
