"""Bench case 5 from Python: the time to open a cache (whose catalog holds the 10,000-file
variant) and to answer the first has_file.

Usage: py_open.py CACHE_DIR REPO FILE, FILE cached. Prints one JSON object of seconds since
the open began.
"""

import json
import sys
import time

from tabagent_model_cache import ModelCache


def main():
    cache_dir, repo, path = sys.argv[1:4]
    t = time.perf_counter()
    cache = ModelCache(cache_dir)
    opened = time.perf_counter() - t
    assert cache.has_file(repo, path)
    first = time.perf_counter() - t
    cache.close()
    print(json.dumps({"open_s": opened, "first_has_file_s": first}))


if __name__ == "__main__":
    main()
