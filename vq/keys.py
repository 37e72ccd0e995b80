"""Every Redis key and RQ queue name vq owns, built in one place.

RQ keeps its own keys (rq:job:*, rq:queue:*, registries); vq's live under `vq:`.
"""

from __future__ import annotations

PREFIX = "vq:"
PRIORITY_ORDER = ("high", "normal", "low")

# RQ's own keys that vq's scripts touch, as RQ names them (rq.job.Job.key_for,
# rq.queue.Queue.redis_queue_namespace_prefix, rq.worker.Worker.redis_worker_namespace_prefix,
# ScheduledJobRegistry.key_template; tests/test_lua_keys.py checks they still agree). Not
# imported from RQ: this module is read by every CLI command, and RQ is heavy to import.
RQ_JOB_PREFIX = "rq:job:"
RQ_QUEUE_PREFIX = "rq:queue:"
RQ_WORKER_PREFIX = "rq:worker:"
RQ_SCHEDULED_PREFIX = "rq:scheduled:"
RQ_CANCELED_PREFIX = "rq:canceled:"


def rq_job(job_id: str) -> str:
    """RQ's hash of a job."""
    return RQ_JOB_PREFIX + job_id


def rq_queue(queue: str) -> str:
    """RQ's list of a queue's job ids."""
    return RQ_QUEUE_PREFIX + queue


def rq_worker(name: str) -> str:
    """RQ's hash of a worker."""
    return RQ_WORKER_PREFIX + name


def rq_scheduled(queue: str) -> str:
    """RQ's zset of a queue's delayed jobs (job id -> due epoch seconds)."""
    return RQ_SCHEDULED_PREFIX + queue


def rq_canceled(queue: str) -> str:
    """RQ's canceled registry of a queue (id -> epoch seconds it was canceled)."""
    return RQ_CANCELED_PREFIX + queue


def rq_finished(queue: str) -> str:
    """RQ's finished registry of a queue."""
    return f"rq:finished:{queue}"


def rq_dependents(job_id: str) -> str:
    """RQ's set of the jobs waiting for this one (rq.job.Job.dependents_key_for)."""
    return f"{RQ_JOB_PREFIX}{job_id}:dependents"


def rq_dependencies(job_id: str) -> str:
    """RQ's set of a job's dependencies (rq.job.Job.dependencies_key: RQ writes its `:` twice)."""
    return f"{RQ_JOB_PREFIX}:{job_id}:dependencies"


DEADLINES = PREFIX + "deadlines"  # zset id -> deadline ms of not-yet-started jobs that expire (vq/deadlines.py)
PAUSED = PREFIX + "paused"  # set of job type names whose queues are paused
EVENTS = PREFIX + "events"  # stream of job events
JOB_TYPES_SEEN = PREFIX + "types"  # set of job type names that have an index (vq jobs lists them all)
LEGACY_ALL_JOBS = PREFIX + "jobs"  # an index of every job that vq before 0.2 kept; dropped at daemon start
EVENTS_CHANNEL = PREFIX + "events:live"  # pub/sub mirror of EVENTS for live followers
TIMER_CHANNEL = PREFIX + "timer"  # pub/sub: "something is due at <epoch s>" for sleeping timers
# zset: queue name -> at or before its scheduled registry's first due time (epoch s), so a
# timer's look reads one key, not every queue's registry (vq/timer.py, vq/lua/due.lua)
SCHEDULED_DUE = PREFIX + "scheduled:due"
CANCEL_NOW_CHANNEL = PREFIX + "cancel:now"  # pub/sub: the id of a running job to interrupt now (vq/cancel_now.py)


def queue_name(job_type: str, priority: str) -> str:
    """The RQ queue a job of this type and priority waits in, e.g. 'image-generation.high'."""
    return f"{job_type}.{priority}"


def split_queue_name(name: str) -> tuple[str, str]:
    """Inverse of queue_name: ('image-generation', 'high')."""
    job_type, _, priority = name.rpartition(".")
    return job_type, priority


def user_jobs(user_id: str) -> str:
    """zset job id -> created ms of one user's jobs."""
    return f"{PREFIX}user:{user_id}:jobs"


def type_jobs(job_type: str) -> str:
    """zset job id -> created ms of one job type's jobs."""
    return f"{PREFIX}type:{job_type}:jobs"


def cancel_request(job_id: str) -> str:
    """Set when someone cancels a job that is running (its value: the reason); its next
    progress report stops it, or at once with `vq cancel --now` (CANCEL_NOW_FIELD)."""
    return f"{PREFIX}job:{job_id}:cancel"


# In a running job's RQ hash: set by `vq cancel --now` (the worker holding the job's lease
# interrupts it: told over CANCEL_NOW_CHANNEL, or by its next renewal, vq/lua/renew.lua),
# and who canceled it (any cancel of a running job; the worker records it with the end).
CANCEL_NOW_FIELD = "vq_cancel_now"
CANCELED_BY_FIELD = "vq_canceled_by"


# --- admission (see vq/lua/admit_common.lua for how these fit together) -------------------
WAKE = PREFIX + "wake"  # list: a token per event that may let a waiting job run
# set: what admission looks at: RQ queue names whose lists may hold jobs it has not
# routed, and the keys of rings that have users (vq/lua/admit_route.lua)
INBOX = PREFIX + "inbox"
# set: the names of the workers waiting for a wake token (admission wakes one when it frees
# slots: vq/lua/admit_main.lua). Apart from INBOX, so that an admission call's read of INBOX
# does not grow with idle workers.
IDLE_WORKERS = PREFIX + "idle-workers"
# in INBOX while IDLE_WORKERS may name a worker (absent: it names none), so that a call that
# frees slots pays no read of IDLE_WORKERS when nobody idles (a drain)
INBOX_IDLE_HINT = "idle"
# vq up to 0.2.0 kept that mark in INBOX, as this prefix and the worker's name (admission
# moves any it finds: vq/lua/admit_route.lua, vq/admission.py migrate_legacy_idle)
LEGACY_INBOX_IDLE = "idle:"
USER_TIER = PREFIX + "usertier"
AGED = PREFIX + "aged"  # hash job id -> the priority it was aged to
ADMITTED = PREFIX + "admitted"  # zset job id -> ms: handed to a worker that has not started it yet
# Limit kinds `vq limits set` takes: concurrency per type, tier, user and limit group; a limit group's rate;
# and the weights of a tier's and a user's turns in the round-robin between users (weighted fair shares).
LIMIT_KINDS = ("type", "tier", "user", "group", "group-rate", "tier-weight", "user-weight")
WEIGHT_KINDS = ("tier-weight", "user-weight")
# Kinds whose values are not a number: a limit group's rate, "<starts>/<window ms>" per limit field
# (vq/groups.py limit_field, rate_text).
RATE_KINDS = ("group-rate",)
# Kinds set per key of a limit group: `vq limits set group|group-rate NAME KEY VALUE`.
GROUP_KINDS = ("group", "group-rate")
# hash ring key -> "<user>|<starts>": the user whose weighted turn is under way in that ring
# and how many jobs it has started in it (vq/lua/admit_choose.lua keep_turn)
ADMISSION_TURNS = PREFIX + "admission:turns"


# The prefixes of the admission keys named per type, priority and user. The scripts build
# these keys from the prefixes (vq/lua/__init__.py passes them in KEYS), in the shape the
# functions below build them: <prefix><type>:<priority>[:<user>], <prefix><type|user>.
WAIT_PREFIX = PREFIX + "wait:"
RING_PREFIX = PREFIX + "ring:"
WAIT_SINCE_PREFIX = PREFIX + "waitsince:"
EDF_PREFIX = PREFIX + "edf:"
RUNNING_TYPE_PREFIX = PREFIX + "running:type:"
RUNNING_USER_PREFIX = PREFIX + "running:user:"
RUNNING_GROUP_PREFIX = PREFIX + "running:group:"
RUNNING_RESOURCES_PREFIX = PREFIX + "running:resources:"
GROUP_STARTS_PREFIX = PREFIX + "starts:group:"
GROUP_WAITING_PREFIX = PREFIX + "waiting:group:"
GROUP_KEYS_PREFIX = PREFIX + "group-keys:"
LIMITS_PREFIX = PREFIX + "limits:"
LIMIT_OVERRIDES_PREFIX = PREFIX + "limits:override:"


def waiting_list(job_type: str, priority: str, user_id: str) -> str:
    return f"{WAIT_PREFIX}{job_type}:{priority}:{user_id}"


def deadline_line(job_type: str, priority: str, user_id: str) -> str:
    """zset id -> deadline ms: the jobs with a deadline in a user's line, which go before
    those of `waiting_list`, earliest deadline first (vq/lua/admit_deadline.lua)."""
    return f"{EDF_PREFIX}{job_type}:{priority}:{user_id}"


def ring(job_type: str, priority: str) -> str:
    return f"{RING_PREFIX}{job_type}:{priority}"


def legacy_waiting(job_type: str) -> str:
    """Every waiting job of a type, which vq before 0.3 kept beside wait_since (migrated at daemon start)."""
    return f"{PREFIX}waiting:{job_type}"


def wait_since(job_type: str, priority: str) -> str:
    """zset id -> ms since the job waits at this level: every job waiting for a slot is in
    exactly one of its type's three (counts, the oldest, aging)."""
    return f"{WAIT_SINCE_PREFIX}{job_type}:{priority}"


def wait_since_all(job_type: str) -> list[str]:
    return [wait_since(job_type, p) for p in PRIORITY_ORDER]


def running_type(job_type: str) -> str:
    return RUNNING_TYPE_PREFIX + job_type


def running_user(user_id: str) -> str:
    return RUNNING_USER_PREFIX + user_id


def running_group(group: str, key: str) -> str:
    """zset id -> lease deadline ms: the running jobs of one key of a limit group (vq/groups.py)."""
    return f"{RUNNING_GROUP_PREFIX}{group}:{key}"


def group_starts(group: str, key: str) -> str:
    """zset "<id>@<ms>" -> ms: the starts of one key of a limit group within its rate's window
    (a sliding-window log, pruned and expired by admission: vq/lua/groups.lua)."""
    return f"{GROUP_STARTS_PREFIX}{group}:{key}"


def group_waiting(group: str, key: str) -> str:
    """zset id -> ms routed: the jobs of one key of a limit group waiting in users' lines
    (added by routing, removed when admitted or taken out of line: vq/groups.py)."""
    return f"{GROUP_WAITING_PREFIX}{group}:{key}"


def group_keys(group: str) -> str:
    """set: the keys of a limit group that have had waiting jobs (what `vq limits` reads
    instead of scanning; keys with nothing waiting or running are dropped by recovery)."""
    return GROUP_KEYS_PREFIX + group


def running_resources(holder: str) -> str:
    """zset id -> lease deadline ms: the jobs holding resources of one worker process (vq/capacity.py)."""
    return RUNNING_RESOURCES_PREFIX + holder


# hash worker process name -> its resources as JSON {capacity, devices} (vq/capacity.py);
# an entry whose RQ worker key is gone is a dead worker's, skipped by readers.
WORKER_RESOURCES = PREFIX + "workers:resources"
# hash worker process name -> "<job id>|<until ms>": the job its share is kept for, a bigger
# one that waits for its running jobs to end (vq/lua/admit_resources.lua).
RESOURCES_RESERVED = PREFIX + "resources:reserved"


def limits(kind: str) -> str:
    """Limits from config (written by each daemon at start)."""
    return LIMITS_PREFIX + kind


def limit_overrides(kind: str) -> str:
    """Limits set at runtime with `vq limits set`; they win over config."""
    return LIMIT_OVERRIDES_PREFIX + kind


# hash type:<t> / tier:<tier> / user:<u> / group:<g> (the group's default) / group:<g>=<key>
# -> the limit in force: config with overrides over
# it, rebuilt whenever either changes (vq/lua/limits.lua), so admission reads one hash.
LIMITS_EFFECTIVE = PREFIX + "limits:effective"


def idempotency(user_id: str, key: str) -> str:
    """The job an idempotencyKey of this user already created."""
    return f"{PREFIX}idem:{user_id}:{key}"


def unique(job_type: str, owner: str, key: str) -> str:
    """The job a uniqueKey holds for (vq/submission/unique.py); owner: a user id, or * (global).
    `|` parts owner and key: neither a user id nor a key may hold one (a user id may hold `:`,
    so user `a:b` with key `c` and user `a` with key `b:c` would otherwise share a name)."""
    return f"{PREFIX}unique:{job_type}:{owner}|{key}"


BREAKERS = PREFIX + "breakers"  # set of provider names that have a breaker record


def breaker(provider: str) -> str:
    """hash: state, openedAt, nextProbe (ms), probing (ms) and prober (the probing call's id) of one
    provider's circuit breaker."""
    return f"{PREFIX}breaker:{provider}"


def provider_inflight(provider: str) -> str:
    """zset call token -> lease deadline ms: the provider's requests in flight, all hosts."""
    return f"{PREFIX}provider:{provider}:inflight"


def provider_minute(provider: str, minute: int) -> str:
    """hash of call outcome counts in one minute (epoch minutes)."""
    return f"{PREFIX}provider:{provider}:m:{minute}"


def provider_latency(provider: str) -> str:
    """list: the latest answered calls' latencies in ms, newest first."""
    return f"{PREFIX}provider:{provider}:latency"


PROVIDER_RATE_PREFIX = PREFIX + "provider-rate"  # the `limits` library's moving windows


def costs_day(day: str) -> str:
    """hash: micro-units of currency spent on one UTC day (YYYY-MM-DD), per `user:<id>`,
    `project:<id>`, `provider:<name>`, and calls per `calls:provider:<name>`."""
    return f"{PREFIX}costs:{day}"


def breaker_failures(provider: str) -> str:
    """zset of failure ids -> ms within the breaker's window."""
    return f"{PREFIX}breaker:{provider}:failures"


def result_cache(job_type: str, scope: str, digest: str) -> str:
    """The finished job whose result a submission of this type and data may reuse."""
    return f"{PREFIX}cache:{job_type}:{scope}:{digest}"


def cache_counter(job_type: str, outcome: str) -> str:
    """hits / misses of the result cache, per type."""
    return f"{PREFIX}cache:{outcome}:{job_type}"


# --- recurring jobs (vq/recurring/) ---------------------------------------------------
RECURRING = PREFIX + "recurring"  # hash id -> definition (JSON)
RECURRING_DUE = PREFIX + "recurring:due"  # zset id -> next tick ms (active definitions only)
RECURRING_SEEN = PREFIX + "recurring:seen"  # set once definitions were ever written (see restore)


def recurring_runs(recurring_id: str) -> str:
    """zset job id -> tick ms: the jobs a recurring definition spawned (the latest few)."""
    return f"{PREFIX}recurring:{recurring_id}:runs"


def recurring_stats(recurring_id: str) -> str:
    """hash: runs, succeeded, failed, canceled, missed, lastRunAt, lastJobId, lastOutcome."""
    return f"{PREFIX}recurring:{recurring_id}:stats"


def recurring_outcomes(recurring_id: str) -> str:
    """hash job id -> final status of a spawned job (kept after the job itself is trimmed)."""
    return f"{PREFIX}recurring:{recurring_id}:outcomes"


def recurring_lease(recurring_id: str) -> str:
    """Held by the daemon firing this definition's due tick."""
    return f"{PREFIX}recurring:{recurring_id}:lease"


# --- history and metrics (vq/history/archiver.py, vq/metrics.py) ----------------------
EXEMPLARS_PREFIX = (
    PREFIX + "exemplars:run:"
)  # hash per type: bucket index -> "trace span seconds time" (vq/exemplars.py)


def exemplars(job_type: str) -> str:
    return EXEMPLARS_PREFIX + job_type


METRICS_TOTALS = PREFIX + "metrics:totals"  # hash "<type>|<counter>" -> n, all time
METRICS_USERS = PREFIX + "metrics:users"  # hash "<user>|<counter>" -> n, while the user is active
METRICS_USERS_RANK = PREFIX + "metrics:users:rank"  # zset user -> jobs created (the top users, no scan)
METRICS_USERS_SEEN = PREFIX + "metrics:users:seen"  # zset user -> last counted (ms): idle users are pruned
METRICS_WORKERS = PREFIX + "metrics:workers"  # hash "<host>|<worker>|<counter>" -> n (vq/worker_series.py)
METRICS_WORKERS_SEEN = PREFIX + "metrics:workers:seen"  # zset "<host>|<worker>" -> last counted (ms): pruned
METRICS_PROVIDERS = PREFIX + "metrics:providers"  # hash "<provider>|<counter>" -> n, all time (providers/stats.py)
ARCHIVER_LEADER = PREFIX + "archiver:leader"  # held by the one archiver running
ARCHIVER_APPLIED = PREFIX + "archiver:applied"  # the last event id whose metrics were counted
ARCHIVER_HOME = PREFIX + "archiver:home"  # hash: the history file archivers write (vq/history/lease.py)
ARCHIVER_CANDIDATES = PREFIX + "archiver:candidates"  # hash db id -> a file's position, while none is home
DAEMONS = PREFIX + "daemons"  # hash host:pid -> JSON of a running daemon's state (vq/presence.py)
DAEMON_PROBLEMS = PREFIX + "daemons:problems"  # hash host:pid:process -> JSON of what keeps it from working
WEBHOOK_EVENTS = PREFIX + "webhooks:events"  # stream: the ended events of jobs that have a webhookUrl


def event_mark(job_id: str, event: str, ts: str) -> str:
    """string, kept a minute: this event of this job at this ms was appended (vq/lua/event_once.lua),
    so the same append sent again after a lost reply appends nothing."""
    return f"{PREFIX}emitted:{job_id}:{event}:{ts}"


WEBHOOK_RETRIES = PREFIX + "webhooks:retries"  # zset delivery (JSON) -> when to try again (epoch ms)
HEALTH_LAST = PREFIX + "health:last"  # the overall status the last check saw (alerts fire on change)


API_RATE_PREFIX = PREFIX + "api-rate"  # the HTTP API's per-user moving windows (vq/windows.py)


def dependents(job_id: str) -> str:
    """zset dependent job id -> when it was registered: the jobs created depending on this one,
    kept until it is deleted (RQ's own set of dependents is emptied when they are enqueued);
    trimming keeps a job while one of them has not ended (vq/dependents.py)."""
    return f"{PREFIX}dependents:{job_id}"


# --- fenced leases (vq/fence.py) -----------------------------------------------------
LEASE_FIELD = "vq_lease"  # in a running job's RQ hash: the token of the lease it runs under
# In a job's RQ hash, from its submission: its limit groups' keys as a JSON object
# {group: key} (vq/groups.py), so admission leases their slots without reading the job's data.
GROUPS_FIELD = "vq_groups"
# In a job's RQ hash: what it needs ({resource: amount}, from submission: vq/capacity.py), and
# what it holds while it runs ({holder, gpu: [device indices], resource: amount}, from admission).
RESOURCES_FIELD = "vq_resources"
HELD_FIELD = "vq_held"
# In a finished job's RQ hash (the worker's next job) and in a worker's RQ hash (an idle
# worker's call): what the admission call handed out, JSON [token, id, queue, user, started],
# so that the same call run again (redis-py's retry after a lost reply) hands out the same job
# instead of a second one (vq/lua/admit_main.lua).
HANDED_OUT_FIELD = "vq_handed_out"
STALE_REFUSED = PREFIX + "fence:refused"  # counter: writes refused because their lease token was stale
LEASES_LOST = PREFIX + "fence:lost"  # counter: jobs a worker stopped because it could not keep their lease


def checkpoint(job_id: str) -> str:
    """hash: the last state a job's handler saved with ctx.checkpoint (state, bytes, at,
    attempt), fenced by its lease; read by its next attempt, deleted when the job ends for
    good, and expiring on its own (limits.checkpointTtl) as a safety net (vq/checkpoints.py)."""
    return f"{PREFIX}checkpoint:{job_id}"


# --- batches with callbacks (vq/batches.py) ---------------------------------------------
BATCHES_ACTIVE = PREFIX + "batches:active"  # set: batches not yet complete (the sweep's list)
BATCHES_DUE = PREFIX + "batches:due"  # zset "<batch>|<kind>" -> when to submit that callback job (epoch ms)
BATCHES_DUE_WEBHOOKS = PREFIX + "batches:due-webhooks"  # zset "<batch>|<kind>" -> when to POST that webhook
BATCHES_INDEX = PREFIX + "batches:index"  # zset "<batch>|<user>" -> created ms: `vq batch list` (vq/batch_lists.py)


def batch(batch_id: str) -> str:
    """hash: a batch's owner, description, meta, callbacks, counts, closed flag, fired markers."""
    return f"{PREFIX}batch:{batch_id}"


def user_batches(user_id: str) -> str:
    """zset batch id -> created ms of one user's batches (`vq batch list --user`, a user's token)."""
    return f"{PREFIX}user:{user_id}:batches"


def batch_jobs(batch_id: str) -> str:
    """set: the ids of a batch's jobs."""
    return f"{PREFIX}batch:{batch_id}:jobs"


def batch_ended(batch_id: str) -> str:
    """hash job id -> done | failed | canceled: the batch's jobs already counted, each once."""
    return f"{PREFIX}batch:{batch_id}:ended"


def job_log(job_id: str) -> str:
    """list: what a job's handler logged (JSON lines, at most limits.maxLogLines and
    limits.maxLogBytes: the first and the last kept), expiring with the job (vq/job_logs.py)."""
    return f"{PREFIX}log:{job_id}"


def job_log_meta(job_id: str) -> str:
    """hash: the bookkeeping of a job's log list: seq (lines seen), head (lines kept at the
    start), bytes, closed, dropped, write (the last write's id: vq/lua/job_log.lua)."""
    return f"{PREFIX}logmeta:{job_id}"


JOB_LOGS_PENDING = PREFIX + "logs:pending"  # set: jobs whose logs the archiver copies when they end


UI_SECRET = PREFIX + "ui:secret"  # the web dashboard's cookie-signing key, made once (vq/webui/sessions.py)


def ui_session(session_id: str) -> str:
    """The web dashboard's session (hash: token, csrf), expiring with the token it was made from."""
    return f"{PREFIX}ui:session:{session_id}"


def listing_scratch(token: str) -> str:
    """A listing's scratch zset (job id -> created ms) of the jobs one status filter can
    match, made from RQ's registries and dropped after the page is read (vq/job_status_index.py)."""
    return f"{PREFIX}tmp:listing:{token}"
