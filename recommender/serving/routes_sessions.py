"""The session routes, `/v1/sessions/{session_id}/...`: record a click, scored
recommendations (the blend by default, `blend=false`: pure VMIS-kNN), trending blocks of the
session's categories, purchase intent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from recommender.serving.routes_common import MAX_ID, NO_NUL, HowMany, IdPath, json_response
from recommender.serving.routes_recommend import recommendations_for
from recommender.serving.serving_state import ServingState, StateDep

BLEND_DOC = "Answer the blend of VMIS-kNN, co-views and trending (false: pure VMIS-kNN)."


def session_answer(
    state: ServingState,
    session_id: str,
    items: list[str],
    how_many: int,
    exclude_session: bool,
    blend: bool = True,
) -> dict[str, Any]:
    """The session's items and its scored recommendations, with names and categories."""
    if items:
        recs, source = recommendations_for(state, items, how_many, exclude_session, blend)
    else:
        recs, source = [], "none"
    describe = state.views.describe
    return {
        "session_id": session_id,
        "items": [describe(i) for i in items],
        "source": source,
        "recommendations": [{**describe(item), "score": round(score, 6)} for item, score in recs],
    }


def build_router(default_how_many: int) -> APIRouter:
    """The session routes; `default_how_many` (the index's) is their default `how_many`,
    built into the signatures so that the OpenAPI shows it."""
    router = APIRouter()

    @router.post("/v1/sessions/{session_id}/clicks", tags=["sessions"])
    async def click(
        session_id: IdPath,
        item_id: Annotated[str, Body(min_length=1, max_length=MAX_ID, pattern=NO_NUL, embed=True)],
        state: StateDep,
        user_consent: Annotated[bool, Body(embed=True)] = True,
        how_many: Annotated[int, Body(ge=1, le=500, embed=True)] = default_how_many,
        exclude_session_items: Annotated[bool, Body(embed=True)] = True,
        blend: Annotated[bool, Body(embed=True, description=BLEND_DOC)] = True,
    ) -> Response:
        """Record a click and return scored next-item recommendations with names (without
        the session's own items unless `exclude_session_items` is false)."""
        items = state.store.append(session_id, item_id) if user_consent else [item_id]
        return json_response(
            session_answer(state, session_id, items, how_many, exclude_session_items, blend)
        )

    @router.get("/v1/sessions/{session_id}/recommendations", tags=["sessions"])
    async def session_recs(
        session_id: IdPath,
        state: StateDep,
        how_many: HowMany = default_how_many,
        exclude_session_items: Annotated[
            bool, Query(description="Leave out items the session already holds.")
        ] = True,
        blend: Annotated[bool, Query(description=BLEND_DOC)] = True,
    ) -> Response:
        """Scored next-item recommendations for a stored session (no click recorded)."""
        session = state.store.get(session_id)
        items = session.items if session else []
        return json_response(
            session_answer(state, session_id, items, how_many, exclude_session_items, blend)
        )

    router.add_api_route("/v1/sessions/{session_id}/trending", session_trending, tags=["sessions"])
    router.add_api_route("/v1/sessions/{session_id}/intent", session_intent, tags=["sessions"])
    return router


def session_trending(
    session_id: IdPath,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    """Trending-now blocks for the categories of the session's items."""
    views = state.views
    session = state.store.get(session_id)
    items = session.items if session else []
    categories = list(dict.fromkeys(c for i in items if (c := views.describe(i)["category"])))
    trending = views.trending()
    blocks = [{"category": c, "trending": trending.get(c, [])[:limit]} for c in categories]
    return json_response({"session_id": session_id, "categories": blocks})


def session_intent(session_id: IdPath, state: StateDep) -> Response:
    """Purchase intent: the session's session_intent row (probability, model version)."""
    row = state.views.intent(session_id)
    if row is None:
        return json_response({"detail": f"session {session_id!r} has no intent score (unknown, "
                              "a bot, or not scored yet)"}, 404)  # fmt: skip
    return json_response(row)
