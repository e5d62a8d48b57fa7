"""Recommendation serving: the API (app), evolving sessions, the live VMIS-kNN index and its
sync from the views, view queries, metrics. See docs/api.md."""
