"""Cancellation from Python in every phase of a call (the phases of tests/common/phases.rs):
Ctrl-C (SIGINT) sent to a real Python process blocked in a ModelCache method raises
KeyboardInterrupt there within a second, and ``task.cancel()`` on the ``*_async`` methods
raises CancelledError within a second; afterwards the same call succeeds, resuming what the
cancelled one made durable."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import tabagent_model_cache as tmc

from conftest import cli_binary

MiB = 1 << 20
BIG, BIG_SIZE = "big.bin", 8 * MiB
UNKNOWN, UNKNOWN_SIZE = "unknown.bin", 2 * MiB
QUANT = "Q4_K_M"
SHARDS = [f"model-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
SHARD_SIZE = 5 * MiB
LIMIT = 1.0
FOREVER = 60
HANG = {"type": "hang", "seconds": FOREVER}
WORKER = Path(__file__).with_name("interrupt_worker.py")
OPTIONS: Dict[str, Any] = dict(
    parallel_files=1, connections=4, range_size=1 << 20, parallel_threshold=4 << 20, read_timeout=30, retry_base_delay=0.005
)


def gets(log: List[Dict[str, Any]], name: str) -> int:
    return sum(1 for r in log if r["method"] == "GET" and name in r["target"])


class Phase:
    """How to get a call stuck in one phase, and how to tell it got there."""

    def __init__(
        self,
        call: str,
        arrange: Callable[[Any, str], None],
        reached: Callable[[List[Dict[str, Any]]], bool],
        settle: float = 0.3,
        resumes: bool = False,
    ) -> None:
        self.call = call  # "scan", "file:<path>" or "quant:<key>"
        self.arrange = arrange
        self.reached = reached
        self.settle = settle
        self.resumes = resumes

    @property
    def method(self) -> str:
        return self.call.split(":")[0]

    @property
    def arg(self) -> Optional[str]:
        return self.call.split(":", 1)[1] if ":" in self.call else None

    def call_bytes(self) -> int:
        return {"scan": 0, "file": BIG_SIZE if self.arg == BIG else UNKNOWN_SIZE, "quant": 3 * SHARD_SIZE}[self.method]


PHASES = {
    "model_info": Phase(
        "scan",
        lambda hub, repo: hub.add_fault(HANG, path_contains=f"/api/models/{repo}/revision/"),
        lambda log: any("/revision/" in r["target"] for r in log),
    ),
    "tree_pages": Phase(
        "scan",
        lambda hub, repo: (hub.settings(page_size=2), hub.add_fault(HANG, path_contains="cursor=4")),
        lambda log: any("cursor=4" in r["target"] for r in log),
    ),
    "resolve": Phase(
        f"file:{BIG}",
        lambda hub, repo: hub.add_fault(HANG, path_contains="/resolve/", method="HEAD"),
        lambda log: any(r["method"] == "HEAD" for r in log),
    ),
    "retry_wait": Phase(
        f"file:{BIG}",
        lambda hub, repo: hub.add_fault(
            {"type": "status", "status": 429, "retry_after": 30, "ratelimit_reset": 30}, path_contains="/resolve/", method="HEAD"
        ),
        lambda log: any(r["method"] == "HEAD" and r["status"] == 429 for r in log),
    ),
    "stalled_body": Phase(
        f"file:{BIG}",
        lambda hub, repo: hub.add_fault({"type": "stall", "bytes": 100_000, "seconds": FOREVER}, path_contains=BIG, method="GET"),
        lambda log: gets(log, BIG) > 0,
    ),
    "silent_server": Phase(
        f"file:{BIG}",
        lambda hub, repo: hub.add_fault(HANG, path_contains=BIG, method="GET"),
        lambda log: gets(log, BIG) > 0,
    ),
    "unknown_size": Phase(
        f"file:{UNKNOWN}",
        lambda hub, repo: (
            hub.add_fault({"type": "no_size"}, path_contains=UNKNOWN),
            hub.add_fault({"type": "rate_limit", "bytes_per_sec": 256 << 10}, path_contains=UNKNOWN, method="GET"),
        ),
        lambda log: gets(log, UNKNOWN) > 0,
    ),
    "queued_files": Phase(
        f"quant:{QUANT}",
        lambda hub, repo: hub.add_fault({"type": "rate_limit", "bytes_per_sec": 2 << 20}, path_contains=".gguf", method="GET"),
        lambda log: gets(log, SHARDS[0]) > 0,
        settle=0.9,
        resumes=True,
    ),
    "other_process": Phase(
        f"file:{BIG}",
        lambda hub, repo: hub.add_fault({"type": "rate_limit", "bytes_per_sec": 4 << 20}, path_contains=BIG, method="GET"),
        lambda log: True,
        resumes=True,
    ),
}


class Stage:
    """A fresh repo and cache arranged for one phase; the other process, if the phase has one."""

    def __init__(self, hub: Any, tmp_path: Path, name: str) -> None:
        self.hub, self.phase, self.name = hub, PHASES[name], name
        self.repo = hub.new_repo_id("cancel")
        self.db = str(tmp_path / "cache")
        hub.write(self.repo, "config.json", b"{}")
        for i in range(10):
            hub.write(self.repo, f"notes/n{i}.txt", b"note")
        if self.phase.method == "quant":
            for i, shard in enumerate(SHARDS):
                hub.write_random(self.repo, shard, SHARD_SIZE, seed=60 + i)
        elif self.phase.arg == UNKNOWN:
            hub.write_random(self.repo, UNKNOWN, UNKNOWN_SIZE, seed=51)
        elif self.phase.arg == BIG:
            hub.write_random(self.repo, BIG, BIG_SIZE, seed=52)
        hub.clear_log()
        self.phase.arrange(hub, self.repo)
        self.other: Optional[subprocess.Popen] = None
        if name == "other_process":
            self.other = subprocess.Popen(
                [str(cli_binary()), "--cache", self.db, "--endpoint", hub.url, "--token", "", "--quiet", "download", self.repo, "--file", BIG],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.wait_for(lambda log: gets(log, BIG) > 0, "the other process to fetch")

    def wait_for(self, condition: Callable[[List[Dict[str, Any]]], bool], what: str, ended: Callable[[], bool] = lambda: False) -> None:
        deadline = time.monotonic() + 20
        while not condition(self.hub.log()):
            assert not ended(), f"{self.name}: the call ended before {what}"
            assert time.monotonic() < deadline, f"{self.name}: gave up waiting for {what}"
            time.sleep(0.005)

    def wait_until_reached(self, ended: Callable[[], bool]) -> None:
        self.wait_for(self.phase.reached, "the phase", ended)
        time.sleep(self.phase.settle)
        assert not ended(), f"{self.name}: the call ended in the phase by itself"

    def call_again(self) -> None:
        """Lift the faults and make the call again; it must succeed (and resume)."""
        if self.other is not None:
            assert self.other.wait(timeout=30) == 0
            self.other = None
        self.hub.clear_faults()
        self.hub.settings(page_size=1000)
        self.hub.clear_log()
        with tmc.ModelCache(self.db, **OPTIONS) as cache:
            method, arg = self.phase.method, self.phase.arg
            if method == "scan":
                assert cache.scan_repo(self.repo)["repo_id"] == self.repo
            elif method == "file":
                cache.download_file(self.repo, arg)
                assert cache.has_file(self.repo, arg)
            else:
                cache.download_quant(self.repo, arg)
                assert cache.get_manifest(self.repo)["quants"][QUANT]["status"] == "downloaded"
        if self.phase.resumes:
            fetched = self.hub.cdn_get_bytes()
            assert fetched < self.phase.call_bytes(), f"{self.name}: fetched {fetched} again: nothing was resumed"

    def close(self) -> None:
        if self.other is not None:
            self.other.kill()
            self.other.wait()
        self.hub.clear_faults()
        self.hub.settings(page_size=1000)


@pytest.fixture
def stage_for(hub: Any, tmp_path: Path):
    stages: List[Stage] = []

    def make(name: str) -> Stage:
        stages.append(Stage(hub, tmp_path, name))
        return stages[-1]

    yield make
    for stage in stages:
        stage.close()


def _line(process: subprocess.Popen, timeout: float) -> Optional[str]:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline().strip() if ready else None


@pytest.mark.parametrize("name", list(PHASES))
def test_ctrl_c_raises_keyboard_interrupt_within_a_second(stage_for: Any, name: str) -> None:
    stage = stage_for(name)
    args = [sys.executable, str(WORKER), stage.db, stage.phase.method, stage.repo]
    if stage.phase.arg:
        args.append(stage.phase.arg)
    child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _line(child, 30) == "calling"
        stage.wait_until_reached(lambda: child.poll() is not None)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        said = _line(child, 5)
        took = time.monotonic() - sent
        assert said == "KeyboardInterrupt", f"{name}: {said!r}; stderr: {child.stderr.read() if child.poll() is not None else ''}"
        assert took < LIMIT, f"{name}: KeyboardInterrupt came {took:.2f} s after Ctrl-C"
        assert child.wait(timeout=10) == 0
        stderr = child.stderr.read()
        # Raised in the caller, never printed and swallowed inside the callback.
        assert "Exception ignored" not in stderr, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stage.call_again()


@pytest.mark.parametrize("name", list(PHASES))
def test_task_cancel_stops_the_async_call_within_a_second(stage_for: Any, name: str) -> None:
    stage = stage_for(name)
    phase = stage.phase

    async def run() -> float:
        with tmc.ModelCache(stage.db, **OPTIONS) as cache:
            if phase.method == "scan":
                call = cache.scan_repo_async(stage.repo)
            elif phase.method == "file":
                call = cache.download_file_async(stage.repo, phase.arg)
            else:
                call = cache.download_quant_async(stage.repo, phase.arg)
            task = asyncio.ensure_future(call)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, stage.wait_until_reached, task.done)
            sent = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - sent

    took = asyncio.run(run())
    assert took < LIMIT, f"{name}: the task ended {took:.2f} s after task.cancel()"
    stage.call_again()


def _zeros_hf_cache(root: Path, size: int) -> None:
    """A huggingface_hub cache with one sparse file of ``size`` zero bytes (its blob named by
    a hash it does not have: the import hashes all of it before skipping it)."""
    repo = root / "models--org--zeros"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = repo / "blobs" / ("ab" * 32)
    (repo / "snapshots" / commit).mkdir(parents=True)
    blob.parent.mkdir(parents=True)
    with open(blob, "wb") as f:
        f.truncate(size)
    os.symlink(f"../../blobs/{blob.name}", repo / "snapshots" / commit / "zeros.bin")


def test_ctrl_c_stops_import_hf_cache_mid_hash(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    _zeros_hf_cache(hf, 1 << 30)
    db = str(tmp_path / "cache")
    child = subprocess.Popen(
        [sys.executable, str(WORKER), db, "import", "-", str(hf)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert _line(child, 30) == "calling"
        time.sleep(0.1)  # hashing 1 GiB takes seconds here, half a second with SHA extensions
        assert child.poll() is None, "the import ended before Ctrl-C"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        said = _line(child, 5)
        took = time.monotonic() - sent
        assert said == "KeyboardInterrupt", said
        assert took < LIMIT, f"KeyboardInterrupt came {took:.2f} s after Ctrl-C"
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The cache is left as it was: nothing half-imported.
    with tmc.ModelCache(db) as cache:
        assert cache.get_stats()["total_files"] == 0
