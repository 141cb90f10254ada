"""Error types of the partitioners.

All are ``ValueError`` subclasses so the CLI prints them as one clean line, and
callers that only care about "bad input" can catch ``ValueError``.
"""

from __future__ import annotations


class PartitionError(ValueError):
    """Bad partitioning request (parameters, data or file); the message names the fix."""


class MinSizeError(PartitionError):
    """No draw gave every client ``min_size`` rows within the allowed number of tries."""


class PartitionFileError(PartitionError):
    """A partition file is unreadable, of an unknown format, or fails its content hash."""


class PartitionMismatchError(PartitionError):
    """A partition file was made for another dataset (fingerprint or row count differ)."""
