"""Operations: `/v1/status` (for the dashboard), `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from recommender.serving.routes_common import json_response
from recommender.serving.serving_state import ServingState, StateDep
from recommender.serving.views import ViewsUnavailable

router = APIRouter()


def index_status(state: ServingState) -> dict[str, Any]:
    """The index, its follower and (under `flashrec up`) the engine; `ready` sums them up."""
    index, sync = state.index, state.sync
    pipeline = state.pipeline() if state.pipeline is not None else None
    return {
        "ready": index.ready
        and (sync is None or sync.following)
        and (pipeline is None or pipeline["state"] == "running"),
        "pipeline": pipeline,
        "sessions": index.n_sessions,
        "items": index.n_items,
        "updates_applied": index.updates,
        "newest_history_ts": index.last_change or None,
        "sync_state": sync.state if sync else "static (built from a file)",
        "sync_lag_s": sync.last_lag_s if sync else None,
        "sync_age_s": round(time.time() - sync.last_heard, 3) if sync and sync.last_heard else None,
        # what the follower is doing: error, reconnect attempts, recoveries, resnapshots
        "sync": sync.status() if sync else None,
        "session_store": state.store.backend,
        # the blend's weights, fill table and view mirrors (they do not gate `ready`)
        "blend": state.blend.status(),
        "recommend_blend": state.recommend_blend,
    }


@router.get("/v1/status", tags=["operations"])
def pipeline_status(state: StateDep) -> Response:
    """Index state and per-view freshness (flashrec_status), for the dashboard."""
    views = state.views
    try:
        views_status: Any = views.status() if views.configured else []
        error = None if views.configured else "no PostgreSQL DSN configured"
    except ViewsUnavailable as exc:
        views_status, error = [], str(exc)
    return json_response({"index": index_status(state), "views": views_status,
                          "views_error": error})  # fmt: skip


@router.get("/healthz", tags=["operations"])
async def healthz(state: StateDep) -> Response:
    """The process is up."""
    return json_response({"status": "ok", "uptime_s": round(time.time() - state.started, 3)})


@router.get("/readyz", tags=["operations"])
async def readyz(state: StateDep) -> Response:
    """Ready once the index is built, while it follows its view (503 while the follower
    retries, reconnects or rebuilds; `sync` says why) and, under `flashrec up`, while the
    engine's refreshes reach PostgreSQL (503 with the reason while a publish is stuck).
    `blend` shows the blend's view mirrors and fill table; a blend source that is not
    there yet only leaves its candidates out."""
    status = index_status(state)
    return json_response(status, 200 if status["ready"] else 503)


@router.get("/metrics", tags=["operations"], response_class=Response)
async def prometheus(state: StateDep) -> Response:
    """Prometheus metrics."""
    metrics, index = state.metrics, state.index
    metrics.index_sessions.set(index.n_sessions)
    metrics.index_items.set(index.n_items)
    if state.sync is not None and state.sync.last_heard:
        metrics.sync_age.set(time.time() - state.sync.last_heard)
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
