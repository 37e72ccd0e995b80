"""A job's own memory and CPU limits (job_types.T.maxMemory, maxCpuTime), set by the kernel
in the child process the job runs in (a type with limits runs forked), so a runaway job is
stopped without touching the worker or other jobs.

Memory: the address space may grow by maxMemory MB beyond what the process had at fork,
past which allocations fail (Python's MemoryError). CPU: the kernel sends SIGXCPU after
maxCpuTime (whole seconds) and kills the process a second later if it is still running.
Either way the job fails with category `resource` and a message naming the limit.
"""

from __future__ import annotations

import math
import os
import resource
import signal

from vq.errors import ResourceExceeded


def apply(job_type) -> None:
    """In the job's own (forked) process, before the handler runs."""
    if job_type.max_memory_mb:
        limit = _address_space() + job_type.max_memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if job_type.max_cpu_ms:
        used = resource.getrusage(resource.RUSAGE_SELF)
        seconds = math.ceil(used.ru_utime + used.ru_stime + job_type.max_cpu_ms / 1000)

        def over(signum, frame):
            raise ResourceExceeded(
                f"cpu: the job used more than its {job_type.max_cpu_ms / 1000:g} s of CPU time "
                f"(job_types.{job_type.name}.maxCpuTime)"
            )

        signal.signal(signal.SIGXCPU, over)
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def out_of_memory(job_type) -> ResourceExceeded:
    limit = (
        f"its {job_type.max_memory_mb} MB (job_types.{job_type.name}.maxMemory)"
        if job_type.max_memory_mb
        else "the memory available"
    )
    return ResourceExceeded(f"memory: the job needed more than {limit}")


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
