"""Offline proof of the point: live versus nightly recommendations during a flash sale.

`flashrec experiment flash-sale` replays a seeded flash-sale day (producers.flash_sale, with
history days before it) and asks, for every click of the day, a "nightly" recommender (built
once at midnight, as a batch job would) and a "live" one (views refreshed on the event-time
clock, VMIS-kNN index updated with every click) for the next item. docs/flash-sale.md.

Modules: clicks (events as columns), scenario (the seeded day and real data sets), sqlviews
(the views of sql/ run by DuckDB on an event-time clock), live (incrementally kept state),
nightly_vs_live (the evaluation loop), scores (per hour, windows, bootstrap), report (files),
runner (one run: load, replay, summarise, write).
"""
