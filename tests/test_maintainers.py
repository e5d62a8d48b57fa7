"""The Maintainer protocol (recommender/engine/maintainers.py): every maintainer of sql/'s views
has every member and answers for the capabilities it has; a function given as an override is
a view computed by it in every refresh."""

from __future__ import annotations

from datetime import datetime

import duckdb

from recommender import sqlfiles
from recommender.engine import maintainers
from recommender.engine.maintainers import Computed, Maintainer, as_maintainer
from recommender.engine.refresh import ViewRunner
from recommender.engine.store import StateStore

# view -> (reports its changes, gives its touched keys' rows, offers its sessions' clicks)
CAPABILITIES = {
    "session_features": (True, False, True),
    "vmis_history": (True, False, True),
    "trending_by_category": (True, False, False),
    "co_view_pairs": (True, False, False),
    "customer_features": (False, True, False),
    "customer_hours": (False, True, False),
}


def test_every_maintainer_implements_the_protocol() -> None:
    built = maintainers.build(sqlfiles.views())
    assert set(built) == set(CAPABILITIES)
    for name, maintainer in built.items():
        assert isinstance(maintainer, Maintainer), name
        changes, touched, clicks = CAPABILITIES[name]
        assert maintainer.reports_changes is changes, name
        assert maintainer.by_touched_keys is touched, name
        assert (maintainer.first_clicks() is not None) is clicks, name
        if not touched:
            assert maintainer.touched(duckdb.connect(), datetime(2024, 1, 1), "t") is None


def test_the_runner_wires_the_shared_state() -> None:
    """Trending reads the session maintainer's oldest clicks; the bot set is the runner's."""
    store = StateStore(None)
    try:
        runner = ViewRunner(store.con, sqlfiles.load(), maintainers.build(sqlfiles.views()))
        trending = runner.overrides["trending_by_category"]
        sessions = runner.overrides["session_features"]
        assert trending.first_click == sessions.state.first_click  # type: ignore[attr-defined]
        runner.refresh(datetime(2024, 1, 1))
        assert trending.bots_of == runner.bots  # type: ignore[attr-defined]
        assert runner.overrides["co_view_pairs"].bots_of == runner.bots  # type: ignore
    finally:
        store.close()


def test_a_function_is_a_view_computed_in_every_refresh() -> None:
    def compute(con: duckdb.DuckDBPyConnection, now: datetime) -> str:
        return "SELECT 1 AS x"

    wrapped = as_maintainer(compute)
    assert isinstance(wrapped, Computed) and isinstance(wrapped, Maintainer)
    assert wrapped.override(duckdb.connect(), datetime(2024, 1, 1)) == "SELECT 1 AS x"
    assert not wrapped.reports_changes and not wrapped.by_touched_keys
    assert wrapped.delta(duckdb.connect(), datetime(2024, 1, 1)) is None
    assert wrapped.first_clicks() is None
    maintained = maintainers.build(sqlfiles.views())["co_view_pairs"]
    assert as_maintainer(maintained) is maintained
