"""The disk budget from Python against the hub emulator: a budget of three variants and a
fourth download evicts the least recently used one (not the one just read), pins are never
evicted, a download that cannot fit raises DiskFullError before any CDN byte, ``prune`` with
``dry_run`` lists exactly what ``prune`` then removes, and sizes are read by the library's
parser ("50GB", "20GiB")."""

from __future__ import annotations

import time

import pytest

import tabagent_model_cache as tmc

VARIANTS = ("Q2_K", "Q4_K_M", "Q5_K_M", "Q8_0")
SIZE = 200_000
CONFIG = b'{"model_type": "llama"}'


def weights(quant: str) -> str:
    return f"m-{quant}.gguf"


@pytest.fixture
def budget_repo(hub) -> str:
    """Four GGUF variants of one size and a config.json they share."""
    repo = hub.new_repo_id("budget-gguf")
    for seed, quant in enumerate(VARIANTS):
        hub.write_random(repo, weights(quant), SIZE, seed=100 + seed)
    hub.write(repo, "config.json", CONFIG)
    hub.configure(repo, pipeline_tag="text-generation")
    return repo


def three_downloaded(cache: tmc.ModelCache, repo: str) -> int:
    """Download Q2_K, Q4_K_M and Q5_K_M in that order (so last used in that order) and set a
    budget of exactly what they take; returns it."""
    cache.scan_repo(repo)
    for quant in VARIANTS[:3]:
        cache.download_quant(repo, quant)
        time.sleep(0.01)  # last uses are milliseconds apart at least
    three = cache.get_stats()["disk_bytes"]
    assert three == 3 * SIZE + len(CONFIG)
    report = cache.set_max_size(three)
    assert report["evicted"] == [] and report["dry_run"] is False, report
    return three


def status(cache: tmc.ModelCache, repo: str, quant: str) -> str:
    return cache.get_manifest(repo)["quants"][quant]["status"]


def test_a_fourth_variant_evicts_the_least_recently_used_not_the_one_just_read(budget_repo, tmp_path):
    with tmc.ModelCache(tmp_path / "db") as cache:
        three = three_downloaded(cache, budget_repo)
        # Q2_K is the oldest download, but it is read now: Q4_K_M is the least recently used.
        assert cache.get_file(budget_repo, weights("Q2_K")) is not None
        time.sleep(0.01)
        cache.download_quant(budget_repo, "Q8_0")

        assert status(cache, budget_repo, "Q4_K_M") == "available"
        assert status(cache, budget_repo, "Q8_0") == "downloaded"
        assert not cache.has_file(budget_repo, weights("Q4_K_M"))
        for path in (weights("Q2_K"), weights("Q5_K_M"), weights("Q8_0"), "config.json"):
            assert cache.has_file(budget_repo, path), path
        budget = cache.budget_stats()
        assert budget["max_size"] == three and budget["disk_bytes"] <= three
        assert budget["evictions"]["count"] == 1 and budget["evictions"]["bytes_freed"] == SIZE
        logged = budget["evictions"]["recent"][-1]
        assert (logged["repo_id"], logged["quant"], logged["files"]) == (budget_repo, "Q4_K_M", [weights("Q4_K_M")])
        # The seed's counters stay integers; the budget is beside them, not in them.
        stats = cache.get_stats()
        assert "max_size" not in stats and "evictions" not in stats
        assert all(isinstance(v, int) for v in stats.values()), stats


def test_a_pinned_variant_or_repo_is_never_evicted(budget_repo, tmp_path, hub):
    with tmc.ModelCache(tmp_path / "db") as cache:
        three = three_downloaded(cache, budget_repo)
        assert cache.pin(budget_repo, "Q2_K") is True
        assert cache.pin(budget_repo, "Q2_K") is False
        assert cache.pins() == [{"repo_id": budget_repo, "quant": "Q2_K"}]
        cache.download_quant(budget_repo, "Q8_0")
        assert cache.has_file(budget_repo, weights("Q2_K")), "pinned, though least recently used"
        assert not cache.has_file(budget_repo, weights("Q4_K_M")), "the next one went instead"

        # The whole repo pinned: a lower budget evicts nothing, and a download that needs room
        # fails before a byte is transferred.
        assert cache.pin(budget_repo) is True
        assert cache.set_max_size(three - SIZE)["evicted"] == []
        hub.clear_log()
        with pytest.raises(tmc.DiskFullError, match="budget"):
            cache.download_quant(budget_repo, "Q4_K_M")
        assert hub.cdn_get_bytes() == 0
        for quant in ("Q2_K", "Q5_K_M", "Q8_0"):
            assert cache.has_file(budget_repo, weights(quant)), quant

        assert cache.unpin(budget_repo) is True
        assert cache.unpin(budget_repo) is False
        assert cache.unpin(budget_repo, "Q2_K") is True
        assert cache.pins() == []
        with pytest.raises(tmc.InvalidArgumentError, match="empty"):
            cache.pin(budget_repo, "")
        with pytest.raises(tmc.InvalidArgumentError):
            cache.pin("not a repo id!")


def test_a_download_over_the_budget_fails_before_any_cdn_byte(budget_repo, tmp_path, hub):
    with tmc.ModelCache(tmp_path / "db", max_size=SIZE // 2) as cache:
        cache.scan_repo(budget_repo)
        hub.clear_log()
        with pytest.raises(tmc.DiskFullError) as raised:
            cache.download_quant(budget_repo, "Q4_K_M")
        message = str(raised.value)
        assert "needs" in message and "budget" in message, message
        with pytest.raises(tmc.DiskFullError):
            cache.download_file(budget_repo, weights("Q8_0"))
        assert hub.cdn_get_bytes() == 0
        assert not cache.has_file(budget_repo, weights("Q4_K_M"))
        assert cache.budget_stats()["evictions"]["count"] == 0
        # A DiskFullError is an OSError, as a full disk's is.
        assert issubclass(tmc.DiskFullError, OSError)


def test_prune_dry_run_lists_exactly_what_prune_removes(budget_repo, tmp_path):
    with tmc.ModelCache(tmp_path / "db") as cache:
        three = three_downloaded(cache, budget_repo)
        assert cache.get_file(budget_repo, weights("Q2_K")) is not None
        # Nothing was unused for a day; nothing is over the budget.
        assert cache.prune(older_than_days=1, dry_run=True)["evicted"] == []
        assert cache.prune()["evicted"] == []

        dry = cache.prune(max_size=three - 1, dry_run=True)
        done = cache.prune(max_size=three - 1)
        assert dry["dry_run"] is True and done["dry_run"] is False
        assert [e["quant"] for e in done["evicted"]] == ["Q4_K_M"]
        assert {k: v for k, v in dry.items() if k != "dry_run"} == {k: v for k, v in done.items() if k != "dry_run"}
        assert done["bytes_freed"] == SIZE and done["disk_bytes"] == three - SIZE
        assert not cache.has_file(budget_repo, weights("Q4_K_M"))
        assert cache.has_file(budget_repo, weights("Q2_K"))
        assert cache.max_size == three, "prune's max_size is for this once"

        # With no budget, a prune needs a size or an age.
        cache.set_max_size(None)
        with pytest.raises(tmc.InvalidArgumentError, match="no budget"):
            cache.prune(dry_run=True)


def test_sizes_are_read_like_the_command_line_and_the_budget_is_shared(tmp_path):
    db = tmp_path / "db"
    with tmc.ModelCache(db) as cache, tmc.ModelCache(db, max_size="50GB") as other:
        assert cache.max_size == other.max_size == 50_000_000_000
        assert cache.set_max_size("20GiB") == {"evicted": [], "bytes_freed": 0, "disk_bytes": 0, "dry_run": False}
        assert other.max_size == 20 << 30
        cache.set_max_size(" 1.5 tb ")
        assert other.max_size == 1_500_000_000_000
        cache.set_max_size(123_456)
        assert other.max_size == 123_456
        # Reopening without max_size leaves the budget as it is.
        with tmc.ModelCache(db) as again:
            assert again.max_size == 123_456
        cache.set_max_size(None)
        assert other.max_size is None and other.budget_stats()["max_size"] is None

        for bad in ("5 parsecs", "-1GB", "", "1e9", "0GB", 0, -5, 1 << 64):
            with pytest.raises(tmc.InvalidArgumentError) as raised:
                cache.set_max_size(bad)
            assert "max_size" in str(raised.value), str(raised.value)
        with pytest.raises(tmc.InvalidArgumentError, match="not a size.*50GB"):
            tmc.ModelCache(db, max_size="fifty gigs")
        with pytest.raises(tmc.InvalidArgumentError, match="None to remove the budget"):
            cache.set_max_size(0)
        for wrong in (1.5e9, True, b"50GB"):
            with pytest.raises(TypeError):
                cache.set_max_size(wrong)
        for days in (0, -1, float("nan"), float("inf")):
            with pytest.raises(tmc.InvalidArgumentError, match="older_than_days"):
                cache.prune(older_than_days=days)
        with pytest.raises(TypeError):
            cache.prune(older_than_days="30")
        with pytest.raises(TypeError):
            cache.prune(max_size=100, dry_run="yes")
        assert cache.max_size is None, "nothing refused changed the budget"
