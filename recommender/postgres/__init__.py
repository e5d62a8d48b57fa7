"""PostgreSQL for the views: the local server (local), the publisher of each refresh
(publisher) and the COPY encoding of rows (encoding)."""

from __future__ import annotations

from typing import Any


def relation_exists(conn: Any, name: str) -> bool:
    """Whether a table or view of that name is visible on the connection."""
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None
