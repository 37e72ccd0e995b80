"""The blocks of the daemon and what it serves: daemon (workers, autoscaling, chores),
recurring, history, health, HTTP, templates, webhooks and security. What a job runs with
(providers, costs, artifacts, cache, job types) is in vq/config/jobs.py."""

import re
from typing import Annotated, Literal

from msgspec import Meta, field

from vq.config.base import CHORE_NAMES, PRIORITIES, ResourceAmounts, _InvalidKey, _Strict, check_resources


class AutoscaleSettings(_Strict):
    """Worker processes grow and shrink with the work that could start (README: Autoscaling)."""

    min: Annotated[int, Meta(ge=1, description="worker processes always running")] = 1
    max: Annotated[int, Meta(ge=1, le=256, description="the most worker processes on this host")] = 8
    scaleDownAfter: Annotated[int, Meta(ge=1000, description="ms a worker does no work before it is retired")] = 30_000
    interval: Annotated[int, Meta(ge=200, description="ms between looks at the backlog")] = 1000

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise _InvalidKey("max", f"{self.max} is below min ({self.min})")


class DaemonSettings(_Strict):
    workers: Annotated[int, Meta(ge=1, description="worker processes; default the CPU count")] | None = None
    queues: list[str] | None = None
    shutdownGrace: Annotated[int, Meta(ge=0, description="milliseconds")] = 30_000
    stopAtCheckpoint: Annotated[
        bool,
        Meta(
            description="on stop, a running job that checkpoints is requeued at its next ctx.checkpoint "
            "instead of running on through the grace period (per type: jobTypes.<type>.stopAtCheckpoint)"
        ),
    ] = False
    cancelCleanup: Annotated[
        int,
        Meta(
            ge=0,
            le=600_000,
            description="ms the ctx.on_cancel clean-up of a job canceled with --now may take in all; its slots "
            "are given back after it (a forked child still there a second later is killed)",
        ),
    ] = 5_000
    maxJobsPerWorker: Annotated[int, Meta(ge=1, description="a worker process is replaced after this many jobs")] = (
        10_000
    )
    maxMemoryPerWorker: (
        Annotated[
            int,
            Meta(
                ge=16,
                description="MB of resident memory after which a worker "
                "process finishes its job and is replaced; null: no limit",
            ),
        ]
        | None
    ) = 2048
    schedulerInterval: Annotated[
        int,
        Meta(
            ge=10,
            description="ms: the longest the timer sleeps between checks "
            "(it wakes at each due time and at each announcement anyway)",
        ),
    ] = 1000
    weight: Annotated[
        float,
        Meta(
            gt=0,
            le=1000,
            description="this host's share of new workers when several autoscaling hosts see the same backlog",
        ),
    ] = 1.0
    autoscale: (
        Annotated[
            AutoscaleSettings,
            Meta(description="grow and shrink the workers between min and max instead of running `workers` of them"),
        ]
        | None
    ) = None
    resources: (
        Annotated[
            ResourceAmounts,
            Meta(
                description="this host's resources, e.g. {gpu: 2, vram: 80}, split evenly over its "
                "worker processes (vq/capacity.py)"
            ),
        ]
        | None
    ) = None
    resourcesPerWorker: (
        Annotated[
            ResourceAmounts,
            Meta(description="the resources each worker process has, e.g. {gpu: 1, vram: 24} (wins over resources)"),
        ]
        | None
    ) = None
    metricsListen: (
        Annotated[
            str,
            Meta(
                description="HOST:PORT of a listener that serves only GET /metrics, without a token "
                "(bind it to 127.0.0.1, or a network only Prometheus reaches); null: none"
            ),
        ]
        | None
    ) = None
    httpWorkers: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="HTTP API server processes sharing its port (each a uvicorn, the kernel hands each "
            "new connection to one); more serve more requests at once where cores are free",
        ),
    ] = 1
    workerSeriesTtl: Annotated[
        int,
        Meta(
            ge=60_000,
            description="ms after a worker's last job at which its Prometheus series "
            "(vq_worker_*) are dropped (the prune runs hourly)",
        ),
    ] = 86_400_000
    chores: Annotated[
        dict[str, Annotated[int, Meta(ge=10)]],
        Meta(
            description="ms between runs of a housekeeping chore, by name (vq/chores.py); "
            "unnamed ones keep their defaults"
        ),
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_resources(self, "resources", "resourcesPerWorker")
        if self.metricsListen is not None:
            host, sep, port = self.metricsListen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _InvalidKey("metricsListen", f"{self.metricsListen!r} is not HOST:PORT (127.0.0.1:9464)")
        for name in self.chores:
            if name not in CHORE_NAMES:
                raise _InvalidKey("chores", f"{name!r} is not a chore (one of {', '.join(CHORE_NAMES)})")


class RecurringSettings(_Strict):
    """How recurring jobs treat ticks that came due while no daemon ran."""

    catchUp: Annotated[Literal["none", "one", "all"], Meta(description="default policy for new recurring jobs")] = "one"
    misfireGrace: Annotated[int, Meta(ge=0, description="ms late a tick may fire and still count as on time")] = 60_000
    maxCatchUp: Annotated[int, Meta(ge=1, description="the most missed ticks `catch_up: all` runs at once")] = 100
    keepRuns: Annotated[int, Meta(ge=1, description="runs remembered per recurring job for `vq recurring show`")] = 100
    lease: Annotated[int, Meta(ge=1000, description="ms one daemon holds a recurring job while it fires a tick")] = (
        10_000
    )


class HistorySettings(_Strict):
    """The archiver: events -> the SQLite history database and the metrics in Redis."""

    enabled: Annotated[bool, Meta(description="run an archiver in this daemon (one runs at a time, by lock)")] = True
    path: Annotated[str, Meta(description="the SQLite file; default <data_dir>/history.db")] | None = None
    retentionDays: Annotated[
        int, Meta(ge=1, description="days job rows and transitions are kept (aggregates stay)")
    ] = 90
    batchSize: Annotated[int, Meta(ge=1, le=100_000, description="events written per transaction")] = 1000
    linger: Annotated[
        int, Meta(ge=0, le=10_000, description="ms the archiver waits after a short batch for more events")
    ] = 200
    handoverAfter: Annotated[
        int,
        Meta(
            ge=0, description="s without the history file's archiver before another host's file takes over (0: never)"
        ),
    ] = 600
    maxResultBytes: Annotated[
        int,
        Meta(
            ge=0,
            description="a finished job's result is copied to the history "
            "database when its JSON is at most this long (0: "
            "never)",
        ),
    ] = 65_536
    maxDataBytes: Annotated[
        int,
        Meta(
            ge=0,
            description="while indexedFields lists a field, a job's data is copied to the history "
            "database (for --where on data fields) when its JSON is at most this long, else just "
            "its indexed fields that fit (0: never)",
        ),
    ] = 4096
    indexedFields: Annotated[
        list[str],
        Meta(description="data fields `--where` may filter on (data.projectId): each has an index in the history"),
    ] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in self.indexedFields:
            if not INDEXED_FIELD.fullmatch(name):
                raise _InvalidKey(
                    "indexedFields",
                    f"{name!r} is not a data field path such as data.projectId or data.options.model "
                    "(letters, digits, _ and -, dot-separated)",
                )


INDEXED_FIELD = re.compile(r"data(\.[A-Za-z0-9_-]{1,64}){1,8}")  # into SQL text: nothing else may pass


class Thresholds(_Strict):
    degraded: float
    unhealthy: float


class HealthSettings(_Strict):
    """When a queue (and so the system) counts as degraded or unhealthy; see README."""

    window: Annotated[int, Meta(ge=10_000, description="ms of recent activity judged")] = 300_000
    minEnded: Annotated[int, Meta(ge=1, description="ended jobs a window needs before its failure rate counts")] = 5
    failureRate: Thresholds = field(default_factory=lambda: Thresholds(degraded=0.10, unhealthy=0.50))
    errorTrend: Annotated[
        float, Meta(ge=1.0, description="failures this window / the window before: degraded at or above")
    ] = 2.0
    backlogAge: Thresholds = field(default_factory=lambda: Thresholds(degraded=300_000, unhealthy=1_800_000))
    stalled: Thresholds = field(default_factory=lambda: Thresholds(degraded=1, unhealthy=5))
    redisMemory: Thresholds = field(default_factory=lambda: Thresholds(degraded=0.80, unhealthy=0.95))
    heartbeatAge: Annotated[int, Meta(ge=1000, description="ms without a heartbeat after which a worker is dead")] = (
        60_000
    )
    checkInterval: Annotated[int, Meta(ge=1000, description="ms between the daemon's checks (alerts)")] = 15_000
    webhooks: Annotated[list[str], Meta(description="URLs POSTed a JSON alert when health changes")] = field(
        default_factory=list
    )


class RateLimitSettings(_Strict):
    requests: Annotated[int, Meta(ge=0, description="requests per window per user; 0 turns the limit off")] = 600
    window: Annotated[int, Meta(ge=1000, description="ms")] = 60_000


class HttpSettings(_Strict):
    """The daemon's HTTP API (README: HTTP API)."""

    listen: Annotated[str, Meta(description="HOST:PORT the daemon serves the API on")] = "127.0.0.1:8765"
    enabled: bool = True
    jwt_secret: (
        Annotated[str, Meta(description="HS256 secret; else $VQ_JWT_SECRET, else <data_dir>/jwt.secret")] | None
    ) = None
    jwt_public_key: Annotated[str, Meta(description="a PEM file: verify RS256 tokens with it instead")] | None = None
    rateLimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    maxBodyBytes: Annotated[int, Meta(ge=1024, description="largest request body accepted")] = 2_097_152
    ui: Annotated[bool, Meta(description="serve the web dashboard under /ui (docs/web-dashboard.md)")] = True

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _InvalidKey("listen", f"{self.listen!r} is not HOST:PORT")


class TemplateSettings(_Strict):
    """A named preset for `vq submit --template NAME` (README: Job templates)."""

    jobType: Annotated[str, Meta(description="the job type it submits")]
    data: Annotated[dict, Meta(description="the job's data; --set key=value changes a field")] = field(
        default_factory=dict
    )
    priority: Annotated[str, Meta(description="high, normal or low (default: from the tier)")] | None = None
    options: Annotated[
        dict, Meta(description="skipCache: true; uniqueKey, uniqueFor, debounce, debounceMax, uniqueScope")
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.priority is not None and self.priority not in PRIORITIES:
            raise _InvalidKey("priority", f"{self.priority!r} is not one of {', '.join(PRIORITIES)}")
        known = ("skipCache", "uniqueKey", "uniqueFor", "debounce", "debounceMax", "uniqueScope")
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise _InvalidKey("options", f"{unknown[0]}: unknown option (known: {', '.join(known)})")


class WebhookSettings(_Strict):
    """Job webhooks (README: Webhooks): a job's webhookUrl is POSTed its JSON when it ends."""

    enabled: Annotated[bool, Meta(description="run a notifier in each daemon")] = True
    timeout: Annotated[int, Meta(ge=100, description="ms a receiver has to answer")] = 5000
    attempts: Annotated[int, Meta(ge=1, le=20, description="deliveries tried before giving up")] = 5
    backoff: Annotated[int, Meta(ge=10, description="ms before the 2nd attempt, doubling each time")] = 2000
    concurrency: Annotated[int, Meta(ge=1, le=64, description="deliveries in flight per daemon")] = 8
    secret: Annotated[str, Meta(description="sign bodies (X-Vq-Signature); else $VQ_WEBHOOK_SECRET")] | None = None
    allowHosts: Annotated[
        list[str],
        Meta(
            description="host names a webhookUrl may name even when they are or "
            "resolve to internal addresses (vq/egress.py)"
        ),
    ] = field(default_factory=list)
    allowNetworks: Annotated[
        list[str],
        Meta(
            description="networks (CIDR, e.g. 10.0.0.0/8) a webhookUrl may "
            "reach though they are not public (loopback, private, "
            "...)"
        ),
    ] = field(default_factory=list)

    def __post_init__(self) -> None:
        for host in self.allowHosts:
            if not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host or "") or host.strip(".") == "":
                raise _InvalidKey(
                    "allowHosts", f"{host!r} is not a host name (no scheme, port or path: hooks.example.com)"
                )
        if self.allowNetworks:
            import ipaddress

            for network in self.allowNetworks:
                try:
                    ipaddress.ip_network(network)
                except ValueError as exc:
                    raise _InvalidKey(
                        "allowNetworks", f"{network!r} is not a network such as 10.0.0.0/8 or fd00::/8 ({exc})"
                    ) from None


class SecuritySettings(_Strict):
    """Data protection (README: Data protection)."""

    sensitiveFields: Annotated[
        list[str],
        Meta(description="data fields whose names contain one of these (as whole words) are encrypted at rest"),
    ] = field(
        default_factory=lambda: [
            "api_key",
            "token",
            "secret",
            "password",
            "passphrase",
            "credentials",
            "private_key",
            "authorization",
        ]
    )
    encryptionKey: (
        Annotated[
            str,
            Meta(
                description="Fernet key(s), comma-separated, newest first; else "
                "$VQ_ENCRYPTION_KEY, else "
                "<data_dir>/encryption.key"
            ),
        ]
        | None
    ) = None

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
                raise _InvalidKey(
                    "encryptionKey",
                    "not a Fernet key (32 url-safe base64-encoded bytes; make one with "
                    "`python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)",
                )
