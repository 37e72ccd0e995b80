"""The whole configuration: one field per block."""

import os
from pathlib import Path
from typing import Annotated

from msgspec import Meta, field

from vq.config.base import TIERS, _InvalidKey, _Strict
from vq.config.jobs import (
    ArtifactSettings,
    BreakerSettings,
    CacheSettings,
    CostSettings,
    JobTypeSettings,
    ProviderSettings,
)
from vq.config.queue import (
    ConcurrencySettings,
    DeadlineSettings,
    LimitsSettings,
    PrioritySettings,
    QueueSettings,
    RedisSettings,
)
from vq.config.services import (
    DaemonSettings,
    HealthSettings,
    HistorySettings,
    HttpSettings,
    RecurringSettings,
    SecuritySettings,
    TemplateSettings,
    WebhookSettings,
)
from vq.config.telemetry import TelemetrySettings


class Settings(_Strict):
    redis: RedisSettings = field(default_factory=RedisSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    concurrency: ConcurrencySettings = field(default_factory=ConcurrencySettings)
    priority: PrioritySettings = field(default_factory=PrioritySettings)
    deadlines: DeadlineSettings = field(default_factory=DeadlineSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    recurring: RecurringSettings = field(default_factory=RecurringSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    templates: Annotated[dict[str, TemplateSettings], Meta(description="named presets for vq submit --template")] = (
        field(default_factory=dict)
    )
    subscriptions: Annotated[
        dict[str, str], Meta(description="userId -> subscription tier, for users whose token carries no tier")
    ] = field(default_factory=dict)
    data_dir: str | None = None
    job_types: dict[str, JobTypeSettings] = field(default_factory=dict)
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    costs: CostSettings = field(default_factory=CostSettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)

    def __post_init__(self) -> None:
        for user, tier in self.subscriptions.items():
            if tier not in TIERS:
                raise _InvalidKey("subscriptions", f"{user}: {tier!r} is not one of {', '.join(TIERS)}")
        known = set(self.concurrency.type) | set(self.job_types)
        for name, group in self.concurrency.groups.items():
            for job_type in group.types or ():
                if job_type not in known:
                    raise _InvalidKey("concurrency", f"groups.{name}.types: no job type {job_type!r}")
        self._check_indexed_fields()

    def _check_indexed_fields(self) -> None:
        """A sensitive field is encrypted in the history too (vq/protect.py): no index can find it."""
        from vq.protect import Protector

        rule = Protector(self)
        for name in self.history.indexedFields:
            for part in name.split(".")[1:]:
                if rule.is_sensitive(part):
                    raise _InvalidKey(
                        "history.indexedFields",
                        f"{name} is encrypted at rest ({part!r} matches security.sensitiveFields), "
                        "so it cannot be searched",
                    )

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
