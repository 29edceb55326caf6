"""``ModelCache``: the seed README's API over libtabcache's C ABI, plus what Python users expect
(keyword-only ``revision=`` and connection options, ``file_path``, streaming ``open``, asyncio
variants, ``close()`` and ``with``).

Native calls run with the GIL released (cffi releases it around every call into the library),
so downloads in several threads overlap. Progress callbacks run on the calling thread for
blocking calls, and on the event loop's thread for the ``*_async`` variants.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ._errors import InvalidArgumentError
from ._errors import check as _check
from ._errors import last_error as _error
from ._server import CacheServer, start_server
from ._native import ffi, lib

logger = logging.getLogger("tabagent_model_cache")

ProgressCallback = Callable[[int, int], Any]

_OK = lib.TC_STATUS_OK
_NOT_CACHED = lib.TC_STATUS_NOT_CACHED
_PENDING = lib.TC_STATUS_PENDING

#: Bytes the BufferedReader returned by ``open`` asks the library for at once.
_OPEN_BUFFER_SIZE = 256 * 1024

#: The keys of the library's stats that ``budget_stats`` gives rather than ``get_stats``.
_BUDGET_STATS = ("max_size", "evictions")

#: Serializes ModelCache._after_fork in a forked child.
_fork_lock = threading.Lock()


def _reset_fork_lock() -> None:
    # The child's copy of the lock may have been held by a thread that does not exist there.
    global _fork_lock
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX (every platform with fork)
    os.register_at_fork(after_in_child=_reset_fork_lock)




def _text(value: Optional[str], what: str) -> Any:
    """A borrowed C string argument (``None`` -> NULL)."""
    if value is None:
        return ffi.NULL
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgumentError(f"{what} contains a NUL character; pass a plain string")
    return value.encode("utf-8")


def _take_string(pointer: Any) -> str:
    """Copy a library-owned string and free it."""
    try:
        return ffi.string(pointer).decode("utf-8")
    finally:
        lib.tc_string_free(pointer)


def _progress_bars_disabled() -> bool:
    value = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


class _Bar:
    """A tqdm bar fed by (loaded, total) reports."""

    def __init__(self, description: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=description)

    def __call__(self, loaded: int, total: int) -> None:
        if total and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()
        if loaded > self._bar.n:
            self._bar.update(loaded - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _default_progress(description: str) -> Optional[_Bar]:
    """A tqdm bar when nobody asked for progress and a person watches stderr."""
    if _progress_bars_disabled():
        return None
    try:
        if not sys.stderr.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    try:
        return _Bar(description)
    except ImportError:
        return None


class _ProgressState:
    """What one native call's progress trampoline needs; kept alive by the call's frame for
    exactly as long as the library may call back."""

    __slots__ = ("callback", "error")

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback
        self.error: Optional[BaseException] = None


#: An exception raised in a progress callback before it could tell which call it serves (see
#: ``_on_callback_error``), kept for the call on this thread.
_stray = threading.local()


def _on_callback_error(exc_type: Any, exc_value: Optional[BaseException], traceback: Any) -> int:
    """cffi's ``onerror`` for the trampoline: an exception the trampoline could not catch
    itself, chiefly a KeyboardInterrupt delivered as the callback is entered (Python runs
    signal handlers at the first instruction of a frame, before the trampoline's ``try``).
    Without this, cffi prints "Exception ignored from cffi callback" and the call runs on.
    The exception is kept for the call, which re-raises it, and the call is cancelled."""
    error = exc_value if exc_value is not None else exc_type()
    state = None
    while traceback is not None:
        user_data = traceback.tb_frame.f_locals.get("user_data")
        if user_data is not None:
            try:
                state = ffi.from_handle(user_data)
            except Exception:  # noqa: BLE001 - not our frame; fall back to the thread's slot
                state = None
            break
        traceback = traceback.tb_next
    if isinstance(state, _ProgressState):
        if state.error is None:
            state.error = error
    else:
        _stray.error = error
    return 1


@ffi.callback("tc_progress_fn", onerror=_on_callback_error)
def _progress_trampoline(user_data: Any, loaded: int, total: int) -> int:
    # One C callback for every call; the per-call state travels in user_data. Any exception
    # (KeyboardInterrupt too) is kept for the caller and cancels the call: it must not
    # unwind through Rust frames, and printing and swallowing it would hide the failure. The
    # library calls this at least every 200 ms even when nothing moves, so a Ctrl-C reaches
    # the caller within a second whatever the call is doing.
    state = ffi.from_handle(user_data)
    try:
        if state.callback is not None:
            state.callback(loaded, total)
    except BaseException as exc:  # noqa: B902 - re-raised by the caller
        state.error = exc
        return 1
    return 0


def _take_stray_error() -> Optional[BaseException]:
    error = getattr(_stray, "error", None)
    _stray.error = None
    return error


class CachedFile(io.RawIOBase):
    """A read-only binary stream over one cached file (what ``ModelCache.open`` wraps in an
    ``io.BufferedReader``). Reads go straight from the cached file into the caller's buffer."""

    def __init__(self, reader: Any, size: int, name: str) -> None:
        super().__init__()
        self._reader = reader
        self._size = size
        self._name = name

    @property
    def name(self) -> str:
        """``"repo_id/path"`` of the file (for messages; not a file-system path)."""
        return self._name

    @property
    def mode(self) -> str:
        """Always ``"rb"``."""
        return "rb"

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self._size

    def readable(self) -> bool:
        """True: the stream can be read."""
        return True

    def seekable(self) -> bool:
        """True: the stream supports ``seek`` and ``tell``."""
        return True

    def writable(self) -> bool:
        """False: cached files are read-only."""
        return False

    def _handle(self) -> Any:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._reader

    def readinto(self, buffer: Any) -> int:
        """Read up to ``len(buffer)`` bytes into ``buffer``; 0 at the end of the file."""
        reader = self._handle()
        view = memoryview(buffer).cast("B")
        if len(view) == 0:
            return 0
        out_read = ffi.new("size_t *")
        _check(lib.tc_reader_read(reader, ffi.from_buffer("uint8_t[]", view, require_writable=True), len(view), out_read))
        return int(out_read[0])

    def readall(self) -> bytes:
        """Read from the current position to the end of the file."""
        remaining = max(self._size - self.tell(), 0)
        chunks = []
        while True:
            chunk = self.read(max(remaining, _OPEN_BUFFER_SIZE))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            remaining = max(remaining - len(chunk), 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` relative to ``whence`` (``io.SEEK_SET``/``SEEK_CUR``/``SEEK_END``)
        and return the new position."""
        reader = self._handle()
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if whence == io.SEEK_SET and offset < 0:
            raise ValueError(f"negative seek position {offset}")
        position = ffi.new("uint64_t *")
        status = lib.tc_reader_seek(reader, offset, whence, position)
        if status != _OK:
            raise _error(status)
        return int(position[0])

    def tell(self) -> int:
        """The current position."""
        return self.seek(0, io.SEEK_CUR)

    def close(self) -> None:
        """Release the native reader. Safe to call twice."""
        if not self.closed:
            reader, self._reader = self._reader, ffi.NULL
            lib.tc_reader_close(reader)
        super().close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing useful to do in a finalizer
            pass


class ModelCache:
    """A HuggingFace model cache in one directory.

    Any number of processes and instances may have one cache directory open at the same time
    (other Python processes, C/C++ programs linking libtabcache, the ``tabcache`` command line,
    a second ``ModelCache`` in this process), and every method works from all of them at once:
    each sees what the others downloaded, and a file several of them ask for at once is
    transferred only once. A second opener never gets :class:`CacheLockedError`. One instance
    may be shared by any number of threads. ``close()`` or ``with ModelCache(...) as cache:``
    releases this instance's native handle.

    After ``os.fork()`` (also multiprocessing's ``fork`` start method), an instance inherited
    from the parent works in the child: its first call there opens the same directory again
    with the same options, and the parent's handle is left untouched. Streams returned by
    ``open`` before the fork share their position with the parent's, like any open file;
    open them again in the child.

    Args:
        db_path (`str` or `os.PathLike`):
            The cache directory; created if needed.
        endpoint (`str`, *optional*):
            Hub base URL. Defaults to ``HF_ENDPOINT``, else the public Hub.
        token (`str` or `bool`, *optional*):
            Access token. Defaults to ``HF_TOKEN``, then huggingface_hub's token file.
            ``False`` sends no token.
        offline (`bool`, *optional*):
            ``True`` makes no network request at all. Defaults to ``HF_HUB_OFFLINE``.
        connections (`int`, *optional*):
            Connections used at once for one large file. Defaults to 8.
        range_size (`int`, *optional*):
            Largest byte range per request, the unit of resume. Defaults to 16 MiB.
        parallel_threshold (`int`, *optional*):
            Files at least this big are fetched in ranges and resume after a crash; smaller
            ones in one stream. Defaults to 32 MiB.
        parallel_files (`int`, *optional*):
            Files fetched at once by one call. Defaults to 4.
        connect_timeout (`float`, *optional*):
            Seconds to establish a connection. Defaults to 10.
        read_timeout (`float`, *optional*):
            Seconds without a byte after which a connection is cut and retried (while waiting
            for an answer and while reading a download). Defaults to ``HF_HUB_DOWNLOAD_TIMEOUT``,
            else 30.
        max_retries (`int`, *optional*):
            Retries of a transient failure (connection fault, 408, 429, 5xx); a download's
            connection gets ``max_retries + 1`` attempts in a row. Defaults to 5.
        retry_base_delay (`float`, *optional*):
            First wait between retries in seconds, doubled each time. Defaults to 1.
        user_agent (`str`, *optional*):
            The User-Agent header. Defaults to ``tabcache/<version>``.
        max_size (`int` or `str`, *optional*):
            The disk budget to set on open (see ``set_max_size``): bytes, or a size such as
            ``"50GB"`` (10^9) or ``"20GiB"`` (2^30), parsed by the command line's rules. The
            budget is kept in the cache, so every process using it (the ``tabcache`` command line
            too) honours the one set last. Defaults to leaving the cache's budget as it is. The
            ``TABCACHE_MAX_SIZE`` environment variable is the command line's and is not read
            here; a budget it set is in the cache, so it applies to Python as well.

    Raises:
        [`InvalidArgumentError`]: An empty path, an option out of range, a ``max_size`` that is
            not a size, or a catalog written by a newer tabcache.
        [`CacheIOError`]: The directory cannot be created or read ([`DiskFullError`] when the
            disk is full).
    """

    def __init__(
        self,
        db_path: Union[str, "os.PathLike[str]"],
        *,
        endpoint: Optional[str] = None,
        token: Union[str, bool, None] = None,
        offline: Optional[bool] = None,
        connections: Optional[int] = None,
        range_size: Optional[int] = None,
        parallel_threshold: Optional[int] = None,
        parallel_files: Optional[int] = None,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        retry_base_delay: Optional[float] = None,
        user_agent: Optional[str] = None,
        max_size: Union[int, str, None] = None,
    ) -> None:
        self._handle: Any = ffi.NULL
        self._close_lock = threading.Lock()
        # The process self._handle belongs to: a native handle is only usable there.
        self._pid = os.getpid()
        self.db_path = os.fspath(db_path)
        # Kept to open the same cache again in a forked child (see _after_fork).
        self._options: Dict[str, Any] = dict(
            endpoint=endpoint,
            token=token,
            offline=offline,
            connections=connections,
            range_size=range_size,
            parallel_threshold=parallel_threshold,
            parallel_files=parallel_files,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
            user_agent=user_agent,
        )
        budget = None if max_size is None else _byte_size(max_size, "max_size", "leave the cache's budget as it is")
        # The budget is set by this open only: it is not in self._options, so a forked child
        # opening the cache again does not undo a budget set since.
        self._handle = _open_native(self.db_path, max_size=budget, **self._options)
        logger.debug("opened model cache at %s", self.db_path)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close this instance's native handle.

        Other instances and processes using the same directory are unaffected. Calls running in
        other threads finish first; streams from ``open`` stay readable. Safe to call twice. In a
        forked child that never used the instance, the handle inherited from the parent is left
        alone (see :class:`ModelCache`).
        """
        if self._pid != os.getpid():
            self._after_fork(reopen=False)
        with self._close_lock:
            handle, self._handle = self._handle, ffi.NULL
        if handle != ffi.NULL:
            lib.tc_cache_close(handle)
            logger.debug("closed model cache at %s", self.db_path)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (in this process, or before a fork)."""
        return self._handle == ffi.NULL

    def __enter__(self) -> "ModelCache":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing useful to do in a finalizer
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ModelCache {self.db_path!r} ({state})>"

    def _cache(self) -> Any:
        """The native handle for a call, opened again first in a forked child."""
        if self._pid != os.getpid():
            self._after_fork(reopen=True)
        handle = self._handle
        if handle == ffi.NULL:
            raise InvalidArgumentError(f"this ModelCache ({self.db_path}) is closed; open a new one")
        return handle

    def _after_fork(self, reopen: bool) -> None:
        """Give this instance, inherited from the process that opened it, a handle of this
        process's own: a new one on the same directory with the same options (``reopen``), or
        none (closing an inherited instance that was never used here).

        The inherited native handle is leaked on purpose: never used, never closed here. It is
        the parent's: the library refuses every call on it in a child (at the fork it already let
        go of the SQLite connections and lock files the handle holds, so nothing of the parent's
        is touched), and its destructor could wait for library threads that do not exist in the
        child. The leak is one small object per inherited instance, in copy-on-write pages of
        the parent's memory.
        """
        with _fork_lock:
            if self._pid == os.getpid():
                return  # another thread of this child got here first
            # A lock held by a parent thread at fork time is held for ever in the copy: the
            # child gets a fresh one (no thread of the child can be using the old one yet,
            # because every use of it passes through here first).
            self._close_lock = threading.Lock()
            if self._handle == ffi.NULL or not reopen:
                # Closed before the fork: stays closed. Closed in the child: nothing to open.
                self._handle = ffi.NULL
                self._pid = os.getpid()
                return
            # On failure nothing changes: the next call tries again.
            fresh = _open_native(self.db_path, max_size=None, **self._options)
            self._handle = fresh
            self._pid = os.getpid()
        logger.debug("opened model cache at %s again in forked child %d", self.db_path, self._pid)

    # -- manifests -------------------------------------------------------------------------

    def scan_repo(
        self,
        repo_id: str,
        *,
        revision: Optional[str] = None,
        progress_callback: Optional[ProgressCallback] = None,
    ) -> Dict[str, Any]:
        """Scan a repository on the Hub and store its manifest.

        Lists the repository's files and groups them into quantization variants. Offline, returns
        the stored manifest. Ctrl-C stops the scan within a second (``KeyboardInterrupt``).

        Args:
            repo_id (`str`):
                A repository id, e.g. ``"onnx-community/Phi-3.5-mini-instruct-onnx-web"``.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                Called as ``(listed, 0)`` with how many files the listing has given so far (a
                100k-file repo takes many pages), then ``(n, n)`` at the end. If it raises, the scan
                stops and the exception propagates.

        Returns:
            `dict`: The manifest: ``repo_id``, ``task``, ``created_at``, ``updated_at``, ``quants``
            (``{key: {status, files, total_size, downloaded_size, last_updated}}``), plus
            ``revision``, ``commit`` and ``addons``.

        Raises:
            [`RepositoryNotFoundError`]: The repository does not exist or is private
                ([`GatedRepoError`] when it is gated and no valid token was sent).
            [`RevisionNotFoundError`]: The revision does not exist.
            [`OfflineModeIsEnabled`]: Offline and the repository was never scanned.
            [`NetworkError`], [`RateLimitedError`], [`HubHTTPError`]: The Hub could not be reached
                or answered with an error, after the allowed retries.
            [`InvalidArgumentError`]: A malformed repo id or revision, or the cache is closed.
        """
        out = ffi.new("char **")
        cache = self._cache()
        logger.debug("scanning %s", repo_id)
        self._with_progress(
            None,
            progress_callback,
            lambda progress, user_data: lib.tc_cache_scan_repo_with_progress(
                cache, _text(repo_id, "repo_id"), _text(revision, "revision"), progress, user_data, out
            ),
        )
        return json.loads(_take_string(out[0]))

    def get_manifest(self, repo_id: str) -> Optional[Dict[str, Any]]:
        """The stored manifest of a repository, without any network request.

        Args:
            repo_id (`str`):
                A repository id.

        Returns:
            `dict` or `None`: The manifest (the same shape as ``scan_repo``'s), or ``None`` when the
            repository was never scanned.

        Raises:
            [`InvalidArgumentError`]: A malformed repo id, or the cache is closed.
        """
        out = ffi.new("char **")
        status = lib.tc_cache_get_manifest(self._cache(), _text(repo_id, "repo_id"), out)
        if status == _NOT_CACHED:
            return None
        _check(status)
        return json.loads(_take_string(out[0]))

    # -- downloads -------------------------------------------------------------------------

    def _with_progress(self, description: Optional[str], callback: Optional[ProgressCallback], start: Callable[[Any, Any], int]) -> None:
        """Run one blocking native call with the progress trampoline, always passed (even
        with no callback) so that Ctrl-C is seen during the call. ``description`` names the
        tqdm bar shown when nobody asked for progress; ``None`` for no bar."""
        if callback is not None and not callable(callback):
            raise TypeError(f"progress_callback must be callable, not {type(callback).__name__}")
        bar = _default_progress(description) if callback is None and description is not None else None
        state = _ProgressState(callback if callback is not None else bar)
        user_data = ffi.new_handle(state)
        _take_stray_error()
        try:
            status = start(_progress_trampoline, user_data)
            failure = _error(status) if status != _OK else None
        finally:
            if bar is not None:
                bar.close()
        # The callback's own exception explains the cancellation better than "cancelled".
        error = state.error if state.error is not None else _take_stray_error()
        if error is not None:
            state.error = None
            raise error
        if failure is not None:
            raise failure

    def download_file(
        self,
        repo_id: str,
        file_path: str,
        progress_callback: Optional[ProgressCallback] = None,
        *,
        revision: Optional[str] = None,
    ) -> str:
        """Download one file of a repository into the cache.

        Nothing is transferred when the file's content is already cached.

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository, e.g. ``"onnx/model_q4f16.onnx"``.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                Called as ``(loaded, total)`` on this thread, throttled, with a final call where
                ``loaded == total``. If it raises, the download stops (partial data is kept for a
                resume) and the exception propagates from this call. Without one, a tqdm bar is
                shown when stderr is a terminal (``HF_HUB_DISABLE_PROGRESS_BARS=1`` turns it off).
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Returns:
            `str`: The file's path in the snapshot view (as ``file_path`` returns it).

        Raises:
            [`EntryNotFoundError`]: The repository has no such file.
            [`RepositoryNotFoundError`], [`GatedRepoError`], [`RevisionNotFoundError`]: As for
                ``scan_repo``.
            [`IntegrityError`]: The bytes did not match their size or hash; nothing was cached.
            KeyboardInterrupt: Ctrl-C stopped the download (within a second); partial data
                is kept for a resume.
            [`OfflineModeIsEnabled`]: Offline and the file is not cached.
            [`NetworkError`], [`RateLimitedError`], [`HubHTTPError`]: The transfer failed after
                the allowed retries.
            [`CacheIOError`]: Writing the cache failed ([`DiskFullError`] when the disk is full).
            [`InvalidArgumentError`]: A malformed repo id, path or revision, or the cache is closed.
        """
        out = ffi.new("char **")
        cache = self._cache()
        logger.debug("downloading %s from %s", file_path, repo_id)
        self._with_progress(
            file_path,
            progress_callback,
            lambda progress, user_data: lib.tc_cache_download_file(
                cache, _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"), progress, user_data, out
            ),
        )
        return _take_string(out[0])

    def download_files(
        self,
        repo_id: str,
        file_paths: Sequence[str],
        progress_callback: Optional[ProgressCallback] = None,
        *,
        revision: Optional[str] = None,
    ) -> List[str]:
        """Download several files of a repository, a few at a time.

        E.g. a model's config, tokenizer and weights in one call. Nothing is transferred for
        contents already cached. Every path is checked before any request.

        Args:
            repo_id (`str`):
                A repository id.
            file_paths (`Sequence[str]`):
                The files' paths in the repository.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                Reports ``(loaded, total)`` over all the files' bytes; see ``download_file``.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Returns:
            `List[str]`: The files' paths in the snapshot view, in the order asked.

        Raises:
            TypeError: ``file_paths`` is a single string or holds ``None``.
            [`ModelCacheError`]: As for ``download_file``.
        """
        if isinstance(file_paths, (str, bytes)):
            raise TypeError("file_paths must be a sequence of str (a list of paths), not one string")
        paths = list(file_paths)  # any iterable, read once
        if any(p is None for p in paths):
            raise TypeError("file_paths holds None; every entry must be a str")
        # The encoded strings must outlive the call: the array only points at them.
        encoded = [ffi.new("char[]", _text(p, f"file_paths[{i}]")) for i, p in enumerate(paths)]
        array = ffi.new("char *[]", encoded) if encoded else ffi.NULL
        out = ffi.new("char **")
        cache = self._cache()
        logger.debug("downloading %d file(s) from %s", len(encoded), repo_id)
        self._with_progress(
            f"{repo_id} ({len(encoded)} files)",
            progress_callback,
            lambda progress, user_data: lib.tc_cache_download_files(
                cache, _text(repo_id, "repo_id"), array, len(encoded), _text(revision, "revision"), progress, user_data, out
            ),
        )
        return json.loads(_take_string(out[0]))

    def download_quant(
        self,
        repo_id: str,
        quant_key: str,
        progress_callback: Optional[ProgressCallback] = None,
        *,
        revision: Optional[str] = None,
    ) -> None:
        """Download every file of one quantization variant of a repository.

        Scans the repository first when it was never scanned.

        Args:
            repo_id (`str`):
                A repository id.
            quant_key (`str`):
                A key of the manifest's ``quants``, e.g. ``"q4f16"`` or ``"Q4_K_M"``.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                Reports ``(loaded, total)`` over all the variant's bytes; see ``download_file``.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Raises:
            [`EntryNotFoundError`]: The repository has no such variant (the message lists those it
                has).
            [`ModelCacheError`]: As for ``scan_repo`` and ``download_file``.
        """
        cache = self._cache()
        logger.debug("downloading variant %s of %s", quant_key, repo_id)
        self._with_progress(
            f"{repo_id} {quant_key}",
            progress_callback,
            lambda progress, user_data: lib.tc_cache_download_quant(
                cache, _text(repo_id, "repo_id"), _text(quant_key, "quant_key"), _text(revision, "revision"), progress, user_data
            ),
        )

    # -- reading the cache -----------------------------------------------------------------

    def has_file(self, repo_id: str, file_path: str, *, revision: Optional[str] = None) -> bool:
        """Whether a file is cached, without any network request.

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Returns:
            `bool`: ``True`` when the file's content is in the cache.

        Raises:
            [`InvalidArgumentError`]: A malformed repo id, path or revision, or the cache is closed.
        """
        out = ffi.new("bool *")
        _check(lib.tc_cache_has_file(self._cache(), _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"), out))
        return bool(out[0])

    def get_file(self, repo_id: str, file_path: str, *, revision: Optional[str] = None) -> Optional[bytes]:
        """The whole content of a cached file.

        For large files prefer ``file_path`` (mmap) or ``open`` (streaming).

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Returns:
            `bytes` or `None`: The content, or ``None`` when the file is not cached.

        Raises:
            [`CacheIOError`]: The cached file could not be read.
            [`InvalidArgumentError`]: A malformed repo id, path or revision, or the cache is closed.
        """
        # The library says where the cached file is; Python reads it straight into one bytes
        # object, as open().read() does. Going through tc_cache_get_file instead copies every
        # byte twice (into the library's buffer, then into bytes): 2x the time of a plain read.
        path = self.file_path(repo_id, file_path, revision=revision)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            # Deleted since, or the view is damaged: the library's own read says which.
            return self._get_file_through_library(repo_id, file_path, revision)

    def _get_file_through_library(self, repo_id: str, file_path: str, revision: Optional[str]) -> Optional[bytes]:
        out = ffi.new("tc_bytes *")
        status = lib.tc_cache_get_file(self._cache(), _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"), out)
        if status == _NOT_CACHED:
            return None
        _check(status)
        try:
            return ffi.buffer(out.data, out.len)[:] if out.len else b""
        finally:
            lib.tc_bytes_free(out)

    def file_path(self, repo_id: str, file_path: str, *, revision: Optional[str] = None) -> Optional[str]:
        """The path of a cached file in the snapshot view.

        The snapshot view is a HuggingFace hub cache layout with the repository's own file names
        side by side, so ONNX external data and split GGUF shards find their siblings. The file is
        read-only.

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.

        Returns:
            `str` or `None`: The path, or ``None`` when the file is not cached.

        Raises:
            [`CacheIOError`]: The cache could not be read.
            [`InvalidArgumentError`]: A malformed repo id, path or revision, or the cache is closed.
        """
        out = ffi.new("char **")
        status = lib.tc_cache_file_path(self._cache(), _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"), out)
        if status == _NOT_CACHED:
            return None
        _check(status)
        return _take_string(out[0])

    def open(self, repo_id: str, file_path: str, *, revision: Optional[str] = None, buffering: int = -1) -> Union[io.BufferedReader, CachedFile]:
        """Open a cached file for streaming reads, without loading it into memory.

        The stream stays readable after ``close()`` of the cache.

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.
            buffering (`int`, *optional*):
                The buffer size in bytes; ``0`` for an unbuffered stream. Defaults to 256 KiB.

        Returns:
            `io.BufferedReader` or `CachedFile`: A binary stream (``read``, ``readinto``, ``seek``,
            ``tell``, context manager); the unbuffered :class:`CachedFile` when ``buffering=0``.

        Raises:
            [`NotCachedError`]: The file is not cached (a ``FileNotFoundError``).
            [`CacheIOError`]: The cached file could not be opened.
            [`InvalidArgumentError`]: A malformed repo id, path or revision, or the cache is closed.
        """
        out = ffi.new("tc_reader **")
        _check(lib.tc_cache_open_reader(self._cache(), _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"), out))
        size = ffi.new("uint64_t *")
        status = lib.tc_reader_size(out[0], size)
        if status != _OK:
            failure = _error(status)
            lib.tc_reader_close(out[0])
            raise failure
        raw = CachedFile(out[0], int(size[0]), f"{repo_id}/{file_path}")
        if buffering == 0:
            return raw
        return io.BufferedReader(raw, buffer_size=buffering if buffering > 0 else _OPEN_BUFFER_SIZE)

    # -- maintenance -----------------------------------------------------------------------

    def delete_model(self, repo_id: str) -> int:
        """Forget a repository (every revision) and delete the files no other repository shares.

        Args:
            repo_id (`str`):
                A repository id.

        Returns:
            `int`: The bytes freed on disk (0 when the repository was not cached).

        Raises:
            [`CacheIOError`]: A file could not be deleted.
            [`InvalidArgumentError`]: A malformed repo id, or the cache is closed.
        """
        freed = ffi.new("uint64_t *")
        _check(lib.tc_cache_delete_model(self._cache(), _text(repo_id, "repo_id"), freed))
        logger.debug("deleted %s (%d bytes freed)", repo_id, freed[0])
        return int(freed[0])

    def get_stats(self) -> Dict[str, int]:
        """The cache's counters.

        The disk budget and what it evicted are in ``budget_stats()``, so that these stay the
        seed's integer counters.

        Returns:
            `dict`: ``total_repos`` and ``total_size`` (logical bytes of cached files), plus
            ``total_files``, ``disk_bytes`` (each distinct content once), ``dedup_saved_bytes`` and,
            after the catalog was rebuilt from disk, ``rebuilt``.

        Raises:
            [`CacheIOError`]: The catalog could not be read.
            [`InvalidArgumentError`]: The cache is closed.
        """
        stats = self._stats_json()
        for key in _BUDGET_STATS:
            stats.pop(key, None)
        return stats

    def _stats_json(self) -> Dict[str, Any]:
        out = ffi.new("char **")
        _check(lib.tc_cache_get_stats_json(self._cache(), out))
        return json.loads(_take_string(out[0]))

    # -- the disk budget -------------------------------------------------------------------

    @property
    def max_size(self) -> Optional[int]:
        """The cache's disk budget in bytes of blob files (``disk_bytes``), or ``None`` when no
        budget is set. Every process using the cache shares it; ``set_max_size`` changes it.

        Raises:
            [`CacheIOError`]: The catalog could not be read.
            [`InvalidArgumentError`]: The cache is closed.
        """
        out = ffi.new("uint64_t *")
        _check(lib.tc_cache_max_size(self._cache(), out))
        return int(out[0]) or None

    def set_max_size(self, max_size: Union[int, str, None]) -> Dict[str, Any]:
        """Set the disk budget for every process using this cache, and evict down to it now.

        The last budget set wins (the ``tabcache`` command line's ``--max-size`` too). Eviction
        takes least recently used content first (last use is a download, ``get_file``,
        ``file_path``, ``open``, ``has_file`` finding it, or a ``serve`` request), whole
        variants at a time, and never a pinned repo or variant, a file being downloaded, or one
        another thread or process has open. From then on each download that lands evicts down
        to the budget, and one that cannot fit even after evicting everything evictable raises
        [`DiskFullError`] before a byte is transferred.

        Args:
            max_size (`int`, `str` or `None`):
                Bytes, or a size such as ``"50GB"`` or ``"20GiB"``; ``None`` removes the budget.

        Returns:
            `dict`: The eviction report: ``evicted`` (least recently used first, each
            ``{repo_id, commit, quant, files, bytes_freed, last_used_ms}``; ``quant`` is ``None``
            for a file outside any variant), ``bytes_freed``, ``disk_bytes`` (after) and
            ``dry_run`` (``False``).

        Raises:
            [`InvalidArgumentError`]: ``max_size`` is not a size (or is 0), or the cache is closed.
            TypeError: ``max_size`` is neither an int, a str nor ``None``.
            [`CacheIOError`]: The catalog could not be written or a file could not be removed.
        """
        size = 0 if max_size is None else _byte_size(max_size, "max_size", "remove the budget")
        out = ffi.new("char **")
        _check(lib.tc_cache_set_max_size(self._cache(), size, out))
        report = json.loads(_take_string(out[0]))
        logger.debug("budget of %s set to %s: %d evicted", self.db_path, max_size, len(report["evicted"]))
        return report

    def pin(self, repo_id: str, quant_key: Optional[str] = None) -> bool:
        """Keep a repository, or one of its variants, from eviction by the budget and ``prune``.

        The pin is kept in the cache for every process; the repository need not be cached yet.
        ``delete_model`` still deletes a pinned repository.

        Args:
            repo_id (`str`):
                A repository id.
            quant_key (`str`, *optional*):
                A key of the manifest's ``quants``, e.g. ``"Q4_K_M"``. Defaults to the whole
                repository.

        Returns:
            `bool`: ``True`` when the pin is new, ``False`` when it was pinned already.

        Raises:
            [`InvalidArgumentError`]: A malformed repo id, an empty ``quant_key``, or the cache is
                closed.
            [`CacheIOError`]: The catalog could not be written.
        """
        return self._set_pin(lib.tc_cache_pin, repo_id, quant_key)

    def unpin(self, repo_id: str, quant_key: Optional[str] = None) -> bool:
        """Undo ``pin``.

        A pin of the whole repository and a pin of one of its variants are separate: each is
        undone by its own ``unpin``.

        Args:
            repo_id (`str`):
                A repository id.
            quant_key (`str`, *optional*):
                The pinned variant. Defaults to the whole repository.

        Returns:
            `bool`: ``True`` when a pin was removed, ``False`` when there was none.

        Raises:
            [`InvalidArgumentError`]: As for ``pin``.
            [`CacheIOError`]: The catalog could not be written.
        """
        return self._set_pin(lib.tc_cache_unpin, repo_id, quant_key)

    def _set_pin(self, function: Any, repo_id: str, quant_key: Optional[str]) -> bool:
        changed = ffi.new("bool *")
        _check(function(self._cache(), _text(repo_id, "repo_id"), _text(quant_key, "quant_key"), changed))
        return bool(changed[0])

    def take_notes(self) -> List[str]:
        """The notes kept since the last call, oldest first, which are then forgotten: things
        worth telling a user that are not failures, such as a Xet-backed file fetched through
        the Hub's bridge because its Xet storage could not serve it (and why).

        Returns:
            `List[str]`: One sentence each; empty when there is nothing to say.

        Raises:
            [`InvalidArgumentError`]: The cache is closed.
        """
        out = ffi.new("char **")
        _check(lib.tc_cache_take_notes_json(self._cache(), out))
        return json.loads(_take_string(out[0]))

    def pins(self) -> List[Dict[str, Any]]:
        """The pins, by repository.

        Returns:
            `List[dict]`: Each ``{"repo_id": str, "quant": str or None}`` (``None``: the whole
            repository).

        Raises:
            [`CacheIOError`]: The catalog could not be read.
            [`InvalidArgumentError`]: The cache is closed.
        """
        out = ffi.new("char **")
        _check(lib.tc_cache_pins_json(self._cache(), out))
        return json.loads(_take_string(out[0]))

    def prune(
        self,
        *,
        max_size: Union[int, str, None] = None,
        older_than_days: Optional[float] = None,
        dry_run: bool = False,
    ) -> Dict[str, Any]:
        """Evict least recently used content now, as ``tabcache prune`` does.

        Whole variants go, least recently used first, until the cache is within ``max_size``
        (else the budget), and so does everything unused for ``older_than_days``; never a
        pinned repo or variant, a file being downloaded, or one another thread or process has
        open.

        Args:
            max_size (`int` or `str`, *optional*):
                The size to prune to, this once (the budget stays as it is): bytes, or e.g.
                ``"20GB"``. Defaults to the budget.
            older_than_days (`float`, *optional*):
                Also evict what was last used more than this many days ago (more than 0).
            dry_run (`bool`, *optional*):
                Remove nothing; the report lists exactly what a prune with the same arguments
                then removes (unless the cache changes in between).

        Returns:
            `dict`: The report, as ``set_max_size`` returns it; ``dry_run`` is ``True`` for a dry
            run, and ``disk_bytes`` is then what would remain.

        Raises:
            [`InvalidArgumentError`]: A bad size or age, or nothing to prune to (no
                ``max_size``, no ``older_than_days`` and no budget set), or the cache is closed.
            TypeError: An argument of the wrong type.
            [`CacheIOError`]: The catalog could not be written or a file could not be removed.
        """
        options = ffi.new("tc_prune_options *")
        lib.tc_prune_options_init(options)
        if max_size is not None:
            options.max_size = _byte_size(max_size, "max_size", "prune to the budget")
        if older_than_days is not None:
            options.older_than_seconds = _seconds_of_days(older_than_days)
        if not isinstance(dry_run, bool):
            raise TypeError(f"dry_run must be a bool, not {type(dry_run).__name__}")
        options.dry_run = 1 if dry_run else 0
        out = ffi.new("char **")
        _check(lib.tc_cache_prune(self._cache(), options, out))
        return json.loads(_take_string(out[0]))

    def budget_stats(self) -> Dict[str, Any]:
        """The disk budget and what it evicted (the budget's part of the command line's
        ``tabcache stats``).

        Returns:
            `dict`: ``max_size`` (bytes, or ``None`` when no budget is set), ``disk_bytes`` (what
            the budget counts: each distinct content once) and ``evictions``: ``count`` and
            ``bytes_freed`` since the cache was made, and ``recent``, the latest evictions
            oldest first (each ``{at_ms, repo_id, quant, files, bytes_freed}``).

        Raises:
            [`CacheIOError`]: The catalog could not be read.
            [`InvalidArgumentError`]: The cache is closed.
        """
        stats = self._stats_json()
        return {key: stats[key] for key in ("disk_bytes", *_BUDGET_STATS)}

    def import_hf_cache(self, hf_cache_dir: Union[str, "os.PathLike[str]", None] = None) -> Dict[str, Any]:
        """Adopt the files an existing huggingface_hub cache already holds.

        Downloading them afterwards transfers nothing. Each
        ``models--org--name/snapshots/<commit>/<path>`` whose bytes match the hash its blob is
        named by is hard-linked (or copied) into this cache and recorded for that repository and
        commit, with its ``refs/`` revisions. The huggingface_hub cache is only read, and no
        network request is made.

        Args:
            hf_cache_dir (`str` or `os.PathLike`, *optional*):
                The huggingface_hub cache. Defaults to huggingface_hub's own: ``HF_HUB_CACHE``, else
                ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``.

        Returns:
            `dict`: The report: ``hf_cache``, ``repos``, ``files_imported``, ``bytes_imported``,
            ``files_already_cached``, ``blobs_linked``, ``blobs_copied``, ``refs_imported``,
            ``bytes_hashed`` and ``skipped`` (``[{path, reason}]``: files whose hash did not match,
            or that are not links to a blob).

        Raises:
            [`EntryNotFoundError`]: The directory does not exist (the message names it).
            KeyboardInterrupt: Ctrl-C stopped the import (within a second); what was imported
                stays.
            [`CacheIOError`]: Reading it or writing this cache failed.
        """
        out = ffi.new("char **")
        cache = self._cache()
        directory = _text(hf_cache_dir, "hf_cache_dir")
        logger.debug("importing the huggingface_hub cache %s", hf_cache_dir if hf_cache_dir is not None else "(default)")
        self._with_progress(
            None,
            None,
            lambda progress, user_data: lib.tc_cache_import_hf_with_progress(cache, directory, progress, user_data, out),
        )
        return json.loads(_take_string(out[0]))

    def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_origins: Sequence[str] = (),
        allow_hosts: Sequence[str] = (),
        pull_through: bool = True,
        token: Optional[str] = None,
        insecure_no_token: bool = False,
    ) -> CacheServer:
        """Serve this cache over HTTP as a Hugging Face endpoint.

        huggingface_hub (``HF_ENDPOINT``), transformers.js (``env.remoteHost``) and any other
        Hub client pointed at the server's ``url`` read models from this cache: file downloads
        (with ``Range``, ``ETag``, ``If-None-Match``), model info, tree and paths-info listings,
        and the Hub's errors (``EntryNotFound`` for a file the cache cannot deliver). The server
        runs on the library's threads until ``close()``; other processes may use the same cache
        meanwhile.

        Args:
            host (`str`, *optional*):
                Address or name to bind. Defaults to ``"127.0.0.1"``. Anything but a loopback
                address needs ``token`` (or ``insecure_no_token=True``).
            port (`int`, *optional*):
                Port to bind; 0 (the default) takes any free port (see ``CacheServer.port``).
            allow_origins (`Sequence[str]`, *optional*):
                Browser origins that may read from the server (CORS), matched exactly, e.g.
                ``"chrome-extension://<id>"``; ``"*"`` allows every origin.
            allow_hosts (`Sequence[str]`, *optional*):
                ``Host`` names accepted besides the loopback ones (a team's ``cache-host``);
                others are refused, which stops DNS-rebinding pages.
            pull_through (`bool`, *optional*):
                Fetch what the cache lacks from its upstream, through the cache (never when the
                cache is offline). Defaults to ``True``.
            token (`str`, *optional*):
                When given, clients must send ``Authorization: Bearer <token>`` (huggingface_hub
                does with ``HF_TOKEN``).
            insecure_no_token (`bool`, *optional*):
                Allow a non-loopback ``host`` without a token.

        Returns:
            [`CacheServer`]: The running server (``.url``, ``.port``, ``.close()``; a context
            manager).

        Raises:
            [`InvalidArgumentError`]: A bad option, a host that does not resolve, or a
                non-loopback host without a token.
            [`CacheIOError`]: The address cannot be bound (the port is in use, or not
                permitted).
        """
        return start_server(
            self._cache(),
            host,
            port,
            allow_origins,
            allow_hosts,
            pull_through,
            token,
            insecure_no_token,
        )

    # -- asyncio ---------------------------------------------------------------------------

    async def scan_repo_async(
        self,
        repo_id: str,
        *,
        revision: Optional[str] = None,
        progress_callback: Optional[ProgressCallback] = None,
        poll_interval: float = 0.05,
    ) -> Dict[str, Any]:
        """``scan_repo`` as a coroutine.

        The scan runs on the library's worker thread and the event loop stays free.

        Args:
            repo_id (`str`):
                A repository id.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                As for ``scan_repo``; runs on the loop's thread.
            poll_interval (`float`, *optional*):
                Seconds between polls of the job. Defaults to 0.05.

        Returns:
            `dict`: The manifest, as ``scan_repo`` returns it.

        Raises:
            asyncio.CancelledError: ``task.cancel()`` stopped the scan (at once, even mid-request).
            [`ModelCacheError`]: As for ``scan_repo``.
        """
        job = self._start_job(lib.tc_cache_scan_repo_start, _text(repo_id, "repo_id"), _text(revision, "revision"))
        try:
            await self._await_job(job, progress_callback, None, poll_interval)
            out = ffi.new("char **")
            _check(lib.tc_job_manifest_json(job, out))
            return json.loads(_take_string(out[0]))
        finally:
            lib.tc_job_free(job)

    async def download_file_async(
        self,
        repo_id: str,
        file_path: str,
        progress_callback: Optional[ProgressCallback] = None,
        *,
        revision: Optional[str] = None,
        poll_interval: float = 0.05,
    ) -> str:
        """``download_file`` as a coroutine.

        The transfer runs on the library's worker thread and the event loop stays free.

        Args:
            repo_id (`str`):
                A repository id.
            file_path (`str`):
                The file's path in the repository.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                As for ``download_file``; runs on the loop's thread.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.
            poll_interval (`float`, *optional*):
                Seconds between polls of the job. Defaults to 0.05.

        Returns:
            `str`: The file's path in the snapshot view.

        Raises:
            asyncio.CancelledError: ``task.cancel()`` stopped the transfer; partial data is kept
                for a resume.
            [`ModelCacheError`]: As for ``download_file``.
        """
        job = self._start_job(lib.tc_cache_download_file_start, _text(repo_id, "repo_id"), _text(file_path, "file_path"), _text(revision, "revision"))
        try:
            await self._await_job(job, progress_callback, file_path, poll_interval)
            out = ffi.new("char **")
            _check(lib.tc_job_file_path(job, out))
            return _take_string(out[0])
        finally:
            lib.tc_job_free(job)

    async def download_quant_async(
        self,
        repo_id: str,
        quant_key: str,
        progress_callback: Optional[ProgressCallback] = None,
        *,
        revision: Optional[str] = None,
        poll_interval: float = 0.05,
    ) -> None:
        """``download_quant`` as a coroutine.

        See ``download_file_async`` for threads, progress and cancellation.

        Args:
            repo_id (`str`):
                A repository id.
            quant_key (`str`):
                A key of the manifest's ``quants``.
            progress_callback (`Callable[[int, int], Any]`, *optional*):
                As for ``download_quant``; runs on the loop's thread.
            revision (`str`, *optional*):
                A branch, tag or commit. Defaults to ``"main"``.
            poll_interval (`float`, *optional*):
                Seconds between polls of the job. Defaults to 0.05.

        Raises:
            asyncio.CancelledError: ``task.cancel()`` stopped the transfer.
            [`ModelCacheError`]: As for ``download_quant``.
        """
        job = self._start_job(lib.tc_cache_download_quant_start, _text(repo_id, "repo_id"), _text(quant_key, "quant_key"), _text(revision, "revision"))
        try:
            await self._await_job(job, progress_callback, f"{repo_id} {quant_key}", poll_interval)
        finally:
            lib.tc_job_free(job)

    def _start_job(self, start: Any, *args: Any) -> Any:
        """Start a native job: ``start(cache, *args, out)``."""
        out = ffi.new("tc_job **")
        _check(start(self._cache(), *args, out))
        return out[0]

    async def _await_job(self, job: Any, callback: Optional[ProgressCallback], description: Optional[str], poll_interval: float) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"progress_callback must be callable, not {type(callback).__name__}")
        bar = _default_progress(description) if callback is None and description is not None else None
        report = callback if callback is not None else bar
        loaded = ffi.new("uint64_t *")
        total = ffi.new("uint64_t *")
        last = (-1, -1)
        try:
            while True:
                # A poll, never a wait: the loop must not block.
                status = lib.tc_job_wait(job, 0)
                if status != _PENDING:
                    failure = _error(status) if status != _OK else None
                    break
                if report is not None and lib.tc_job_progress(job, loaded, total) == _OK:
                    current = (int(loaded[0]), int(total[0]))
                    if current != last:
                        last = current
                        report(*current)
                await asyncio.sleep(poll_interval)
        except BaseException:
            # Cancelled task or a raising callback: stop the transfer, and wait (without
            # blocking the loop) until it has stopped so its partial state is durable.
            lib.tc_job_cancel(job)
            await _job_stopped(job, poll_interval)
            raise
        finally:
            if bar is not None:
                bar.close()
        if failure is None and report is not None and lib.tc_job_progress(job, loaded, total) == _OK:
            if (int(loaded[0]), int(total[0])) != last:
                report(int(loaded[0]), int(total[0]))
        if failure is not None:
            raise failure


async def _job_stopped(job: Any, poll_interval: float) -> None:
    cancelled_again = False
    while lib.tc_job_wait(job, 0) == _PENDING:
        try:
            await asyncio.sleep(poll_interval)
        except asyncio.CancelledError:
            cancelled_again = True
    if cancelled_again:
        raise asyncio.CancelledError()


def _open_native(
    db_path: str,
    *,
    endpoint: Optional[str],
    token: Union[str, bool, None],
    offline: Optional[bool],
    connections: Optional[int],
    range_size: Optional[int],
    parallel_threshold: Optional[int],
    parallel_files: Optional[int],
    connect_timeout: Optional[float],
    read_timeout: Optional[float],
    max_retries: Optional[int],
    retry_base_delay: Optional[float],
    user_agent: Optional[str],
    max_size: Optional[int],
) -> Any:
    """A new native handle on ``db_path`` with ``ModelCache``'s options (``max_size`` in bytes,
    already checked)."""
    options = ffi.new("tc_options *")
    lib.tc_options_init(options)
    # Struct fields need C arrays that outlive tc_cache_open: this frame keeps them.
    keep = []

    def borrowed(value: str, what: str) -> Any:
        text = ffi.new("char[]", _text(value, what))
        keep.append(text)
        return text

    if endpoint is not None:
        options.endpoint = borrowed(endpoint, "endpoint")
    if token is False:
        options.token = borrowed("", "token")
    elif token is not None and token is not True:
        options.token = borrowed(token, "token")
    if offline is not None:
        options.offline = 1 if offline else 0
    if connections is not None:
        options.connections = _positive(connections, "connections")
    if range_size is not None:
        options.range_size = _positive(range_size, "range_size")
    if parallel_threshold is not None:
        options.parallel_threshold = _positive(parallel_threshold, "parallel_threshold")
    if parallel_files is not None:
        options.parallel_files = _positive(parallel_files, "parallel_files")
    if connect_timeout is not None:
        options.connect_timeout_ms = _milliseconds(connect_timeout, "connect_timeout")
    if read_timeout is not None:
        options.read_timeout_ms = _milliseconds(read_timeout, "read_timeout")
    if max_retries is not None:
        if max_retries < 0:
            raise InvalidArgumentError(f"max_retries must be >= 0, not {max_retries}")
        options.max_retries = max_retries
    if retry_base_delay is not None:
        options.retry_base_delay_ms = _milliseconds(retry_base_delay, "retry_base_delay")
    if user_agent is not None:
        options.user_agent = borrowed(user_agent, "user_agent")
    if max_size is not None:
        options.max_size = max_size

    out = ffi.new("tc_cache **")
    _check(lib.tc_cache_open(_text(db_path, "db_path"), options, out))
    return out[0]


def _positive(value: int, what: str) -> int:
    if not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{what} must be a positive integer, not {value!r}")
    return value


_U64_LIMIT = 1 << 64


def _byte_size(value: Union[int, str], what: str, none_means: str) -> int:
    """A size of at least one byte from an int or a string such as ``"50GB"``, which the
    library parses (``tc_parse_size``: the command line's rules, one parser for both).
    ``none_means`` says what ``None`` would have done instead, for the message about 0."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} must be an int (bytes) or a str such as '50GB', not {type(value).__name__}")
    size = value
    if isinstance(value, str):
        out = ffi.new("uint64_t *")
        status = lib.tc_parse_size(_text(value, what), out)
        if status != _OK:
            raise InvalidArgumentError(f"{what}: {_error(status).message}")
        size = int(out[0])
    if size <= 0 or size >= _U64_LIMIT:
        raise InvalidArgumentError(
            f"{what} is {value!r}; give at least 1 byte (and less than 16 EiB), e.g. 50GB, or None to {none_means}"
        )
    return size


def _seconds_of_days(days: float) -> int:
    """``older_than_days`` as the whole seconds (at least 1) tc_prune_options takes."""
    if isinstance(days, bool) or not isinstance(days, (int, float)):
        raise TypeError(f"older_than_days must be a number of days, not {type(days).__name__}")
    if not math.isfinite(days) or days <= 0:
        raise InvalidArgumentError(f"older_than_days is {days!r}; give a number of days above 0, e.g. 30")
    return min(max(1, round(days * 86400)), _U64_LIMIT - 1)


def _milliseconds(seconds: float, what: str) -> int:
    if seconds <= 0:
        raise InvalidArgumentError(f"{what} must be a positive number of seconds, not {seconds!r}")
    return max(1, round(seconds * 1000))


__all__ = ["ModelCache", "CachedFile", "CacheServer", "ProgressCallback"]


def default_cache_dir() -> Optional[str]:
    """The directory the ``tabcache`` command line (and C's ``tc_default_cache_dir``) uses
    when none is named: ``$TABCACHE_HOME``, else ``tabcache`` under the platform's per-user
    cache directory. Pass it as ``db_path`` to share the command line's cache.

    Returns:
        The path, or ``None`` when the environment names no home directory at all.
    """
    out = ffi.new("char **")
    status = lib.tc_default_cache_dir(out)
    if status == _NOT_CACHED:
        return None
    _check(status)
    return _take_string(out[0])

