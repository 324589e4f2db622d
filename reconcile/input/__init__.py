"""Input: manifest files read as tables, turned into records; path expansion, shards of a manifest, validation."""

from ._manifest import Manifest, ManifestInfo, Record, spool_streams
from ._paths import ManifestPaths, expand_manifest_paths
from ._shard import Shard
from ._table import FORMATS, ReadOptions, changed_options, options_record
from ._validate import format_duration, render, validate

__all__ = [
    "FORMATS",
    "Manifest",
    "ManifestInfo",
    "ManifestPaths",
    "ReadOptions",
    "Record",
    "Shard",
    "changed_options",
    "expand_manifest_paths",
    "format_duration",
    "options_record",
    "render",
    "spool_streams",
    "validate",
]
