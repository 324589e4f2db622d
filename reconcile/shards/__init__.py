"""Shards: a set of shard reports checked and merged into one report."""

from ._merge import merge_reports

__all__ = ["merge_reports"]
