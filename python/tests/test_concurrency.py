"""Threads and asyncio: the GIL is released during native work, downloads in two threads
overlap, async downloads leave the loop free, a cancelled task stops the transfer and leaves a
resumable state, and streaming a large file through open() keeps memory flat."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import pytest

import tabagent_model_cache as tmc

from conftest import sha256_of, vm_rss_bytes


def paced_repo(hub, stem, files, bytes_per_sec):
    """A repo whose files the CDN sends at ``bytes_per_sec`` per connection."""
    repo = hub.new_repo_id(stem)
    for seed, (path, size) in enumerate(files.items()):
        hub.write_random(repo, path, size, seed=seed + 10)
        hub.add_fault({"type": "rate_limit", "bytes_per_sec": bytes_per_sec}, listener="cdn", path_contains=path)
    return repo


def test_two_threads_download_at_once_and_gil_is_released(hub, tmp_path):
    size = 1536 * 1024
    repo = paced_repo(hub, "threads", {"a-Q4_0.gguf": size, "b-Q8_0.gguf": size}, 1 << 20)
    cache = tmc.ModelCache(str(tmp_path / "db"), connections=1)
    spans = {}
    errors = []

    def download(path):
        try:
            start = time.monotonic()
            cache.download_file(repo, path)  # no callback: the thread sits in native code
            spans[path] = (start, time.monotonic())
        except BaseException as exc:  # noqa: B902 - reported below
            errors.append(exc)

    ticks = 0
    stop = threading.Event()

    def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    tick_thread = threading.Thread(target=ticker)
    tick_thread.start()
    threads = [threading.Thread(target=download, args=(p,)) for p in ("a-Q4_0.gguf", "b-Q8_0.gguf")]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    stop.set()
    tick_thread.join()
    cache.close()
    assert not errors, errors
    (a_start, a_end), (b_start, b_end) = spans["a-Q4_0.gguf"], spans["b-Q8_0.gguf"]
    single = max(a_end - a_start, b_end - b_start)
    # Each takes about 1.5 s at the paced rate; they overlapped instead of queueing.
    assert min(a_end, b_end) > max(a_start, b_start), spans
    assert elapsed < 1.6 * min(a_end - a_start, b_end - b_start), (elapsed, single)
    # A Python thread kept running the whole time: the GIL was free during the downloads.
    assert ticks > 0.3 * elapsed * 1000 / 1.5, (ticks, elapsed)


def test_progress_callbacks_from_many_threads(hub, tmp_path):
    repo = hub.new_repo_id("many")
    paths = [f"shard-{i}-Q4_K_M.gguf" for i in range(4)]
    for i, path in enumerate(paths):
        hub.write_random(repo, path, 300_000 + i, seed=i)
    finals = {}
    with tmc.ModelCache(str(tmp_path / "db")) as cache:

        def download(path):
            def progress(loaded, total):
                finals[path] = (loaded, total, threading.current_thread().name)

            cache.download_file(repo, path, progress)

        threads = [threading.Thread(target=download, args=(p,), name=p) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert all(not t.is_alive() for t in threads)
        for i, path in enumerate(paths):
            assert finals[path][:2] == (300_000 + i, 300_000 + i)
            assert cache.has_file(repo, path)
    # Each callback ran on the thread that made its call.
    assert all(finals[path][2] == path for path in paths)


def test_async_downloads_run_concurrently_and_keep_the_loop_free(hub, tmp_path):
    size = 1 << 20
    repo = paced_repo(hub, "async", {"c-Q4_0.gguf": size, "d-Q8_0.gguf": size}, 1 << 20)

    async def main(cache):
        beats = 0

        async def heartbeat():
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0.01)

        beat = asyncio.ensure_future(heartbeat())
        reports = []
        during = {}

        def moving(path):
            # When each transfer was seen part-way (0 < loaded < total).
            def report(loaded, total):
                if 0 < loaded < total:
                    during.setdefault(path, []).append(time.monotonic())

            return report

        moving_c = moving("c")

        def report_c(loaded, total):
            reports.append((loaded, total))
            moving_c(loaded, total)

        started = time.monotonic()
        paths = await asyncio.gather(
            cache.download_file_async(repo, "c-Q4_0.gguf", report_c),
            cache.download_file_async(repo, "d-Q8_0.gguf", moving("d")),
            cache.scan_repo_async(repo),
        )
        elapsed = time.monotonic() - started
        beat.cancel()
        return paths, elapsed, beats, reports, during

    with tmc.ModelCache(str(tmp_path / "db"), connections=1) as cache:
        (path_c, path_d, manifest), elapsed, beats, reports, during = asyncio.run(main(cache))
        assert path_c == cache.file_path(repo, "c-Q4_0.gguf")
        assert path_d == cache.file_path(repo, "d-Q8_0.gguf")
        assert set(manifest["quants"]) == {"Q4_0", "Q8_0"}
    # Both paced transfers were in flight at one moment: they ran side by side.
    assert max(min(during["c"]), min(during["d"])) < min(max(during["c"]), max(during["d"])), during
    assert beats > elapsed * 100 * 0.3, (beats, elapsed)  # the loop kept running
    assert reports[-1] == (size, size)
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)


def test_download_quant_async(phi_repo, tmp_path):
    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        assert asyncio.run(cache.download_quant_async(phi_repo, "fp16")) is None
        assert cache.get_manifest(phi_repo)["quants"]["fp16"]["status"] == "downloaded"
        with pytest.raises(tmc.EntryNotFoundError):
            asyncio.run(cache.download_quant_async(phi_repo, "q9"))


def test_cancelled_task_leaves_resumable_state(hub, tmp_path):
    # Resume works for the ranged transfer, which parallel_threshold switches on.
    size = 12 << 20
    path = "big-Q4_K_M.gguf"
    repo = paced_repo(hub, "resume", {path: size}, 4 << 20)
    cache = tmc.ModelCache(
        str(tmp_path / "db"), connections=2, range_size=1 << 20, parallel_threshold=4 << 20
    )

    async def start_then_cancel():
        progressed = asyncio.Event()
        seen = []

        def progress(loaded, total):
            seen.append(loaded)
            if loaded >= size * 0.4:
                progressed.set()

        task = asyncio.ensure_future(cache.download_file_async(repo, path, progress, poll_interval=0.02))
        await asyncio.wait_for(progressed.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen[-1]

    loaded_before_cancel = asyncio.run(start_then_cancel())
    assert cache.has_file(repo, path) is False
    assert 0 < loaded_before_cancel < size
    # The transfer stopped with the task: no request starts after it.
    requests = len(hub.log())
    time.sleep(0.3)
    assert len(hub.log()) == requests

    hub.clear_faults()
    hub.clear_log()
    cache.download_file(repo, path)
    sent_second = hub.cdn_get_bytes()
    # The second download resumed: it fetched roughly what the first had not.
    assert sent_second < size - loaded_before_cancel // 2, (sent_second, loaded_before_cancel)
    with cache.open(repo, path) as stream:
        digest = hashlib.sha256()
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == sha256_of(hub.root / repo / path)
    cache.close()


def test_streaming_a_large_file_keeps_memory_flat(hub, tmp_path):
    size = 96 << 20
    repo = hub.new_repo_id("large")
    source = hub.write_random(repo, "large-F16.gguf", size, seed=42)
    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        cache.download_file(repo, "large-F16.gguf")
        baseline = vm_rss_bytes()
        peak = baseline
        digest = hashlib.sha256()
        buffer = bytearray(1 << 20)
        with cache.open(repo, "large-F16.gguf") as stream:
            while True:
                n = stream.readinto(buffer)
                if not n:
                    break
                digest.update(memoryview(buffer)[:n])
                peak = max(peak, vm_rss_bytes())
        with cache.open(repo, "large-F16.gguf") as stream:
            for block in iter(lambda: stream.read(4 << 20), b""):
                peak = max(peak, vm_rss_bytes())
    assert digest.hexdigest() == sha256_of(source)
    # 96 MiB went through; resident memory grew by a few buffers at most.
    assert peak - baseline < 24 << 20, (peak - baseline) >> 20
