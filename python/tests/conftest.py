"""Test fixtures: one hub emulator process for the session (target/debug/hub-emulator, started
with a repo folder the tests fill), an isolated Hub environment, and helpers that write repos
and drive the emulator's /_emulator/ control endpoints."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def emulator_binary() -> Path:
    binary = Path(os.environ.get("TABCACHE_EMULATOR", REPO_ROOT / "target" / "debug" / "hub-emulator"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with 'cargo build -p hub-emulator' (scripts/test-python does)")
    return binary


def cli_binary() -> Path:
    """The `tabcache` command line the Rust build made (scripts/test-python builds it)."""
    binary = Path(os.environ.get("TABCACHE_CLI", REPO_ROOT / "target" / "debug" / "tabcache"))
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build it with 'cargo build --bin tabcache' (scripts/test-python does)")
    return binary


class Hub:
    """A running hub emulator and the folder its repos live in."""

    def __init__(self, root: Path, url: str, process: subprocess.Popen) -> None:
        self.root = root
        self.url = url
        self.process = process
        self._counter = 0

    # -- repos --------------------------------------------------------------------------
    def new_repo_id(self, stem: str) -> str:
        """A repo id no other test uses."""
        self._counter += 1
        return f"test-org/{stem}-{self._counter}"

    def write(self, repo_id: str, path: str, data: bytes) -> Path:
        target = self.root / repo_id / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def write_random(self, repo_id: str, path: str, size: int, seed: int = 0) -> Path:
        """A file of ``size`` pseudo-random bytes, written in chunks (never whole in memory)."""
        target = self.root / repo_id / path
        target.parent.mkdir(parents=True, exist_ok=True)
        generator = random.Random(seed)
        with open(target, "wb") as out:
            left = size
            while left:
                n = min(left, 1 << 20)
                out.write(generator.randbytes(n))
                left -= n
        return target

    def configure(self, repo_id: str, **config: Any) -> None:
        self.write(repo_id, ".emulator.json", json.dumps(config).encode())

    # -- control ------------------------------------------------------------------------
    def _control(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + "/_emulator/" + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def add_fault(self, kind: Dict[str, Any], **match: Any) -> int:
        return self._control("POST", "faults", {"kind": kind, **match})["id"]

    def settings(self, **settings: Any) -> None:
        """Change the emulator's settings (``page_size``, ``tree_redirect``, ``gzip_json``)."""
        self._control("POST", "settings", settings)

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def clear_log(self) -> None:
        self._control("POST", "log/clear")

    def cdn_get_bytes(self) -> int:
        """Body bytes of the CDN GETs in the log (counted once each response ended)."""
        return sum(r["body_bytes"] for r in self.log() if r["listener"] == "cdn" and r["method"] == "GET")

    def stats(self) -> Dict[str, int]:
        return self._control("GET", "stats")

    def log(self) -> Any:
        return self._control("GET", "log")


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub")
    process = subprocess.Popen(
        [str(emulator_binary()), "--root", str(root), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        pytest.fail(f"hub-emulator did not print its URL (got {url!r})")
    try:
        yield Hub(root, url, process)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(autouse=True)
def hub_environment(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test talks to the emulator through HF_ENDPOINT (so seed code runs unchanged),
    with no token from the developer's machine, online, and no faults left by another test."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    hub.clear_faults()
    yield
    hub.clear_faults()


PHI_FILES = {
    "config.json": b'{"model_type": "phi3"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "onnx/model.onnx": 300_000,
    "onnx/model_fp16.onnx": 150_000,
    "onnx/model_q4f16.onnx": 80_000,
    "onnx/model_q4f16.onnx_data": 1_200_000,
}


@pytest.fixture
def phi_repo(hub: Hub) -> str:
    """A stand-in for onnx-community/Phi-3.5-mini-instruct-onnx-web: transformers.js layout,
    three dtypes, one with external data, text-generation."""
    repo_id = hub.new_repo_id("Phi-3.5-mini-instruct-onnx-web")
    for seed, (path, content) in enumerate(PHI_FILES.items()):
        if isinstance(content, bytes):
            hub.write(repo_id, path, content)
        else:
            hub.write_random(repo_id, path, content, seed)
    hub.configure(repo_id, pipeline_tag="text-generation")
    return repo_id


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vm_rss_bytes() -> int:
    """This process's resident set size, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def check_catalog(cache_dir: Path) -> Dict[str, int]:
    """The store's invariants, checked from outside through Python's sqlite3 (read-only): an
    intact SQLite file; every file record's blob has a row, exists and hashes to its name;
    every blob file has a row; reference counts equal the file records naming each blob; every
    file record's view link leads to its blob. Returns counts for the caller's own checks."""
    cache_dir = Path(cache_dir)
    connection = sqlite3.connect(f"file:{cache_dir / 'catalog'}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        blobs = {sha: (size, refs) for sha, size, refs in connection.execute("SELECT sha256, size, refs FROM blobs")}
        files = connection.execute("SELECT repo_id, commit_sha, path, sha256, size FROM files").fetchall()
    finally:
        connection.close()
    on_disk = {p.name for p in (cache_dir / "blobs").iterdir()}
    assert on_disk <= set(blobs), f"blob files with no catalog row: {sorted(on_disk - set(blobs))}"
    named = {}
    for repo_id, commit, path, sha, size in files:
        assert sha in blobs, f"{repo_id}:{path} names blob {sha}, which has no row"
        assert sha in on_disk, f"{repo_id}:{path} names blob {sha}, which is not on disk"
        assert blobs[sha][0] == size, f"{repo_id}:{path}: recorded size {size}, blob row {blobs[sha][0]}"
        named[sha] = named.get(sha, 0) + 1
        view = cache_dir / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit / path
        assert view.resolve() == (cache_dir / "blobs" / sha).resolve(), f"view link {view} does not lead to its blob"
    for sha in on_disk:
        assert sha256_of(cache_dir / "blobs" / sha) == sha, f"blob {sha} does not hash to its name"
    for sha, (_, refs) in blobs.items():
        assert refs == named.get(sha, 0), f"blob {sha}: refs {refs}, {named.get(sha, 0)} file record(s) name it"
    return {"files": len(files), "blobs": len(blobs)}
