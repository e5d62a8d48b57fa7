"""The serving API's shared state and the FastAPI dependency that hands it to the routes.

`create_app` stores one `ServingState` as `app.state.serving`; a route takes it with a
parameter annotated `StateDep` (no query, path or body parameter: nothing in the OpenAPI).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from recommender.serving.blender import Blender
from recommender.serving.index_sync import IndexSync
from recommender.serving.live_index import LiveIndex
from recommender.serving.prometheus import Metrics
from recommender.serving.session_store import SessionStore
from recommender.serving.views import Views

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """Everything the routes read: the index, the session store, the views, metrics, the
    blend (a Blender over the index and the views with the default weights unless given)."""

    index: LiveIndex
    store: SessionStore
    views: Views
    metrics: Metrics = field(default_factory=Metrics)
    sync: IndexSync | None = None
    # the engine's health() when it runs in this process (`flashrec up --api-port`)
    pipeline: Callable[[], dict[str, Any]] | None = None
    blender: Blender | None = None
    recommend_blend: bool = False  # GET /v1/recommend answers the blend unless asked not to
    catalog_interval_s: float = 5.0
    purge_interval_s: float = 300.0
    started: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.blender is None:
            self.blender = Blender(self.index, self.views)

    @property
    def blend(self) -> Blender:
        assert self.blender is not None  # made in __post_init__
        return self.blender

    def start(self) -> None:
        if self.sync is not None:
            self.sync.start()
        self.blend.start()
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
        self.blend.stop()
        self.views.close()
        self.store.close()


async def get_state(request: Request) -> ServingState:
    """The app's ServingState (async: FastAPI awaits it instead of using a worker thread)."""
    return request.app.state.serving


StateDep = Annotated[ServingState, Depends(get_state)]
