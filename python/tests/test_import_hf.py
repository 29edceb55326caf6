"""``ModelCache.import_hf_cache``: adopting a cache that huggingface_hub itself filled (from the
emulator), after which downloading the same files transfers nothing from the CDN; the default
directory from ``HF_HUB_CACHE``; and a clear error for a directory that does not exist."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import tabagent_model_cache as tmc
from conftest import Hub, sha256_of

Q4 = "tiny-Q4_K_M.gguf"
Q8 = "tiny-Q8_0.gguf"
CONFIG = b'{"model_type": "llama"}'
README = b"# tiny gguf\n"


def tree_digest(root: Path) -> Dict[str, str]:
    """Every entry under ``root``: links by target, files by content hash, for "unchanged"
    checks."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            key = str(path.relative_to(root))
            out[key] = "-> " + os.readlink(path) if path.is_symlink() else sha256_of(path)
    return out


def fill_with_huggingface_hub(hub: Hub, repo: str, hf_cache: Path) -> None:
    """What a user of huggingface_hub has on disk: the Q4_K_M weights and config.json by
    snapshot_download, README.md by hf_hub_download."""
    script = (
        "from huggingface_hub import hf_hub_download, snapshot_download\n"
        f"snapshot_download({repo!r}, allow_patterns=[{Q4!r}, 'config.json'])\n"
        f"hf_hub_download({repo!r}, 'README.md')\n"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"huggingface_hub failed:\n{result.stderr}"


@pytest.fixture
def gguf_repo(hub: Hub) -> str:
    repo = hub.new_repo_id("import-gguf")
    hub.write_random(repo, Q4, 300_000, seed=31)
    hub.write_random(repo, Q8, 200_000, seed=32)
    hub.write(repo, "config.json", CONFIG)
    hub.write(repo, "README.md", README)
    return repo


def test_import_of_a_huggingface_hub_cache_then_downloads_transfer_nothing(hub, gguf_repo, tmp_path):
    repo = gguf_repo
    hf_cache = tmp_path / "hf-hub"
    hub.clear_log()
    fill_with_huggingface_hub(hub, repo, hf_cache)
    assert hub.cdn_get_bytes() >= 300_000, "huggingface_hub fetched the Q4_K_M weights from the CDN"
    hf_before = tree_digest(hf_cache)

    with tmc.ModelCache(tmp_path / "db") as cache:
        report = cache.import_hf_cache(hf_cache)
        assert report["hf_cache"] == str(hf_cache)
        assert report["repos"] == [repo]
        assert report["files_imported"] == 3, report
        assert report["bytes_imported"] == 300_000 + len(CONFIG) + len(README)
        assert report["blobs_linked"] + report["blobs_copied"] == 3
        assert report["files_already_cached"] == 0
        assert report["refs_imported"] >= 1, "refs/main"
        assert report["skipped"] == []
        assert tree_digest(hf_cache) == hf_before, "the huggingface_hub cache was modified"
        for path in (Q4, "config.json", "README.md"):
            assert cache.has_file(repo, path), path
        assert not cache.has_file(repo, Q8)

        # The same files again: metadata only, no file byte from the CDN and no file fetch.
        hub.clear_log()
        cache.download_quant(repo, "Q4_K_M")
        cache.download_file(repo, "README.md")
        cache.download_file(repo, "config.json")
        assert hub.cdn_get_bytes() == 0, "the downloads transferred file bytes from the CDN"
        fetched = [r["target"] for r in hub.log() if r["method"] == "GET" and "/resolve/" in r["target"]]
        assert fetched == [], f"files fetched again: {fetched}"
        with cache.open(repo, Q4) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == sha256_of(hub.root / repo / Q4)
        assert cache.get_file(repo, "README.md") == README

        # A second import finds everything cached; with no argument, HF_HUB_CACHE decides.
        again = cache.import_hf_cache(str(hf_cache))
        assert (again["files_imported"], again["files_already_cached"]) == (0, 3), again
    assert tree_digest(hf_cache) == hf_before


def test_default_directory_is_hf_hub_cache(hub, gguf_repo, tmp_path, monkeypatch):
    hf_cache = tmp_path / "hf-default"
    fill_with_huggingface_hub(hub, gguf_repo, hf_cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    with tmc.ModelCache(tmp_path / "db", offline=True) as cache:
        report = cache.import_hf_cache()
        assert report["hf_cache"] == str(hf_cache)
        assert report["files_imported"] == 3, report
        # Offline: the imported files are served without the network.
        assert cache.file_path(gguf_repo, Q4) is not None
        cache.download_file(gguf_repo, "config.json")


def test_a_missing_directory_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-hf-cache-here"
    with tmc.ModelCache(tmp_path / "db") as cache:
        with pytest.raises(tmc.EntryNotFoundError) as info:
            cache.import_hf_cache(missing)
        assert str(missing) in str(info.value)
        assert "huggingface_hub" in str(info.value)
        assert isinstance(info.value, tmc.ModelCacheError)
        with pytest.raises(TypeError):
            cache.import_hf_cache(42)  # type: ignore[arg-type]
    with pytest.raises(tmc.InvalidArgumentError, match="closed"):
        cache.import_hf_cache(missing)
