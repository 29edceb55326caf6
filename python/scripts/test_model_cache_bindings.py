"""Port of the seed's Server/test_model_cache_bindings.py: exercises every ModelCache method
and prints each step, ending with "ALL BASIC TESTS PASSED!" (exit 0) or the failure (exit 1).

    python test_model_cache_bindings.py [REPO_ID [CACHE_DIR]]

The Hub comes from HF_ENDPOINT as usual; the test suite points it at the hub emulator.
"""

import shutil
import sys
import tempfile


def main() -> int:
    repo_id = sys.argv[1] if len(sys.argv) > 1 else "onnx-community/Phi-3.5-mini-instruct-onnx-web"
    cache_dir = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="test_model_cache_")

    print("🧪 Testing TabAgent Model Cache Bindings")
    print("=" * 60)
    try:
        import tabagent_model_cache
    except ImportError as e:
        print(f"❌ Failed to import tabagent_model_cache: {e}")
        return 1
    print("✅ Successfully imported tabagent_model_cache")

    try:
        print("1️⃣ Creating model cache...")
        cache = tabagent_model_cache.ModelCache(cache_dir)
        print("   ✅ Cache created")

        print("2️⃣ Getting cache statistics...")
        stats = cache.get_stats()
        print(f"   📊 Total repos: {stats['total_repos']}")
        print(f"   📊 Total size: {stats['total_size']} bytes")

        print("3️⃣ Checking manifest of a repo never scanned...")
        assert cache.get_manifest(repo_id) is None
        print("   ✅ No manifest yet (None)")

        print(f"4️⃣ Scanning repository {repo_id}...")
        manifest = cache.scan_repo(repo_id)
        print(f"   ✅ Found {len(manifest['quants'])} quantizations")
        for quant, info in sorted(manifest["quants"].items()):
            print(f"      • {quant}: {info['status']} ({len(info['files'])} files, {info['total_size']} bytes)")

        quant = min(manifest["quants"], key=lambda q: manifest["quants"][q]["total_size"] or 0)
        main_file = next(f for f in manifest["quants"][quant]["files"] if f.endswith(".onnx") or f.endswith(".gguf"))

        print(f"5️⃣ Checking file before download ({main_file})...")
        assert cache.has_file(repo_id, main_file) is False
        print("   ✅ Not cached yet")

        print(f"6️⃣ Downloading quant {quant} with progress...")
        last = {}

        def progress(loaded, total):
            last["loaded"], last["total"] = loaded, total

        cache.download_quant(repo_id, quant, progress)
        print(f"   ✅ Downloaded {last['loaded']}/{last['total']} bytes")
        assert last["loaded"] == last["total"]

        print("7️⃣ Retrieving cached file...")
        assert cache.has_file(repo_id, main_file) is True
        data = cache.get_file(repo_id, main_file)
        print(f"   ✅ File size: {len(data)} bytes")

        print("8️⃣ Getting cache statistics again...")
        stats = cache.get_stats()
        print(f"   📊 Total repos: {stats['total_repos']}")
        print(f"   📊 Total size: {stats['total_size']} bytes")
        assert stats["total_repos"] == 1 and stats["total_size"] == last["total"]

        print("9️⃣ Deleting model...")
        cache.delete_model(repo_id)
        assert cache.has_file(repo_id, main_file) is False
        print("   ✅ Model deleted")
        cache.close()
    except Exception as e:  # the seed script reports any failure the same way
        print(f"❌ Test failed: {type(e).__name__}: {e}")
        return 1
    finally:
        if len(sys.argv) <= 2:
            shutil.rmtree(cache_dir, ignore_errors=True)

    print()
    print("=" * 60)
    print("✅ ALL BASIC TESTS PASSED!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
