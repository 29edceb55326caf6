"""``ModelCache.serve``: the cache as a local Hugging Face endpoint, from Python. Start it, read
files and listings through it over real HTTP (urllib, and the real huggingface_hub pointed at
it), the Hub's errors, the token, the options refused, and a stop while a client is in the
middle of a download."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

import tabagent_model_cache as tmc
from conftest import Hub

WEIGHTS = "model.safetensors"
WEIGHTS_SIZE = 8_000_000
CONFIG = b'{"model_type": "bert"}'


@pytest.fixture
def cached(hub: Hub, tmp_path: Path) -> Tuple[tmc.ModelCache, str]:
    """A cache holding a repo's config.json and weights (but not its README.md)."""
    repo = hub.new_repo_id("served")
    hub.write(repo, "config.json", CONFIG)
    hub.write(repo, "README.md", b"# served\n")
    hub.write_random(repo, WEIGHTS, WEIGHTS_SIZE, seed=41)
    cache = tmc.ModelCache(tmp_path / "cache", max_retries=0)
    cache.download_files(repo, ["config.json", WEIGHTS])
    yield cache, repo
    cache.close()


def get(url: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_files_and_listings_through_the_server(cached, hub):
    cache, repo = cached
    weights = Path(cache.file_path(repo, WEIGHTS)).read_bytes()
    hub.clear_log()
    with cache.serve(pull_through=False) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert not server.closed
        status, headers, body = get(f"{server.url}/{repo}/resolve/main/{WEIGHTS}")
        assert status == 200 and body == weights
        assert headers["etag"].strip('"') == hashlib.sha256(weights).hexdigest()
        assert headers["x-linked-size"] == str(WEIGHTS_SIZE)
        status, headers, body = get(f"{server.url}/{repo}/resolve/main/{WEIGHTS}", {"Range": "bytes=10-19"})
        assert status == 206 and body == weights[10:20]
        assert headers["content-range"] == f"bytes 10-19/{WEIGHTS_SIZE}"

        status, _, body = get(f"{server.url}/api/models/{repo}")
        info = json.loads(body)
        assert status == 200 and info["id"] == repo
        assert sorted(s["rfilename"] for s in info["siblings"]) == ["config.json", WEIGHTS]

        status, headers, body = get(f"{server.url}/{repo}/resolve/main/README.md")
        assert status == 404 and headers["x-error-code"] == "EntryNotFound"
        assert "not cached" in json.loads(body)["error"]
    assert server.closed
    assert hub.log() == [], "everything came from the cache"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.close()  # a second close is harmless


def test_huggingface_hub_downloads_through_the_server(cached, tmp_path):
    cache, repo = cached
    with cache.serve(pull_through=False) as server:
        script = (
            "import sys\n"
            "from huggingface_hub import hf_hub_download\n"
            "from huggingface_hub.errors import EntryNotFoundError\n"
            f"print(hf_hub_download({repo!r}, {WEIGHTS!r}))\n"
            "try:\n"
            f"    hf_hub_download({repo!r}, 'README.md')\n"
            "except EntryNotFoundError:\n"
            "    print('EntryNotFoundError')\n"
        )
        env = {
            **os.environ,
            "HF_ENDPOINT": server.url,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    path, error = result.stdout.split()
    assert Path(path).read_bytes() == Path(cache.file_path(repo, WEIGHTS)).read_bytes()
    assert error == "EntryNotFoundError"


def test_cors_token_and_hosts(cached):
    cache, repo = cached
    origin = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    with cache.serve(pull_through=False, allow_origins=[origin], allow_hosts=["cache-host"], token="s3cret") as server:
        url = f"{server.url}/{repo}/resolve/main/config.json"
        status, _, _ = get(url)
        assert status == 401
        status, headers, body = get(url, {"Authorization": "Bearer s3cret", "Origin": origin})
        assert status == 200 and body == CONFIG
        assert headers["access-control-allow-origin"] == origin
        status, headers, _ = get(url, {"Authorization": "Bearer s3cret", "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in headers
        status, _, _ = get(url, {"Authorization": "Bearer s3cret", "Host": "cache-host"})
        assert status == 200
        status, _, _ = get(url, {"Authorization": "Bearer s3cret", "Host": "rebound.example"})
        assert status == 421


def test_the_server_outlives_the_cache_object_that_started_it(cached):
    cache, repo = cached
    server = cache.serve(pull_through=False)
    try:
        cache.close()
        status, _, body = get(f"{server.url}/{repo}/resolve/main/config.json")
        assert status == 200 and body == CONFIG
    finally:
        server.close()


def test_options_refused_with_clear_errors(cached):
    cache, _ = cached
    with pytest.raises(tmc.InvalidArgumentError, match="token"):
        cache.serve("0.0.0.0", pull_through=False)
    with pytest.raises(tmc.InvalidArgumentError, match="lists of strings"):
        cache.serve(allow_origins="chrome-extension://abc", pull_through=False)
    with pytest.raises(tmc.InvalidArgumentError, match="port"):
        cache.serve(port=70000, pull_through=False)
    with pytest.raises(tmc.InvalidArgumentError, match="empty"):
        cache.serve(token="", pull_through=False)
    with cache.serve(pull_through=False) as first:
        with pytest.raises(tmc.CacheIOError, match=str(first.port)):
            cache.serve(port=first.port, pull_through=False)


def test_close_while_a_client_is_mid_download_ends_its_connection(cached):
    cache, repo = cached
    server = cache.serve(pull_through=False)
    client = socket.socket()
    # A small window: the body cannot all sit in socket buffers before we read it.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.port))
    client.sendall(f"GET /{repo}/resolve/main/{WEIGHTS} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    received = client.recv(4096)
    assert received.startswith(b"HTTP/1.1 200")
    server.close()
    client.settimeout(10)
    while True:
        chunk = client.recv(1 << 16)
        if not chunk:
            break
        received += chunk
    client.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert f"content-length: {WEIGHTS_SIZE}".encode() in head.lower()
    assert 0 < len(body) < WEIGHTS_SIZE, "the body ended short when the server stopped"


def test_pull_through_is_on_by_default_and_caches_what_it_fetched(cached, hub):
    cache, repo = cached
    assert not cache.has_file(repo, "README.md")
    with cache.serve() as server:
        status, headers, body = get(f"{server.url}/{repo}/resolve/main/README.md")
    assert status == 200 and body == b"# served\n"
    assert cache.has_file(repo, "README.md"), "fetched through the cache, and kept"
    offline = tmc.ModelCache(cache.db_path, offline=True)
    try:
        with offline.serve() as server:
            status, headers, _ = get(f"{server.url}/{repo}/resolve/main/missing.bin")
        assert status == 404 and headers["x-error-code"] == "EntryNotFound", "never offline"
    finally:
        offline.close()
