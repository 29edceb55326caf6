#!/usr/bin/env python3
"""The benchmark driver that bench/run starts: generates the data, starts nginx (the "CDN")
behind the hub emulator, runs every case alternating the contenders, and prints a table of
medians and ratios. Standard library only, plus huggingface_hub for its contenders.

Everything it writes goes under bench/data/ (never committed): repos/, cdn/ (links named by
sha256, nginx's root), caches/, out/ (results JSON and the Markdown table), nginx/.
"""

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
REPOS = DATA / "repos"
CDN = DATA / "cdn"
CACHES = DATA / "caches"
OUT = DATA / "out"
FETCH = ROOT / "target" / "release" / "examples" / "fetch"
CLI = ROOT / "target" / "release" / "tabcache"
EMULATOR = ROOT / "target" / "release" / "hub-emulator"
PYTHON = sys.executable
# --before BIN: an older build of examples/fetch, run as one more contender of cases 1 and 2,
# to measure a change in the same run as everything else.
BEFORE = None
BEFORE_ROW = "tabcache, build before the change"
# --before-serve BIN: an older build of the tabcache CLI, a third server of case 8.
BEFORE_SERVE = None

BIG_REPO, BIG_FILE = "bench/big", "model.gguf"
WARM_REPO, WARM_FILE = "bench/warm", "model.gguf"
ONNX_REPO, ONNX_QUANT = "bench/onnx-30", "fp16"
MANY_REPO, MANY_QUANT, MANY_FILES = "bench/many", "Q4_0", 10_000
# Case 7: four different files for four processes (the same-file half uses the warm file).
FOUR_REPO, FOUR_FILES = "bench/four", [f"part-{i}.bin" for i in range(1, 5)]
PROCESSES = 4
# Case 9: a Xet-backed file, and a second version of it with one MiB in the middle rewritten
# (another repo: the bench emulator is frozen, and chunks are shared across repos as across
# revisions, by the Hub's CAS and by our chunk index alike).
XET_REPO, XET2_REPO, XET_FILE = "bench/xet", "bench/xet-rev2", "model.safetensors"
MIB = 1 << 20
SETUP_BUDGET_S = 180  # per run, for caching the 10,000 files of case 5
THROTTLE = "40m"  # nginx limit_rate per connection: 40 MiB/s

# The 30-file variant: 12 ONNX components (graph + external data) in fp16, plus 6 shared
# files; an fp32 copy of every component is listed too (small), so the allow-pattern matters.
ONNX_COMPONENTS = [
    ("encoder_model", 96), ("decoder_model", 64), ("decoder_model_merged", 48),
    ("decoder_with_past_model", 40), ("vision_encoder", 32), ("text_encoder", 24),
    ("embed_tokens", 16), ("audio_encoder", 16), ("prompt_encoder", 8),
    ("lm_head", 8), ("pooler", 4), ("projector", 4),
]
SHARED_FILES = {
    "config.json": 2_000, "generation_config.json": 300, "tokenizer.json": 700_000,
    "tokenizer_config.json": 20_000, "special_tokens_map.json": 500,
    "preprocessor_config.json": 400,
}
HF_ALLOW = ["onnx/*_fp16.onnx", "onnx/*_fp16.onnx_data", *SHARED_FILES]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- data

def write_random(path: Path, size: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n


def generate(big_size: int, warm_size: int, four_size: int):
    """Write the repos once; files already there at their size are kept."""
    stamp = DATA / "generated.json"
    want = {"big": big_size, "warm": warm_size, "four": four_size, "xet": big_size, "version": 4}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    log(f"generating data in {DATA} (one time) ...")
    for repo, name, size in [(BIG_REPO, BIG_FILE, big_size), (WARM_REPO, WARM_FILE, warm_size),
                             *((FOUR_REPO, name, four_size) for name in FOUR_FILES)]:
        path = REPOS / repo / name
        if not path.exists() or path.stat().st_size != size:
            write_random(path, size)
    generate_xet(big_size)
    small = DATA / "generated-small.json"
    if small.exists() and json.loads(small.read_text()) == {"version": 3}:
        stamp.write_text(json.dumps(want))
        return
    onnx = REPOS / ONNX_REPO
    shutil.rmtree(onnx, ignore_errors=True)
    (onnx / "onnx").mkdir(parents=True)
    for name, size in SHARED_FILES.items():
        (onnx / name).write_bytes(b"{" + os.urandom(size // 2).hex()[: size - 2].encode() + b"}")
    (onnx / "README.md").write_text("# 30-file ONNX variant (benchmark data)\n")
    for name, mib in ONNX_COMPONENTS:
        write_random(onnx / "onnx" / f"{name}_fp16.onnx", 256 * 1024)
        write_random(onnx / "onnx" / f"{name}_fp16.onnx_data", mib * MIB)
        write_random(onnx / "onnx" / f"{name}.onnx", 4096)
        write_random(onnx / "onnx" / f"{name}.onnx_data", 4096)
    many = REPOS / MANY_REPO / MANY_QUANT
    shutil.rmtree(many, ignore_errors=True)
    many.mkdir(parents=True)
    for i in range(MANY_FILES):
        (many / f"part-{i:05}.gguf").write_bytes(b"GGUF" + i.to_bytes(4, "little") + os.urandom(24))
    shutil.rmtree(CACHES, ignore_errors=True)  # caches of older data are stale
    CACHES.mkdir()
    shutil.rmtree(CDN, ignore_errors=True)
    small.write_text(json.dumps({"version": 3}))
    stamp.write_text(json.dumps(want))


def generate_xet(size: int):
    """Case 9's repos: a random Xet-backed file, and its second version with the MiB in the
    middle rewritten in place (so every other chunk is shared)."""
    first, second = REPOS / XET_REPO / XET_FILE, REPOS / XET2_REPO / XET_FILE
    for repo in (XET_REPO, XET2_REPO):
        (REPOS / repo).mkdir(parents=True, exist_ok=True)
        (REPOS / repo / ".emulator.json").write_text('{"xet": true}\n')
    if not first.exists() or first.stat().st_size != size:
        write_random(first, size)
    shutil.copyfile(first, second)
    with open(second, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(MIB))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def link_cdn():
    """nginx's root: every repo file linked under its sha256, as the CDN names blobs."""
    index = DATA / "cdn-index.json"
    known = json.loads(index.read_text()) if index.exists() else {}
    files = [p for p in REPOS.rglob("*") if p.is_file() and p.name != ".emulator.json"]
    CDN.mkdir(parents=True, exist_ok=True)
    fresh = {}
    for path in files:
        key = str(path.relative_to(REPOS))
        st = path.stat()
        sig = f"{st.st_size}:{st.st_mtime_ns}"
        sha = known.get(key, {}).get("sig") == sig and known[key]["sha"] or sha256_file(path)
        fresh[key] = {"sig": sig, "sha": sha}
        link = CDN / sha
        if not link.is_symlink():
            link.symlink_to(path)
    # Deduplicated files would make the counts of case 3 and 6 ambiguous.
    assert len({v["sha"] for v in fresh.values()}) == len(fresh), "two data files share content"
    index.write_text(json.dumps(fresh))
    return fresh


# ---------------------------------------------------------------- servers

class Servers:
    """nginx with a full-speed and a throttled server block, and one hub emulator per block."""

    def __init__(self):
        self.prefix = DATA / f"nginx-{os.getpid()}"
        self.fast_port, self.slow_port = free_port(), free_port()
        self.access_log = self.prefix / "access.log"
        self.emulators = {}

    def __enter__(self):
        shutil.rmtree(self.prefix, ignore_errors=True)
        (self.prefix / "tmp").mkdir(parents=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(f"""
user root;
worker_processes 2;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    log_format bench '$request_uri $status $body_bytes_sent "$http_range" $server_port';
    access_log {self.access_log} bench;
    client_body_temp_path {self.prefix}/tmp/body;
    proxy_temp_path {self.prefix}/tmp/proxy;
    fastcgi_temp_path {self.prefix}/tmp/fastcgi;
    uwsgi_temp_path {self.prefix}/tmp/uwsgi;
    scgi_temp_path {self.prefix}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    gzip off;
    server {{ listen 127.0.0.1:{self.fast_port}; root {CDN}; }}
    server {{ listen 127.0.0.1:{self.slow_port}; root {CDN}; limit_rate {THROTTLE}; }}
}}
""")
        subprocess.run(["nginx", "-c", str(conf), "-p", str(self.prefix)], check=True)
        for name, port in [("fast", self.fast_port), ("slow", self.slow_port)]:
            proc = subprocess.Popen(
                [str(EMULATOR), "--root", str(REPOS), "--cdn-base", f"http://127.0.0.1:{port}", "--frozen",
                 "--exit-on-stdin-eof"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            url = proc.stdout.readline().strip()
            self.emulators[name] = (proc, url)
        # The emulator hashes each file once; do it now, not inside the first timed run.
        for _, url in self.emulators.values():
            for repo in [BIG_REPO, WARM_REPO, ONNX_REPO, MANY_REPO, FOUR_REPO]:
                subprocess.run(["curl", "-sSf", "-o", "/dev/null",
                                f"{url}/api/models/{repo}/tree/main?recursive=true"], check=True)
        return self

    def url(self, speed):
        return self.emulators[speed][1]

    def log_mark(self):
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def cas_bytes(self, speed):
        """Bytes the emulator's Xet storage (CAS) has sent so far."""
        with urllib.request.urlopen(f"{self.url(speed)}/_emulator/stats") as answer:
            return json.load(answer)["bytes_sent_cas"]

    def bytes_sent_since(self, mark, *shas):
        with open(self.access_log, "rb") as f:
            f.seek(mark)
            lines = f.read().decode().splitlines()
        return sum(int(l.split()[2]) for l in lines for sha in shas if l.startswith(f"/{sha}"))

    def __exit__(self, *exc):
        for proc, _ in self.emulators.values():
            proc.stdin.close()
            proc.wait(timeout=10)
        subprocess.run(["nginx", "-c", str(self.prefix / "nginx.conf"), "-p", str(self.prefix),
                        "-s", "quit"], check=False)
        time.sleep(0.5)
        shutil.rmtree(self.prefix, ignore_errors=True)


# ---------------------------------------------------------------- contenders

# Each contender program is a file of bench/contenders/ (run and linted on its own; its
# docstring gives its arguments), started with the bench venv's Python.
CONTENDERS = ROOT / "bench" / "contenders"


def contender(name, *args):
    """The command running bench/contenders/<name>.py with `args`."""
    return [PYTHON, str(CONTENDERS / f"{name}.py"), *map(str, args)]


def timed(cmd, env=None):
    """Run `cmd` under /usr/bin/time; returns (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name, *cmd],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rss_kib = int(tf.read().strip().splitlines()[-1])
    return wall, rss_kib / 1024, proc.stdout


def hf_env(endpoint):
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("HF_HUB_ENABLE_HF_TRANSFER", None)
    env.pop("HF_TOKEN", None)
    return env


def scratch(name):
    path = CACHES / "scratch" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def in_scratch(name, row, command, env):
    """Time `command(folder)` in a fresh scratch folder, then clear it; {row: (seconds, rss)}."""
    d = scratch(name)
    wall, rss, _ = timed(command(d), env)
    settle(d)
    return {row: (wall, rss)}


def settle(*paths):
    """Between runs: delete outputs (their pages go with them) and flush what is still dirty,
    so one run's write-back never lands in the next one's time."""
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    subprocess.run(["sync"], check=True)


OURS_ROW = "tabcache (Rust API, fetch example)"
CLI_ROW = "tabcache CLI (download --file)"
PY_ROW = "tabagent_model_cache (Python, C ABI)"
OURS_QUANT_ROW = "download_quant (fetch example)"
CLI_QUANT_ROW = "tabcache CLI (download REPO QUANT)"
PY_QUANT_ROW = "download_quant (Python, C ABI)"


def file_contenders(endpoint, size):
    """Case 1/2 contenders: name -> function returning {row name: (seconds, rss)}."""
    url = f"{endpoint}/{BIG_REPO}/resolve/main/{BIG_FILE}"
    env = hf_env(endpoint)

    def ours():
        return in_scratch("ours", OURS_ROW,
                          lambda d: [str(FETCH), "file", str(d), BIG_REPO, BIG_FILE], env)

    def cli():
        return in_scratch("cli", CLI_ROW, lambda d: [str(CLI), "--cache", str(d), "-q", "download",
                                                     BIG_REPO, "--file", BIG_FILE], env)

    def python():
        return in_scratch("python", PY_ROW,
                          lambda d: contender("py_download_file", d, BIG_REPO, BIG_FILE), env)

    def before():
        return in_scratch("before", BEFORE_ROW,
                          lambda d: [str(BEFORE), "file", str(d), BIG_REPO, BIG_FILE], env)

    def curl():
        d = scratch("curl")
        out = d / BIG_FILE
        wall, rss, _ = timed(["curl", "-sSfL", "-o", str(out), url])
        start = time.perf_counter()
        subprocess.run(["sync", str(out)], check=True)
        synced = wall + time.perf_counter() - start
        assert out.stat().st_size == size
        settle(d)
        return {"curl -o": (wall, rss), "curl -o && sync FILE": (synced, rss)}

    def aria2():
        d = scratch("aria2")
        wall, rss, _ = timed(["aria2c", "-x8", "-s8", "-q", "--allow-overwrite=true",
                              "--auto-file-renaming=false", "-d", str(d), "-o", BIG_FILE, url])
        assert (d / BIG_FILE).stat().st_size == size
        settle(d)
        return {"aria2c -x8 -s8": (wall, rss)}

    def hf():
        d = scratch("hf")
        wall, rss, _ = timed(contender("hf_download_file", BIG_REPO, BIG_FILE, d), env)
        settle(d)
        return {"hf_hub_download": (wall, rss)}

    return [ours, cli, python, curl, aria2, hf] + ([before] if BEFORE else [])


VERIFY_SYNC = {
    OURS_ROW: ("sha256", "yes (fdatasync + dir)"),
    CLI_ROW: ("sha256", "yes (fdatasync + dir)"),
    PY_ROW: ("sha256", "yes (fdatasync + dir)"),
    CLI_QUANT_ROW: ("sha256 / git sha1", "yes"),
    PY_QUANT_ROW: ("sha256 / git sha1", "yes"),
    BEFORE_ROW: ("sha256", "yes (fdatasync + dir)"),
    "curl -o": ("no", "no"),
    "curl -o && sync FILE": ("no", "yes"),
    "aria2c -x8 -s8": ("no", "no"),
    "hf_hub_download": ("size only", "no"),
    "download_quant (fetch example)": ("sha256 / git sha1", "yes"),
    "snapshot_download (allow_patterns)": ("size only", "no"),
}


def alternate(contenders, runs):
    """Run every contender `runs` times, rotating the order each round."""
    samples = {}
    for r in range(runs):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            for row, value in c().items():
                samples.setdefault(row, []).append(value)
                log(f"  run {r + 1}/{runs} {row}: {value[0]:.2f} s, {value[1]:.0f} MiB")
    return samples


def summarize(samples):
    return {row: {"median_s": statistics.median(v[0] for v in vals),
                  "runs_s": [round(v[0], 3) for v in vals],
                  "peak_rss_mib": max(v[1] for v in vals)} for row, vals in samples.items()}


# ---------------------------------------------------------------- cases

def case_file(servers, speed, size, runs):
    log(f"case {'1' if speed == 'fast' else '2'}: {size / MIB:.0f} MiB file, CDN {speed}")
    return summarize(alternate(file_contenders(servers.url(speed), size), runs))


def case_variant(servers, runs):
    log("case 3: the 30-file ONNX variant")
    endpoint = servers.url("fast")
    env = hf_env(endpoint)

    def ours():
        return in_scratch("ours-quant", OURS_QUANT_ROW,
                          lambda d: [str(FETCH), "quant", str(d), ONNX_REPO, ONNX_QUANT], env)

    def cli():
        return in_scratch("cli-quant", CLI_QUANT_ROW, lambda d: [
            str(CLI), "--cache", str(d), "-q", "download", ONNX_REPO, ONNX_QUANT], env)

    def python():
        return in_scratch("python-quant", PY_QUANT_ROW,
                          lambda d: contender("py_download_quant", d, ONNX_REPO, ONNX_QUANT), env)

    def hf():
        d = scratch("hf-snapshot")
        wall, rss, _ = timed(contender("hf_snapshot", ONNX_REPO, d, json.dumps(HF_ALLOW)),
                             env)
        got = [p for p in (d / "models--bench--onnx-30" / "blobs").iterdir()]
        if len(got) != 30:
            raise RuntimeError(f"snapshot_download fetched {len(got)} files, expected 30")
        settle(d)
        return {"snapshot_download (allow_patterns)": (wall, rss)}

    return summarize(alternate([ours, cli, python, hf], runs))


def warm_cache(env, warm_size):
    """The cache of cases 5 and 8: the warm file downloaded once, as any download is (Rust
    API, through the emulator and nginx, sha256 verified), and kept between runs."""
    warm = CACHES / "warm"
    marker = warm / "ok"
    if not marker.exists() or marker.read_text() != str(warm_size):
        shutil.rmtree(warm, ignore_errors=True)
        subprocess.run([str(FETCH), "file", str(warm), WARM_REPO, WARM_FILE], env=env, check=True,
                       capture_output=True)
        marker.write_text(str(warm_size))
    return warm


def case_warm(servers, warm_size, calls):
    log("case 5: warm serving")
    env = hf_env(servers.url("fast"))
    warm = warm_cache(env, warm_size)
    _, _, out = timed([str(FETCH), "warm", str(warm), WARM_REPO, WARM_FILE, str(calls)], env)
    result = json.loads(out)
    # The same file read by Python, as a Python caller of the cache would read it.
    path = json.loads(subprocess.run([str(FETCH), "file", str(warm), WARM_REPO, WARM_FILE],
                                     env=env, check=True, capture_output=True,
                                     text=True).stdout)["path"]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with open(path, "rb") as f:
            assert len(f.read()) == warm_size
        best = min(best, time.perf_counter() - start)
    result["python_open_read_s"] = best

    many = CACHES / "many"
    if not (many / "ok").exists():
        # download_quant commits each file as it lands, so a stopped set-up resumes where it
        # was; it is bounded per run because each file costs several fsyncs (see RESULTS.md).
        log(f"  set-up: caching {MANY_FILES} files (resumable, at most {SETUP_BUDGET_S} s this run) ...")
        start = time.perf_counter()
        proc = subprocess.Popen([str(FETCH), "quant", str(many), MANY_REPO, MANY_QUANT], env=env,
                                stdout=subprocess.DEVNULL)
        try:
            if proc.wait(timeout=SETUP_BUDGET_S) == 0:
                (many / "ok").write_text("")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log(f"  ... {time.perf_counter() - start:.1f} s")
    probe = f"{MANY_QUANT}/part-00000.gguf"  # fetched first: the variant's files are sorted
    # One open untimed: it does what a first open may have to (recovery after a set-up that
    # was stopped, or the rebuild of a catalog written by an older release), not measured here.
    subprocess.run([str(FETCH), "open", str(many), MANY_REPO, probe], env=env, check=True,
                   capture_output=True)
    opens = []
    for _ in range(7):
        _, _, out = timed([str(FETCH), "open", str(many), MANY_REPO, probe], env)
        opens.append(json.loads(out))
    result["open_10k_s"] = statistics.median(o["open_s"] for o in opens)
    result["open_10k_first_has_file_s"] = statistics.median(o["first_has_file_s"] for o in opens)
    result["open_10k_files"] = opens[0]["files"]
    hf = subprocess.run(["hyperfine", "-N", "--warmup", "2", "--runs", "10", "--export-json",
                         str(OUT / "open.json"),
                         f"{FETCH} open {many} {MANY_REPO} {probe}"],
                        env=env, check=True, capture_output=True)
    result["open_10k_process_s"] = json.loads((OUT / "open.json").read_text())["results"][0]["median"]

    # The same measurements from Python, through the C ABI, as the targets are stated.
    _, _, out = timed(contender("py_warm_calls", warm, WARM_REPO, WARM_FILE, calls), env)
    result["python"] = dict(json.loads(out), calls=calls)
    opens = [json.loads(timed(contender("py_open", many, MANY_REPO, probe), env)[2])
             for _ in range(7)]
    result["python"]["open_10k_s"] = statistics.median(o["open_s"] for o in opens)
    result["python"]["open_10k_first_has_file_s"] = statistics.median(
        o["first_has_file_s"] for o in opens)
    return result


def case_resume(servers, size, sha):
    log("case 6: kill at 50 % and resume")
    env = hf_env(servers.url("fast"))
    d = scratch("resume")
    mark = servers.log_mark()
    proc = subprocess.Popen([str(FETCH), "file", "--progress", str(d), BIG_REPO, BIG_FILE],
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    killed_at = None
    for line in proc.stderr:
        parts = line.split()
        if parts[:1] == ["progress"] and int(parts[1]) >= size // 2:
            proc.send_signal(signal.SIGKILL)
            killed_at = int(parts[1])
            break
    proc.wait()
    if killed_at is None:
        raise RuntimeError("the download ended before reaching 50 %")
    time.sleep(1.0)  # nginx logs a request when it notices the closed connection
    first = servers.bytes_sent_since(mark, sha)
    mark = servers.log_mark()
    wall, _, _ = timed([str(FETCH), "file", str(d), BIG_REPO, BIG_FILE], env)
    time.sleep(0.5)
    second = servers.bytes_sent_since(mark, sha)
    settle(d)
    return {"size": size, "progress_at_kill": killed_at, "sent_before_kill": first,
            "sent_on_resume": second, "refetched": first + second - size,
            "resume_seconds": wall}


def cli_download(cache_dir, repo, files):
    """The CLI fetching `files` of `repo` into `cache_dir`, with a JSON report on stdout."""
    return [str(CLI), "--cache", str(cache_dir), "--json", "-q", "download", repo,
            *(arg for f in files for arg in ("--file", f))]


def run_together(commands, env):
    """Start every command at once; (seconds from the first start to the last exit, the JSON
    report of each)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    for p, (_, err), c in zip(procs, outs, commands):
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(c)} failed ({p.returncode}): {err[-2000:]}")
    return wall, [json.loads(out) for out, _ in outs]


def case_processes(servers, index, file_size, four_size, runs):
    """Case 7: processes sharing one cache. (a) PROCESSES processes ask for the same file at
    once: one transfer (CDN bytes / file) and the wall time against one process alone; (b) a
    process per file for four different files against one process fetching the four."""
    log(f"case 7: {PROCESSES} processes sharing one cache (tabcache CLI)")
    env = hf_env(servers.url("fast"))
    same_sha = index[f"{WARM_REPO}/{WARM_FILE}"]["sha"]
    four_shas = [index[f"{FOUR_REPO}/{name}"]["sha"] for name in FOUR_FILES]
    # The sources stay in the page cache, as a CDN serves from memory.
    for path in [REPOS / WARM_REPO / WARM_FILE, *(REPOS / FOUR_REPO / n for n in FOUR_FILES)]:
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)

    def measure(name, commands, shas, sizes):
        """Run `commands(cache dir)` together in a fresh cache; (seconds, CDN bytes)."""
        d = scratch(name)
        mark = servers.log_mark()
        wall, reports = run_together(commands(d), env)
        time.sleep(0.5)  # nginx logs a request once it has sent the response
        sent = servers.bytes_sent_since(mark, *shas)
        for report in reports:
            for f in report["files"]:
                got = Path(f["local_path"]).stat().st_size
                if got != sizes[f["path"]]:
                    raise RuntimeError(f"{f['local_path']}: {got} bytes, want {sizes[f['path']]}")
        settle(d)
        return wall, sent

    same = {WARM_FILE: file_size}
    four = {name: four_size for name in FOUR_FILES}
    pairs = {
        "same file": (
            ("1 process", lambda d: [cli_download(d, WARM_REPO, [WARM_FILE])]),
            (f"{PROCESSES} processes at once",
             lambda d: [cli_download(d, WARM_REPO, [WARM_FILE])] * PROCESSES),
            [same_sha], same, file_size),
        "four files": (
            ("1 process, the 4 files", lambda d: [cli_download(d, FOUR_REPO, FOUR_FILES)]),
            ("4 processes, a file each",
             lambda d: [cli_download(d, FOUR_REPO, [name]) for name in FOUR_FILES]),
            four_shas, four, four_size * len(FOUR_FILES)),
    }
    result = {"file_size": file_size, "four_size": four_size, "processes": PROCESSES}
    for key, (one, many, shas, sizes, total) in pairs.items():
        rounds = []
        for r in range(runs):
            # Alternate which goes first, so neither always runs on a warmer machine.
            order = [one, many] if r % 2 == 0 else [many, one]
            got = {}
            for row, commands in order:
                got[row] = measure(f"processes-{len(got)}", commands, shas, sizes)
                log(f"  run {r + 1}/{runs} {key}, {row}: {got[row][0]:.2f} s, "
                    f"CDN sent {got[row][1] / total:.3f} x the bytes")
            rounds.append({"one_s": got[one[0]][0], "many_s": got[many[0]][0],
                           "one_cdn_bytes": got[one[0]][1], "many_cdn_bytes": got[many[0]][1]})
        result[key] = {
            "bytes": total, "rounds": rounds,
            "one_s": statistics.median(x["one_s"] for x in rounds),
            "many_s": statistics.median(x["many_s"] for x in rounds),
            # Paired in each round, then the median: robust to the machine's load drifting.
            "ratio": statistics.median(x["many_s"] / x["one_s"] for x in rounds),
            "many_cdn_worst": max(x["many_cdn_bytes"] for x in rounds),
            "one_cdn_worst": max(x["one_cdn_bytes"] for x in rounds),
        }
    return result


# Case 8: the cache's own Hub server (`tabcache serve`) against nginx serving the very same
# blob file. nginx is configured as a production static-file server would be (the config is
# in ServeNginx); both bind 127.0.0.1 and neither logs requests.
SERVE_PATH = f"/{WARM_REPO}/resolve/main/{WARM_FILE}"
SERVE_CLIENTS = 32
SERVE_RANGE = MIB
RANGES_LUA = ROOT / "bench" / "ranges.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """user + system CPU seconds the processes `pids` have used so far (all their threads)."""
    total = 0
    for pid in pids:
        # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


class OurServer:
    """`tabcache serve` (release; or `exe`, an older build) on the cache, offline, no
    pull-through, no request log."""

    def __init__(self, cache, exe=None):
        self.cache = cache
        self.exe = exe or CLI

    def __enter__(self):
        self.proc = subprocess.Popen(
            [str(self.exe), "--cache", str(self.cache), "--offline", "serve", "--port", "0",
             "--no-pull-through", "--quiet"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if line[:1] != ["serving"]:
            self.proc.kill()
            raise RuntimeError(f"tabcache serve did not start: {line}")
        self.url = line[1] + SERVE_PATH
        return self

    def pids(self):
        return [self.proc.pid]

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class ServeNginx:
    """nginx serving `blob` (the cache's own blob file) at SERVE_PATH, with a production
    static-file configuration: sendfile, tcp_nopush, keep-alive, a worker per core."""

    def __init__(self, blob):
        self.blob = blob
        self.prefix = DATA / f"nginx-serve-{os.getpid()}"
        self.port = free_port()

    CONF = """
user root;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    gzip off;
    server {{
        listen 127.0.0.1:{port};
        location = {path} {{ alias {blob}; }}
    }}
}}
"""

    def __enter__(self):
        shutil.rmtree(self.prefix, ignore_errors=True)
        (self.prefix / "tmp").mkdir(parents=True)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(self.CONF.format(prefix=self.prefix, port=self.port,
                                              path=SERVE_PATH, blob=self.blob))
        subprocess.run(["nginx", "-c", str(self.conf), "-p", str(self.prefix)], check=True)
        self.master = int((self.prefix / "nginx.pid").read_text())
        self.url = f"http://127.0.0.1:{self.port}{SERVE_PATH}"
        return self

    def pids(self):
        """The master and its workers (the workers do the serving)."""
        kids = Path(f"/proc/{self.master}/task/{self.master}/children").read_text().split()
        return [self.master, *map(int, kids)]

    def __exit__(self, *exc):
        subprocess.run(["nginx", "-c", str(self.conf), "-p", str(self.prefix), "-s", "quit"],
                       check=False)
        time.sleep(0.5)
        shutil.rmtree(self.prefix, ignore_errors=True)


def check_served(server, blob, size):
    """Untimed: the whole file and a few ranges from `server` are the blob's bytes."""
    h = hashlib.sha256()
    with subprocess.Popen(["curl", "-sSf", server.url], stdout=subprocess.PIPE) as proc:
        while chunk := proc.stdout.read(8 * MIB):
            h.update(chunk)
    with open(blob, "rb") as f:
        for first in (0, size // 3 + 12345, size - SERVE_RANGE):
            got = subprocess.run(["curl", "-sSf", "-H", f"Range: bytes={first}-{first + SERVE_RANGE - 1}",
                                  server.url], capture_output=True, check=True).stdout
            f.seek(first)
            if got != f.read(SERVE_RANGE):
                raise RuntimeError(f"{server.url}: range at {first} differs from the blob")
    return h.hexdigest()


def fetch_whole(server, size):
    """One `curl -o /dev/null` of the whole file: curl's transfer time and the CPU seconds
    of the server and of curl."""
    served = cpu_seconds(server.pids())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download} %{time_total}", server.url],
                         capture_output=True, text=True, check=True).stdout.split()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out[0] != "200" or int(out[1]) != size:
        raise RuntimeError(f"{server.url}: status {out[0]}, {out[1]} bytes of {size}")
    return {"seconds": float(out[2]),
            "server_cpu_s": cpu_seconds(server.pids()) - served,
            "curl_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def load_ranges(server, size, seconds, seed):
    """wrk: SERVE_CLIENTS connections asking for random 1 MiB ranges for `seconds`."""
    served = cpu_seconds(server.pids())
    out = subprocess.run(["wrk", "-t2", f"-c{SERVE_CLIENTS}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(RANGES_LUA), server.url, "--", str(size), str(seed)],
                         capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server.pids()) - served
    line = next(l for l in out.splitlines() if l.startswith("JSON "))
    r = json.loads(line[5:])
    if any(r["errors"].values()):
        raise RuntimeError(f"{server.url}: wrk saw errors {r['errors']}")
    # Every answer a whole 1 MiB range (the headers are a few hundred bytes each).
    if not r["requests"] or r["bytes"] < r["requests"] * SERVE_RANGE:
        raise RuntimeError(f"{server.url}: {r['bytes']} bytes for {r['requests']} ranges")
    r["rps"] = r["requests"] / r["seconds"]
    r["server_cpu_ms_per_request"] = cpu * 1e3 / r["requests"]
    return r


OURS_SERVE, NGINX_SERVE = "tabcache serve", "nginx"
BEFORE_SERVE_ROW = "tabcache serve, build before the change"


def case_serving(servers, index, warm_size, runs, seconds):
    """Case 8: the cached warm file served by `tabcache serve` and by nginx from the same
    blob file, warm in the page cache: (a) the whole file with curl, (b) SERVE_CLIENTS
    clients asking for random 1 MiB ranges (wrk). Interleaved, the order rotating each round
    (with --before-serve an older build is a third server); ratios against nginx paired
    within a round, then the median."""
    log(f"case 8: serving {warm_size / MIB:.0f} MiB, tabcache serve vs nginx")
    load_start = os.getloadavg()
    cache = warm_cache(hf_env(servers.url("fast")), warm_size)
    sha = index[f"{WARM_REPO}/{WARM_FILE}"]["sha"]
    blob = cache / "blobs" / sha
    if blob.stat().st_size != warm_size:
        raise RuntimeError(f"{blob}: not the cached file")
    # Both serve from memory: the blob is read once, so this measures serving, not the disk.
    subprocess.run(["cat", str(blob)], stdout=subprocess.DEVNULL, check=True)
    result = {"bytes": warm_size, "clients": SERVE_CLIENTS, "range": SERVE_RANGE,
              "seconds_per_load": seconds, "blob": str(blob.relative_to(DATA)),
              "nginx_conf": ServeNginx.CONF.strip()}
    with contextlib.ExitStack() as stack:
        named = {OURS_SERVE: stack.enter_context(OurServer(cache))}
        if BEFORE_SERVE:
            named[BEFORE_SERVE_ROW] = stack.enter_context(OurServer(cache, BEFORE_SERVE))
        named[NGINX_SERVE] = stack.enter_context(ServeNginx(blob))
        for name, server in named.items():
            if check_served(server, blob, warm_size) != sha:
                raise RuntimeError(f"{name}: the whole file's sha256 is not the blob's")
            fetch_whole(server, warm_size)  # warm-up (connections, the blocking pool, caches)
        names = list(named)

        def rounds(count, measure, say):
            got = []
            for r in range(count):
                one = {}
                for name in names[r % len(names):] + names[:r % len(names)]:
                    one[name] = measure(named[name], r)
                    log(f"  run {r + 1}/{count} {name}: {say(one[name])}")
                got.append(one)
            return got

        log("  the whole file, curl -o /dev/null")
        whole = rounds(max(runs, 5), lambda server, _: fetch_whole(server, warm_size),
                       lambda x: f"{warm_size / x['seconds'] / 1e6:.0f} MB/s, server CPU "
                                 f"{x['server_cpu_s']:.2f} s, curl CPU {x['curl_cpu_s']:.2f} s")
        log(f"  {SERVE_CLIENTS} clients, random 1 MiB ranges, {seconds} s each (wrk)")
        # The same seed for every server of a round: they answer the same ranges.
        ranges = rounds(max(runs, 3), lambda server, r: load_ranges(server, warm_size, seconds, r + 1),
                        lambda x: f"{x['rps']:.0f} req/s, p99 {x['latency_us']['p99'] / 1e3:.1f} ms, "
                                  f"server CPU {x['server_cpu_ms_per_request']:.2f} ms/request")
    result["whole"] = whole
    result["ranges"] = ranges
    mbs = lambda run, name: warm_size / run[name]["seconds"] / 1e6  # noqa: E731
    rps = lambda run, name: run[name]["rps"]  # noqa: E731
    p99 = lambda run, name: run[name]["latency_us"]["p99"] / 1e3  # noqa: E731
    wcpu = lambda run, name: max(run[name]["server_cpu_s"], 1 / CLK_TCK)  # noqa: E731
    tcpu = lambda run, name: run[name]["server_cpu_s"] + run[name]["curl_cpu_s"]  # noqa: E731
    rcpu = lambda run, name: run[name]["server_cpu_ms_per_request"]  # noqa: E731
    result["summary"] = {name: {
        "whole_mb_s": statistics.median(mbs(x, name) for x in whole),
        "whole_server_cpu_s": statistics.median(x[name]["server_cpu_s"] for x in whole),
        "whole_curl_cpu_s": statistics.median(x[name]["curl_cpu_s"] for x in whole),
        "whole_total_cpu_s": statistics.median(x[name]["server_cpu_s"] + x[name]["curl_cpu_s"]
                                               for x in whole),
        "ranges_rps": statistics.median(rps(x, name) for x in ranges),
        "ranges_p50_ms": statistics.median(x[name]["latency_us"]["p50"] / 1e3 for x in ranges),
        "ranges_p99_ms": statistics.median(p99(x, name) for x in ranges),
        "ranges_server_cpu_ms": statistics.median(rcpu(x, name) for x in ranges),
    } for name in names}

    def paired(runs_of, figure, name):
        """ours/nginx of `figure` in each round, and their median."""
        each = [figure(x, name) / figure(x, NGINX_SERVE) for x in runs_of]
        return {"median": statistics.median(each), "rounds": [round(v, 3) for v in each]}

    result["ratios"] = {name: {
        "whole_throughput": paired(whole, mbs, name),
        "whole_server_cpu": paired(whole, wcpu, name),
        "whole_total_cpu": paired(whole, tcpu, name),
        "ranges_rps": paired(ranges, rps, name),
        "ranges_p99": paired(ranges, p99, name),
        "ranges_server_cpu": paired(ranges, rcpu, name),
    } for name in names if name != NGINX_SERVE}
    result["load_average"] = {"start": [round(x, 2) for x in load_start],
                              "end": [round(x, 2) for x in os.getloadavg()]}
    return result


# ---------------------------------------------------------------- report

NATIVE_ROW = "tabcache native Xet (fetch example)"
BRIDGE_ROW = "tabcache over the bridge (HF_HUB_DISABLE_XET=1)"
HF_XET_ROW = "huggingface_hub + hf_xet"
CURL_SYNC_ROW = "curl -L -o && sync FILE"
REV2_ROWS = {"disk": ("tabcache native, revision 2 (revision 1 cached)",
                      "tabcache native, revision 1"),
             "tmpfs": ("tabcache native on tmpfs, revision 2", "tabcache native on tmpfs, revision 1"),
             "hf": ("huggingface_hub + hf_xet, revision 2 (revision 1 cached)", None)}
VERIFY_SYNC.update({
    NATIVE_ROW: ("Xet hash, per xorb and chunk", "yes (fdatasync + dir)"),
    BRIDGE_ROW: ("sha256", "yes (fdatasync + dir)"),
    HF_XET_ROW: ("no", "no"),
    CURL_SYNC_ROW: ("no", "yes"),
    REV2_ROWS["disk"][0]: ("Xet hash", "yes"),
    REV2_ROWS["disk"][1]: ("Xet hash", "yes"),
    REV2_ROWS["tmpfs"][0]: ("Xet hash", "tmpfs: no disk"),
    REV2_ROWS["tmpfs"][1]: ("Xet hash", "tmpfs: no disk"),
    REV2_ROWS["hf"][0]: ("no", "no"),
})
TMPFS = Path("/dev/shm")


def case_xet(servers, index, size, runs):
    """Case 9: a Xet-backed file natively, over the bridge, with hf_xet and with curl; then
    its second version with one MiB changed, after the first is cached. Each row: seconds,
    peak RSS, bytes from the CAS and from the CDN (nginx, the bridge's target)."""
    log(f"case 9: a {size / MIB:.0f} MiB Xet-backed file")
    endpoint = servers.url("fast")
    env = hf_env(endpoint)
    bridge_env = dict(env, HF_HUB_DISABLE_XET="1")
    sha1 = index[f"{XET_REPO}/{XET_FILE}"]["sha"]
    sha2 = index[f"{XET2_REPO}/{XET_FILE}"]["sha"]
    fetch = lambda d, repo: [str(FETCH), "file", str(d), repo, XET_FILE]  # noqa: E731

    def measured(row, command, env, *shas):
        """{row: (seconds, rss, CAS bytes, CDN bytes)} of one timed command."""
        cas, cdn = servers.cas_bytes("fast"), servers.log_mark()
        wall, rss, _ = timed(command, env)
        time.sleep(0.3)  # nginx logs a request once its connection closes
        return {row: (wall, rss, servers.cas_bytes("fast") - cas,
                      servers.bytes_sent_since(cdn, *shas))}

    def native():
        d = scratch("xet-native")
        out = measured(NATIVE_ROW, fetch(d, XET_REPO), env, sha1)
        settle(d)
        return out

    def bridge():
        d = scratch("xet-bridge")
        out = measured(BRIDGE_ROW, fetch(d, XET_REPO), bridge_env, sha1)
        settle(d)
        return out

    def hf():
        d = scratch("xet-hf")
        hf_home = dict(env, HF_HOME=str(d / "home"))  # its Xet caches start empty each run
        out = measured(HF_XET_ROW, contender("hf_download_file", XET_REPO, XET_FILE, d / "hub"),
                       hf_home, sha1)
        settle(d)
        return out

    def curl():
        d = scratch("xet-curl")
        target = d / XET_FILE
        url = f"{endpoint}/{XET_REPO}/resolve/main/{XET_FILE}"
        out = measured(CURL_SYNC_ROW, ["sh", "-c", f'curl -sSfL -o "{target}" "{url}" && sync "{target}"'],
                       env, sha1)
        assert target.stat().st_size == size
        settle(d)
        return out

    def revision_two(where):
        """Revision 1 downloaded (timed as its own row), then revision 2 into the same cache."""
        second_row, first_row = REV2_ROWS[where]
        d = (TMPFS / "tabcache-bench-xet") if where == "tmpfs" else scratch("xet-rev2")
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        out = measured(first_row, fetch(d, XET_REPO), env, sha1)
        subprocess.run(["sync"], check=True)
        out.update(measured(second_row, fetch(d, XET2_REPO), env, sha2))
        settle(d)
        return out

    def hf_revision_two():
        d = scratch("xet-hf-rev2")
        hf_home = dict(env, HF_HOME=str(d / "home"))
        timed(contender("hf_download_file", XET_REPO, XET_FILE, d / "hub"), hf_home)
        subprocess.run(["sync"], check=True)
        out = measured(REV2_ROWS["hf"][0], contender("hf_download_file", XET2_REPO, XET_FILE, d / "hub"),
                       hf_home, sha2)
        settle(d)
        return out

    # Untimed: the emulator builds its xorbs on the first request for each file.
    for repo in (XET_REPO, XET2_REPO):
        d = scratch("xet-warm")
        timed(fetch(d, repo), env)
        settle(d)
    contenders = [native, bridge, hf, curl, lambda: revision_two("disk"),
                  lambda: revision_two("tmpfs"), hf_revision_two]
    samples = alternate(contenders, runs)
    rows = {row: {"median_s": statistics.median(v[0] for v in vals),
                  "runs_s": [round(v[0], 3) for v in vals],
                  "peak_rss_mib": max(v[1] for v in vals),
                  "cas_bytes": statistics.median(v[2] for v in vals),
                  "cdn_bytes": statistics.median(v[3] for v in vals)} for row, vals in samples.items()}
    ours = rows[NATIVE_ROW]["median_s"]
    ratio = lambda a, b: rows[a]["median_s"] / rows[b]["median_s"]  # noqa: E731
    return {"size": size, "rows": rows, "ratios": {
        "native / hf_xet": ours / rows[HF_XET_ROW]["median_s"],
        "native / curl && sync": ours / rows[CURL_SYNC_ROW]["median_s"],
        "native / bridge": ours / rows[BRIDGE_ROW]["median_s"],
        "revision 2 / revision 1 (disk)": ratio(*REV2_ROWS["disk"]),
        "revision 2 / revision 1 (tmpfs)": ratio(*REV2_ROWS["tmpfs"]),
        "hf_xet revision 2 / hf_xet revision 1": ratio(REV2_ROWS["hf"][0], HF_XET_ROW)}}


def machine(write_probe):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    fs = subprocess.run(["df", "-T", str(DATA)], capture_output=True, text=True).stdout.splitlines()[-1]
    probe = DATA / "dd-probe"
    dd = subprocess.run(["dd", "if=/dev/zero", f"of={probe}", "bs=1M", f"count={write_probe // MIB}",
                         "conv=fdatasync"], capture_output=True, text=True).stderr.strip().splitlines()[-1]
    probe.unlink()
    return {"cpu": cpu, "cores": os.cpu_count(), "sha_extensions": " sha_ni" in flags,
            "memory_gib": round(mem / 1024 / 1024, 1), "kernel": platform.release(),
            "filesystem": " ".join(fs.split()[:2]), "dd_fdatasync": dd,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "load_average": open("/proc/loadavg").read().split()[:3]}


def versions():
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    hf = subprocess.run([PYTHON, "-c", "import huggingface_hub; print(huggingface_hub.__version__)"],
                        capture_output=True, text=True).stdout.strip()
    return {"curl": first_line(["curl", "--version"]), "aria2c": first_line(["aria2c", "--version"]),
            "nginx": first_line(["nginx", "-v"]), "wrk": first_line(["wrk", "--version"]),
            "huggingface_hub": hf}


def table(results):
    m = results["machine"]
    lines = [f"Date: {m['date']}. Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
             f"SHA extensions: {'yes' if m['sha_extensions'] else 'no'}, {m['filesystem']}, "
             f"kernel {m['kernel']}, load average at start {' '.join(m['load_average'])}. "
             f"Disk: `dd conv=fdatasync`: {m['dd_fdatasync']}.",
             f"Peers: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}. "
             f"Runs per contender: {results['runs']}; medians.", ""]
    if any(case in results for case in ("1 full speed", "2 40 MiB/s per conn", "3 30-file variant")):
        lines += ["| case | contender | verifies | syncs | median s | MB/s | peak RSS MiB | ours / this |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for case, ours_row, size in [("1 full speed", OURS_ROW, results["big_size"]),
                                 ("2 40 MiB/s per conn", OURS_ROW, results["big_size"]),
                                 ("3 30-file variant", OURS_QUANT_ROW, results["variant_size"])]:
        rows = results.get(case)
        if not rows:
            continue
        ours = rows[ours_row]["median_s"]
        for row, r in rows.items():
            verifies, syncs = VERIFY_SYNC[row]
            ratio = "—" if row == ours_row else f"{ours / r['median_s']:.2f}"
            lines.append(f"| {case} | {row} | {verifies} | {syncs} | {r['median_s']:.2f} | "
                         f"{size / r['median_s'] / 1e6:.0f} | {r['peak_rss_mib']:.0f} | {ratio} |")
    w = results.get("5 warm")
    if w:
        lines += ["", "| case 5 (warm, Rust API) | value |", "| --- | ---: |",
                  f"| has_file per call | {w['has_file_s'] * 1e6:.2f} µs |",
                  f"| get_manifest per call | {w['get_manifest_s'] * 1e6:.1f} µs |",
                  f"| get_file, {w['bytes'] / MIB:.0f} MiB | {w['get_file_s']:.3f} s |",
                  f"| std::fs::read of the same file | {w['fs_read_s']:.3f} s |",
                  f"| Python open().read() of the same file | {w['python_open_read_s']:.3f} s |",
                  f"| get_file / fs::read | {w['get_file_s'] / w['fs_read_s']:.2f} |",
                  f"| open_file streamed (1 MiB reads) | {w['bytes'] / w['open_file_stream_s'] / 1e9:.2f} GB/s |",
                  f"| ModelCache::open with {w['open_10k_files']} files in the catalog | {w['open_10k_s'] * 1e3:.1f} ms |",
                  f"| open + first has_file | {w['open_10k_first_has_file_s'] * 1e3:.1f} ms |",
                  f"| whole process (exec, open, has_file, exit; hyperfine) | {w['open_10k_process_s'] * 1e3:.1f} ms |"]
        p = w.get("python")
        if p:
            lines += ["", "| case 5 (warm, Python package over the C ABI) | value |", "| --- | ---: |",
                      f"| has_file per call ({p['calls']:,} calls) | {p['has_file_s'] * 1e6:.2f} µs |",
                      f"| get_manifest per call ({p['calls']:,} calls) | {p['get_manifest_s'] * 1e6:.1f} µs |",
                      f"| get_file, {p['bytes'] / MIB:.0f} MiB (best of 3) | {p['get_file_s']:.3f} s |",
                      f"| open(file_path(...), 'rb').read() of the same file | {p['open_read_s']:.3f} s |",
                      f"| get_file / open().read() | {p['get_file_s'] / p['open_read_s']:.2f} |",
                      f"| cache.open() streamed (1 MiB reads) | {p['bytes'] / p['stream_s'] / 1e9:.2f} GB/s |",
                      f"| ModelCache(...) with {w['open_10k_files']} files in the catalog | {p['open_10k_s'] * 1e3:.1f} ms |",
                      f"| ModelCache(...) + first has_file | {p['open_10k_first_has_file_s'] * 1e3:.1f} ms |"]
    p7 = results.get("7 processes")
    if p7:
        same, four = p7["same file"], p7["four files"]
        n = p7["processes"]
        lines += ["", f"| case 7 (processes sharing one cache; tabcache CLI, {len(same['rounds'])} rounds, medians) | value |",
                  "| --- | ---: |",
                  f"| {n} processes ask for the same {p7['file_size'] / MIB:.0f} MiB file at once: CDN bytes / file (worst round) | {same['many_cdn_worst'] / same['bytes']:.3f} |",
                  f"| the same, one process alone: CDN bytes / file | {same['one_cdn_worst'] / same['bytes']:.3f} |",
                  f"| {n} processes at once: wall time / one process alone | {same['ratio']:.2f} ({same['many_s']:.2f} s vs {same['one_s']:.2f} s) |",
                  f"| 4 different {p7['four_size'] / MIB:.0f} MiB files, a process each: CDN bytes / their size (worst round) | {four['many_cdn_worst'] / four['bytes']:.3f} |",
                  f"| 4 processes (a file each) / the same 4 files in one process: total wall time | {four['ratio']:.2f} ({four['many_s']:.2f} s vs {four['one_s']:.2f} s) |"]
    s8 = results.get("8 serving")
    if s8:
        names = list(s8["summary"])
        ours = [n for n in names if n != NGINX_SERVE]
        head = " | ".join(n if n != NGINX_SERVE else "nginx (sendfile)" for n in names)
        ratio_head = " | ".join(f"{n} / nginx" for n in ours)
        size = f"{s8['bytes'] / MIB:.0f} MiB"

        def row(label, key, fmt, ratio=None):
            values = " | ".join(format(s8["summary"][n][key], fmt) for n in names)
            ratios = " | ".join(f"{s8['ratios'][n][ratio]['median']:.2f}" if ratio else ""
                                for n in ours)
            return f"| {label} | {values} | {ratios} |"

        lines += ["", f"| case 8 (serving the cached file; {len(s8['whole'])} + {len(s8['ranges'])} rounds, "
                  f"medians) | {head} | {ratio_head} |",
                  "| --- |" + " ---: |" * (len(names) + len(ours)),
                  row(f"{size} with `curl -o /dev/null`: MB/s", "whole_mb_s", ".0f", "whole_throughput"),
                  row("the same: server CPU s per transfer", "whole_server_cpu_s", ".2f", "whole_server_cpu"),
                  row("the same: curl CPU s per transfer", "whole_curl_cpu_s", ".2f"),
                  row("the same: server + curl CPU s (loopback's receive work lands on either)",
                      "whole_total_cpu_s", ".2f", "whole_total_cpu"),
                  row(f"{s8['clients']} clients, random 1 MiB ranges: requests/s", "ranges_rps", ".0f", "ranges_rps"),
                  row("the same: p50 latency ms", "ranges_p50_ms", ".1f"),
                  row("the same: p99 latency ms", "ranges_p99_ms", ".1f", "ranges_p99"),
                  row("the same: server CPU ms per request", "ranges_server_cpu_ms", ".2f", "ranges_server_cpu"),
                  ""]
        for n in ours:
            q = s8["ratios"][n]
            lines.append(f"Case 8 rounds, {n} / nginx: whole-file throughput "
                         f"{', '.join(map(str, q['whole_throughput']['rounds']))}; ranges requests/s "
                         f"{', '.join(map(str, q['ranges_rps']['rounds']))}.")
        lines.append(f"Load average {' '.join(map(str, s8['load_average']['start']))} at the start of "
                     f"case 8, {' '.join(map(str, s8['load_average']['end']))} at its end.")
    x = results.get("9 xet")
    if x:
        native = x["rows"][NATIVE_ROW]["median_s"]
        lines += ["", f"| case 9 (Xet-backed {x['size'] / MIB:.0f} MiB file) | verifies | syncs | median s | "
                  "MB/s | peak RSS MiB | CAS bytes | CDN bytes | native / this |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row, r in x["rows"].items():
            verifies, syncs = VERIFY_SYNC[row]
            ratio = "—" if row == NATIVE_ROW else f"{native / r['median_s']:.2f}"
            lines.append(f"| {row} | {verifies} | {syncs} | {r['median_s']:.2f} | "
                         f"{x['size'] / r['median_s'] / 1e6:.0f} | {r['peak_rss_mib']:.0f} | "
                         f"{r['cas_bytes']:,.0f} | {r['cdn_bytes']:,.0f} | {ratio} |")
        lines += ["", "| case 9 ratio (medians) | value |", "| --- | ---: |"]
        lines += [f"| {name} | {value:.3f} |" for name, value in x["ratios"].items()]
    r = results.get("6 resume")
    if r:
        one_range = 16 * MIB
        lines += ["", "| case 6 (kill at 50 %, resume) | bytes |", "| --- | ---: |",
                  f"| file | {r['size']:,} |",
                  f"| held when killed (progress) | {r['progress_at_kill']:,} |",
                  f"| sent by nginx before the kill | {r['sent_before_kill']:,} |",
                  f"| sent by nginx on resume | {r['sent_on_resume']:,} ({r['sent_on_resume'] / r['size']:.1%}) |",
                  f"| re-fetched (both runs − file) | {r['refetched']:,} ({r['refetched'] / one_range:.1f} × 16 MiB range) |",
                  f"| resume wall time | {r['resume_seconds']:.2f} s |"]
    return "\n".join(lines)


def main():
    # Ctrl-C and kill go through Servers.__exit__, so nginx never outlives the driver.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="512 MiB file (256 MiB warm / case 7, 4 x 64 MiB), one run each, "
                         "60 s towards the 10k-file cache")
    ap.add_argument("--big-mib", type=int, help="size of the case 1/2/6 file (default 2048)")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--cases", default="1,2,3,5,6,7,8,9", help="comma-separated case numbers (4 rides on 1)")
    ap.add_argument("--before", type=Path, help="an older build of examples/fetch to compare")
    ap.add_argument("--before-serve", type=Path,
                    help="an older build of the tabcache CLI, a third server in case 8")
    args = ap.parse_args()
    global BEFORE, BEFORE_SERVE, SETUP_BUDGET_S
    BEFORE = args.before.resolve() if args.before else None
    BEFORE_SERVE = args.before_serve.resolve() if args.before_serve else None
    if args.quick:
        SETUP_BUDGET_S = 60
    big = (args.big_mib or (512 if args.quick else 2048)) * MIB
    warm = (256 if args.quick else 1024) * MIB
    four = (64 if args.quick else 256) * MIB
    runs = args.runs or (1 if args.quick else 3)
    cases = set(args.cases.split(","))
    for d in (DATA, CACHES, OUT):
        d.mkdir(parents=True, exist_ok=True)
    generate(big, warm, four)
    index = link_cdn()
    big_sha = index[f"{BIG_REPO}/{BIG_FILE}"]["sha"]
    variant_size = sum(v for v in SHARED_FILES.values()) + sum(
        256 * 1024 + mib * MIB for _, mib in ONNX_COMPONENTS)
    results = {"machine": machine(512 * MIB if args.quick else 1024 * MIB), "versions": versions(),
               "runs": runs, "big_size": big, "variant_size": variant_size}
    log(json.dumps(results["machine"]))
    # Keep the source blobs in the page cache, as a CDN serves from memory.
    subprocess.run(["cat", str(REPOS / BIG_REPO / BIG_FILE)], stdout=subprocess.DEVNULL, check=True)
    with Servers() as servers:
        if "1" in cases:
            results["1 full speed"] = case_file(servers, "fast", big, runs)
        if "2" in cases:
            results["2 40 MiB/s per conn"] = case_file(servers, "slow", big, runs)
        if "3" in cases:
            results["3 30-file variant"] = case_variant(servers, max(runs, 3))
        if "5" in cases:
            results["5 warm"] = case_warm(servers, warm, 100_000)
        if "6" in cases:
            results["6 resume"] = case_resume(servers, big, big_sha)
        if "7" in cases:
            results["7 processes"] = case_processes(servers, index, warm, four, runs)
        if "8" in cases:
            results["8 serving"] = case_serving(servers, index, warm, runs, 5 if args.quick else 10)
        if "9" in cases:
            results["9 xet"] = case_xet(servers, index, big, runs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (OUT / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (OUT / f"table-{stamp}.md").write_text(text + "\n")
    print(text)
    log(f"\nwritten: {OUT}/results-{stamp}.json and table-{stamp}.md")


if __name__ == "__main__":
    main()
