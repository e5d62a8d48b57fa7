"""flashrec: live session-based recommendations from a clickstream."""

__version__ = "0.1.0"
