"""Contender of bench case 3: huggingface_hub's snapshot_download of one variant.

Usage: hf_snapshot.py REPO CACHE_DIR ALLOW_PATTERNS_JSON (HF_ENDPOINT names the hub). The
allow-patterns pick the variant's files, as a huggingface_hub user would. Prints the seconds
the download took.
"""

import json
import sys
import time

from huggingface_hub import snapshot_download


def main():
    repo, cache_dir, allow = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    t = time.perf_counter()
    snapshot_download(repo, cache_dir=cache_dir, allow_patterns=allow)
    print(time.perf_counter() - t)


if __name__ == "__main__":
    main()
