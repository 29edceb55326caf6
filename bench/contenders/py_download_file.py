"""Contender of bench cases 1 and 2: the Python package (tabagent_model_cache over cffi,
through the C ABI) downloading one file, as a host application calls it.

Usage: py_download_file.py CACHE_DIR REPO FILE (HF_ENDPOINT names the hub). Prints the seconds
from opening the cache to the file being cached.
"""

import sys
import time

from tabagent_model_cache import ModelCache


def main():
    cache_dir, repo, path = sys.argv[1:4]
    t = time.perf_counter()
    with ModelCache(cache_dir) as cache:
        cache.download_file(repo, path)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    main()
