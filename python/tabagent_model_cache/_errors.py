"""The exception hierarchy: one class per ``tc_status`` of the C library, rooted at
:class:`ModelCacheError`. Names follow huggingface_hub where the meaning is the same, so code
that already handles ``RepositoryNotFoundError`` or ``OfflineModeIsEnabled`` reads naturally.

Every exception carries the library's message (what went wrong and what to do) as ``str(e)``,
and the status as ``e.status`` (the stable lower-case name, e.g. ``"repo_not_found"``).

The classes are the only list of statuses here: each names its status in ``status``, and the
status's number comes from the header by that name (``lib.TC_STATUS_<NAME>``), so no number
is written twice.
"""

from __future__ import annotations

from typing import Dict, Iterator, Optional, Type

from ._native import ffi, lib

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


def _status_classes(root: Type[ModelCacheError] = ModelCacheError) -> Iterator[Type[ModelCacheError]]:
    """Every class below ``root`` that names a status of its own (``HubError`` groups
    others and names none)."""
    for cls in root.__subclasses__():
        if "status" in vars(cls):
            yield cls
        yield from _status_classes(cls)


def _by_status() -> Dict[int, Type[ModelCacheError]]:
    by_status: Dict[int, Type[ModelCacheError]] = {}
    for cls in _status_classes():
        # An AttributeError here means the header and these classes disagree: fail at import,
        # not at the first error.
        value = int(getattr(lib, "TC_STATUS_" + cls.status.upper()))
        if value in by_status:
            raise ImportError(f"{cls.__name__} and {by_status[value].__name__} both claim status {cls.status!r}")
        by_status[value] = cls
    return by_status


#: tc_status value -> exception class, the numbers read from the header by status name.
_BY_STATUS: Dict[int, Type[ModelCacheError]] = _by_status()


def error_for_status(status: int, message: str, status_name: str) -> ModelCacheError:
    """The exception for a failed call's status and message.

    Args:
        status: The ``tc_status`` value the call returned (not ``TC_STATUS_OK``).
        message: ``tc_last_error_message()`` right after the call; may be empty.
        status_name: ``tc_status_name(status)``, e.g. ``"repo_not_found"``.

    Returns:
        An instance of the class whose ``status`` is ``status_name``'s (``ModelCacheError``
        for a status this package does not know, such as one from a newer library).
    """
    cls = _BY_STATUS.get(status, ModelCacheError)
    return cls(message or f"tabcache call failed with status {status_name}", status_name)


def last_error(status: int) -> ModelCacheError:
    """The exception for a call that just returned ``status``, with this thread's last error
    message; must run right after the failed call, on its thread, because the library keeps
    the message per thread."""
    message = ffi.string(lib.tc_last_error_message()).decode("utf-8", "replace")
    name = ffi.string(lib.tc_status_name(status)).decode("ascii")
    return error_for_status(status, message, name)


def check(status: int) -> None:
    """Raise :func:`last_error` unless ``status`` is ``TC_STATUS_OK``."""
    if status != lib.TC_STATUS_OK:
        raise last_error(status)
