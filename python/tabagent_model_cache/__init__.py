"""tabagent_model_cache: a HuggingFace model cache (libtabcache) for Python, over cffi.

>>> import tabagent_model_cache
>>> cache = tabagent_model_cache.ModelCache("./model_cache_db")
>>> manifest = cache.scan_repo("onnx-community/Phi-3.5-mini-instruct-onnx-web")
>>> cache.download_quant("onnx-community/Phi-3.5-mini-instruct-onnx-web", "q4f16")

Any number of processes (Python, C/C++ programs linking libtabcache, the ``tabcache`` command
line) and ``ModelCache`` instances may use one cache directory at the same time; an instance
inherited through ``os.fork()`` opens the cache again in the child on its first use.

Errors are subclasses of :class:`ModelCacheError`; logging goes to the
``tabagent_model_cache`` logger.
"""

from __future__ import annotations

import logging

from . import _native
from ._cache import CachedFile, CacheServer, ModelCache, ProgressCallback, default_cache_dir
from . import _errors
from ._errors import (
    CacheIOError,
    CacheLockedError,
    DiskFullError,
    DownloadCancelled,
    EntryNotFoundError,
    GatedRepoError,
    HubError,
    HubHTTPError,
    IntegrityError,
    InternalError,
    InvalidArgumentError,
    ModelCacheError,
    NetworkError,
    NotCachedError,
    OfflineModeIsEnabled,
    RateLimitedError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    UnauthorizedError,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python < 3.8
        return _native.LIBRARY_VERSION
    try:
        return version("tabagent_model_cache")
    except PackageNotFoundError:  # running from a source checkout
        return _native.LIBRARY_VERSION


__version__: str = _package_version()
#: The version of the libtabcache actually loaded.
library_version: str = _native.LIBRARY_VERSION

if _native.LIBRARY_VERSION != _native.HEADER_VERSION:
    logging.getLogger(__name__).warning(
        "libtabcache %s was loaded from %s but the cdef came from a %s header (%s); "
        "reinstall the package so both come from one build",
        _native.LIBRARY_VERSION,
        _native.library_path(),
        _native.HEADER_VERSION,
        _native.HEADER_PATH,
    )

__all__ = [
    "ModelCache",
    "CachedFile",
    "CacheServer",
    "ProgressCallback",
    "default_cache_dir",
    *_errors.__all__,
    "__version__",
    "library_version",
]
