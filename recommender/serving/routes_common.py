"""What the route modules share: the shop id parameter types and the JSON response."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Path, Query
from fastapi.responses import Response

MAX_ID = 128
NO_NUL = r"^[^\x00]+$"  # PostgreSQL text cannot hold NUL: such an id can exist nowhere
ID_DOC = "A shop id: 1 to 128 characters, no NUL."
IdParam = Annotated[str, Query(min_length=1, max_length=MAX_ID, pattern=NO_NUL, description=ID_DOC)]
IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=NO_NUL, description=ID_DOC)]
HowMany = Annotated[int, Query(ge=1, le=500, description="How many items to return.")]

JSON = "application/json"


def json_response(value: Any, status: int = 200) -> Response:
    """`value` as orjson bytes."""
    return Response(orjson.dumps(value), status_code=status, media_type=JSON)
