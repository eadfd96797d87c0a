"""The exceptions lancesync-bench raises.

    LanceSyncError                 base of everything raised on purpose
    ├── ConfigError (ValueError)   a setting is missing, unparseable or not allowed in context
    ├── UserIdError (ValueError)   a user id that could escape its folder or prefix
    ├── DocumentError (ValueError) a document that does not fit the table schema
    ├── S3Error                    an S3 endpoint could not be started, reached or used
    │   └── S3Unavailable          the endpoint did not answer (offline, timed out)
    ├── IntegrityError             a downloaded file failed its size or checksum check
    └── SyncConflict               the remote moved on while this instance committed

The command line prints the message of a `LanceSyncError` on one line and exits 2 for
configuration and usage errors, 1 for the rest; it never shows a traceback for them.
"""

from __future__ import annotations

__all__ = [
    "CommitOutcomeUnknown",
    "ConfigError",
    "DocumentError",
    "IntegrityError",
    "LanceSyncError",
    "MissingChecksum",
    "S3Error",
    "S3Unavailable",
    "SyncConflict",
    "UserIdError",
]


class LanceSyncError(Exception):
    """Base class of the errors this package raises deliberately."""


class ConfigError(LanceSyncError, ValueError):
    """A configuration value is missing, unparseable, or not allowed in its context."""


class UserIdError(LanceSyncError, ValueError):
    """A user id that is empty, too long, or holds characters outside A-Za-z0-9._-."""


class DocumentError(LanceSyncError, ValueError):
    """A document that does not match the table schema (id, text, vector, metadata)."""


class S3Error(LanceSyncError):
    """An S3 endpoint could not be started, reached, or used as required."""


class S3Unavailable(S3Error):
    """The S3 endpoint did not answer in time: the caller is offline or the server is down."""


class CommitOutcomeUnknown(S3Unavailable):
    """A commit's manifest was sent but neither its answer nor a read-back arrived: S3 may
    hold the version or not. The next refresh (or open) of the table shows which."""


class IntegrityError(LanceSyncError):
    """A transferred file does not match its recorded size or checksum."""


class MissingChecksum(IntegrityError):
    """A downloaded file had to carry the SHA-256 its push stored with it, and carried none."""


class SyncConflict(LanceSyncError):
    """Another writer committed the same version first and retries ran out."""
