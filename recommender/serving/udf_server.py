"""VMIS-kNN as RisingWave SQL functions: an arrow-udf (Arrow Flight) server.

RisingWave sends whole batches (up to 256 rows); every function is `batch=True` and answers a
batch with one call of the kernel's batch path (per distinct n) under the index lock.

    vmis_recommend(items VARCHAR[], n INT) -> VARCHAR[]
        the n best next items for an evolving session (oldest click first)
    vmis_recommend_scored(items VARCHAR[], n INT)
        -> STRUCT<item_ids VARCHAR[], scores DOUBLE PRECISION[]>

A NULL or empty session, or one whose items are all unknown, gives an empty list; a NULL or
non-positive n gives the index's how_many (udfs.params.VmisParams); n is capped at 500. Until
the index is built every call is refused with FlightUnavailableError ("index not built yet"),
not answered with empty lists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pyarrow.flight as flight
from arrow_udf import UdfServer, udf

from recommender.config import DEFAULT_UDF_PORT
from recommender.serving.live_index import LiveIndex

log = logging.getLogger(__name__)

MAX_N = 500
SCORED_TYPE = "STRUCT<item_ids:VARCHAR[],scores:DOUBLE PRECISION[]>"


def _how_many(index: LiveIndex, n: int | None) -> int:
    if n is None or n <= 0:
        return index.params.how_many
    return min(int(n), MAX_N)


def _run(
    index: LiveIndex, sessions: Sequence[list[str] | None], ns: Sequence[int | None]
) -> list[list[tuple[str, float]]]:
    """Group the rows by n and answer each group in one kernel call."""
    clean = [[str(i) for i in (items or []) if i is not None] for items in sessions]
    wanted = [_how_many(index, n) for n in ns]
    out: list[list[tuple[str, float]]] = [[] for _ in clean]
    for n in set(wanted):
        rows = [r for r, w in enumerate(wanted) if w == n and clean[r]]
        for r, recs in zip(rows, index.recommend_batch([clean[r] for r in rows], n), strict=True):
            out[r] = recs
    return out


def make_functions(index: LiveIndex) -> list:
    """The SQL functions over `index` (arrow-udf function objects)."""

    @udf(input_types=["VARCHAR[]", "INT"], result_type="VARCHAR[]", batch=True)
    def vmis_recommend(items, n):
        return [[item for item, _ in recs] for recs in _run(index, items, n)]

    @udf(input_types=["VARCHAR[]", "INT"], result_type=SCORED_TYPE, batch=True)
    def vmis_recommend_scored(items, n):
        return [
            {"item_ids": [i for i, _ in recs], "scores": [s for _, s in recs]}
            for recs in _run(index, items, n)
        ]

    return [vmis_recommend, vmis_recommend_scored]


NOT_READY = "vmis index not built yet (it is being read from vmis_history): try again shortly"


class _ReadyServer(UdfServer):
    """Refuses calls until its index is built: an empty list would look like a real answer."""

    def __init__(self, index: LiveIndex, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        if not self.index.ready:
            raise flight.FlightUnavailableError(NOT_READY)
        super().do_exchange(context, descriptor, reader, writer)


def make_server(index: LiveIndex, host: str = "0.0.0.0", port: int = DEFAULT_UDF_PORT
                ) -> UdfServer:  # fmt: skip
    """A Flight server exposing the functions (call `.serve()` to block)."""
    server = _ReadyServer(index, location=f"{host}:{port}")
    for function in make_functions(index):
        server.add_function(function)
    return server
