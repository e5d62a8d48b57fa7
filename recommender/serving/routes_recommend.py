"""The Serenade-compatible `GET /v1/recommend`, its fast path, and the recommendation lists
that the session routes share: pure VMIS-kNN, or the blend (serving/blender.py).

`RecommendQuery` validates the route's query parameters; the fast path validates with the
same model, so both accept and refuse the same requests.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_plus

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from recommender.serving.routes_common import ID_DOC, JSON, MAX_ID, NO_NUL
from recommender.serving.serving_state import ServingState, StateDep

ShopId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NO_NUL, description=ID_DOC)]


class RecommendQuery(BaseModel):
    """The query parameters of GET /v1/recommend."""

    session_id: ShopId
    item_id: ShopId
    user_consent: bool = Field(
        False, description="Store the click in the session (false: store nothing)."
    )
    exclude_session_items: bool = Field(
        False,
        description="Leave out items the session already holds (default false: "
        "Serenade's answer, which may repeat an older click).",
    )
    blend: bool | None = Field(
        None,
        description="Answer the blend (true) or pure VMIS-kNN (false); default: the "
        "server's --recommend-blend setting (off: pure VMIS-kNN).",
    )


QUERY_NAMES = frozenset(RecommendQuery.model_fields)


def recommendations_for(
    state: ServingState,
    items: list[str],
    how_many: int,
    exclude_session: bool = False,
    blend: bool = False,
) -> tuple[list[tuple[str, float]], str]:
    """(item, score) pairs for a session holding `items` and where they come from: the
    blend ("blend") or the kernel ("vmis"), or the most popular items when it has no
    candidate ("popular")."""
    index = state.index
    if blend:
        recs = state.blend.recommend(items, how_many, exclude_session)
    elif exclude_session:  # ask for more, then drop what the session already holds
        seen = set(items)
        recs = index.recommend(items, how_many=how_many + len(seen))
        recs = [pair for pair in recs if pair[0] not in seen][:how_many]
    else:
        recs = index.recommend(items, how_many=how_many)
    if recs:
        return recs, "blend" if blend else "vmis"
    state.metrics.fallbacks.inc()
    return index.popular(how_many, exclude=items), "popular"


def serenade_answer(state: ServingState, query: RecommendQuery) -> bytes:
    """The answer of /v1/recommend: records the click where consented, returns item ids."""
    if query.user_consent:
        items = state.store.append(query.session_id, query.item_id)
    else:
        items = [query.item_id]
    blend = state.recommend_blend if query.blend is None else query.blend
    recs, _ = recommendations_for(
        state, items, state.index.params.how_many, query.exclude_session_items, blend
    )
    return orjson.dumps([item for item, _score in recs])


PATH = "/v1/recommend"
router = APIRouter()


@router.get(
    PATH,
    tags=["serenade"],
    summary="Record a click and return recommended item ids (Serenade-compatible)",
    response_model=list[str],
)
async def recommend(query: Annotated[RecommendQuery, Query()], state: StateDep) -> Response:
    return Response(serenade_answer(state, query), media_type=JSON)


def simple_query(raw: bytes) -> dict[str, str] | None:
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


def fast_query(raw: bytes) -> RecommendQuery | None:
    """The request's RecommendQuery when its query string is simple, names only the route's
    parameters and passes the route's validation; None sends it to the route."""
    query = simple_query(raw)
    if query is None or not QUERY_NAMES.issuperset(query):
        return None
    try:
        return RecommendQuery.model_validate(query)
    except ValidationError:
        return None  # the route answers with its validation errors


class FastRecommend:
    """GET /v1/recommend without FastAPI's per-request parameter machinery. Requests that
    `fast_query` accepts get the route's own answer here; anything else (unusual spellings,
    unknown or invalid parameters) falls through to the FastAPI route and its validation
    errors."""

    def __init__(self, app: ASGIApp, state: ServingState) -> None:
        self.app = app
        self.state = state
        self.route = next(r for r in router.routes if getattr(r, "path", None) == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            query = fast_query(scope["query_string"])
            if query is not None:
                body = serenade_answer(self.state, query)
                scope["route"] = self.route  # the timing middleware labels by route
                headers = [(b"content-type", JSON.encode()),
                           (b"content-length", str(len(body)).encode())]  # fmt: skip
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
