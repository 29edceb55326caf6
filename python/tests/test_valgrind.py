"""The seed script (every seed method, through cffi into libtabcache) under valgrind: no
invalid read or write, no use of uninitialised memory and no definite leak with a frame in
libtabcache or the cffi backend. CPython itself is not valgrind-clean (a build without
--with-valgrind reports its own small-int and allocator tricks), so records are attributed
by their stack rather than counted blindly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test_model_cache_bindings.py"
OURS = re.compile(r"libtabcache|_cffi_backend|tabagent_model_cache")


def error_records(log: str) -> list:
    """valgrind's records: blocks of `==PID==` lines separated by an empty `==PID==` line."""
    records, current = [], []
    for line in log.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        if not line.startswith("=="):
            continue
        if body.strip() == "":
            if current:
                records.append("\n".join(current))
            current = []
        else:
            current.append(body)
    if current:
        records.append("\n".join(current))
    return [r for r in records if re.match(r"(Invalid|Conditional|Use of|Syscall|Mismatched|Source and|.*definitely lost)", r)]


def test_seed_script_under_valgrind_is_clean_in_our_code(phi_repo, tmp_path):
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind is required (scripts/test installs it)"
    log_file = tmp_path / "valgrind.log"
    result = subprocess.run(
        [
            valgrind,
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            f"--log-file={log_file}",
            sys.executable,
            str(SCRIPT),
            phi_repo,
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONMALLOC": "malloc"},
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "✅ ALL BASIC TESTS PASSED!"
    log = log_file.read_text(errors="replace")
    assert "ERROR SUMMARY" in log, "valgrind did not run to the end"
    records = error_records(log)
    ours = [r for r in records if OURS.search(r)]
    print(f"valgrind: {len(records)} records in all, {len(ours)} in libtabcache or cffi")
    assert not ours, "\n\n".join(ours[:5])
