"""One blocking ModelCache call in the main thread of its own process, for the Ctrl-C tests
(test_cancel.py): ``python interrupt_worker.py DB_PATH METHOD REPO [ARG]`` opens the cache with
the transfer settings of the tests, prints ``calling``, makes the call (``scan`` ->
``scan_repo``, ``file`` -> ``download_file``, ``quant`` -> ``download_quant``) and prints
``finished`` (``import`` -> ``import_hf_cache(ARG)``, REPO unused), or ``KeyboardInterrupt`` when SIGINT interrupted it (and exits 0 either way)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    # Python keeps SIGINT ignored when it starts with it ignored (a job started in the
    # background by a non-interactive shell, as CI runners may do), and then there is no
    # KeyboardInterrupt at all. This process stands for an interactive program: Ctrl-C raises.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import tabagent_model_cache as tmc

    db_path, method, repo = sys.argv[1:4]
    arg = sys.argv[4] if len(sys.argv) > 4 else None
    cache = tmc.ModelCache(
        db_path,
        parallel_files=1,
        connections=4,
        range_size=1 << 20,
        parallel_threshold=4 << 20,
        read_timeout=30,
        retry_base_delay=0.005,
    )
    calls = {
        "scan": lambda: cache.scan_repo(repo),
        "file": lambda: cache.download_file(repo, arg),
        "quant": lambda: cache.download_quant(repo, arg),
        "import": lambda: cache.import_hf_cache(arg),
    }
    print("calling", flush=True)
    try:
        calls[method]()
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
        return
    print("finished", flush=True)


if __name__ == "__main__":
    main()
