"""Hostile names through the Python API: malformed repo ids, file paths and revisions (and
values that are not strings at all) each raise a clear error before any request is made, and
nothing is written outside the cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tabagent_model_cache as tmc

BAD_REPO_IDS = [
    "", " ", "/", "a/", "/a", "a//b", "a/b/c", "..", "../x", "x/..", "a/../b", ".a/b", "a/.b", "-a/b",
    "a/b.", "a--b/c", "a..b/c", "a b/c", "a\tb/c", "a\nb/c", "a\x00b/c", "a\\b", "C:/x", "a:b/c", "a?b/c",
    "a/b#c", "%2e%2e/x", "a/b*", "a/<b>", "a/b|c", "ä/b", "a/\u202eb", "\ufeffa/b", "a/b\r", "\x7fa/b",
    "x" * 97, "o" * 50 + "/" + "n" * 50,
]
BAD_PATHS = [
    "", "/", ".", "..", "../x", "../../x", "../../../../../../etc/passwd", "a/../../x", "a/./b", "./a",
    "a/.", "a/..", "a//b", "a/", "/a", "/etc/passwd", "//server/share/x", "\\\\server\\share\\x", "a\\b",
    "..\\..\\x", "C:/x", "C:\\x", "c:x", "a/C:/b", "a\x00b", "a\nb", "a\rb", "a\tb", "\x1b[31m", "a/\x7f",
    "a/" * 3000, "x" * 5000,
] + ["../" * depth + "x" for depth in range(1, 11)]
BAD_REVISIONS = ["", " ", "..", "../main", "main/..", "a/../b", "/main", "main/", "a\\b", "ma in", "main\n", "main\x00", "r" * 257]
NOT_STRINGS = [None, 3, 2.5, b"org/name", ["org/name"], object()]


def listing(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_malformed_names_raise_before_any_request(hub, tmp_path):
    repo = hub.new_repo_id("fine")
    hub.write(repo, "config.json", b"{}")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    cache = tmc.ModelCache(str(sandbox / "cache"))
    hub.clear_log()
    refused = 0

    def refuse(call, *args, **kwargs):
        nonlocal refused
        with pytest.raises((tmc.ModelCacheError, TypeError, ValueError)) as info:
            call(*args, **kwargs)
        assert str(info.value), f"{call.__name__}{args!r}: an error without a message"
        refused += 1

    for bad in BAD_REPO_IDS + NOT_STRINGS:
        refuse(cache.scan_repo, bad)
        refuse(cache.get_manifest, bad)
        refuse(cache.download_file, bad, "config.json")
        refuse(cache.download_quant, bad, "fp32")
        refuse(cache.has_file, bad, "config.json")
        refuse(cache.get_file, bad, "config.json")
        refuse(cache.file_path, bad, "config.json")
        refuse(cache.delete_model, bad)
    for bad in BAD_PATHS + NOT_STRINGS:
        refuse(cache.download_file, repo, bad)
        refuse(cache.has_file, repo, bad)
        refuse(cache.get_file, repo, bad)
        refuse(cache.file_path, repo, bad)
        refuse(cache.open, repo, bad)
    for bad in BAD_REVISIONS:
        refuse(cache.scan_repo, repo, revision=bad)
        refuse(cache.download_file, repo, "config.json", revision=bad)
        refuse(cache.has_file, repo, "config.json", revision=bad)
    # The library's own check (not just Python's type check) names the problem.
    with pytest.raises(tmc.InvalidArgumentError, match="invalid file path"):
        cache.has_file(repo, "../../etc/passwd")
    print(f"hostile names through Python: {refused} refused")
    assert refused >= 200
    assert hub.log() == [], "a malformed name reached the network"
    assert listing(sandbox) == {"cache"} | {"cache/" + p for p in listing(sandbox / "cache")}
    assert not Path("/etc/passwd.tabcache").exists()
    # The cache still works.
    cache.download_file(repo, "config.json")
    assert cache.get_file(repo, "config.json") == b"{}"
    cache.close()
