"""``ModelCache.download_files``: several files of a repo in one call (over
``tc_cache_download_files``), their paths in the order asked, one progress over all of them,
nothing transferred for what is cached, bad arguments refused before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

import tabagent_model_cache as tmc

CONFIG = b'{"model_type": "bert"}'


def test_files_arrive_in_order_with_one_progress_and_are_not_fetched_twice(hub, tmp_path):
    repo = hub.new_repo_id("files")
    weights = hub.write_random(repo, "onnx/model.onnx", 300_000, seed=4)
    hub.write(repo, "config.json", CONFIG)
    calls = []
    with tmc.ModelCache(tmp_path / "db") as cache:
        paths = cache.download_files(repo, ["onnx/model.onnx", "config.json"], lambda loaded, total: calls.append((loaded, total)))
        assert len(paths) == 2
        assert paths[0].endswith("onnx/model.onnx") and paths[1].endswith("config.json")
        assert Path(paths[0]).read_bytes() == weights.read_bytes()
        assert Path(paths[1]).read_bytes() == CONFIG
        total = 300_000 + len(CONFIG)
        assert calls and calls[-1] == (total, total)
        assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:])), calls
        assert cache.has_file(repo, "config.json") and cache.has_file(repo, "onnx/model.onnx")

        hub.clear_log()
        assert cache.download_files(repo, ["config.json", "onnx/model.onnx"]) == [paths[1], paths[0]]
        assert hub.cdn_get_bytes() == 0
        assert cache.download_files(repo, []) == []
        # Any iterable of paths, not only a list.
        assert cache.download_files(repo, (p for p in ["config.json"])) == [paths[1]]


def test_bad_arguments_are_refused_before_any_request(hub, tmp_path):
    repo = hub.new_repo_id("files-bad")
    hub.write(repo, "config.json", CONFIG)
    with tmc.ModelCache(tmp_path / "db") as cache:
        hub.clear_log()
        with pytest.raises(tmc.InvalidArgumentError):
            cache.download_files(repo, ["config.json", "../escape"])
        with pytest.raises(TypeError):
            cache.download_files(repo, "config.json")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            cache.download_files(repo, ["config.json", None])  # type: ignore[list-item]
        assert hub.log() == []
        assert not cache.has_file(repo, "config.json")
        with pytest.raises(tmc.EntryNotFoundError, match="absent.txt"):
            cache.download_files(repo, ["config.json", "absent.txt"])
