"""Contender of bench cases 1 and 2: huggingface_hub's hf_hub_download of one file.

Usage: hf_download_file.py REPO FILE CACHE_DIR (HF_ENDPOINT names the hub). Prints the seconds
the download took, measured in-process so that interpreter start-up is not counted.
"""

import sys
import time

from huggingface_hub import hf_hub_download


def main():
    repo, path, cache_dir = sys.argv[1:4]
    t = time.perf_counter()
    hf_hub_download(repo, path, cache_dir=cache_dir)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    main()
