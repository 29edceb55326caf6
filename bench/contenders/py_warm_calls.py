"""Bench case 5 from Python: per-call latency of the warm calls, and reading a cached file
three ways (get_file, open() of its path, the package's streaming reader).

Usage: py_warm_calls.py CACHE_DIR REPO FILE CALLS, on a cache that already holds FILE. Prints
one JSON object of seconds (per call, or the best of three reads) and the file's size.
"""

import json
import sys
import time

from tabagent_model_cache import ModelCache


def main():
    cache_dir, repo, path, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = {}
    with ModelCache(cache_dir) as cache:
        # The loops are written out, not a helper taking a lambda: the extra call per
        # iteration would be part of a latency measured in microseconds.
        assert cache.has_file(repo, path)
        t = time.perf_counter()
        for _ in range(calls):
            cache.has_file(repo, path)
        out["has_file_s"] = (time.perf_counter() - t) / calls
        assert cache.get_manifest(repo) is not None
        t = time.perf_counter()
        for _ in range(calls):
            cache.get_manifest(repo)
        out["get_manifest_s"] = (time.perf_counter() - t) / calls
        size = len(cache.get_file(repo, path))
        out["bytes"] = size
        best = {"get_file_s": float("inf"), "open_read_s": float("inf"), "stream_s": float("inf")}
        file_path = cache.file_path(repo, path)
        for _ in range(3):
            t = time.perf_counter()
            assert len(cache.get_file(repo, path)) == size
            best["get_file_s"] = min(best["get_file_s"], time.perf_counter() - t)
            t = time.perf_counter()
            with open(file_path, "rb") as f:
                assert len(f.read()) == size
            best["open_read_s"] = min(best["open_read_s"], time.perf_counter() - t)
            t = time.perf_counter()
            n = 0
            with cache.open(repo, path) as f:
                while True:
                    piece = f.read(1 << 20)
                    if not piece:
                        break
                    n += len(piece)
            assert n == size
            best["stream_s"] = min(best["stream_s"], time.perf_counter() - t)
        out.update(best)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
