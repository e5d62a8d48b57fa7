"""The serving API: FastAPI app factory.

Routes (docs/api.md): the Serenade-compatible `GET /v1/recommend`, a richer JSON API over
sessions, products and categories, the dashboard (`/`), health, readiness and Prometheus
metrics. The recommend path stays lean: orjson bytes out, the kernel called under one lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any
from urllib.parse import unquote_plus

import orjson
from fastapi import Body, FastAPI, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recommender import __version__
from recommender.serving.index_sync import IndexSync
from recommender.serving.live_index import LiveIndex
from recommender.serving.prometheus import Metrics
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views, ViewsUnavailable

log = logging.getLogger(__name__)

MAX_ID = 128
NO_NUL = r"^[^\x00]+$"  # PostgreSQL text cannot hold NUL: such an id can exist nowhere
ID_DOC = "A shop id: 1 to 128 characters, no NUL."
IdParam = Annotated[str, Query(min_length=1, max_length=MAX_ID, pattern=NO_NUL, description=ID_DOC)]
IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=NO_NUL, description=ID_DOC)]
HowMany = Annotated[int, Query(ge=1, le=500, description="How many items to return.")]


@dataclass
class ServingState:
    """Everything the routes read: the index, the session store, the views, metrics."""

    index: LiveIndex
    store: SessionStore
    views: Views
    metrics: Metrics = field(default_factory=Metrics)
    sync: IndexSync | None = None
    # the engine's health() when it runs in this process (`flashrec up --api-port`)
    pipeline: Callable[[], dict[str, Any]] | None = None
    catalog_interval_s: float = 5.0
    purge_interval_s: float = 300.0
    started: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.sync is not None:
            self.sync.start()
        threading.Thread(target=self._maintain, name="maintenance", daemon=True).start()

    def _maintain(self) -> None:
        """Refresh product names/categories every few seconds; purge idle sessions."""
        next_purge = time.monotonic() + self.purge_interval_s
        while not self._stop.is_set():
            if self.views.configured:
                try:
                    self.views.refresh_catalog()
                except Exception as exc:  # the views may not exist yet
                    log.debug("catalog refresh failed: %s", exc)
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self.purge_interval_s
                try:
                    purged = self.store.purge_expired()
                    if purged:
                        log.info("purged %d idle sessions", purged)
                except Exception:
                    log.exception("session purge failed")
            self._stop.wait(self.catalog_interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self.sync is not None:
            self.sync.stop()
        self.views.close()
        self.store.close()


JSON = "application/json"


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type=JSON)


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


_CONSENT = {"true": True, "false": False, "1": True, "0": False}


def _simple_query(raw: bytes) -> dict[str, str] | None:
    """Query parameters decoded as Starlette does, or None when anything is unusual
    (repeated or encoded names, no '='): such requests take the regular route."""
    out: dict[str, str] = {}
    for part in raw.decode("latin-1").split("&"):
        name, eq, value = part.partition("=")
        if not eq or name in out or "%" in name or "+" in name:
            return None
        if "%" in value or "+" in value:
            value = unquote_plus(value, encoding="utf-8", errors="replace")
        out[name] = value
    return out


class _FastRecommend:
    """GET /v1/recommend without FastAPI's per-request parameter machinery (about half of
    the request's CPU). Only well-formed requests go this way and get the route's own
    answer; anything else (missing, empty, long or repeated parameters, other spellings of
    the consent flag) falls through to the FastAPI route and its validation errors."""

    def __init__(self, app: ASGIApp, answer: Any, route: Any) -> None:
        self.app = app
        self.answer = answer
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/v1/recommend"
            and (scope["method"] == "GET")
        ):
            q = _simple_query(scope["query_string"])
            if q is not None and set(q) <= {"session_id", "item_id", "user_consent"}:
                session_id, item_id = q.get("session_id", ""), q.get("item_id", "")
                consent = _CONSENT.get(q.get("user_consent", "false"))
                if (
                    0 < len(session_id) <= MAX_ID
                    and 0 < len(item_id) <= MAX_ID
                    and consent is not None
                    and "\x00" not in session_id
                    and "\x00" not in item_id
                ):
                    body = self.answer(session_id, item_id, consent)
                    scope["route"] = self.route
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-type", JSON.encode()),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


def create_app(state: ServingState) -> FastAPI:
    """The API over `state`; starts its background threads with the app's lifespan."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
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
    index, store, views, metrics = state.index, state.store, state.views, state.metrics

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p not in ('query', 'path', 'body'))}: "
            f"{e['msg']}"
            for e in exc.errors()
        ]
        return _json({"detail": "; ".join(problems) or "bad request"}, 422)

    @app.exception_handler(ViewsUnavailable)
    async def views_down(_request, exc: ViewsUnavailable) -> Response:
        return _json({"detail": f"views unavailable: {exc}"}, 503)

    def recs_for(
        items: list[str], how_many: int, exclude_session: bool = False
    ) -> tuple[list[tuple[str, float]], str]:
        if exclude_session:  # ask for more, then drop what the session already holds
            seen = set(items)
            recs = index.recommend(items, how_many=how_many + len(seen))
            recs = [pair for pair in recs if pair[0] not in seen][:how_many]
        else:
            recs = index.recommend(items, how_many=how_many)
        if recs:
            return recs, "vmis"
        metrics.fallbacks.inc()
        return index.popular(how_many, exclude=items), "popular"

    # --- Serenade-compatible ---------------------------------------------------------------
    @app.get(
        "/v1/recommend",
        tags=["serenade"],
        summary="Record a click and return recommended item ids (Serenade-compatible)",
        response_model=list[str],
    )
    async def recommend(
        session_id: IdParam,
        item_id: IdParam,
        user_consent: Annotated[
            bool, Query(description="Store the click in the session (false: store nothing).")
        ] = False,
        exclude_session_items: Annotated[
            bool, Query(description="Leave out items the session already holds (default false: "
                        "Serenade's answer, which may repeat an older click).")
        ] = False,
    ) -> Response:
        body = serenade(session_id, item_id, user_consent, exclude_session_items)
        return Response(body, media_type=JSON)

    def serenade(
        session_id: str, item_id: str, user_consent: bool, exclude_session: bool = False
    ) -> bytes:
        """The answer of /v1/recommend (shared by the route and its fast path)."""
        items = store.append(session_id, item_id) if user_consent else [item_id]
        recs, _ = recs_for(items, index.params.how_many, exclude_session)
        return orjson.dumps([item for item, _score in recs])

    # --- sessions --------------------------------------------------------------------------
    def session_answer(
        session_id: str, items: list[str], how_many: int, exclude_session: bool
    ) -> dict[str, Any]:
        recs, source = recs_for(items, how_many, exclude_session) if items else ([], "none")
        return {
            "session_id": session_id,
            "items": [views.describe(i) for i in items],
            "source": source,
            "recommendations": [
                {**views.describe(item), "score": round(score, 6)} for item, score in recs
            ],
        }

    @app.post("/v1/sessions/{session_id}/clicks", tags=["sessions"])
    async def click(
        session_id: IdPath,
        item_id: Annotated[str, Body(min_length=1, max_length=MAX_ID, pattern=NO_NUL, embed=True)],
        user_consent: Annotated[bool, Body(embed=True)] = True,
        how_many: Annotated[int, Body(ge=1, le=500, embed=True)] = index.params.how_many,
        exclude_session_items: Annotated[bool, Body(embed=True)] = True,
    ) -> Response:
        """Record a click and return scored next-item recommendations with names (without
        the session's own items unless `exclude_session_items` is false)."""
        items = store.append(session_id, item_id) if user_consent else [item_id]
        return _json(session_answer(session_id, items, how_many, exclude_session_items))

    @app.get("/v1/sessions/{session_id}/recommendations", tags=["sessions"])
    async def session_recs(
        session_id: IdPath,
        how_many: HowMany = index.params.how_many,
        exclude_session_items: Annotated[
            bool, Query(description="Leave out items the session already holds.")
        ] = True,
    ) -> Response:
        """Scored next-item recommendations for a stored session (no click recorded)."""
        session = store.get(session_id)
        items = session.items if session else []
        return _json(session_answer(session_id, items, how_many, exclude_session_items))

    @app.get("/v1/sessions/{session_id}/trending", tags=["sessions"])
    def session_trending(
        session_id: IdPath,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Response:
        """Trending-now blocks for the categories of the session's items."""
        session = store.get(session_id)
        items = session.items if session else []
        categories = list(dict.fromkeys(c for i in items if (c := views.describe(i)["category"])))
        trending = views.trending()
        return _json(
            {
                "session_id": session_id,
                "categories": [
                    {"category": c, "trending": trending.get(c, [])[:limit]} for c in categories
                ],
            }
        )

    @app.get("/v1/sessions/{session_id}/intent", tags=["sessions"])
    def session_intent(session_id: IdPath) -> Response:
        """Purchase intent: the session's session_intent row (probability, model version)."""
        row = views.intent(session_id)
        if row is None:
            return _json({"detail": f"session {session_id!r} has no intent score (unknown, "
                          "a bot, or not scored yet)"}, 404)
        return _json(row)

    # --- products and categories -----------------------------------------------------------
    @app.get("/v1/products/{product_id}/also-viewed", tags=["products"])
    def also_viewed(
        product_id: IdPath,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> Response:
        """Customers who viewed this product also viewed (co_view_pairs, both directions)."""
        rows = views.also_viewed(product_id, limit)
        return _json(
            {
                "product": views.describe(product_id),
                "also_viewed": [
                    {**row, "category": views.describe(row["product_id"])["category"]}
                    for row in rows
                ],
            }
        )

    @app.get("/v1/trending", tags=["categories"])
    def trending(
        category: Annotated[
            str | None, Query(min_length=1, max_length=MAX_ID, pattern=NO_NUL)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Response:
        """Trending now: the latest window of trending_by_category, per category."""
        blocks = views.trending()
        if category is not None:
            blocks = {category: blocks.get(category, [])}
        return _json(
            {
                "categories": [
                    {
                        "category": c,
                        "window_start": rows[0]["window_start"] if rows else None,
                        "trending": rows[:limit],
                    }
                    for c, rows in sorted(blocks.items())
                ]
            }
        )

    # --- operations --------------------------------------------------------------------------
    def index_status() -> dict[str, Any]:
        sync = state.sync
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
            "sync_age_s": round(time.time() - sync.last_heard, 3)
            if sync and sync.last_heard
            else None,
            # what the follower is doing: error, reconnect attempts, recoveries, resnapshots
            "sync": sync.status() if sync else None,
            "session_store": store.backend,
        }

    @app.get("/v1/status", tags=["operations"])
    def pipeline_status() -> Response:
        """Index state and per-view freshness (flashrec_status), for the dashboard."""
        try:
            views_status: Any = views.status() if views.configured else []
            error = None if views.configured else "no PostgreSQL DSN configured"
        except ViewsUnavailable as exc:
            views_status, error = [], str(exc)
        return _json({"index": index_status(), "views": views_status, "views_error": error})

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """The process is up."""
        return _json({"status": "ok", "uptime_s": round(time.time() - state.started, 3)})

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """Ready once the index is built, while it follows its view (503 while the follower
        retries, reconnects or rebuilds; `sync` says why) and, under `flashrec up`, while the
        engine's refreshes reach PostgreSQL (503 with the reason while a publish is stuck)."""
        status = index_status()
        return _json(status, 200 if status["ready"] else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        metrics.index_sessions.set(index.n_sessions)
        metrics.index_items.set(index.n_items)
        if state.sync is not None and state.sync.last_heard:
            metrics.sync_age.set(time.time() - state.sync.last_heard)
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- dashboard ---------------------------------------------------------------------------
    static = resources.files("recommender").joinpath("static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(static.joinpath("index.html").read_text())

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$")]) -> Response:
        path = static.joinpath(name)
        if not path.is_file():
            raise HTTPException(404, f"no asset {name}")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(path.read_text(), media_type=kind)

    route = next(r for r in app.routes if getattr(r, "path", None) == "/v1/recommend")
    app.add_middleware(_FastRecommend, answer=serenade, route=route)
    app.add_middleware(_Timing, metrics=metrics)
    return app
