"""The serving API: FastAPI app factory.

Routes (docs/api.md), one router per concern: the Serenade-compatible `GET /v1/recommend`
(routes_recommend), the session routes (routes_sessions), the views' reads (routes_views),
health, readiness and Prometheus metrics (routes_operations) and the dashboard
(routes_dashboard). The routes take the `ServingState` as a dependency (serving_state). The
recommend path stays lean: orjson bytes out, the kernel called under one lock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recommender import __version__
from recommender.serving import (
    routes_dashboard,
    routes_operations,
    routes_recommend,
    routes_sessions,
    routes_views,
)
from recommender.serving.prometheus import Metrics
from recommender.serving.routes_common import json_response
from recommender.serving.serving_state import ServingState
from recommender.serving.views import ViewsUnavailable

__all__ = ["ServingState", "create_app"]


class _Timing:
    """Pure ASGI middleware: latency histogram and status counter per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            self.metrics.requests.labels(name, str(status[0])).inc()


async def _bad_request(_request: Request, exc: RequestValidationError) -> Response:
    """422 with one line per problem: `name: message`."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path', 'body'))}: {e['msg']}"
        for e in exc.errors()
    ]
    return json_response({"detail": "; ".join(problems) or "bad request"}, 422)


async def _views_down(_request: Request, exc: ViewsUnavailable) -> Response:
    """503 with the reason: PostgreSQL or a view cannot be read."""
    return json_response({"detail": f"views unavailable: {exc}"}, 503)


def create_app(state: ServingState) -> FastAPI:
    """The API over `state`; starts its background threads with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.start()
        yield
        state.stop()

    app = FastAPI(
        title="flashrec serving API",
        version=__version__,
        description=(
            "Next-item (VMIS-kNN), 'customers also viewed' and 'trending now' recommendations "
            "from the live views. See docs/api.md."
        ),
        lifespan=lifespan,
    )
    app.state.serving = state
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(ViewsUnavailable, _views_down)
    app.include_router(routes_recommend.router)
    app.include_router(routes_sessions.build_router(state.index.params.how_many))
    app.include_router(routes_views.router)
    app.include_router(routes_operations.router)
    app.include_router(routes_dashboard.router)
    app.add_middleware(routes_recommend.FastRecommend, state=state)
    app.add_middleware(_Timing, metrics=state.metrics)
    return app
