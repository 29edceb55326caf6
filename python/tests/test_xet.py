"""Xet-backed files through the Python package (over the C ABI): fetched natively from the
emulator's Xet storage with no bridge request, and, where that storage answers with
something tabcache does not support, through the bridge with a note that ``take_notes()``
hands over once."""

from __future__ import annotations

from pathlib import Path

import tabagent_model_cache as tmc

from conftest import sha256_of

FILE = "model.safetensors"


def xet_repo(hub, stem: str, seed: int) -> tuple:
    repo = hub.new_repo_id(stem)
    source = hub.write_random(repo, FILE, 3 << 20, seed=seed)
    hub.configure(repo, xet=True)
    return repo, sha256_of(source)


def test_a_xet_file_comes_from_the_xet_storage_with_nothing_to_note(hub, tmp_path):
    repo, sha = xet_repo(hub, "xet-native", 31)
    hub.clear_log()
    with tmc.ModelCache(str(tmp_path / "cache")) as cache:
        path = cache.download_file(repo, FILE)
        assert sha256_of(Path(path)) == sha
        assert cache.take_notes() == []
    log = hub.log()
    assert any(r["listener"] == "cas" and "/xorb/" in r["target"] for r in log), log
    assert not any(r["listener"] == "cdn" for r in log), "the bridge was used"


def test_an_unsupported_answer_falls_back_to_the_bridge_with_one_note(hub, tmp_path):
    repo, sha = xet_repo(hub, "xet-bridge", 32)
    hub.add_fault({"type": "xet_unknown_scheme"}, listener="cas", path_contains="/xorb/")
    with tmc.ModelCache(str(tmp_path / "cache")) as cache:
        path = cache.download_file(repo, FILE)
        assert sha256_of(Path(path)) == sha
        notes = cache.take_notes()
        assert len(notes) == 1 and "bridge" in notes[0] and "scheme" in notes[0], notes
        assert cache.take_notes() == [], "a note is handed over once"
