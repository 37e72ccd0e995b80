"""vq's RQ job class for reading: the one override of RQ's Job (part of the RQ seam), and
two costs RQ pays for every job object it builds, paid once instead (`lean_jobs`): reading
its timestamps with `strptime`, and checking its serializer against a `typing.Protocol`."""

from __future__ import annotations

from datetime import datetime

import rq.job
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import resolve_serializer as rq_resolve_serializer
from rq.utils import str_to_date as rq_str_to_date
from rq.utils import utcformat as rq_utcformat

RQ_DATE_LENGTH = len("2026-01-01T00:00:00.000000Z")  # RQ's utcformat: %Y-%m-%dT%H:%M:%S.%fZ


def parse_rq_date(date_str: bytes | str) -> datetime:
    """RQ's `str_to_date`, the same answer, for the one shape RQ writes through
    `datetime.fromisoformat` (C, ~0.3 µs) instead of `strptime` (~10 µs idle, 50 µs on a
    loaded machine): `Job.restore` parses four or five dates per job, which was 5% of a
    no-op job's worker CPU (py-spy). Any other shape (RQ's older whole-second one, a
    malformed one) goes to RQ's own parser, which keeps its answers and its errors."""
    text = date_str.decode() if isinstance(date_str, bytes) else date_str
    if (
        len(text) == RQ_DATE_LENGTH
        and text[-1] == "Z"
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text[19] == "."
    ):
        try:
            return datetime.fromisoformat(text)  # "Z" reads as datetime.UTC, as RQ's replace(tzinfo=UTC)
        except ValueError:
            pass
    return rq_str_to_date(text)


def format_rq_date(dt: datetime) -> str:
    """RQ's `utcformat` (`%Y-%m-%dT%H:%M:%S.%fZ`), the same text, without `strftime`
    (2-3× slower): a job's end writes two, and each admission call one."""
    if dt.year < 1000:  # strftime's %Y does not pad on every platform: RQ's own answer
        return rq_utcformat(dt)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - %-formatting is the fastest here
        dt.year,
        dt.month,
        dt.day,
        dt.hour,
        dt.minute,
        dt.second,
        dt.microsecond,
    )


_resolved: dict[int, object] = {}  # id -> a serializer RQ's check accepted (held, so the id stays its own)
RESOLVED_CAP = 64  # serializers are a handful of classes; past this, stop remembering


def resolve_serializer_once(serializer=None):
    """RQ's `resolve_serializer`, the same answer, with its check done once per serializer:
    it is a `typing.Protocol` `isinstance` (~10 µs idle, 50 µs loaded) and RQ runs it for
    every Job, Queue and registry object it builds, two to three per job in a worker. A
    name (a dotted path) or None still goes through RQ every time."""
    if serializer is not None and not isinstance(serializer, str) and _resolved.get(id(serializer)) is serializer:
        return serializer
    resolved = rq_resolve_serializer(serializer)
    if resolved is serializer and len(_resolved) < RESOLVED_CAP:
        _resolved[id(serializer)] = serializer
    return resolved


# RQ's modules that build objects with a serializer, each calling the name it imported.
SERIALIZER_USERS = ("rq.job", "rq.queue", "rq.registry", "rq.results")


def lean_jobs() -> None:
    """Have RQ's `Job.restore` read dates with `parse_rq_date` (it calls the `str_to_date`
    of its own module) and RQ's constructors check each serializer once
    (`resolve_serializer_once`, in each module of SERIALIZER_USERS). Installed when the
    seam is imported (vq/rq_seam/__init__.py); tests/test_rq_contract.py checks that RQ
    still calls both through those names."""
    import importlib

    rq.job.str_to_date = parse_rq_date
    for name in SERIALIZER_USERS:
        importlib.import_module(name).resolve_serializer = resolve_serializer_once  # type: ignore[attr-defined]


class ReadableJob(Job):
    """RQ's job as vq's read paths fetch it: a payload or meta that is not JSON (a pickled
    job waiting to be refused) reads as no arguments and empty meta instead of raising;
    never unpickled."""

    def restore(self, raw_data):
        try:
            return super().restore(raw_data)
        except ValueError:  # its meta is not JSON
            return super().restore({k: v for k, v in raw_data.items() if k not in (b"meta", "meta")})

    def _deserialize_data(self):
        try:
            super()._deserialize_data()
        except DeserializationError:
            self._func_name, self._instance, self._args, self._kwargs = "<not a vq job>", None, (), {}
