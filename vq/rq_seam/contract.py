"""What vq expects of RQ's internals, as data: tests/test_rq_contract.py checks each entry
against the RQ installed (and scripts/rq_contract_newest.sh against RQ's newest release).

Parameters are listed by name. An override must match RQ's method exactly (RQ calls it, and
would pass anything new); a method vq only calls must start with these parameters, and any
RQ adds after them must have defaults.
"""

from __future__ import annotations

from vq import keys

# RQ's Worker methods that VqWorker (vq/rq_seam/worker.py) overrides.
WORKER_OVERRIDES = {
    "register_birth": ("self",),
    "heartbeat": ("self", "timeout", "pipeline"),
    "set_state": ("self", "state", "pipeline"),
    "check_for_suspension": ("self", "burst"),
    "prepare_execution": ("self", "job"),
    "prepare_job_execution": ("self", "job", "remove_from_intermediate_queue"),
    "handle_execution_ended": ("self", "job", "queue", "heartbeat_ttl"),
    "main_work_horse": ("self", "job", "queue"),
    "fork_work_horse": ("self", "job", "queue"),
    "execute_job": ("self", "job", "queue"),
    "increment_successful_job_count": ("self", "pipeline"),
    "increment_total_working_time": ("self", "job_execution_time", "pipeline"),
    "dequeue_job_and_maintain_ttl": ("self", "timeout", "max_idle_time"),
    "unsubscribe": ("self",),
    "teardown": ("self",),
    "_shutdown": ("self",),
    "request_force_stop": ("self", "signum", "frame"),
    "handle_exception": ("self", "job", "exc_info"),
    "handle_job_failure": ("self", "job", "queue", "started_job_registry", "exc_string", "execution"),
    "handle_job_success": ("self", "job", "queue", "started_job_registry", "execution"),
    "_install_signal_handlers": ("self",),  # ThreadWorker's
}
WORKER_PASSED_THROUGH = {"work": ("max_jobs", "logging_level")}  # (*args, **kwargs); vq reads these
WORKER_PROPERTIES = ("dequeue_timeout",)
WORKER_CLASS_ATTRIBUTES = ("queue_class", "death_penalty_class", "job_class")

# RQ's Queue methods that VqQueue (vq/rq_seam/queue.py) overrides.
QUEUE_OVERRIDES = {
    "dequeue_any": ("queues", "timeout", "connection", "job_class", "serializer", "death_penalty_class"),
    "push_job_id": ("self", "job_id", "pipeline", "at_front"),
    "schedule_job": ("self", "job", "datetime", "pipeline", "unique"),
    "enqueue_ready_jobs_by_queue": ("self", "job_ids_by_queue_name"),
}

# RQ's Job methods that ReadableJob (vq/rq_seam/job.py) overrides.
JOB_OVERRIDES = {
    "restore": ("self", "raw_data"),
    "_deserialize_data": ("self",),
}

# RQ methods vq calls that RQ does not document as its API (private, or a step of RQ's
# worker called from vq's override): (module, class or None, name) -> leading parameters.
CALLED = {
    ("rq.job", "Job", "_serialize_meta"): ("self",),
    ("rq.job", "Job", "_handle_success"): ("self", "result_ttl", "pipeline"),
    ("rq.job", "Job", "prepare_for_execution"): ("self", "worker_name", "pipeline"),
    ("rq.job", "Job", "heartbeat"): ("self", "timestamp", "ttl", "pipeline"),
    ("rq.queue", "Queue", "_enqueue_job"): ("self", "job", "pipeline", "at_front"),
    ("rq.queue", "Queue", "enqueue_dependents"): ("self", "job"),
    ("rq.worker", "SimpleWorker", "get_heartbeat_ttl"): ("self", "job"),
    ("rq.worker", "SimpleWorker", "execute_job"): ("self", "job", "queue"),
    ("rq.worker", "Worker", "execute_job"): ("self", "job", "queue"),
    ("rq.worker", "Worker", "cleanup_execution"): ("self", "job", "pipeline", "execution"),
    ("rq.executions", "Execution", "create"): ("job", "ttl", "pipeline"),
    ("rq.executions", "Execution", "__init__"): ("self", "id", "job_id", "connection"),
    ("rq.job_lifecycle", None, "call_exception_handlers"): ("handlers", "job"),
    ("rq.suspension", None, "is_suspended"): ("connection", "worker"),
    ("rq.rate_limit", None, "release_slot"): ("job",),
}

# Attributes of RQ's objects, most of them private, that vq reads or sets (through
# vq/rq_seam/private.py, or in the overrides).
WORKER_INSTANCE_ATTRIBUTES = (
    "_stop_requested",
    "_state",
    "_ordered_queues",
    "_exc_handlers",
    "_stopped_job_id",
    "executions",
    "pubsub_thread",
    "horse_pid",
    "is_horse",
    "default_result_ttl",
)
JOB_PRIVATE_ATTRIBUTES = (
    "_result",
    "_status",
    "_dependency_ids",
    "_func_name",
    "_instance",
    "_args",
    "_kwargs",
)  # the last four: ReadableJob

# Fields of RQ's worker hash that vq writes itself (the seam's _flush_counts; vq/lua/admit_start.lua).
WORKER_HASH_FIELDS = ("successful_job_count", "total_working_time", "state", "last_heartbeat")

# Redis key prefixes of RQ's that vq's Lua and queries spell out (vq/keys.py names those its
# scripts are given).
KEY_PREFIXES = {
    "job": keys.RQ_JOB_PREFIX,
    "queue": keys.RQ_QUEUE_PREFIX,
    "worker": keys.RQ_WORKER_PREFIX,
    "workers": "rq:workers",
    "scheduled": keys.RQ_SCHEDULED_PREFIX,
    "failed": "rq:failed:",
    "finished": keys.rq_finished(""),
}
