"""The exception hierarchy: one class per ``tc_status`` of the C library, rooted at
:class:`ModelCacheError`. Names follow huggingface_hub where the meaning is the same, so code
that already handles ``RepositoryNotFoundError`` or ``OfflineModeIsEnabled`` reads naturally.

Every exception carries the library's message (what went wrong and what to do) as ``str(e)``,
and the status as ``e.status`` (the stable lower-case name, e.g. ``"repo_not_found"``).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "ModelCacheError",
    "InvalidArgumentError",
    "HubError",
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "EntryNotFoundError",
    "GatedRepoError",
    "UnauthorizedError",
    "RateLimitedError",
    "HubHTTPError",
    "NetworkError",
    "OfflineModeIsEnabled",
    "CacheIOError",
    "DiskFullError",
    "IntegrityError",
    "CacheLockedError",
    "DownloadCancelled",
    "InternalError",
    "NotCachedError",
]


class ModelCacheError(Exception):
    """Base class of every error raised by tabagent_model_cache."""

    #: The library's stable name for the status behind this error (``tc_status_name``).
    status: str = "error"

    def __init__(self, message: str, status: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ModelCacheError, ValueError):
    """An argument was malformed (repo id, path, revision, option), or the cache is closed."""

    status = "invalid_argument"


class HubError(ModelCacheError):
    """The Hub answered, and the answer was an error."""


class RepositoryNotFoundError(HubError):
    """The repository does not exist, or is private and the token does not grant access."""

    status = "repo_not_found"


class RevisionNotFoundError(HubError):
    """The repository exists but the revision (branch, tag or commit) does not."""

    status = "revision_not_found"


class EntryNotFoundError(HubError):
    """The file is not in the repository, or the quantization variant is not in its manifest."""

    status = "entry_not_found"


class GatedRepoError(RepositoryNotFoundError):
    """The repository is gated: accept its terms on the Hub and pass a token.

    A subclass of :class:`RepositoryNotFoundError`, as in huggingface_hub."""

    status = "gated_repo"


class UnauthorizedError(HubError):
    """The Hub refused the token."""

    status = "unauthorized"


class RateLimitedError(HubError):
    """The Hub kept answering 429 (too many requests) after every allowed retry."""

    status = "rate_limited"


class HubHTTPError(HubError):
    """The server answered with an unexpected status or an unusable response."""

    status = "http"


class NetworkError(ModelCacheError, ConnectionError):
    """The connection failed: refused, reset, DNS or TLS failure, timeout."""

    status = "network"


class OfflineModeIsEnabled(ModelCacheError, ConnectionError):
    """Offline mode is on (``offline=True`` or ``HF_HUB_OFFLINE=1``) and the request needs
    the network."""

    status = "offline"


class CacheIOError(ModelCacheError, OSError):
    """A local file-system operation failed."""

    status = "io"


class DiskFullError(CacheIOError):
    """The disk or quota is full; what was already cached is intact."""

    status = "disk_full"


class IntegrityError(ModelCacheError):
    """Downloaded bytes did not match their size or sha256; nothing was committed."""

    status = "corrupt"


class CacheLockedError(ModelCacheError):
    """The library's ``locked`` status. Nothing raises it for a second opener any more: any
    number of processes and ``ModelCache`` instances share one cache directory. Kept so code
    that catches it still works."""

    status = "locked"


class DownloadCancelled(ModelCacheError):
    """The download was cancelled (by its progress callback, ``task.cancel()`` or a job
    cancel). Partial data is kept: the next download of the same file resumes."""

    status = "cancelled"


class InternalError(ModelCacheError):
    """A bug in tabcache. Please report it with the message."""

    status = "internal"


class NotCachedError(ModelCacheError, FileNotFoundError):
    """The file is not in the local cache (``open`` of a file never downloaded). The seed
    methods return ``None`` for this case instead; ``open`` raises, as ``io.open`` does."""

    status = "not_cached"


#: tc_status value -> exception class. The numbering is the C header's and never changes.
_BY_STATUS: Dict[int, Type[ModelCacheError]] = {
    1: InvalidArgumentError,
    2: RepositoryNotFoundError,
    3: RevisionNotFoundError,
    4: EntryNotFoundError,
    5: GatedRepoError,
    6: UnauthorizedError,
    7: RateLimitedError,
    8: NetworkError,
    9: HubHTTPError,
    10: CacheIOError,
    11: DiskFullError,
    12: IntegrityError,
    13: CacheLockedError,
    14: OfflineModeIsEnabled,
    15: DownloadCancelled,
    16: InternalError,
    17: NotCachedError,
}


def error_for_status(status: int, message: str, status_name: str) -> ModelCacheError:
    """The exception for a failed call's status and message."""
    cls = _BY_STATUS.get(status, ModelCacheError)
    return cls(message or f"tabcache call failed with status {status_name}", status_name)
