"""The seed README's Quick Start, every API Reference example and the native_host integration,
run as written (only repo names changed) against the hub emulator, checking the documented
shapes."""

from __future__ import annotations

import os
import time

import pytest

import tabagent_model_cache

from conftest import PHI_FILES

QUANT_FIELDS = {"status", "files", "total_size", "downloaded_size", "last_updated"}
STATUSES = {"available", "downloading", "downloaded", "failed"}


def check_manifest_shape(manifest, repo_id):
    assert isinstance(manifest, dict)
    assert manifest["repo_id"] == repo_id
    assert manifest["task"] is None or isinstance(manifest["task"], str)
    assert isinstance(manifest["created_at"], int) and isinstance(manifest["updated_at"], int)
    assert manifest["updated_at"] >= manifest["created_at"] > 1_600_000_000
    assert isinstance(manifest["quants"], dict)
    for key, info in manifest["quants"].items():
        assert isinstance(key, str)
        assert QUANT_FIELDS <= set(info), info
        assert info["status"] in STATUSES
        assert isinstance(info["files"], list) and all(isinstance(f, str) for f in info["files"])
        assert info["total_size"] is None or isinstance(info["total_size"], int)
        assert info["downloaded_size"] is None or isinstance(info["downloaded_size"], int)
        assert isinstance(info["last_updated"], int)


def test_quick_start(phi_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    repo = phi_repo
    # --- the Quick Start, verbatim but for the repo name ---
    cache = tabagent_model_cache.ModelCache("./model_cache_db")

    manifest = cache.scan_repo(repo)
    print(f"Found {len(manifest['quants'])} quantizations")

    def progress_callback(loaded, total):
        percent = (loaded / total * 100) if total > 0 else 0
        print(f"Progress: {percent:.1f}%", end="\r")

    cache.download_quant(repo, "q4f16", progress_callback)

    has_model = cache.has_file(repo, "onnx/model_q4f16.onnx")

    if has_model:
        file_data = cache.get_file(repo, "onnx/model_q4f16.onnx")
        print(f"File size: {len(file_data)} bytes")

    stats = cache.get_stats()
    print(f"Total repos: {stats['total_repos']}")
    print(f"Total size: {stats['total_size'] / 1024 / 1024:.1f} MB")
    # --- what it must have produced ---
    out = capsys.readouterr().out
    assert "Found 3 quantizations" in out
    assert "Progress: 100.0%" in out
    assert has_model is True
    assert f"File size: {PHI_FILES['onnx/model_q4f16.onnx']} bytes" in out
    assert "Total repos: 1" in out
    variant_bytes = sum(PHI_FILES[p] if isinstance(PHI_FILES[p], int) else len(PHI_FILES[p]) for p in ("config.json", "tokenizer.json", "onnx/model_q4f16.onnx", "onnx/model_q4f16.onnx_data"))
    assert f"Total size: {variant_bytes / 1024 / 1024:.1f} MB" in out
    assert stats["total_size"] == variant_bytes
    assert (tmp_path / "model_cache_db").is_dir()
    cache.close()


def test_init_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = tabagent_model_cache.ModelCache("./cache_db")
    assert isinstance(cache, tabagent_model_cache.ModelCache)
    assert (tmp_path / "cache_db").is_dir()
    cache.close()


def test_scan_repo_example(phi_repo, tmp_path, capsys):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    manifest = cache.scan_repo(phi_repo)
    for quant, info in manifest["quants"].items():
        print(f"{quant}: {info['status']}")
    check_manifest_shape(manifest, phi_repo)
    assert manifest["task"] == "text-generation"
    assert sorted(capsys.readouterr().out.splitlines()) == ["fp16: available", "fp32: available", "q4f16: available"]
    q4f16 = manifest["quants"]["q4f16"]
    assert set(q4f16["files"]) == {"config.json", "tokenizer.json", "onnx/model_q4f16.onnx", "onnx/model_q4f16.onnx_data"}
    assert q4f16["total_size"] == len(PHI_FILES["config.json"]) + len(PHI_FILES["tokenizer.json"]) + 80_000 + 1_200_000
    cache.close()


def test_get_manifest_none_then_dict(phi_repo, tmp_path):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    assert cache.get_manifest(phi_repo) is None
    scanned = cache.scan_repo(phi_repo)
    stored = cache.get_manifest(phi_repo)
    check_manifest_shape(stored, phi_repo)
    assert stored["quants"].keys() == scanned["quants"].keys()
    cache.close()


def test_download_file_example(phi_repo, tmp_path, capsys):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))

    def on_progress(loaded, total):
        print(f"{loaded}/{total} bytes")

    cache.download_file(phi_repo, "onnx/model_q4f16.onnx", on_progress)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "80000/80000 bytes"
    loaded = [int(line.split("/")[0]) for line in lines]
    assert loaded == sorted(loaded)
    assert cache.has_file(phi_repo, "onnx/model_q4f16.onnx")
    cache.close()


def test_download_quant_example_and_status(phi_repo, tmp_path):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    assert cache.download_quant(phi_repo, "q4f16") is None
    manifest = cache.get_manifest(phi_repo)
    check_manifest_shape(manifest, phi_repo)
    info = manifest["quants"]["q4f16"]
    assert info["status"] == "downloaded"
    assert info["downloaded_size"] == info["total_size"]
    for path in info["files"]:
        assert cache.has_file(phi_repo, path), path
    assert manifest["quants"]["fp16"]["status"] == "available"
    cache.close()


def test_get_file_has_file_and_none(phi_repo, hub, tmp_path):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    assert cache.has_file(phi_repo, "config.json") is False
    assert cache.get_file(phi_repo, "config.json") is None
    cache.download_file(phi_repo, "config.json")
    data = cache.get_file(phi_repo, "config.json")
    assert isinstance(data, bytes)
    assert data == (hub.root / phi_repo / "config.json").read_bytes()
    assert cache.has_file(phi_repo, "config.json") is True
    cache.close()


def test_get_file_reads_the_blob_when_the_view_entry_is_gone(phi_repo, tmp_path):
    # get_file reads the file the library points at; a snapshot-view entry deleted by hand
    # (the view is a convenience layer) must not make a cached file unreadable.
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    cache.download_file(phi_repo, "config.json")
    want = cache.get_file(phi_repo, "config.json")
    view_entry = cache.file_path(phi_repo, "config.json")
    os.unlink(view_entry)
    assert cache.get_file(phi_repo, "config.json") == want
    cache.close()


def test_delete_model_and_stats(phi_repo, tmp_path):
    cache = tabagent_model_cache.ModelCache(str(tmp_path / "cache_db"))
    stats = cache.get_stats()
    assert isinstance(stats, dict)
    assert stats["total_repos"] == 0 and stats["total_size"] == 0
    cache.download_file(phi_repo, "onnx/model_fp16.onnx")
    stats = cache.get_stats()
    assert stats["total_repos"] == 1
    assert stats["total_size"] == 150_000
    assert all(isinstance(v, int) for v in stats.values())
    freed = cache.delete_model(phi_repo)
    assert freed >= 150_000
    assert cache.has_file(phi_repo, "onnx/model_fp16.onnx") is False
    assert cache.get_manifest(phi_repo) is None
    assert cache.get_stats()["total_repos"] == 0
    assert cache.delete_model(phi_repo) == 0  # deleting twice is harmless
    cache.close()


def test_native_host_integration(phi_repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sent = []

    def send_progress_to_ui(loaded, total):
        sent.append((loaded, total))

    loaded_models = []

    def load_model_from_bytes(data):
        loaded_models.append(len(data))

    # --- the seed's native_host.py usage, verbatim ---
    from tabagent_model_cache import ModelCache

    model_cache = ModelCache("./TabAgent/model_cache")

    def handle_load_model_request(repo_id, quant):
        manifest = model_cache.get_manifest(repo_id)
        if not manifest:
            manifest = model_cache.scan_repo(repo_id)

        quant_info = manifest["quants"].get(quant)
        if quant_info["status"] != "downloaded":
            def progress(loaded, total):
                send_progress_to_ui(loaded, total)

            model_cache.download_quant(repo_id, quant, progress)

        model_data = model_cache.get_file(repo_id, f"onnx/model_{quant}.onnx")
        load_model_from_bytes(model_data)

    handle_load_model_request(phi_repo, "fp16")
    assert loaded_models == [150_000]
    assert sent and sent[-1][0] == sent[-1][1] > 150_000
    # A second request finds it downloaded and does not download again.
    sent.clear()
    handle_load_model_request(phi_repo, "fp16")
    assert loaded_models == [150_000, 150_000] and sent == []
    model_cache.close()


def test_progress_callback_is_positional_and_any_callable(phi_repo, tmp_path):
    calls = []

    class Recorder:
        def __call__(self, loaded, total):
            calls.append((loaded, total))

    with tabagent_model_cache.ModelCache(str(tmp_path / "db")) as cache:
        cache.download_file(phi_repo, "onnx/model.onnx", Recorder())
        cache.download_quant(phi_repo, "fp16", lambda loaded, total: calls.append((loaded, total)))
        cache.download_file(phi_repo, "tokenizer.json", progress_callback=None)
    assert (300_000, 300_000) in calls
    assert calls[-1][0] == calls[-1][1]
    with pytest.raises(TypeError):
        tabagent_model_cache.ModelCache(str(tmp_path / "db2")).download_file(phi_repo, "config.json", 42)


def test_revision_keyword(phi_repo, tmp_path):
    with tabagent_model_cache.ModelCache(str(tmp_path / "db")) as cache:
        manifest = cache.scan_repo(phi_repo)
        commit = manifest["commit"]
        assert len(commit) == 40
        path = cache.download_file(phi_repo, "config.json", revision=commit)
        assert cache.has_file(phi_repo, "config.json", revision=commit)
        assert cache.file_path(phi_repo, "config.json", revision=commit) == path
        assert time.time() - manifest["updated_at"] < 3600
