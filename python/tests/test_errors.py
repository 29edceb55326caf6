"""Every exception class, raised by a real failure against the emulator or the file system,
carrying the library's message."""

from __future__ import annotations

import socket
import time

import pytest

import tabagent_model_cache as tmc


def open_cache(tmp_path, name="db", **options):
    return tmc.ModelCache(str(tmp_path / name), **options)


def test_hierarchy():
    for name in tmc.__all__:
        value = getattr(tmc, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, tmc.ModelCacheError), name
    assert issubclass(tmc.GatedRepoError, tmc.RepositoryNotFoundError)
    assert issubclass(tmc.OfflineModeIsEnabled, ConnectionError)
    assert issubclass(tmc.NetworkError, ConnectionError)
    assert issubclass(tmc.DiskFullError, OSError)
    assert issubclass(tmc.InvalidArgumentError, ValueError)
    assert issubclass(tmc.NotCachedError, FileNotFoundError)


def test_missing_repo(tmp_path):
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.RepositoryNotFoundError) as info:
            cache.scan_repo("test-org/does-not-exist")
    assert type(info.value) is tmc.RepositoryNotFoundError
    assert "test-org/does-not-exist" in str(info.value)
    assert info.value.status == "repo_not_found"


def test_missing_file_and_variant(phi_repo, tmp_path):
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.EntryNotFoundError) as info:
            cache.download_file(phi_repo, "onnx/no-such-file.onnx")
        assert "no-such-file.onnx" in str(info.value)
        with pytest.raises(tmc.EntryNotFoundError) as info:
            cache.download_quant(phi_repo, "q9")
        # The message lists the variants the repo has.
        assert "q4f16" in str(info.value)


def test_missing_revision(phi_repo, tmp_path):
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.RevisionNotFoundError) as info:
            cache.scan_repo(phi_repo, revision="no-such-branch")
    assert "no-such-branch" in str(info.value)


def test_gated_repo_without_token(hub, tmp_path):
    repo = hub.new_repo_id("gated")
    hub.write(repo, "config.json", b"{}")
    hub.write_random(repo, "model-Q4_K_M.gguf", 10_000)
    hub.configure(repo, gated=True, tokens=["hf_allowed"])
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.GatedRepoError) as info:
            cache.download_file(repo, "model-Q4_K_M.gguf")
        assert str(info.value)
    # With the token the same download succeeds.
    with open_cache(tmp_path, "db2", token="hf_allowed") as cache:
        assert cache.download_file(repo, "model-Q4_K_M.gguf")


def test_offline(phi_repo, tmp_path, monkeypatch):
    with open_cache(tmp_path, offline=True) as cache:
        with pytest.raises(tmc.OfflineModeIsEnabled) as info:
            cache.scan_repo(phi_repo)
        assert str(info.value)
        with pytest.raises(tmc.OfflineModeIsEnabled):
            cache.download_file(phi_repo, "config.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with open_cache(tmp_path, "db2") as cache:
        with pytest.raises(tmc.OfflineModeIsEnabled):
            cache.download_quant(phi_repo, "q4f16")


def test_second_opener_is_not_locked_out(phi_repo, tmp_path):
    # CacheLockedError stays exported (code that catches it keeps importing), but a second
    # ModelCache on the same directory opens and works, reading and downloading.
    assert issubclass(tmc.CacheLockedError, tmc.ModelCacheError)
    first = open_cache(tmp_path)
    first.download_file(phi_repo, "config.json")
    second = open_cache(tmp_path)
    assert second.get_file(phi_repo, "config.json") == b'{"model_type": "phi3"}'
    second.download_file(phi_repo, "tokenizer.json")
    assert first.get_file(phi_repo, "tokenizer.json") == b'{"version": "1.0"}'
    # Closing one leaves the other working.
    first.close()
    assert second.has_file(phi_repo, "config.json") is True
    second.close()


def test_corrupt_server(hub, tmp_path):
    repo = hub.new_repo_id("corrupt")
    hub.write_random(repo, "model-Q8_0.gguf", 3 << 20, seed=3)
    hub.add_fault({"type": "corrupt", "offset": 12345}, listener="cdn", path_contains="model-Q8_0.gguf")
    with open_cache(tmp_path, max_retries=0) as cache:
        with pytest.raises(tmc.IntegrityError) as info:
            cache.download_file(repo, "model-Q8_0.gguf")
        assert str(info.value)
        assert cache.has_file(repo, "model-Q8_0.gguf") is False


def test_cancel_from_callback(hub, tmp_path):
    repo = hub.new_repo_id("cancel")
    hub.write_random(repo, "model-Q4_0.gguf", 8 << 20, seed=4)
    hub.add_fault({"type": "rate_limit", "bytes_per_sec": 4 << 20}, listener="cdn", path_contains="model-Q4_0.gguf")

    def stop_early(loaded, total):
        if loaded > 0:
            raise tmc.DownloadCancelled("stopped by the test")

    with open_cache(tmp_path, connections=1) as cache:
        with pytest.raises(tmc.DownloadCancelled, match="stopped by the test"):
            cache.download_file(repo, "model-Q4_0.gguf", stop_early)
        assert cache.has_file(repo, "model-Q4_0.gguf") is False


def test_exception_in_callback_is_reraised_and_cancels(hub, tmp_path):
    repo = hub.new_repo_id("raising")
    size = 8 << 20
    hub.write_random(repo, "model-Q5_0.gguf", size, seed=5)
    # Paced so that the whole file needs at least 4 s.
    hub.add_fault({"type": "rate_limit", "bytes_per_sec": 2 << 20}, listener="cdn", path_contains="model-Q5_0.gguf")

    class Boom(Exception):
        pass

    raised = Boom("from the callback")
    calls = []

    def callback(loaded, total):
        calls.append(loaded)
        if loaded > 0:
            raise raised

    with open_cache(tmp_path, connections=1) as cache:
        started = time.monotonic()
        with pytest.raises(Boom) as info:
            cache.download_file(repo, "model-Q5_0.gguf", callback)
        elapsed = time.monotonic() - started
        assert info.value is raised
        # The first report with bytes raised, and the download stopped right there.
        assert calls[-1] > 0 and len([c for c in calls if c > 0]) == 1
        assert elapsed < 2.5, elapsed
        assert cache.has_file(repo, "model-Q5_0.gguf") is False


def test_exception_in_async_callback(hub, tmp_path):
    import asyncio

    repo = hub.new_repo_id("raising-async")
    hub.write_random(repo, "model-Q6_K.gguf", 4 << 20, seed=6)
    hub.add_fault({"type": "rate_limit", "bytes_per_sec": 2 << 20}, listener="cdn", path_contains="model-Q6_K.gguf")

    def callback(loaded, total):
        if loaded > 0:
            raise KeyError("async callback")

    with open_cache(tmp_path, connections=1) as cache:
        with pytest.raises(KeyError):
            asyncio.run(cache.download_file_async(repo, "model-Q6_K.gguf", callback, poll_interval=0.02))
        assert cache.has_file(repo, "model-Q6_K.gguf") is False


def test_network_error(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on that port now.
    with open_cache(tmp_path, endpoint=f"http://127.0.0.1:{port}", max_retries=0) as cache:
        with pytest.raises(tmc.NetworkError) as info:
            cache.scan_repo("test-org/anything")
    assert str(info.value)


def test_rate_limited(phi_repo, hub, tmp_path):
    hub.add_fault({"type": "status", "status": 429, "retry_after": 0}, listener="api")
    with open_cache(tmp_path, max_retries=0) as cache:
        with pytest.raises(tmc.RateLimitedError):
            cache.scan_repo(phi_repo)


def test_http_error(phi_repo, hub, tmp_path):
    hub.add_fault({"type": "status", "status": 418}, listener="api")
    with open_cache(tmp_path, max_retries=0) as cache:
        with pytest.raises(tmc.HubHTTPError) as info:
            cache.scan_repo(phi_repo)
    assert "418" in str(info.value)


def test_unauthorized(phi_repo, hub, tmp_path):
    hub.add_fault({"type": "status", "status": 401}, listener="api")
    with open_cache(tmp_path, max_retries=0, token="hf_wrong") as cache:
        with pytest.raises((tmc.UnauthorizedError, tmc.RepositoryNotFoundError)) as info:
            cache.scan_repo(phi_repo)
    assert info.value.status in ("unauthorized", "repo_not_found")


def test_invalid_argument_and_closed(tmp_path):
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.InvalidArgumentError):
            cache.scan_repo("not a/valid/repo id")
        with pytest.raises(tmc.InvalidArgumentError):
            cache.download_file("org/name", "../escape")
    with pytest.raises(tmc.InvalidArgumentError, match="closed"):
        cache.get_stats()
    with pytest.raises(tmc.InvalidArgumentError):
        tmc.ModelCache("")
    with pytest.raises(tmc.InvalidArgumentError):
        tmc.ModelCache(str(tmp_path / "x"), connections=0)


def test_io_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(tmc.CacheIOError) as info:
        tmc.ModelCache(str(blocker / "db"))
    assert str(info.value)


def test_not_cached_open(phi_repo, tmp_path):
    with open_cache(tmp_path) as cache:
        with pytest.raises(tmc.NotCachedError):
            cache.open(phi_repo, "config.json")
        with pytest.raises(FileNotFoundError):
            cache.open(phi_repo, "config.json")


def test_every_status_maps_to_its_class_by_name():
    # The header's tc_status is the list; the classes name their status; the numbers come
    # from the header (never written in Python), so these must agree both ways.
    from tabagent_model_cache import _errors
    from tabagent_model_cache._native import ffi, lib

    header_statuses = ffi.typeof("enum tc_status").relements  # "TC_STATUS_X" -> value
    not_errors = {"TC_STATUS_OK", "TC_STATUS_PENDING"}
    assert not_errors <= set(header_statuses)
    for c_name, value in header_statuses.items():
        name = ffi.string(lib.tc_status_name(value)).decode("ascii")
        assert c_name == "TC_STATUS_" + name.upper()
        if c_name in not_errors:
            assert value not in _errors._BY_STATUS
            continue
        cls = _errors._BY_STATUS[value]
        assert cls.status == name, (c_name, cls)
        error = _errors.error_for_status(value, "the message", name)
        assert type(error) is cls and error.status == name and str(error) == "the message"
    assert set(_errors._BY_STATUS) == set(header_statuses.values()) - {header_statuses[n] for n in not_errors}
    # Every exported class that names a status is reachable from its status.
    named = {
        getattr(tmc, n)
        for n in tmc.__all__
        if isinstance(getattr(tmc, n), type) and issubclass(getattr(tmc, n), Exception) and "status" in vars(getattr(tmc, n))
    }
    named.discard(tmc.ModelCacheError)
    assert named == set(_errors._BY_STATUS.values())


def test_unknown_status_is_the_base_class():
    from tabagent_model_cache import _errors

    error = _errors.error_for_status(10_000, "", "unknown")
    assert type(error) is tmc.ModelCacheError
    assert error.status == "unknown" and "unknown" in str(error)
