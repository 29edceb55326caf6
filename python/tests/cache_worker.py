"""A separate Python process holding a ModelCache open, driven by the tests over its stdin and
stdout (one JSON object a line), and the client side of it (:class:`Worker`).

As a script: ``python cache_worker.py DB_PATH [OPTIONS_JSON]`` opens ``ModelCache(DB_PATH,
**OPTIONS)``, prints ``{"opened": pid}``, then runs each request line
``{"id": n, "op": name, "args": [...]}`` on a thread of its own (so requests overlap) and
answers ``{"id": n, "ok": result, "started": t0, "ended": t1}`` (``time.time()`` stamps) or
``{"id": n, "error": class name, "message": text}``. ``op`` is a ModelCache method, or:

- ``get_file``: answers ``{"size", "sha256"}`` (or None) instead of the bytes;
- ``read_loop`` (repo, path, sha256): has_file + get_file + file_path over and over until
  ``stop_read_loop``; answers how many rounds ran. A round with a wrong answer fails the loop.
- ``stop_read_loop``.

The process closes the cache and exits at the end of stdin.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


def _serve(db_path: str, options: Dict[str, Any]) -> None:
    import tabagent_model_cache as tmc

    cache = tmc.ModelCache(db_path, **options)
    out_lock = threading.Lock()
    stop_reading = threading.Event()

    def send(message: Dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def read_loop(repo: str, path: str, sha256: str) -> int:
        rounds = 0
        while not stop_reading.is_set():
            if not cache.has_file(repo, path):
                raise AssertionError(f"has_file({path}) turned false in round {rounds}")
            data = cache.get_file(repo, path)
            if data is None or hashlib.sha256(data).hexdigest() != sha256:
                raise AssertionError(f"get_file({path}) returned wrong bytes in round {rounds}")
            if cache.file_path(repo, path) is None:
                raise AssertionError(f"file_path({path}) turned None in round {rounds}")
            rounds += 1
        return rounds

    def run(request: Dict[str, Any]) -> None:
        op, args = request["op"], request.get("args", [])
        started = time.time()
        try:
            if op == "get_file":
                data = cache.get_file(*args)
                result: Any = None if data is None else {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            elif op == "read_loop":
                result = read_loop(*args)
            elif op == "stop_read_loop":
                stop_reading.set()
                result = None
            else:
                result = getattr(cache, op)(*args)
        except BaseException as exc:  # noqa: B902 - reported to the test
            send({"id": request["id"], "error": type(exc).__name__, "message": str(exc)})
            return
        send({"id": request["id"], "ok": result, "started": started, "ended": time.time()})

    send({"opened": os.getpid()})
    threads = []
    for line in sys.stdin:
        if line.strip():
            thread = threading.Thread(target=run, args=(json.loads(line),))
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join()
    cache.close()


class WorkerError(AssertionError):
    pass


class Worker:
    """Client of one cache_worker process."""

    def __init__(self, db_path: Path, timeout: float = 60, **options: Any) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(db_path), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._replies: Dict[int, Dict[str, Any]] = {}
        self._opened: Optional[Dict[str, Any]] = None
        self._done = threading.Condition()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            with self._done:
                if "opened" in message:
                    self._opened = message
                else:
                    self._replies[message["id"]] = message
                self._done.notify_all()
        with self._done:
            self._done.notify_all()

    def _wait_for(self, ready) -> Any:
        deadline = time.monotonic() + self.timeout
        with self._done:
            while True:
                value = ready()
                if value is not None:
                    return value
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise WorkerError(f"worker exited with {self.process.returncode}: {self.process.stderr.read()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerError(f"worker gave no answer in {self.timeout} s")
                self._done.wait(min(left, 0.5))

    def wait_opened(self) -> int:
        """Block until the worker's ModelCache is open; its pid."""
        return self._wait_for(lambda: self._opened)["opened"]

    def send(self, op: str, *args: Any) -> int:
        """Start ``op`` in the worker without waiting; the request id for :meth:`reply`."""
        self._next_id += 1
        self.process.stdin.write(json.dumps({"id": self._next_id, "op": op, "args": list(args)}) + "\n")
        self.process.stdin.flush()
        return self._next_id

    def reply(self, request_id: int) -> Dict[str, Any]:
        """The worker's whole answer to ``request_id`` (raises if it failed)."""
        message = self._wait_for(lambda: self._replies.pop(request_id, None))
        if "error" in message:
            raise WorkerError(f"{message['error']}: {message['message']}")
        return message

    def call(self, op: str, *args: Any) -> Any:
        return self.reply(self.send(op, *args))["ok"]

    def close(self) -> None:
        """End stdin (the worker closes its cache and exits) and wait."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise WorkerError("worker did not exit") from None
        assert code == 0, f"worker exited with {code}: {self.process.stderr.read()}"

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    _serve(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
