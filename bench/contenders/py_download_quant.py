"""Contender of bench case 3: the Python package scanning a repo and downloading one of its
quant variants.

Usage: py_download_quant.py CACHE_DIR REPO QUANT (HF_ENDPOINT names the hub). Prints the
seconds from opening the cache to the variant being cached.
"""

import sys
import time

from tabagent_model_cache import ModelCache


def main():
    cache_dir, repo, quant = sys.argv[1:4]
    t = time.perf_counter()
    with ModelCache(cache_dir) as cache:
        cache.scan_repo(repo)
        cache.download_quant(repo, quant)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    main()
