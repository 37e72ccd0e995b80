"""Built-in job handlers: one module per job type, each exporting handle(ctx, data) -> dict.

The worker imports `vq.handlers.<type_with_underscores>:handle`; video_generation also
exports plan(data), which splits a video into a graph of child jobs.
"""
