"""The dashboard: `/` and its assets under `/static/` (left out of the OpenAPI)."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse, Response

STATIC = resources.files("recommender").joinpath("static")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> HTMLResponse:
    return HTMLResponse(STATIC.joinpath("index.html").read_text())


@router.get("/static/{name}")
async def asset(name: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$")]) -> Response:
    path = STATIC.joinpath(name)
    if not path.is_file():
        raise HTTPException(404, f"no asset {name}")
    kind = "text/javascript" if name.endswith(".js") else "text/css"
    return Response(path.read_text(), media_type=kind)
