"""Settings: the YAML file mirrors the spec's blocks key for key; the environment wins.

Where the file comes from: `--config PATH`, else `$VQ_CONFIG`, else
`$XDG_CONFIG_HOME/vq/config.yaml` (when it exists). With no file, the spec's defaults apply.
Every problem is reported as one line naming the key, as a `ConfigError` (exit code 2).

The models are msgspec Structs, not pydantic models: every CLI call loads the config, and
building 34 pydantic classes (plus importing pydantic) cost about 0.1 s of each start-up
(issue 22). `msgspec.convert(raw, Settings, strict=False)` checks types and the `Meta`
bounds; each `__post_init__` checks what a type cannot say, raising `_InvalidKey` to name the
key it is about.

The package: `base` (tiers, priorities, chore names, the strict Struct), `queue` (the spec's
redis/queue/concurrency/priority/limits blocks), `services` (the daemon's and its services'
blocks), `jobs` (what a job runs with: providers, costs, artifacts, cache, job types),
`settings` (the whole `Settings`), `loader` (file, environment, one-line errors).
"""

from vq.config.base import (
    CHORE_NAMES,
    DAY_MS,
    HOUR_MS,
    PRIORITIES,
    TIERS,
)
from vq.config.jobs import (
    ArtifactSettings,
    BreakerSettings,
    Budget,
    BudgetSettings,
    CacheSettings,
    CostSettings,
    JobTypeSettings,
    ProviderRateLimit,
    ProviderSettings,
)
from vq.config.loader import (
    _apply_env,
    default_config_path,
    load_settings,
    settings_from,
)
from vq.config.queue import (
    DEFAULT_TYPE_LIMITS,
    DEFAULT_USER_LIMITS,
    MAX_WEIGHT,
    Backoff,
    ConcurrencySettings,
    DeadlineSettings,
    DefaultJobOptions,
    GroupSettings,
    KeepJobs,
    LimitsSettings,
    Priority,
    PrioritySettings,
    QueueSettings,
    QueueSettingsBlock,
    RedisSettings,
    Retention,
    SentinelSettings,
    Tier,
    retention_of,
)
from vq.config.services import (
    AutoscaleSettings,
    DaemonSettings,
    HealthSettings,
    HistorySettings,
    HttpSettings,
    RateLimitSettings,
    RecurringSettings,
    SecuritySettings,
    TemplateSettings,
    Thresholds,
    WebhookSettings,
)
from vq.config.settings import (
    Settings,
)
from vq.config.telemetry import TelemetrySettings

__all__ = [
    "TIERS",
    "CHORE_NAMES",
    "PRIORITIES",
    "HOUR_MS",
    "DAY_MS",
    "SentinelSettings",
    "RedisSettings",
    "Backoff",
    "KeepJobs",
    "Retention",
    "retention_of",
    "DefaultJobOptions",
    "QueueSettingsBlock",
    "QueueSettings",
    "DEFAULT_USER_LIMITS",
    "MAX_WEIGHT",
    "DEFAULT_TYPE_LIMITS",
    "ConcurrencySettings",
    "GroupSettings",
    "Priority",
    "Tier",
    "PrioritySettings",
    "DeadlineSettings",
    "LimitsSettings",
    "AutoscaleSettings",
    "DaemonSettings",
    "RecurringSettings",
    "HistorySettings",
    "Thresholds",
    "HealthSettings",
    "RateLimitSettings",
    "HttpSettings",
    "TemplateSettings",
    "WebhookSettings",
    "SecuritySettings",
    "BreakerSettings",
    "ProviderRateLimit",
    "ProviderSettings",
    "Budget",
    "BudgetSettings",
    "CostSettings",
    "ArtifactSettings",
    "CacheSettings",
    "JobTypeSettings",
    "Settings",
    "TelemetrySettings",
    "default_config_path",
    "_apply_env",
    "settings_from",
    "load_settings",
]
