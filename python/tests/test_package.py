"""The package itself: the cdef agrees with the C header as a C compiler reads it, the
installed wheel carries the library, `python -m tabagent_model_cache --version`, stubs and
docstrings cover the public API, open() behaves as a binary file, close() and `with`, tqdm."""

from __future__ import annotations

import inspect
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tabagent_model_cache as tmc
from tabagent_model_cache import _native

PACKAGE_DIR = Path(tmc.__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parents[2]


def header_functions(text):
    return sorted(set(re.findall(r"^[\w \*]*?\b(tc_\w+)\(", text, re.M)))


def test_cdef_matches_the_header_as_compiled(tmp_path):
    """Every function, struct layout and status value that cffi knows agrees with what a C
    compiler makes of the same header; the header in use is the repository's."""
    header = _native.HEADER_PATH.read_text()
    assert header == (REPO_ROOT / "include" / "tabcache.h").read_text(), "the packaged header is stale"
    functions = header_functions(header)
    assert len(functions) >= 30 and "tc_reader_seek" in functions
    ffi, lib = _native.ffi, _native.lib
    checks = []
    for i, name in enumerate(functions):
        # cffi's own idea of the function's type; the compiler rejects it if it disagrees.
        declaration = ffi.getctype(ffi.typeof(getattr(lib, name)), f"p{i}")
        checks.append(f"{declaration} = {name};")
    prints = []
    for struct in ("tc_options", "tc_stats", "tc_bytes"):
        prints.append(f'printf("sizeof {struct} %zu\\n", sizeof({struct}));')
        for field, _ in ffi.typeof(struct).fields:
            prints.append(f'printf("offsetof {struct}.{field} %zu\\n", offsetof({struct}, {field}));')
    for status in sorted(n for n in dir(lib) if n.startswith("TC_STATUS_")):
        prints.append(f'printf("{status} %d\\n", (int){status});')
    source = tmp_path / "check.c"
    source.write_text(
        # cffi keeps no const qualifiers, so the compiler is told to drop them too; every
        # other difference in a type is an error.
        "#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdbool.h>\n"
        "#define const\n#include \"tabcache.h\"\n#undef const\n"
        + "\n".join(checks)
        + "\nint main(void) {\n"
        + "\n".join(prints)
        + "\nreturn 0;\n}\n"
    )
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to check the cdef against the header"
    binary = tmp_path / "check"
    subprocess.run(
        [compiler, "-std=c11", "-Werror", "-Wall", "-Wno-unused-variable", "-I", str(_native.HEADER_PATH.parent), str(source), _native.library_path(), f"-Wl,-rpath,{Path(_native.library_path()).parent}", "-o", str(binary)],
        check=True,
    )
    compiled = dict(line.rsplit(" ", 1) for line in subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.splitlines())
    for key, value in compiled.items():
        kind, _, name = key.partition(" ")
        if kind == "sizeof":
            assert ffi.sizeof(name) == int(value), key
        elif kind == "offsetof":
            struct, field = name.split(".")
            assert ffi.offsetof(struct, field) == int(value), key
        else:
            assert getattr(lib, key) == int(value), key


def test_cdef_generation_follows_the_header():
    text = """
    #ifndef X_H
    #define X_H
    #define X_NUMBER 7
    #define X_TEXT "seven"
    enum e
    #if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
      : uint32_t
    #endif
    { A = 1 };
    #ifndef __cplusplus
    #if __STDC_VERSION__ >= 202311L
    typedef enum e e;
    #else
    typedef uint32_t e; /* the C11 branch */
    #endif
    #endif
    int x_new_function(int a); // added
    #endif
    """
    cdef, macros = _native.cdef_from_header(text)
    assert "#if" not in cdef and ": uint32_t" not in cdef and "typedef enum" not in cdef
    assert "typedef uint32_t e;" in cdef and "x_new_function" in cdef and "/*" not in cdef
    assert "#define X_NUMBER 7" in cdef and "X_TEXT" not in cdef
    assert macros["X_TEXT"] == '"seven"'


def test_wheel_carries_the_library_and_header():
    if os.environ.get("TABCACHE_LIBRARY"):
        pytest.skip("TABCACHE_LIBRARY overrides the packaged library in this run")
    assert _native.library_path() == str(PACKAGE_DIR / _native.library_file_name())
    assert (PACKAGE_DIR / "tabcache.h").is_file()
    assert (PACKAGE_DIR / "py.typed").is_file() and (PACKAGE_DIR / "__init__.pyi").is_file()


def test_versions_and_main(tmp_path):
    assert tmc.library_version == _native.HEADER_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", tmc.__version__)
    result = subprocess.run([sys.executable, "-m", "tabagent_model_cache", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"tabagent_model_cache {tmc.__version__} (libtabcache {tmc.library_version} from ")


def test_library_override_by_environment(tmp_path):
    copy = tmp_path / _native.library_file_name()
    shutil.copyfile(_native.library_path(), copy)
    code = "from tabagent_model_cache import _native; print(_native.library_path())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TABCACHE_LIBRARY": str(copy)}, cwd=tmp_path)
    assert result.stdout.strip() == str(copy), result.stderr


def public_methods(cls):
    return [n for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]


def test_stubs_and_docstrings_cover_the_public_api():
    stub = (PACKAGE_DIR / "__init__.pyi").read_text()
    for name in tmc.__all__:
        assert re.search(rf"^(class |def |){re.escape(name)}\b", stub, re.M), f"{name} is missing from __init__.pyi"
    for cls in (tmc.ModelCache, tmc.CachedFile):
        for name in public_methods(cls):
            assert re.search(rf"def {name}\(", stub), f"{cls.__name__}.{name} is missing from the stub"
            assert inspect.getdoc(getattr(cls, name)), f"{cls.__name__}.{name} has no docstring"
    assert inspect.getdoc(tmc.ModelCache)
    # The seed's signatures stay as they were: extras are keyword-only.
    seed = {
        "__init__": ["self", "db_path"],
        "scan_repo": ["self", "repo_id"],
        "get_manifest": ["self", "repo_id"],
        "download_file": ["self", "repo_id", "file_path", "progress_callback"],
        "download_quant": ["self", "repo_id", "quant_key", "progress_callback"],
        "get_file": ["self", "repo_id", "file_path"],
        "has_file": ["self", "repo_id", "file_path"],
        "delete_model": ["self", "repo_id"],
        "get_stats": ["self"],
    }
    for name, positional in seed.items():
        parameters = inspect.signature(getattr(tmc.ModelCache, name)).parameters.values()
        assert [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD] == positional, name
        assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters), name


def test_open_is_a_seekable_binary_stream(hub, tmp_path):
    repo = hub.new_repo_id("stream")
    source = hub.write_random(repo, "weights-Q4_0.gguf", 700_000, seed=9)
    data = source.read_bytes()
    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        cache.download_file(repo, "weights-Q4_0.gguf")
        stream = cache.open(repo, "weights-Q4_0.gguf")
    # Readable after the cache is closed.
    with stream:
        assert isinstance(stream, io.BufferedReader)
        assert stream.readable() and stream.seekable() and not stream.writable()
        assert stream.read(10) == data[:10]
        assert stream.tell() == 10
        assert stream.seek(1000) == 1000
        assert stream.read(5) == data[1000:1005]
        assert stream.seek(-7, io.SEEK_END) == len(data) - 7
        assert stream.read() == data[-7:]
        assert stream.read(1) == b""
        stream.seek(-100, io.SEEK_CUR)
        buffer = bytearray(50)
        assert stream.readinto(buffer) == 50 and bytes(buffer) == data[-100:-50]
        stream.seek(0)
        assert stream.read() == data
        with pytest.raises((ValueError, OSError)):
            stream.seek(-1)
    assert stream.closed
    with pytest.raises(ValueError):
        stream.read(1)
    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        raw = cache.open(repo, "weights-Q4_0.gguf", buffering=0)
        assert isinstance(raw, tmc.CachedFile) and raw.size == len(data)
        assert raw.readall() == data
        raw.seek(10)
        with pytest.raises(tmc.InvalidArgumentError):
            raw.seek(-11, io.SEEK_CUR)
        assert raw.tell() == 10
        raw.close()
        raw.close()


def test_close_and_context_manager(tmp_path):
    cache = tmc.ModelCache(tmp_path / "db")  # os.PathLike works too
    assert not cache.closed and "open" in repr(cache)
    cache.close()
    cache.close()
    assert cache.closed and "closed" in repr(cache)
    with tmc.ModelCache(str(tmp_path / "db")) as again:
        assert again.get_stats()["total_repos"] == 0
    assert again.closed


def test_tqdm_bar_when_stderr_is_a_terminal(phi_repo, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS")
    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        cache.download_file(phi_repo, "onnx/model.onnx")
        assert "onnx/model.onnx" in terminal.getvalue() and "100%" in terminal.getvalue()
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        shown = terminal.getvalue()
        cache.download_file(phi_repo, "onnx/model_fp16.onnx")
        assert terminal.getvalue() == shown


def test_logging(phi_repo, tmp_path, caplog):
    with caplog.at_level("DEBUG", logger="tabagent_model_cache"):
        with tmc.ModelCache(str(tmp_path / "db")) as cache:
            cache.scan_repo(phi_repo)
    assert any(r.name == "tabagent_model_cache" and phi_repo in r.getMessage() for r in caplog.records)


def test_callbacks_are_released_after_the_call(phi_repo, tmp_path):
    import gc
    import weakref

    class Callback:
        def __init__(self, fail):
            self.fail = fail

        def __call__(self, loaded, total):
            if self.fail:
                raise RuntimeError("fail")

    with tmc.ModelCache(str(tmp_path / "db")) as cache:
        ok = Callback(False)
        ok_ref = weakref.ref(ok)
        cache.download_file(phi_repo, "config.json", ok)
        failing = Callback(True)
        failing_ref = weakref.ref(failing)
        with pytest.raises(RuntimeError):
            cache.download_file(phi_repo, "onnx/model.onnx", failing)
        del ok, failing
        gc.collect()
        # Nothing (no handle, no stored exception) keeps a callback alive after its call.
        assert ok_ref() is None and failing_ref() is None


def test_default_cache_dir_is_the_command_lines(monkeypatch, tmp_path):
    import tabagent_model_cache as tmc

    monkeypatch.setenv("TABCACHE_HOME", str(tmp_path / "shared"))
    assert tmc.default_cache_dir() == str(tmp_path / "shared")
    monkeypatch.delenv("TABCACHE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tmc.default_cache_dir() == str(tmp_path / "xdg" / "tabcache")
