"""The one place vq depends on RQ's internals, rather than its documented API.

vq runs on RQ but changes how its worker takes, starts and ends jobs (admission, fenced
leases, one round trip per job end). That means overriding RQ's `Worker` and `Queue`
methods, reading a few private attributes and writing RQ's job hash from Lua: all of it
is here, so that an RQ release that changes any of it is found by one test file
(tests/test_rq_contract.py, run against the newest RQ by scripts/rq_contract_newest.sh)
instead of by a worker misbehaving in production.

- `vq.rq_seam.worker`: `VqWorker` and `ThreadWorker`, every override of RQ's `Worker`.
- `vq.rq_seam.queue`: `VqQueue` and `rq_queue()`, every override of RQ's `Queue`.
- `vq.rq_seam.job`: `ReadableJob`, the one override of RQ's `Job` (reads a pickled job
  without unpickling it), and `lean_jobs`, RQ's job dates read without `strptime`
  and its serializer check done once per serializer (installed here, on import).
- `vq.rq_seam.private`: RQ's private attributes and methods that the rest of vq uses,
  each behind a named function.
- `vq.rq_seam.log_filters`: the filters that recognise RQ's own log lines.
- `vq.rq_seam.contract`: what vq expects of RQ, as data the contract tests check.
- `vq.rq_seam.host`: the worker vq's worker mixins are part of, for the type checker.

Modules outside this package use RQ's public API only (plus `vq.rq_seam.private`).
"""

from vq.rq_seam.job import lean_jobs

lean_jobs()
