"""``CacheServer``: a cache served over HTTP as a local Hugging Face endpoint (``tc_server``).

The server runs on the library's own threads, not Python's: requests are answered while this
interpreter does anything else (or holds the GIL), and ``close()`` stops it from any thread.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence
from urllib.parse import urlsplit

from ._errors import InvalidArgumentError
from ._errors import check as _check
from ._native import ffi, lib


class CacheServer:
    """A running server answering the Hub's protocol from a :class:`ModelCache`.

    Point any Hub client at :attr:`url`: ``HF_ENDPOINT`` for huggingface_hub and transformers,
    ``env.remoteHost`` for transformers.js. Made by :meth:`ModelCache.serve`; stop it with
    :meth:`close` or by leaving a ``with`` block. It keeps serving after the ``ModelCache`` that
    started it is closed, until it is stopped.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        out = ffi.new("char **")
        _check(lib.tc_server_url(handle, out))
        try:
            self._url = ffi.string(out[0]).decode("utf-8")
        finally:
            lib.tc_string_free(out[0])
        port = urlsplit(self._url).port
        assert port is not None, f"the library gave a URL without a port: {self._url}"
        self._port = port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, with the port actually bound."""
        return self._url

    @property
    def port(self) -> int:
        """The port the server listens on (the one it took when asked for port 0)."""
        return self._port

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle == ffi.NULL

    def close(self) -> None:
        """Stop listening and end every open connection (a client in the middle of a download
        sees its body end short), and return once the server is gone. Safe to call twice."""
        handle, self._handle = self._handle, ffi.NULL
        if handle != ffi.NULL:
            lib.tc_server_stop(handle)

    def __enter__(self) -> "CacheServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing useful to do in a finalizer
            pass

    def __repr__(self) -> str:
        return f"<CacheServer {self._url} ({'stopped' if self.closed else 'serving'})>"


def start_server(
    cache: Any,
    host: str,
    port: int,
    allow_origins: Sequence[str],
    allow_hosts: Sequence[str],
    pull_through: bool,
    token: Optional[str],
    insecure_no_token: bool,
) -> CacheServer:
    """``tc_server_start`` on the native cache handle ``cache`` with these options."""
    if isinstance(allow_origins, str) or isinstance(allow_hosts, str):
        raise InvalidArgumentError("allow_origins and allow_hosts are lists of strings, not one string")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgumentError(f"port must be an integer from 0 (any free port) to 65535, not {port!r}")
    options = ffi.new("tc_server_options *")
    lib.tc_server_options_init(options)
    # The option struct borrows these C strings and arrays: this frame keeps them alive.
    keep = []

    def c_string(value: str, what: str) -> Any:
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be a string, not {value!r}")
        text = ffi.new("char[]", value.encode("utf-8"))
        keep.append(text)
        return text

    def c_strings(values: Sequence[str], what: str) -> Any:
        items = [c_string(value, f"{what}[{i}]") for i, value in enumerate(values)]
        array = ffi.new("const char *[]", items) if items else ffi.NULL
        keep.append(array)
        return array, len(items)

    options.host = c_string(host, "host")
    options.port = port
    options.allow_origins, options.allow_origins_count = c_strings(list(allow_origins), "allow_origins")
    options.allow_hosts, options.allow_hosts_count = c_strings(list(allow_hosts), "allow_hosts")
    options.pull_through = 1 if pull_through else 0
    if token is not None:
        options.token = c_string(token, "token")
    options.insecure_no_token = 1 if insecure_no_token else 0
    out = ffi.new("tc_server **")
    _check(lib.tc_server_start(cache, options, out))
    return CacheServer(out[0])

