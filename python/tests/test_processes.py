"""Many processes on one cache: a ModelCache inherited by a forked child works there (it opens
the cache again) and leaves the parent's handle alone; two Python processes download at the
same time into one cache and see each other's files; the `tabcache` command line works while
a Python process holds the cache open and keeps using it. Afterwards the catalog is intact and
consistent with the blobs and the view (conftest.check_catalog)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import select
import subprocess
import threading
import time

import pytest

import tabagent_model_cache as tmc
from tabagent_model_cache._native import ffi, lib

from cache_worker import Worker
from conftest import check_catalog, cli_binary, sha256_of

fork = multiprocessing.get_context("fork")


def paced_repo(hub, stem, files, bytes_per_sec=None):
    """A repo of pseudo-random files ({path: size}); with ``bytes_per_sec``, the CDN sends each
    at that rate (per connection), so a download lasts long enough to overlap another."""
    repo = hub.new_repo_id(stem)
    for seed, (path, size) in enumerate(files.items()):
        hub.write_random(repo, path, size, seed=seed + 40)
        if bytes_per_sec:
            hub.add_fault({"type": "rate_limit", "bytes_per_sec": bytes_per_sec}, listener="cdn", path_contains=path)
    return repo


def sha(hub, repo, path):
    return sha256_of(hub.root / repo / path)


# -- fork ---------------------------------------------------------------------------------


def _child_uses_inherited_cache(cache, repo, results):
    # In the forked child: the instance the parent opened, used as if nothing happened.
    try:
        parent_file = cache.get_file(repo, "parent.bin")
        results.put(
            {
                "has_parent_file": cache.has_file(repo, "parent.bin"),
                "parent_file": hashlib.sha256(parent_file).hexdigest() if parent_file is not None else None,
                "download": cache.download_file(repo, "child.bin"),
                "child_file": hashlib.sha256(cache.get_file(repo, "child.bin")).hexdigest(),
            }
        )
        cache.close()
    except BaseException as exc:  # noqa: B902 - reported to the parent
        results.put({"error": repr(exc)})


def _child_only_closes(cache, results):
    try:
        cache.close()  # never used here: the inherited handle must be left to the parent
        results.put({"closed": cache.closed})
    except BaseException as exc:  # noqa: B902 - reported to the parent
        results.put({"error": repr(exc)})


def run_in_fork(target, *args):
    results = fork.Queue()
    child = fork.Process(target=target, args=(*args, results))
    child.start()
    try:
        answer = results.get(timeout=60)
    finally:
        child.join(30)
    assert child.exitcode == 0, f"the forked child exited with {child.exitcode}"
    assert "error" not in answer, answer["error"]
    return answer


def test_forked_child_uses_the_inherited_cache_and_the_parent_sees_its_file(hub, tmp_path):
    repo = paced_repo(hub, "fork", {"parent.bin": 200_000, "child.bin": 300_000, "after.bin": 100_000})
    db = tmp_path / "db"
    cache = tmc.ModelCache(db)
    cache.download_file(repo, "parent.bin")

    answer = run_in_fork(_child_uses_inherited_cache, cache, repo)
    assert answer["has_parent_file"] is True
    assert answer["parent_file"] == sha(hub, repo, "parent.bin")
    assert answer["child_file"] == sha(hub, repo, "child.bin")
    assert answer["download"].endswith("child.bin")

    # A child that closes its inherited copy without using it leaves the parent's handle alone.
    assert run_in_fork(_child_only_closes, cache) == {"closed": True}

    # The parent's own handle still works, sees the child's download and downloads more.
    assert not cache.closed
    assert cache.has_file(repo, "child.bin") is True
    assert hashlib.sha256(cache.get_file(repo, "child.bin")).hexdigest() == sha(hub, repo, "child.bin")
    assert cache.file_path(repo, "child.bin") == answer["download"]
    cache.download_file(repo, "after.bin")
    cache.close()
    assert check_catalog(db)["files"] == 3


def test_fork_while_other_threads_use_the_cache(hub, tmp_path):
    # A native host forks workers while its other threads keep reading the cache. A lock some
    # parent thread held inside the library at the moment of fork() is held for ever in the
    # child, so the child's first use of the cache (which opens it again) must not need one.
    repo = paced_repo(hub, "fork-busy", {"config.json": 1000})
    cache = tmc.ModelCache(tmp_path / "db")
    cache.download_file(repo, "config.json")
    stop = threading.Event()
    rounds = [0, 0]

    def read(slot):
        while not stop.is_set():
            assert cache.has_file(repo, "config.json")
            rounds[slot] += 1

    readers = [threading.Thread(target=read, args=(slot,), daemon=True) for slot in (0, 1)]
    for reader in readers:
        reader.start()
    forks = 0
    try:
        while forks < 30:
            answer_r, answer_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: one call on the inherited instance, then leave at once
                try:
                    os.write(answer_w, b"1" if cache.has_file(repo, "config.json") else b"0")
                finally:
                    os._exit(0)
            os.close(answer_w)
            ready, _, _ = select.select([answer_r], [], [], 10)
            answer = os.read(answer_r, 1) if ready else None
            os.close(answer_r)
            if answer is None:
                os.kill(pid, 9)
            os.waitpid(pid, 0)
            assert answer == b"1", f"fork {forks + 1}: the child hung in its first call (no answer in 10 s)"
            forks += 1
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert min(rounds) > 0
    cache.close()


def _child_calls_the_library_with_the_inherited_handle(handle, results):
    out = ffi.new("bool *")
    status = lib.tc_cache_has_file(handle, b"test-org/any", b"config.json", ffi.NULL, out)
    results.put(
        {
            "status": ffi.string(lib.tc_status_name(status)).decode(),
            "message": ffi.string(lib.tc_last_error_message()).decode(),
        }
    )


def test_native_library_refuses_a_handle_used_in_a_forked_child(tmp_path):
    # What a C caller (or a wrapper without ModelCache's reopen) gets: a clear error, not a
    # use of the parent's catalog connection.
    cache = tmc.ModelCache(tmp_path / "db", offline=True)
    answer = run_in_fork(_child_calls_the_library_with_the_inherited_handle, cache._handle)
    assert answer["status"] == "invalid_argument", answer
    assert "fork" in answer["message"] and "open the cache again" in answer["message"], answer["message"]
    # The parent's handle is unaffected.
    assert cache.has_file("test-org/any", "config.json") is False
    cache.close()


# -- several processes --------------------------------------------------------------------


def test_two_processes_open_one_cache_download_at_once_and_see_each_others_files(hub, tmp_path):
    size = 1536 * 1024
    files = {"first-Q4_0.gguf": size, "second-Q8_0.gguf": size}
    repo = paced_repo(hub, "two-processes", files, bytes_per_sec=2 << 20)  # ~0.75 s each
    db = tmp_path / "db"
    hub.clear_log()
    with Worker(db, connections=1) as one, Worker(db, connections=1) as two:
        # Both hold the cache open before either downloads anything.
        one.wait_opened()
        two.wait_opened()
        first = one.send("download_file", repo, "first-Q4_0.gguf")
        second = two.send("download_file", repo, "second-Q8_0.gguf")
        first, second = one.reply(first), two.reply(second)
        assert max(first["started"], second["started"]) < min(first["ended"], second["ended"]), "the downloads did not overlap"

        for worker, other in ((one, "second-Q8_0.gguf"), (two, "first-Q4_0.gguf")):
            assert worker.call("has_file", repo, other) is True
            assert worker.call("get_file", repo, other) == {"size": size, "sha256": sha(hub, repo, other)}
        assert one.call("file_path", repo, "second-Q8_0.gguf") == second["ok"]
    # Each file crossed the network once.
    assert hub.cdn_get_bytes() == 2 * size
    assert check_catalog(db)["files"] == 2


# -- the command line beside a Python process ---------------------------------------------


def tabcache(db, hub, *args, check=True):
    result = subprocess.run(
        [str(cli_binary()), "--cache", str(db), "--endpoint", hub.url, "--quiet", *args],
        capture_output=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, f"tabcache {' '.join(args)} exited with {result.returncode}: {result.stderr.decode()}"
    return result


def test_cli_works_while_a_python_process_keeps_using_the_cache(hub, tmp_path):
    repo = paced_repo(hub, "cli-beside-python", {"python-Q4_0.gguf": 300_000, "cli-Q8_0.gguf": 200_000})
    # Downloaded by Python while the CLI runs: 3 MiB at 1 MiB/s, longer than the CLI commands.
    hub.write_random(repo, "busy-Q5_0.gguf", 3 << 20, seed=49)
    hub.add_fault({"type": "rate_limit", "bytes_per_sec": 1 << 20}, listener="cdn", path_contains="busy-Q5_0.gguf")
    db = tmp_path / "db"
    python_sha = sha(hub, repo, "python-Q4_0.gguf")
    with Worker(db, connections=1) as worker:
        worker.wait_opened()
        python_path = worker.call("download_file", repo, "python-Q4_0.gguf")
        reading = worker.send("read_loop", repo, "python-Q4_0.gguf", python_sha)
        busy = worker.send("download_file", repo, "busy-Q5_0.gguf")

        listed = json.loads(tabcache(db, hub, "--json", "ls").stdout)
        first_cli_done = time.time()
        assert [r["repo_id"] for r in listed] == [repo]
        files = json.loads(tabcache(db, hub, "--json", "ls", repo).stdout)
        assert {f["path"]: f["sha256"] for f in files}["python-Q4_0.gguf"] == python_sha
        assert tabcache(db, hub, "path", repo, "python-Q4_0.gguf").stdout.decode().strip() == python_path
        assert tabcache(db, hub, "cat", repo, "python-Q4_0.gguf").stdout == (hub.root / repo / "python-Q4_0.gguf").read_bytes()
        verified = json.loads(tabcache(db, hub, "--json", "verify").stdout)
        assert verified["ok"] is True and verified["blobs_checked"] >= 1
        downloaded = json.loads(tabcache(db, hub, "--json", "download", repo, "--file", "cli-Q8_0.gguf").stdout)
        assert [f["path"] for f in downloaded["files"]] == ["cli-Q8_0.gguf"]

        # Python sees what the CLI downloaded ...
        assert worker.call("has_file", repo, "cli-Q8_0.gguf") is True
        assert worker.call("get_file", repo, "cli-Q8_0.gguf")["sha256"] == sha(hub, repo, "cli-Q8_0.gguf")
        busy = worker.reply(busy)
        assert busy["ended"] > first_cli_done, "Python's download did not overlap the CLI"
        # ... and the CLI what Python downloaded meanwhile.
        busy_path = tabcache(db, hub, "path", repo, "busy-Q5_0.gguf").stdout.decode().strip()
        assert busy_path == busy["ok"] and sha256_of(busy_path) == sha(hub, repo, "busy-Q5_0.gguf")
        worker.call("stop_read_loop")
        assert worker.reply(reading)["ok"] > 0
    assert check_catalog(db)["files"] == 3
