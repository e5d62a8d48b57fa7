"""Reads of the published views: 'customers also viewed' per product and 'trending now'
per category."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from recommender.serving.routes_common import MAX_ID, NO_NUL, IdPath, json_response
from recommender.serving.serving_state import StateDep

router = APIRouter()


@router.get("/v1/products/{product_id}/also-viewed", tags=["products"])
def also_viewed(
    product_id: IdPath,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Response:
    """Customers who viewed this product also viewed (co_view_pairs, both directions)."""
    views = state.views
    rows = views.also_viewed(product_id, limit)
    return json_response(
        {
            "product": views.describe(product_id),
            "also_viewed": [
                {**row, "category": views.describe(row["product_id"])["category"]} for row in rows
            ],
        }
    )


@router.get("/v1/trending", tags=["categories"])
def trending(
    state: StateDep,
    category: Annotated[str | None, Query(min_length=1, max_length=MAX_ID, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    """Trending now: the latest window of trending_by_category, per category."""
    blocks = state.views.trending()
    if category is not None:
        blocks = {category: blocks.get(category, [])}
    return json_response(
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
