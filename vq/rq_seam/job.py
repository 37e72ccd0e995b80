"""vq's RQ job class for reading: the one override of RQ's Job (part of the RQ seam)."""

from __future__ import annotations

from rq.exceptions import DeserializationError
from rq.job import Job


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
