"""The HTTP API's routers, one per resource; vq/api/app.py assembles them.

Each module's `router(ctx)` builds an APIRouter over the shared `Context` (vq/api/context.py).
"""
