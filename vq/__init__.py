"""vq: a job queue for an AI video-generation platform, built on RQ and Redis."""

__version__ = "0.2.0"
