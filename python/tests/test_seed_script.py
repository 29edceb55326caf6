"""The port of the seed's test script runs in a fresh interpreter against the emulator and
prints the seed README's expected output."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test_model_cache_bindings.py"


def test_seed_script_passes(phi_repo, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), phi_repo, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
        cwd=tmp_path,
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    # The seed README's expected output, line for line where it gives lines.
    assert lines[:9] == [
        "🧪 Testing TabAgent Model Cache Bindings",
        "=" * 60,
        "✅ Successfully imported tabagent_model_cache",
        "1️⃣ Creating model cache...",
        "   ✅ Cache created",
        "2️⃣ Getting cache statistics...",
        "   📊 Total repos: 0",
        "   📊 Total size: 0 bytes",
        "3️⃣ Checking manifest of a repo never scanned...",
    ]
    assert lines[-1] == "✅ ALL BASIC TESTS PASSED!"
    assert "   ✅ Found 3 quantizations" in lines
    assert "❌" not in result.stdout
