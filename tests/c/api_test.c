/*
 * Drives every function of include/tabcache.h from C against the hub emulator, including
 * the error paths, NULL arguments, stale handles, cancellation from the callback, jobs and
 * a tc_cache shared by threads. Run by tests/c_abi.rs (under valgrind), which lays out the
 * emulator's repos:
 *
 *   org/tiny-gguf   config.json, README.md, model-Q4_K_M.gguf (q4_size bytes), model-Q8_0.gguf
 *   org/slow-gguf   model-Q4_K_M.gguf, model-Q8_0.gguf, served slowly (for cancellation)
 *   org/gated       gated: file downloads answer GatedRepo
 *   org/http500     every request answers 500
 *   org/ratelimited every request answers 429
 *   org/unauth      every request answers 401
 *   org/corrupt     model-Q4_K_M.gguf whose CDN bytes are corrupted
 *   org/served      weights.bin (16 MiB: more than loopback socket buffers hold), for the
 *                   server section's stop in the middle of a download
 *   org/budget-gguf config.json and the variants m-Q2_K.gguf, m-Q4_K_M.gguf, m-Q5_K_M.gguf,
 *                   m-Q8_0.gguf, of one size (over the LFS threshold), for the disk budget
 *
 * and a huggingface_hub cache at HF_CACHE (also in the HF_HUB_CACHE environment variable)
 * holding org/imported at one commit, which refs/main names: model-Q4_K_M.gguf (an LFS blob
 * named by its sha256), config.json (named by its git blob sha1), and damaged.gguf, whose
 * bytes no longer match its blob's name.
 *
 * Usage: api_test ENDPOINT DEAD_ENDPOINT WORKDIR Q4_SIZE HF_CACHE [reuse]
 * Prints one "ok - NAME" line per section and a final "N passed, M failed" line. With
 * "reuse", runs only the section on handles, strings and buffers whose memory was reused,
 * which needs an allocator that reuses freed memory at once (valgrind --freelist-vol=0).
 */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700 /* realpath */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tabcache.h"

static int passed = 0;
static int failed = 0;
static int section_failed = 0;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) {                                                                       \
            passed++;                                                                     \
        } else {                                                                          \
            failed++;                                                                     \
            section_failed = 1;                                                           \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    tc_last_error_message());                                             \
        }                                                                                 \
    } while (0)

/* Checks the status, and that a failure came with a message and a success without one. */
#define CHECK_STATUS(expr, want)                                                           \
    do {                                                                                   \
        tc_status got_ = (expr);                                                           \
        if (got_ == (tc_status)(want) &&                                                   \
            ((want) == TC_STATUS_OK || (want) == TC_STATUS_PENDING) ==                    \
                (tc_last_error_message()[0] == '\0')) {                                   \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            section_failed = 1;                                                            \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, want %s (last error: \"%s\")\n",   \
                    __FILE__, __LINE__, #expr, tc_status_name(got_), tc_status_name(want), \
                    tc_last_error_message());                                              \
        }                                                                                  \
    } while (0)

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void section(const char *name) {
    static const char *current = NULL;
    static double started = 0;
    if (current != NULL) {
        printf("%s - %s (%.0f ms)\n", section_failed ? "not ok" : "ok", current, now_ms() - started);
        fflush(stdout);
    }
    current = name;
    started = now_ms();
    section_failed = 0;
}

static const char *endpoint;
static const char *dead_endpoint;
static const char *workdir;
static unsigned long long q4_size;
static const char *hf_cache;

static char *join(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    snprintf(path, len, "%s/%s", dir, name);
    return path;
}

static tc_options test_options(const char *hub) {
    tc_options options;
    tc_options_init(&options);
    options.endpoint = hub;
    options.token = "";
    options.max_retries = 0;
    options.retry_base_delay_ms = 1;
    options.connect_timeout_ms = 2000;
    options.read_timeout_ms = 10000;
    return options;
}

/* Opens WORKDIR/name. */
static tc_cache *open_cache(const char *name, const tc_options *options) {
    char *dir = join(workdir, name);
    tc_cache *cache = NULL;
    CHECK_STATUS(tc_cache_open(dir, options, &cache), TC_STATUS_OK);
    free(dir);
    return cache;
}

/* Progress recorder: checks every call is monotonic, on the expected thread. */
struct progress_log {
    pthread_t thread;
    int calls;
    int wrong_thread;
    int went_back;
    uint64_t last_loaded;
    uint64_t last_total;
    int cancel_after; /* cancel on this call number (1-based); 0 = never */
};

static int record_progress(void *user_data, uint64_t loaded, uint64_t total) {
    struct progress_log *log = user_data;
    log->calls++;
    if (!pthread_equal(log->thread, pthread_self())) log->wrong_thread = 1;
    if (loaded < log->last_loaded) log->went_back = 1;
    log->last_loaded = loaded;
    log->last_total = total;
    return log->cancel_after != 0 && log->calls >= log->cancel_after;
}

static struct progress_log new_log(int cancel_after) {
    struct progress_log log;
    memset(&log, 0, sizeof log);
    log.thread = pthread_self();
    log.cancel_after = cancel_after;
    return log;
}

static void test_version_and_names(void) {
    section("version and status names");
    CHECK(strcmp(tc_version(), TC_VERSION) == 0);
    CHECK(TC_VERSION_MAJOR == 0 && TC_VERSION_MINOR >= 1);
    CHECK(strcmp(tc_status_name(TC_STATUS_OK), "ok") == 0);
    CHECK(strcmp(tc_status_name(TC_STATUS_NOT_CACHED), "not_cached") == 0);
    CHECK(strcmp(tc_status_name(TC_STATUS_PENDING), "pending") == 0);
    CHECK(strcmp(tc_status_name(9999), "unknown") == 0);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
}

static void test_open_errors(void) {
    section("tc_cache_open argument errors");
    tc_cache *sentinel = (tc_cache *)&passed; /* must stay untouched on failure */
    tc_cache *cache = sentinel;
    tc_options options = test_options(endpoint);
    char *dir = join(workdir, "open-errors");

    CHECK_STATUS(tc_cache_open(NULL, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "db_path") != NULL);
    CHECK_STATUS(tc_cache_open(dir, &options, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_open("", &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_open("bad-\xff-utf8", &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "UTF-8") != NULL);

    options.struct_size = 3;
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "struct_size") != NULL);
    options.struct_size = sizeof(tc_options) + 64;
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    options = test_options(endpoint);
    options.offline = 7;
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "offline") != NULL);
    options = test_options(endpoint);
    options.max_retries = -5;
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    options = test_options("\xfe\xff");
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "endpoint") != NULL);
    CHECK(cache == sentinel);

    /* A struct from an older header (only the fields up to endpoint) is accepted. */
    options = test_options(endpoint);
    options.struct_size = offsetof(tc_options, token);
    CHECK_STATUS(tc_cache_open(dir, &options, &cache), TC_STATUS_OK);
    CHECK(cache != sentinel && cache != NULL);
    tc_cache_close(cache);

    /* NULL options: all defaults. */
    cache = NULL;
    CHECK_STATUS(tc_cache_open(dir, NULL, &cache), TC_STATUS_OK);
    tc_cache_close(cache);
    tc_options_init(NULL); /* ignored */

    /* A regular file where the cache directory should be. */
    char *file = join(workdir, "not-a-directory");
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    cache = sentinel;
    CHECK_STATUS(tc_cache_open(file, &options, &cache), TC_STATUS_IO);
    CHECK(cache == sentinel);
    free(file);
    free(dir);
}

static void test_shared(void) {
    section("two handles on one directory at once: both work, each sees the other's files");
    tc_options options = test_options(endpoint);
    tc_cache *first = open_cache("shared", &options);
    tc_cache *second = open_cache("shared", &options);
    char *path = NULL;
    bool has = false;
    CHECK_STATUS(tc_cache_download_file(first, "org/tiny-gguf", "config.json", NULL, NULL, NULL, &path), TC_STATUS_OK);
    tc_string_free(path);
    CHECK_STATUS(tc_cache_has_file(second, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
    CHECK(has);
    path = NULL;
    CHECK_STATUS(tc_cache_download_file(second, "org/tiny-gguf", "model-Q8_0.gguf", NULL, NULL, NULL, &path), TC_STATUS_OK);
    CHECK(path != NULL);
    tc_string_free(path);
    has = false;
    CHECK_STATUS(tc_cache_has_file(first, "org/tiny-gguf", "model-Q8_0.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(has);
    tc_cache_close(first);
    /* The second handle is unaffected by the first one closing. */
    has = false;
    CHECK_STATUS(tc_cache_has_file(second, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
    CHECK(has);
    tc_cache_close(second);
}

static void test_bad_handles(tc_cache *cache) {
    section("NULL, foreign and malformed arguments");
    char *json = (char *)"untouched";
    tc_cache *foreign = (tc_cache *)&passed;
    CHECK_STATUS(tc_cache_scan_repo(NULL, "org/tiny-gguf", NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "NULL") != NULL);
    CHECK_STATUS(tc_cache_scan_repo(foreign, "org/tiny-gguf", NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "not a tc_cache") != NULL);
    CHECK_STATUS(tc_cache_scan_repo(cache, NULL, NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/\xc3\x28", NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_scan_repo(cache, "not a repo id!", NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", "bad\xff", &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(json, "untouched") == 0);

    CHECK_STATUS(tc_cache_get_manifest(NULL, "org/x", &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_manifest(cache, NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/x", NULL), TC_STATUS_INVALID_ARGUMENT);

    CHECK_STATUS(tc_cache_download_file(NULL, "org/tiny-gguf", "config.json", NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file(cache, NULL, "config.json", NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", NULL, NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "../escape", NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant(NULL, "org/tiny-gguf", "Q4_K_M", NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant(cache, "org/tiny-gguf", NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant(cache, NULL, "Q4_K_M", NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);

    bool has = true;
    CHECK_STATUS(tc_cache_has_file(NULL, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", NULL, NULL, &has), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(has == true);

    tc_bytes bytes = {NULL, 0};
    CHECK_STATUS(tc_cache_get_file(NULL, "org/tiny-gguf", "config.json", NULL, &bytes), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_file(cache, "org/tiny-gguf", "config.json", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_file(cache, NULL, "config.json", NULL, &bytes), TC_STATUS_INVALID_ARGUMENT);

    char *path = NULL;
    CHECK_STATUS(tc_cache_file_path(NULL, "org/tiny-gguf", "config.json", NULL, &path), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_file_path(cache, "org/tiny-gguf", "config.json", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_file_path(cache, "org/tiny-gguf", NULL, NULL, &path), TC_STATUS_INVALID_ARGUMENT);

    tc_reader *reader = NULL;
    CHECK_STATUS(tc_cache_open_reader(NULL, "org/tiny-gguf", "config.json", NULL, &reader), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_open_reader(cache, "org/tiny-gguf", "config.json", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_open_reader(cache, NULL, "config.json", NULL, &reader), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_read(NULL, NULL, 0, NULL), TC_STATUS_INVALID_ARGUMENT);
    uint64_t size = 0;
    CHECK_STATUS(tc_reader_size(NULL, &size), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_seek(NULL, 0, 0, NULL), TC_STATUS_INVALID_ARGUMENT);

    CHECK_STATUS(tc_cache_delete_model(NULL, "org/x", NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_delete_model(cache, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    tc_stats stats;
    CHECK_STATUS(tc_cache_get_stats(NULL, &stats), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_stats(cache, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_stats_json(NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_get_stats_json(cache, NULL), TC_STATUS_INVALID_ARGUMENT);

    tc_job *job = NULL;
    uint64_t loaded = 0, total = 0;
    CHECK_STATUS(tc_cache_download_quant_start(NULL, "org/tiny-gguf", "Q4_K_M", NULL, &job), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant_start(cache, "org/tiny-gguf", "Q4_K_M", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant_start(cache, "org/tiny-gguf", "", NULL, &job), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_quant_start(cache, "bad id!", "Q4_K_M", NULL, &job), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file_start(NULL, "org/tiny-gguf", "config.json", NULL, &job), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/tiny-gguf", NULL, NULL, &job), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/tiny-gguf", "config.json", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(job == NULL);
    CHECK_STATUS(tc_job_progress(NULL, &loaded, &total), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_cancel(NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_wait(NULL, 0), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_status(NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_file_path(NULL, &path), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_wait((tc_job *)&passed, 0), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "tc_job") != NULL);

    /* The free functions ignore NULL. */
    tc_string_free(NULL);
    tc_bytes_free(NULL);
    tc_job_free(NULL);
    tc_reader_close(NULL);
    tc_cache_close(NULL);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
}

static void test_not_cached(tc_cache *cache) {
    section("reads before anything is cached report NOT_CACHED");
    char *json = (char *)"untouched";
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/tiny-gguf", &json), TC_STATUS_NOT_CACHED);
    CHECK(strstr(tc_last_error_message(), "tc_cache_scan_repo") != NULL);
    CHECK(strcmp(json, "untouched") == 0);
    bool has = true;
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
    CHECK(has == false);
    tc_bytes bytes = {(uint8_t *)"untouched", 9};
    CHECK_STATUS(tc_cache_get_file(cache, "org/tiny-gguf", "config.json", NULL, &bytes), TC_STATUS_NOT_CACHED);
    CHECK(bytes.len == 9);
    char *path = (char *)"untouched";
    CHECK_STATUS(tc_cache_file_path(cache, "org/tiny-gguf", "config.json", NULL, &path), TC_STATUS_NOT_CACHED);
    CHECK(strcmp(path, "untouched") == 0);
    tc_reader *reader = NULL;
    CHECK_STATUS(tc_cache_open_reader(cache, "org/tiny-gguf", "config.json", NULL, &reader), TC_STATUS_NOT_CACHED);
    CHECK(reader == NULL);
}

static void test_scan(tc_cache *cache) {
    section("scan_repo and get_manifest");
    char *json = NULL;
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", NULL, &json), TC_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"repo_id\":\"org/tiny-gguf\"") != NULL);
    CHECK(json != NULL && strstr(json, "\"Q4_K_M\"") != NULL && strstr(json, "\"Q8_0\"") != NULL);
    CHECK(json != NULL && strstr(json, "text-generation") != NULL);
    CHECK(json != NULL && strstr(json, "\"status\":\"available\"") != NULL);
    tc_string_free(json);
    json = NULL;
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", "main", &json), TC_STATUS_OK);
    tc_string_free(json);
    json = NULL;
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/tiny-gguf", &json), TC_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"revision\":\"main\"") != NULL);
    tc_string_free(json);
}

static void test_hub_errors(tc_cache *cache) {
    section("hub errors map to their status");
    char *json = (char *)"untouched";
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/missing", NULL, &json), TC_STATUS_REPO_NOT_FOUND);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", "no-such-branch", &json), TC_STATUS_REVISION_NOT_FOUND);
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "missing.bin", NULL, NULL, NULL, NULL), TC_STATUS_ENTRY_NOT_FOUND);
    CHECK_STATUS(tc_cache_download_quant(cache, "org/tiny-gguf", "Q9_Z", NULL, NULL, NULL), TC_STATUS_ENTRY_NOT_FOUND);
    CHECK(strstr(tc_last_error_message(), "Q4_K_M") != NULL); /* the message lists the variants */
    CHECK_STATUS(tc_cache_download_file(cache, "org/gated", "config.json", NULL, NULL, NULL, NULL), TC_STATUS_GATED_REPO);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/http500", NULL, &json), TC_STATUS_HTTP);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/ratelimited", NULL, &json), TC_STATUS_RATE_LIMITED);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/unauth", NULL, &json), TC_STATUS_UNAUTHORIZED);
    CHECK_STATUS(tc_cache_download_file(cache, "org/corrupt", "model-Q4_K_M.gguf", NULL, NULL, NULL, NULL), TC_STATUS_CORRUPT);
    CHECK(strcmp(json, "untouched") == 0);
    bool has = true;
    CHECK_STATUS(tc_cache_has_file(cache, "org/corrupt", "model-Q4_K_M.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(has == false);

    tc_options dead = test_options(dead_endpoint);
    tc_cache *unreachable = open_cache("dead-endpoint", &dead);
    CHECK_STATUS(tc_cache_scan_repo(unreachable, "org/tiny-gguf", NULL, &json), TC_STATUS_NETWORK);
    tc_cache_close(unreachable);
}

static void test_downloads(tc_cache *cache) {
    section("download_file, download_files and download_quant with progress on the calling thread");
    struct progress_log log = new_log(0);
    char *path = NULL;
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", NULL, record_progress, &log, &path), TC_STATUS_OK);
    CHECK(log.calls >= 1 && log.wrong_thread == 0 && log.went_back == 0);
    CHECK(log.last_loaded == log.last_total && log.last_total > 0);
    CHECK(path != NULL && strstr(path, "config.json") != NULL);
    struct stat st;
    CHECK(path != NULL && stat(path, &st) == 0 && (uint64_t)st.st_size == log.last_total);
    tc_string_free(path);
    /* Already cached: no out_path wanted, no callback given. */
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", "main", NULL, NULL, NULL), TC_STATUS_OK);

    /* Several files at once: their paths in the order asked, one progress over them all. */
    const char *several[] = {"README.md", "config.json"};
    char *paths_json = NULL;
    log = new_log(0);
    CHECK_STATUS(tc_cache_download_files(cache, "org/tiny-gguf", several, 2, NULL, record_progress, &log, &paths_json), TC_STATUS_OK);
    CHECK(log.calls >= 1 && log.wrong_thread == 0 && log.went_back == 0);
    CHECK(log.last_loaded == log.last_total && log.last_total > 0);
    CHECK(paths_json != NULL && paths_json[0] == '[');
    const char *readme_at = paths_json ? strstr(paths_json, "README.md") : NULL;
    const char *config_at = paths_json ? strstr(paths_json, "config.json") : NULL;
    CHECK(readme_at != NULL && config_at != NULL && readme_at < config_at);
    tc_string_free(paths_json);
    paths_json = NULL;
    CHECK_STATUS(tc_cache_download_files(cache, "org/tiny-gguf", NULL, 0, NULL, NULL, NULL, &paths_json), TC_STATUS_OK);
    CHECK(paths_json != NULL && strcmp(paths_json, "[]") == 0);
    tc_string_free(paths_json);
    CHECK_STATUS(tc_cache_download_files(cache, "org/tiny-gguf", NULL, 2, NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    const char *with_null[] = {"config.json", NULL};
    CHECK_STATUS(tc_cache_download_files(cache, "org/tiny-gguf", with_null, 2, NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "paths[1]") != NULL);
    const char *escaping[] = {"config.json", "../escape"};
    CHECK_STATUS(tc_cache_download_files(cache, "org/tiny-gguf", escaping, 2, NULL, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);

    log = new_log(0);
    CHECK_STATUS(tc_cache_download_quant(cache, "org/tiny-gguf", "Q4_K_M", NULL, record_progress, &log), TC_STATUS_OK);
    CHECK(log.calls >= 1 && log.wrong_thread == 0 && log.went_back == 0);
    CHECK(log.last_loaded == log.last_total && log.last_total >= q4_size);

    char *json = NULL;
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/tiny-gguf", &json), TC_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"status\":\"downloaded\"") != NULL);
    tc_string_free(json);
}

static void test_cancel_from_callback(tc_cache *cache) {
    section("a non-zero callback return cancels");
    struct progress_log log = new_log(1);
    CHECK_STATUS(tc_cache_download_quant(cache, "org/slow-gguf", "Q8_0", NULL, record_progress, &log), TC_STATUS_CANCELLED);
    CHECK(log.calls == 1);
    CHECK(strstr(tc_last_error_message(), "cancel") != NULL);
    bool has = true;
    CHECK_STATUS(tc_cache_has_file(cache, "org/slow-gguf", "model-Q8_0.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(has == false);

    log = new_log(1);
    CHECK_STATUS(tc_cache_download_file(cache, "org/slow-gguf", "model-Q4_K_M.gguf", NULL, record_progress, &log, NULL), TC_STATUS_CANCELLED);
    CHECK(log.calls == 1);
}

static void test_reads(tc_cache *cache) {
    section("has_file, get_file, file_path, reader");
    bool has = false;
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
    CHECK(has == true);
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "README.md", NULL, &has), TC_STATUS_OK);

    tc_bytes bytes = {NULL, 0};
    CHECK_STATUS(tc_cache_get_file(cache, "org/tiny-gguf", "config.json", NULL, &bytes), TC_STATUS_OK);
    const char *expected = "{\"model_type\": \"llama\"}\n";
    CHECK(bytes.len == strlen(expected) && memcmp(bytes.data, expected, bytes.len) == 0);
    tc_bytes copy = bytes;
    tc_bytes_free(&bytes);
    CHECK(bytes.data == NULL && bytes.len == 0);
    tc_bytes_free(&bytes); /* reset by the first call: harmless */
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    tc_bytes_free(&copy); /* a stale copy: detected, nothing freed twice */
    CHECK(strstr(tc_last_error_message(), "already freed") != NULL);
    char not_ours[] = "not from tabcache";
    tc_string_free(not_ours);
    CHECK(strstr(tc_last_error_message(), "not a live string") != NULL);

    char *path = NULL;
    CHECK_STATUS(tc_cache_file_path(cache, "org/tiny-gguf", "model-Q4_K_M.gguf", NULL, &path), TC_STATUS_OK);
    FILE *f = path ? fopen(path, "rb") : NULL;
    char magic[4] = {0};
    CHECK(f != NULL && fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0);
    if (f) fclose(f);
    CHECK(path != NULL && strstr(path, "model-Q4_K_M.gguf") != NULL);
    tc_string_free(path);
    tc_string_free(path); /* double free: detected and ignored */
    CHECK(strstr(tc_last_error_message(), "already freed") != NULL);

    tc_reader *reader = NULL;
    CHECK_STATUS(tc_cache_open_reader(cache, "org/tiny-gguf", "model-Q4_K_M.gguf", NULL, &reader), TC_STATUS_OK);
    uint64_t size = 0;
    CHECK_STATUS(tc_reader_size(reader, &size), TC_STATUS_OK);
    CHECK(size == q4_size);
    CHECK_STATUS(tc_reader_size(reader, NULL), TC_STATUS_INVALID_ARGUMENT);
    size_t n = 99;
    CHECK_STATUS(tc_reader_read(reader, NULL, 0, &n), TC_STATUS_OK);
    CHECK(n == 0);
    unsigned char buf[65536];
    CHECK_STATUS(tc_reader_read(reader, NULL, sizeof buf, &n), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_read(reader, buf, sizeof buf, NULL), TC_STATUS_INVALID_ARGUMENT);
    uint64_t total = 0;
    int first = 1, magic_ok = 0;
    for (;;) {
        tc_status st = tc_reader_read(reader, buf, sizeof buf, &n);
        if (st != TC_STATUS_OK || n == 0) {
            CHECK_STATUS(st, TC_STATUS_OK);
            break;
        }
        if (first) magic_ok = n >= 4 && memcmp(buf, "GGUF", 4) == 0;
        first = 0;
        total += n;
    }
    CHECK(magic_ok);
    CHECK(total == q4_size);
    uint64_t pos = 1;
    CHECK_STATUS(tc_reader_seek(reader, 0, 1, &pos), TC_STATUS_OK);
    CHECK(pos == (uint64_t)q4_size);
    CHECK_STATUS(tc_reader_seek(reader, 0, 0, &pos), TC_STATUS_OK);
    CHECK(pos == 0);
    CHECK_STATUS(tc_reader_read(reader, buf, 4, &n), TC_STATUS_OK);
    CHECK(n == 4 && memcmp(buf, "GGUF", 4) == 0);
    CHECK_STATUS(tc_reader_seek(reader, -4, 2, &pos), TC_STATUS_OK);
    CHECK(pos == (uint64_t)q4_size - 4);
    CHECK_STATUS(tc_reader_seek(reader, -1, 0, &pos), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_seek(reader, -(int64_t)q4_size, 1, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_seek(reader, 0, 3, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_reader_seek(reader, 0, 1, &pos), TC_STATUS_OK);
    CHECK(pos == (uint64_t)q4_size - 4);
    tc_reader_close(reader);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    tc_reader_close(reader);
    CHECK(strstr(tc_last_error_message(), "tc_reader") != NULL);
    CHECK_STATUS(tc_reader_read(reader, buf, sizeof buf, &n), TC_STATUS_INVALID_ARGUMENT);
}

static void test_stats(tc_cache *cache) {
    section("stats");
    tc_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_STATUS(tc_cache_get_stats(cache, &stats), TC_STATUS_OK);
    CHECK(stats.total_repos >= 1);
    CHECK(stats.total_files >= 2);
    CHECK(stats.total_size >= q4_size);
    CHECK(stats.disk_bytes <= stats.total_size);
    CHECK(stats.dedup_saved_bytes == stats.total_size - stats.disk_bytes);
    char *json = NULL;
    CHECK_STATUS(tc_cache_get_stats_json(cache, &json), TC_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"total_repos\":") != NULL && strstr(json, "\"dedup_saved_bytes\":") != NULL);
    tc_string_free(json);
}

static void test_jobs(tc_cache *cache) {
    section("jobs: wait, progress, cancel, status, file_path, free");
    tc_job *job = NULL;
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/tiny-gguf", "README.md", NULL, &job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(job, -1), TC_STATUS_OK);
    CHECK_STATUS(tc_job_status(job), TC_STATUS_OK);
    char *path = NULL;
    CHECK_STATUS(tc_job_file_path(job, &path), TC_STATUS_OK);
    CHECK(path != NULL && strstr(path, "README.md") != NULL);
    tc_string_free(path);
    CHECK_STATUS(tc_job_file_path(job, NULL), TC_STATUS_INVALID_ARGUMENT);
    uint64_t loaded = 0, total = 0;
    CHECK_STATUS(tc_job_progress(job, &loaded, &total), TC_STATUS_OK);
    CHECK(loaded == total && total > 0);
    CHECK_STATUS(tc_job_progress(job, NULL, &total), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_job_progress(job, &loaded, NULL), TC_STATUS_INVALID_ARGUMENT);
    tc_job_free(job);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    tc_job_free(job);
    CHECK(strstr(tc_last_error_message(), "tc_job") != NULL);
    CHECK_STATUS(tc_job_status(job), TC_STATUS_INVALID_ARGUMENT);

    job = NULL;
    CHECK_STATUS(tc_cache_download_quant_start(cache, "org/tiny-gguf", "Q4_K_M", NULL, &job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(job, 60000), TC_STATUS_OK);
    path = NULL;
    CHECK_STATUS(tc_job_file_path(job, &path), TC_STATUS_INVALID_ARGUMENT); /* a variant has no single path */
    CHECK(path == NULL);
    tc_job_free(job);

    /* A slow download: pending, progressing, then cancelled. */
    job = NULL;
    CHECK_STATUS(tc_cache_download_quant_start(cache, "org/slow-gguf", "Q8_0", NULL, &job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(job, 0), TC_STATUS_PENDING);
    CHECK_STATUS(tc_job_status(job), TC_STATUS_PENDING);
    path = (char *)"untouched";
    CHECK_STATUS(tc_job_file_path(job, &path), TC_STATUS_PENDING);
    CHECK(strcmp(path, "untouched") == 0);
    loaded = 0;
    for (int i = 0; i < 600 && loaded == 0; i++) {
        CHECK_STATUS(tc_job_wait(job, 50), TC_STATUS_PENDING);
        CHECK_STATUS(tc_job_progress(job, &loaded, &total), TC_STATUS_OK);
    }
    CHECK(loaded > 0 && loaded < total);
    CHECK_STATUS(tc_job_cancel(job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(job, -1), TC_STATUS_CANCELLED);
    CHECK(strstr(tc_last_error_message(), "cancel") != NULL);
    CHECK_STATUS(tc_job_status(job), TC_STATUS_CANCELLED);
    CHECK_STATUS(tc_job_cancel(job), TC_STATUS_OK); /* cancelling a finished job changes nothing */
    CHECK_STATUS(tc_job_status(job), TC_STATUS_CANCELLED);
    tc_job_free(job);

    /* A job's error is its outcome, with its message. */
    job = NULL;
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/missing", "config.json", NULL, &job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(job, -1), TC_STATUS_REPO_NOT_FOUND);
    CHECK(strstr(tc_last_error_message(), "org/missing") != NULL);
    path = NULL;
    CHECK_STATUS(tc_job_file_path(job, &path), TC_STATUS_REPO_NOT_FOUND);
    tc_job_free(job);

    /* Freeing a running job cancels it and returns once its thread stopped. */
    job = NULL;
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/slow-gguf", "model-Q8_0.gguf", NULL, &job), TC_STATUS_OK);
    tc_job_free(job);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
}

struct worker {
    tc_cache *cache;
    const char *file;
    int ok;
    char error_seen[256];
};

static void *thread_body(void *arg) {
    struct worker *w = arg;
    w->ok = 1;
    for (int round = 0; round < 3; round++) {
        bool has = false;
        tc_stats stats;
        tc_bytes bytes = {NULL, 0};
        if (tc_cache_download_file(w->cache, "org/tiny-gguf", w->file, NULL, NULL, NULL, NULL) != TC_STATUS_OK) w->ok = 0;
        if (tc_cache_has_file(w->cache, "org/tiny-gguf", w->file, NULL, &has) != TC_STATUS_OK || !has) w->ok = 0;
        if (tc_cache_get_stats(w->cache, &stats) != TC_STATUS_OK) w->ok = 0;
        if (tc_cache_get_file(w->cache, "org/tiny-gguf", w->file, NULL, &bytes) != TC_STATUS_OK || bytes.len == 0) w->ok = 0;
        tc_bytes_free(&bytes);
    }
    /* This thread's error does not leak into another thread's tc_last_error_message. */
    if (tc_cache_scan_repo(w->cache, NULL, NULL, NULL) != TC_STATUS_INVALID_ARGUMENT) w->ok = 0;
    snprintf(w->error_seen, sizeof w->error_seen, "%s", tc_last_error_message());
    return NULL;
}

static void test_threads(tc_cache *cache) {
    section("one tc_cache shared by threads");
    char *json = NULL;
    CHECK_STATUS(tc_cache_delete_model(cache, "org/tiny-gguf", NULL), TC_STATUS_OK);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", NULL, &json), TC_STATUS_OK);
    tc_string_free(json);
    const char *files[] = {"config.json", "README.md", "model-Q4_K_M.gguf", "model-Q4_K_M.gguf", "model-Q8_0.gguf", "config.json"};
    enum { N = sizeof files / sizeof files[0] };
    struct worker workers[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        workers[i].cache = cache;
        workers[i].file = files[i];
        workers[i].ok = 0;
        workers[i].error_seen[0] = '\0';
        CHECK(pthread_create(&threads[i], NULL, thread_body, &workers[i]) == 0);
    }
    CHECK(strcmp(tc_last_error_message(), "") == 0); /* the workers' errors are theirs */
    for (int i = 0; i < N; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(workers[i].ok);
        CHECK(strstr(workers[i].error_seen, "repo_id") != NULL);
    }
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    bool has = false;
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "model-Q8_0.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(has);
}

static void test_offline(void) {
    section("offline: cached data served, everything else OFFLINE");
    tc_options options = test_options(endpoint);
    options.offline = 1;
    tc_cache *cache = open_cache("main", &options);
    char *json = NULL;
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/tiny-gguf", &json), TC_STATUS_OK);
    tc_string_free(json);
    json = NULL;
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/tiny-gguf", NULL, &json), TC_STATUS_OK);
    tc_string_free(json);
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", NULL, NULL, NULL, NULL), TC_STATUS_OK);
    CHECK_STATUS(tc_cache_scan_repo(cache, "org/never-scanned", NULL, &json), TC_STATUS_OFFLINE);
    CHECK(strstr(tc_last_error_message(), "offline") != NULL);
    CHECK_STATUS(tc_cache_download_file(cache, "org/never-scanned", "config.json", NULL, NULL, NULL, NULL), TC_STATUS_OFFLINE);
    tc_cache_close(cache);
}

static void test_delete_and_close(void) {
    section("delete_model and close");
    tc_options options = test_options(endpoint);
    tc_cache *cache = open_cache("main", &options);
    uint64_t freed = 0;
    CHECK_STATUS(tc_cache_delete_model(cache, "org/tiny-gguf", &freed), TC_STATUS_OK);
    CHECK(freed >= q4_size);
    bool has = true;
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
    CHECK(has == false);
    char *json = NULL;
    CHECK_STATUS(tc_cache_get_manifest(cache, "org/tiny-gguf", &json), TC_STATUS_NOT_CACHED);
    freed = 1;
    CHECK_STATUS(tc_cache_delete_model(cache, "org/tiny-gguf", &freed), TC_STATUS_OK);
    CHECK(freed == 0);

    tc_cache_close(cache);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    CHECK_STATUS(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
    tc_cache_close(cache);
    CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* How many of this process's open file descriptors point into dir (or are dir). */
static int fds_into(const char *dir) {
    char real[4096];
    if (realpath(dir, real) == NULL) return -1;
    size_t real_len = strlen(real);
    DIR *fds = opendir("/proc/self/fd");
    if (fds == NULL) return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(fds)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char link[320], target[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%s", entry->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0) continue;
        target[len] = '\0';
        if (strncmp(target, real, real_len) == 0 && (target[real_len] == '/' || target[real_len] == '\0'))
            count++;
    }
    closedir(fds);
    return count;
}

struct in_flight {
    tc_cache *cache;
    volatile int started;
    volatile int stop;
    tc_status status;
};

static int in_flight_progress(void *user_data, uint64_t loaded, uint64_t total) {
    struct in_flight *call = user_data;
    (void)loaded;
    (void)total;
    call->started = 1;
    return call->stop;
}

static void *in_flight_download(void *arg) {
    struct in_flight *call = arg;
    char *path = NULL;
    call->status = tc_cache_download_file(call->cache, "org/slow-gguf", "model-Q8_0.gguf", NULL,
                                          in_flight_progress, call, &path);
    tc_string_free(path);
    return NULL;
}

/* tc_cache_close while another thread is inside a call on the handle: close returns at once
 * and the handle is refused from then on, the running call goes on, and the cache (catalog,
 * open files) is released when that call ends. */
static void test_close_while_in_flight(void) {
    section("close while another thread is inside a call");
    tc_options options = test_options(endpoint);
    char *dir = join(workdir, "closing");
    tc_cache *cache = open_cache("closing", &options);
    CHECK(fds_into(dir) > 0);
    struct in_flight call = {cache, 0, 0, TC_STATUS_INTERNAL};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, in_flight_download, &call) == 0);
    for (int i = 0; i < 3000 && !call.started; i++) sleep_ms(10);
    CHECK(call.started);

    double before = now_ms();
    tc_cache_close(cache);
    CHECK(now_ms() - before < 1000);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    char *json = NULL;
    CHECK_STATUS(tc_cache_get_stats_json(cache, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
    CHECK(json == NULL);
    /* The call still runs on the cache, which is still open for it. */
    sleep_ms(200);
    CHECK(!call.stop && call.status == TC_STATUS_INTERNAL);
    CHECK(fds_into(dir) > 0);

    call.stop = 1;
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(call.status == TC_STATUS_CANCELLED);
    int open_fds = -1;
    for (int i = 0; i < 500 && open_fds != 0; i++) {
        open_fds = fds_into(dir);
        if (open_fds != 0) sleep_ms(10);
    }
    CHECK(open_fds == 0);
    tc_cache_close(cache);
    CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
    free(dir);
}

/* The address part of a handle (its slot and kind): the library keeps the slot's generation
 * in the top 16 bits. */
#define ADDRESS_OF(handle) ((uintptr_t)(handle) & (((uintptr_t)1 << 48) - 1))
#define MAX_TRIES 400

/* A closed handle, a freed string and a freed buffer are refused even once their memory
 * holds a newer one: free one, allocate until the address comes back, use the stale one.
 * (Handles reuse the slot freed last at once; strings and buffers reuse what the allocator
 * gives back.) */
static void test_reused_memory(void) {
    section("stale handles, strings and buffers are refused after their memory is reused");
    tc_options options = test_options(endpoint);
    tc_cache *cache = open_cache("reuse", &options);
    char *path = NULL;
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", NULL, NULL, NULL, &path), TC_STATUS_OK);
    tc_string_free(path);

    /* tc_reader */
    tc_reader *stale_reader = NULL, *readers[MAX_TRIES];
    CHECK_STATUS(tc_cache_open_reader(cache, "org/tiny-gguf", "config.json", NULL, &stale_reader), TC_STATUS_OK);
    tc_reader_close(stale_reader);
    int n = 0, found = -1;
    for (; n < MAX_TRIES && found < 0; n++) {
        CHECK_STATUS(tc_cache_open_reader(cache, "org/tiny-gguf", "config.json", NULL, &readers[n]), TC_STATUS_OK);
        if (ADDRESS_OF(readers[n]) == ADDRESS_OF(stale_reader)) found = n;
    }
    printf("# tc_reader slot reused after %d opens\n", n);
    CHECK(found >= 0);
    if (found >= 0) {
        CHECK(readers[found] != stale_reader);
        uint64_t size = 0;
        CHECK_STATUS(tc_reader_size(stale_reader, &size), TC_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
        tc_reader_close(stale_reader);
        CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
        CHECK_STATUS(tc_reader_size(readers[found], &size), TC_STATUS_OK);
        CHECK(size == strlen("{\"model_type\": \"llama\"}\n"));
    }
    for (int i = 0; i < n; i++) tc_reader_close(readers[i]);

    /* tc_job */
    /* tc_job */
    tc_job *stale_job = NULL, *job = NULL;
    CHECK_STATUS(tc_cache_download_file_start(cache, "org/tiny-gguf", "config.json", NULL, &stale_job), TC_STATUS_OK);
    CHECK_STATUS(tc_job_wait(stale_job, -1), TC_STATUS_OK);
    tc_job_free(stale_job);
    found = -1;
    for (n = 0; n < MAX_TRIES && found < 0; n++) {
        CHECK_STATUS(tc_cache_download_file_start(cache, "org/tiny-gguf", "config.json", NULL, &job), TC_STATUS_OK);
        CHECK_STATUS(tc_job_wait(job, -1), TC_STATUS_OK);
        if (ADDRESS_OF(job) == ADDRESS_OF(stale_job))
            found = n;
        else
            tc_job_free(job);
    }
    printf("# tc_job slot reused after %d starts\n", n);
    CHECK(found >= 0);
    if (found >= 0) {
        CHECK(job != stale_job);
        CHECK_STATUS(tc_job_status(stale_job), TC_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(tc_last_error_message(), "already closed or freed") != NULL);
        tc_job_free(stale_job);
        CHECK(strstr(tc_last_error_message(), "tc_job") != NULL);
        CHECK_STATUS(tc_job_status(job), TC_STATUS_OK);
        tc_job_free(job);
    }

    /* tc_cache, the same way. */
    tc_cache *stale_cache = open_cache("reuse", &options), *other = NULL;
    tc_cache_close(stale_cache);
    found = -1;
    for (n = 0; n < MAX_TRIES && found < 0; n++) {
        other = open_cache("reuse", &options);
        if (ADDRESS_OF(other) == ADDRESS_OF(stale_cache))
            found = n;
        else
            tc_cache_close(other);
    }
    printf("# tc_cache slot reused after %d opens\n", n);
    CHECK(found >= 0);
    if (found >= 0) {
        CHECK(other != stale_cache);
        bool has = false;
        CHECK_STATUS(tc_cache_has_file(stale_cache, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
        tc_cache_close(stale_cache);
        CHECK(strstr(tc_last_error_message(), "already closed") != NULL);
        CHECK_STATUS(tc_cache_has_file(other, "org/tiny-gguf", "config.json", NULL, &has), TC_STATUS_OK);
        CHECK(has);
        tc_cache_close(other);
    }

    /* Strings: the same JSON again and again lands in the freed block, never at the stale
     * pointer, and freeing the stale pointer then is refused (nothing is freed). */
    char *stale_json = NULL;
    CHECK_STATUS(tc_cache_get_stats_json(cache, &stale_json), TC_STATUS_OK);
    tc_string_free(stale_json);
    int near = 0, same = 0;
    for (int i = 0; i < 200; i++) {
        char *json = NULL;
        CHECK_STATUS(tc_cache_get_stats_json(cache, &json), TC_STATUS_OK);
        uintptr_t a = (uintptr_t)json, b = (uintptr_t)stale_json;
        if ((a > b ? a - b : b - a) < 4096) near++;
        if (json == stale_json) same++;
        tc_string_free(json);
    }
    printf("# of 200 strings, %d landed within 4 KiB of the freed one\n", near);
    CHECK(near > 0);
    CHECK(same == 0);
    char *live_json = NULL;
    CHECK_STATUS(tc_cache_get_stats_json(cache, &live_json), TC_STATUS_OK);
    tc_string_free(stale_json);
    CHECK(strstr(tc_last_error_message(), "already freed") != NULL);
    CHECK(live_json != NULL && live_json[0] == '{');
    tc_string_free(live_json);
    CHECK(strcmp(tc_last_error_message(), "") == 0);

    /* Buffers: a copy of a freed tc_bytes is refused, even with a newer buffer in its block. */
    tc_bytes freed = {NULL, 0}, stale;
    CHECK_STATUS(tc_cache_get_file(cache, "org/tiny-gguf", "config.json", NULL, &freed), TC_STATUS_OK);
    stale = freed;
    tc_bytes_free(&freed);
    CHECK(freed.data == NULL && freed.len == 0);
    near = same = 0;
    for (int i = 0; i < 200; i++) {
        tc_bytes bytes = {NULL, 0};
        CHECK_STATUS(tc_cache_get_file(cache, "org/tiny-gguf", "config.json", NULL, &bytes), TC_STATUS_OK);
        uintptr_t a = (uintptr_t)bytes.data, b = (uintptr_t)stale.data;
        if ((a > b ? a - b : b - a) < 4096) near++;
        if (bytes.data == stale.data) same++;
        tc_bytes_free(&bytes);
    }
    printf("# of 200 buffers, %d landed within 4 KiB of the freed one\n", near);
    CHECK(near > 0);
    CHECK(same == 0);
    tc_bytes_free(&stale);
    CHECK(strstr(tc_last_error_message(), "already freed") != NULL);
    CHECK(stale.data != NULL);
    tc_cache_close(cache);
}

/* Hostile names through every function that takes one: each must be refused as
 * INVALID_ARGUMENT with a message, before any request, and write nothing anywhere. */
static void test_hostile_names(tc_cache *cache) {
    section("hostile repo ids, paths and revisions are refused");
    static char overlong[6000];
    memset(overlong, 'a', sizeof overlong - 1);
    overlong[sizeof overlong - 1] = '\0';
    const char *bad_ids[] = {
        "", " ", "/", "a/", "/a", "a//b", "a/b/c", "..", "../x", "x/..", "a/../b", ".a/b", "a/.b", "-a/b",
        "a/b.", "a--b/c", "a..b/c", "a b/c", "a\tb/c", "a\nb/c", "a\\b", "C:/x", "a:b/c", "a?b/c", "a/b#c",
        "%2e%2e/x", "a/b*", "a/<b>", "a/b|c", "\xc3\x28/b", "a/\xff", "\xed\xa0\x80/x", "\xe2\x80\xae/x",
        "a/b\r", "\x7f" "a/b", overlong,
    };
    const char *bad_paths[] = {
        "", "/", ".", "..", "../x", "../../x", "../../../../../../etc/passwd", "a/../../x", "a/./b", "./a",
        "a/.", "a/..", "a//b", "a/", "/a", "/etc/passwd", "//server/share/x", "\\\\server\\share\\x", "a\\b",
        "..\\..\\x", "C:/x", "C:\\x", "c:x", "a/C:/b", "a\nb", "a\rb", "a\tb", "\x1b[31m", "a/\x7f",
        "\xc3\x28", "a/\xff\xfe", "\xf0\x28\x8c\x28", overlong,
    };
    const char *bad_revisions[] = {
        "", " ", "..", "../main", "main/..", "a/../b", "/main", "main/", "a\\b", "ma in", "main\n",
        "\xff", "refs/../../x", overlong,
    };
    int refused = 0, cases = 0;
#define REFUSED(expr)                                                                   \
    do {                                                                               \
        cases++;                                                                       \
        tc_status got_ = (expr);                                                       \
        if (got_ == TC_STATUS_INVALID_ARGUMENT && tc_last_error_message()[0] != '\0') \
            refused++;                                                                 \
        else                                                                           \
            printf("#   not refused (%s): %s\n", tc_status_name(got_), #expr);       \
    } while (0)
    char *json = NULL, *path = NULL;
    bool has = false;
    tc_bytes bytes = {NULL, 0};
    tc_reader *reader = NULL;
    tc_job *job = NULL;
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        const char *id = bad_ids[i];
        REFUSED(tc_cache_scan_repo(cache, id, NULL, &json));
        REFUSED(tc_cache_get_manifest(cache, id, &json));
        REFUSED(tc_cache_download_file(cache, id, "config.json", NULL, NULL, NULL, NULL));
        REFUSED(tc_cache_download_quant(cache, id, "Q4_K_M", NULL, NULL, NULL));
        REFUSED(tc_cache_has_file(cache, id, "config.json", NULL, &has));
        REFUSED(tc_cache_get_file(cache, id, "config.json", NULL, &bytes));
        REFUSED(tc_cache_file_path(cache, id, "config.json", NULL, &path));
        REFUSED(tc_cache_open_reader(cache, id, "config.json", NULL, &reader));
        REFUSED(tc_cache_delete_model(cache, id, NULL));
        REFUSED(tc_cache_download_quant_start(cache, id, "Q4_K_M", NULL, &job));
    }
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        const char *p = bad_paths[i];
        REFUSED(tc_cache_download_file(cache, "org/tiny-gguf", p, NULL, NULL, NULL, NULL));
        REFUSED(tc_cache_has_file(cache, "org/tiny-gguf", p, NULL, &has));
        REFUSED(tc_cache_get_file(cache, "org/tiny-gguf", p, NULL, &bytes));
        REFUSED(tc_cache_file_path(cache, "org/tiny-gguf", p, NULL, &path));
        REFUSED(tc_cache_open_reader(cache, "org/tiny-gguf", p, NULL, &reader));
        REFUSED(tc_cache_download_file_start(cache, "org/tiny-gguf", p, NULL, &job));
    }
    for (size_t i = 0; i < sizeof bad_revisions / sizeof *bad_revisions; i++) {
        const char *r = bad_revisions[i];
        REFUSED(tc_cache_scan_repo(cache, "org/tiny-gguf", r, &json));
        REFUSED(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", r, NULL, NULL, NULL));
        REFUSED(tc_cache_download_quant(cache, "org/tiny-gguf", "Q4_K_M", r, NULL, NULL));
        REFUSED(tc_cache_has_file(cache, "org/tiny-gguf", "config.json", r, &has));
    }
#undef REFUSED
    printf("# hostile names: %d/%d refused\n", refused, cases);
    CHECK(cases >= 200);
    CHECK(refused == cases);
    CHECK(json == NULL && path == NULL && bytes.data == NULL && reader == NULL && job == NULL);
}

/* The number after "key": in a flat JSON report; -1 when the key is missing. */
static long long json_number(const char *json, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *at = json == NULL ? NULL : strstr(json, needle);
    return at == NULL ? -1 : strtoll(at + strlen(needle), NULL, 10);
}

/* Size of a file of the huggingface_hub cache (stat follows the snapshot link to its blob). */
static long long hf_file_size(const char *snapshot_path) {
    char *path = join(hf_cache, snapshot_path);
    struct stat st;
    long long size = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    free(path);
    return size;
}

#define HF_SNAPSHOT "models--org--imported/snapshots/0123456789abcdef0123456789abcdef01234567/"

static void test_import_hf(void) {
    section("import a huggingface_hub cache, then serve it with no network");
    /* The dead endpoint: whatever is served afterwards came from the import. */
    tc_options options = test_options(dead_endpoint);
    tc_cache *cache = open_cache("import", &options);
    char *json = (char *)"untouched";

    CHECK_STATUS(tc_cache_import_hf(NULL, hf_cache, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "NULL") != NULL);
    CHECK_STATUS(tc_cache_import_hf(cache, hf_cache, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "out_json") != NULL);
    CHECK_STATUS(tc_cache_import_hf(cache, "bad-\xff-utf8", &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "hf_cache_dir") != NULL);
    char *missing = join(workdir, "no-such-hf-cache");
    CHECK_STATUS(tc_cache_import_hf(cache, missing, &json), TC_STATUS_ENTRY_NOT_FOUND);
    CHECK(strstr(tc_last_error_message(), missing) != NULL);
    CHECK(strstr(tc_last_error_message(), "huggingface_hub") != NULL);
    free(missing);
    CHECK(strcmp(json, "untouched") == 0);

    /* NULL: the directory HF_HUB_CACHE names. */
    json = NULL;
    CHECK_STATUS(tc_cache_import_hf(cache, NULL, &json), TC_STATUS_OK);
    CHECK(json != NULL && strstr(json, "\"repos\":[\"org/imported\"]") != NULL);
    CHECK(json != NULL && strstr(json, hf_cache) != NULL);
    long long weights = hf_file_size(HF_SNAPSHOT "model-Q4_K_M.gguf");
    long long config = hf_file_size(HF_SNAPSHOT "config.json");
    CHECK(weights > 0 && config > 0);
    CHECK(json_number(json, "files_imported") == 2);
    CHECK(json_number(json, "bytes_imported") == weights + config);
    CHECK(json_number(json, "blobs_linked") + json_number(json, "blobs_copied") == 2);
    CHECK(json_number(json, "files_already_cached") == 0);
    CHECK(json_number(json, "refs_imported") == 1);
    CHECK(json != NULL && strstr(json, "damaged.gguf") != NULL && strstr(json, "does not match") != NULL);
    tc_string_free(json);

    bool has = false;
    CHECK_STATUS(tc_cache_has_file(cache, "org/imported", "model-Q4_K_M.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(has);
    has = false;
    CHECK_STATUS(tc_cache_has_file(cache, "org/imported", "config.json", "0123456789abcdef0123456789abcdef01234567", &has), TC_STATUS_OK);
    CHECK(has);
    CHECK_STATUS(tc_cache_has_file(cache, "org/imported", "damaged.gguf", NULL, &has), TC_STATUS_OK);
    CHECK(!has);
    /* Served from the import: the endpoint is dead, so nothing was transferred. */
    char *path = NULL;
    CHECK_STATUS(tc_cache_download_file(cache, "org/imported", "model-Q4_K_M.gguf", NULL, NULL, NULL, &path), TC_STATUS_OK);
    CHECK(path != NULL && strstr(path, "model-Q4_K_M.gguf") != NULL);
    tc_string_free(path);
    tc_bytes bytes = {NULL, 0};
    CHECK_STATUS(tc_cache_get_file(cache, "org/imported", "model-Q4_K_M.gguf", NULL, &bytes), TC_STATUS_OK);
    CHECK((long long)bytes.len == weights && bytes.data != NULL && memcmp(bytes.data, "GGUF", 4) == 0);
    tc_bytes_free(&bytes);

    /* Again, by name: everything is already cached. */
    json = NULL;
    CHECK_STATUS(tc_cache_import_hf(cache, hf_cache, &json), TC_STATUS_OK);
    CHECK(json_number(json, "files_imported") == 0);
    CHECK(json_number(json, "files_already_cached") == 2);
    tc_string_free(json);
    tc_cache_close(cache);
}

/* ---- tc_server: a minimal HTTP/1.1 client, enough to read what the server answers ---- */

/* A connected socket to 127.0.0.1:port, with a small receive buffer when `small_window`, so
 * that a large body cannot fit in the socket buffers and stays in flight. -1 on failure. */
static int http_connect(int port, int small_window) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (small_window) {
        int size = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *text) {
    size_t len = strlen(text);
    while (len > 0) {
        ssize_t n = send(fd, text, len, 0);
        if (n <= 0) return -1;
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

struct http_answer {
    int status;
    char head[4096];        /* the status line and headers, NUL-terminated */
    long long length;       /* Content-Length, -1 when absent */
    char *body;             /* what came after the head, up to the length or the end */
    size_t body_len;
};

/* Read the head (up to the blank line) from fd; the body bytes read with it go to `answer`.
 * Returns 0 on success. */
static int http_read_head(int fd, struct http_answer *answer) {
    memset(answer, 0, sizeof *answer);
    answer->length = -1;
    size_t used = 0;
    char *end = NULL;
    while (end == NULL) {
        if (used >= sizeof answer->head - 1) return -1;
        ssize_t n = recv(fd, answer->head + used, sizeof answer->head - 1 - used, 0);
        if (n <= 0) return -1;
        used += (size_t)n;
        answer->head[used] = '\0';
        end = strstr(answer->head, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - answer->head) + 4;
    answer->body_len = used - head_len;
    answer->body = malloc(answer->body_len + 1);
    memcpy(answer->body, answer->head + head_len, answer->body_len);
    answer->head[head_len] = '\0';
    if (sscanf(answer->head, "HTTP/1.1 %d", &answer->status) != 1) return -1;
    const char *length = strstr(answer->head, "\r\ncontent-length: ");
    if (length != NULL) answer->length = strtoll(length + strlen("\r\ncontent-length: "), NULL, 10);
    return 0;
}

/* Read the rest of the body (to Content-Length, or until the connection ends). */
static void http_read_body(int fd, struct http_answer *answer) {
    char buffer[65536];
    for (;;) {
        if (answer->length >= 0 && (long long)answer->body_len >= answer->length) break;
        ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        answer->body = realloc(answer->body, answer->body_len + (size_t)n + 1);
        memcpy(answer->body + answer->body_len, buffer, (size_t)n);
        answer->body_len += (size_t)n;
    }
    if (answer->body != NULL) answer->body[answer->body_len] = '\0';
}

/* GET target from 127.0.0.1:port with `Connection: close`; 0 on success. */
static int http_get(int port, const char *target, struct http_answer *answer) {
    int fd = http_connect(port, 0);
    if (fd < 0) return -1;
    char request[1024];
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", target, port);
    int ok = send_all(fd, request) == 0 && http_read_head(fd, answer) == 0;
    if (ok) http_read_body(fd, answer);
    close(fd);
    return ok ? 0 : -1;
}

static int url_port(const char *url) {
    const char *colon = url ? strrchr(url, ':') : NULL;
    return colon ? atoi(colon + 1) : -1;
}

static void test_server(void) {
    section("tc_server: start, fetch through it, errors, stop in the middle of a download");
    tc_options options = test_options(endpoint);
    tc_cache *cache = open_cache("served", &options);
    CHECK_STATUS(tc_cache_download_file(cache, "org/tiny-gguf", "config.json", NULL, NULL, NULL, NULL), TC_STATUS_OK);
    CHECK_STATUS(tc_cache_download_file(cache, "org/served", "weights.bin", NULL, NULL, NULL, NULL), TC_STATUS_OK);

    /* Arguments and options refused before anything binds. */
    tc_server *server = NULL;
    tc_server_options serve;
    tc_server_options_init(&serve);
    serve.pull_through = 0;
    CHECK_STATUS(tc_server_start(NULL, &serve, &server), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_server_start(cache, &serve, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "out") != NULL);
    tc_server_options bad = serve;
    bad.struct_size = 3;
    CHECK_STATUS(tc_server_start(cache, &bad, &server), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "struct_size") != NULL);
    bad = serve;
    bad.pull_through = 7;
    CHECK_STATUS(tc_server_start(cache, &bad, &server), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "pull_through") != NULL);
    bad = serve;
    bad.host = "0.0.0.0";
    CHECK_STATUS(tc_server_start(cache, &bad, &server), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "token") != NULL);
    bad = serve;
    bad.allow_origins_count = 2;
    CHECK_STATUS(tc_server_start(cache, &bad, &server), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "allow_origins") != NULL);
    CHECK(server == NULL);

    const char *origins[] = {"chrome-extension://abcdefghijklmnop"};
    serve.allow_origins = origins;
    serve.allow_origins_count = 1;
    CHECK_STATUS(tc_server_start(cache, &serve, &server), TC_STATUS_OK);
    /* The server keeps the cache open: closing our handle changes nothing for it. */
    tc_cache_close(cache);
    char *url = NULL;
    CHECK_STATUS(tc_server_url(server, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_server_url(server, &url), TC_STATUS_OK);
    CHECK(url != NULL && strncmp(url, "http://127.0.0.1:", 17) == 0);
    int port = url_port(url);
    CHECK(port > 0);
    tc_string_free(url);

    struct http_answer answer;
    CHECK(http_get(port, "/org/tiny-gguf/resolve/main/config.json", &answer) == 0);
    CHECK(answer.status == 200);
    CHECK(answer.body != NULL && strcmp(answer.body, "{\"model_type\": \"llama\"}\n") == 0);
    CHECK(strstr(answer.head, "\r\netag: ") != NULL && strstr(answer.head, "\r\nx-repo-commit: ") != NULL);
    free(answer.body);
    CHECK(http_get(port, "/org/tiny-gguf/resolve/main/README.md", &answer) == 0);
    CHECK(answer.status == 404 && strstr(answer.head, "x-error-code: EntryNotFound") != NULL);
    free(answer.body);
    CHECK(http_get(port, "/org/tiny-gguf/resolve/main/..%2f..%2fetc%2fpasswd", &answer) == 0);
    CHECK(answer.status == 400);
    free(answer.body);

    /* Stop while a client is in the middle of the 16 MiB file: its connection ends before the
     * last byte, and the stop does not wait for the client. */
    int fd = http_connect(port, 1);
    CHECK(fd >= 0);
    char request[256];
    snprintf(request, sizeof request, "GET /org/served/resolve/main/weights.bin HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port);
    CHECK(fd >= 0 && send_all(fd, request) == 0);
    CHECK(fd >= 0 && http_read_head(fd, &answer) == 0);
    CHECK(answer.status == 200 && answer.length == 16 << 20);
    double before = now_ms();
    tc_server_stop(server);
    CHECK(now_ms() - before < 10000);
    CHECK(strcmp(tc_last_error_message(), "") == 0);
    if (fd >= 0) {
        http_read_body(fd, &answer);
        CHECK(answer.body_len < (size_t)(16 << 20));
        close(fd);
    }
    free(answer.body);
    /* The port is closed; the handle is refused; a second stop is harmless. */
    CHECK(http_connect(port, 0) < 0);
    CHECK_STATUS(tc_server_url(server, &url), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "tc_server") != NULL);
    tc_server_stop(server);
    CHECK(strstr(tc_last_error_message(), "already") != NULL);
    tc_server_stop(NULL);
}

/* ---- the disk budget ---- */

#define BUDGET_REPO "org/budget-gguf"

/* Body bytes the emulator's CDN has sent, once its log stopped growing (it logs a request
 * after answering it); -1 when the emulator cannot be asked. */
static long long cdn_bytes_settled(void) {
    long long last = -2;
    for (int i = 0; i < 100; i++) {
        struct http_answer answer;
        memset(&answer, 0, sizeof answer);
        long long now = -1;
        if (http_get(url_port(endpoint), "/_emulator/stats", &answer) == 0 && answer.status == 200)
            now = json_number(answer.body, "bytes_sent_cdn");
        free(answer.body);
        if (now == last) return now;
        last = now;
        sleep_ms(100);
    }
    return -1;
}

static int budget_has(tc_cache *cache, const char *path) {
    bool has = false;
    CHECK_STATUS(tc_cache_has_file(cache, BUDGET_REPO, path, NULL, &has), TC_STATUS_OK);
    return has;
}

static uint64_t budget_disk_bytes(tc_cache *cache) {
    tc_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_STATUS(tc_cache_get_stats(cache, &stats), TC_STATUS_OK);
    return stats.disk_bytes;
}

/* The report without its "dry_run" member (the last one), so that a dry run's report and the
 * prune's can be compared; the caller frees it. */
static char *without_dry_run(const char *json) {
    const char *at = json == NULL ? NULL : strstr(json, ",\"dry_run\":");
    size_t len = at == NULL ? 0 : (size_t)(at - json);
    char *copy = malloc(len + 1);
    memcpy(copy, json == NULL ? "" : json, len);
    copy[len] = '\0';
    return copy;
}

static void test_budget(void) {
    section("disk budget: max_size, LRU eviction, pins, prune dry run == prune, refusal before a transfer");
    tc_options options = test_options(endpoint);
    tc_cache *cache = open_cache("budget", &options);
    uint64_t max_size = 1;
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_OK);
    CHECK(max_size == 0);
    char *json = NULL;
    CHECK_STATUS(tc_cache_scan_repo(cache, BUDGET_REPO, NULL, &json), TC_STATUS_OK);
    tc_string_free(json);
    const char *variants[] = {"Q2_K", "Q4_K_M", "Q5_K_M"};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(tc_cache_download_quant(cache, BUDGET_REPO, variants[i], NULL, NULL, NULL), TC_STATUS_OK);
        sleep_ms(5); /* last uses at least milliseconds apart */
    }
    uint64_t three = budget_disk_bytes(cache); /* three variants and their shared config.json */
    CHECK(three > 3 * 64 * 1024);

    /* A budget given on open (tc_options.max_size) is the cache's, for every handle. */
    options.max_size = three;
    tc_cache *other = open_cache("budget", &options);
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_OK);
    CHECK(max_size == three);
    tc_cache_close(other);
    /* 0, or a struct from a header without the field, leaves the budget as it is. */
    options.max_size = 0;
    other = open_cache("budget", &options);
    tc_cache_close(other);
    options.max_size = 5;
    options.struct_size = offsetof(tc_options, max_size);
    other = open_cache("budget", &options);
    tc_cache_close(other);
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_OK);
    CHECK(max_size == three);

    /* Q2_K, the oldest download, is read now: Q4_K_M is the least recently used, and goes
     * when Q8_0 lands. */
    tc_bytes bytes = {NULL, 0};
    CHECK_STATUS(tc_cache_get_file(cache, BUDGET_REPO, "m-Q2_K.gguf", NULL, &bytes), TC_STATUS_OK);
    tc_bytes_free(&bytes);
    sleep_ms(5);
    CHECK_STATUS(tc_cache_download_quant(cache, BUDGET_REPO, "Q8_0", NULL, NULL, NULL), TC_STATUS_OK);
    CHECK(!budget_has(cache, "m-Q4_K_M.gguf"));
    CHECK(budget_has(cache, "m-Q2_K.gguf") && budget_has(cache, "m-Q5_K_M.gguf"));
    CHECK(budget_has(cache, "m-Q8_0.gguf") && budget_has(cache, "config.json"));
    CHECK(budget_disk_bytes(cache) <= three);
    json = NULL;
    CHECK_STATUS(tc_cache_get_stats_json(cache, &json), TC_STATUS_OK);
    CHECK(json_number(json, "max_size") == (long long)three);
    CHECK(json != NULL && strstr(json, "\"evictions\":{\"count\":1,") != NULL);
    CHECK(json != NULL && strstr(json, "\"quant\":\"Q4_K_M\",\"files\":[\"m-Q4_K_M.gguf\"]") != NULL);
    tc_string_free(json);

    /* Pins: Q5_K_M is now the least recently used, and pinned it stays. */
    bool changed = false;
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, "Q5_K_M", &changed), TC_STATUS_OK);
    CHECK(changed);
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, "Q5_K_M", &changed), TC_STATUS_OK);
    CHECK(!changed);
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, "Q5_K_M", NULL), TC_STATUS_OK);
    json = NULL;
    CHECK_STATUS(tc_cache_pins_json(cache, &json), TC_STATUS_OK);
    CHECK(json != NULL && strcmp(json, "[{\"repo_id\":\"" BUDGET_REPO "\",\"quant\":\"Q5_K_M\"}]") == 0);
    tc_string_free(json);

    /* A dry run lists exactly what the prune then removes. */
    tc_prune_options prune;
    tc_prune_options_init(&prune);
    CHECK(prune.struct_size == sizeof prune && prune.max_size == 0 && prune.older_than_seconds == 0 && prune.dry_run == 0);
    prune.older_than_seconds = 3600; /* everything was used just now */
    prune.dry_run = 1;
    json = NULL;
    CHECK_STATUS(tc_cache_set_max_size(cache, 0, NULL), TC_STATUS_OK);
    CHECK_STATUS(tc_cache_prune(cache, &prune, &json), TC_STATUS_OK);
    CHECK(json != NULL && strncmp(json, "{\"evicted\":[],\"bytes_freed\":0,", 30) == 0);
    tc_string_free(json);
    CHECK_STATUS(tc_cache_set_max_size(cache, three, NULL), TC_STATUS_OK);
    prune.older_than_seconds = 0;
    prune.max_size = three - 1;
    char *dry = NULL, *done = NULL;
    CHECK_STATUS(tc_cache_prune(cache, &prune, &dry), TC_STATUS_OK);
    prune.dry_run = 0;
    CHECK_STATUS(tc_cache_prune(cache, &prune, &done), TC_STATUS_OK);
    char *dry_list = without_dry_run(dry), *done_list = without_dry_run(done);
    CHECK(dry_list[0] != '\0' && strcmp(dry_list, done_list) == 0);
    CHECK(dry != NULL && strstr(dry, "\"dry_run\":true}") != NULL);
    CHECK(done != NULL && strstr(done, "\"dry_run\":false}") != NULL);
    CHECK(done != NULL && strstr(done, "\"quant\":\"Q2_K\",\"files\":[\"m-Q2_K.gguf\"]") != NULL);
    CHECK(done != NULL && strstr(done, "Q5_K_M") == NULL);
    CHECK(json_number(done, "bytes_freed") > 64 * 1024);
    free(dry_list);
    free(done_list);
    tc_string_free(dry);
    tc_string_free(done);
    CHECK(!budget_has(cache, "m-Q2_K.gguf"));
    CHECK(budget_has(cache, "m-Q5_K_M.gguf") && budget_has(cache, "m-Q8_0.gguf"));
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_OK);
    CHECK(max_size == three); /* prune's max_size is for this once */

    /* With everything pinned and a lower budget, a download that cannot fit fails before a
     * byte is transferred, and nothing is evicted. */
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, NULL, &changed), TC_STATUS_OK);
    CHECK(changed);
    json = NULL;
    CHECK_STATUS(tc_cache_set_max_size(cache, three - 1, &json), TC_STATUS_OK);
    CHECK(json != NULL && strncmp(json, "{\"evicted\":[],", 14) == 0);
    tc_string_free(json);
    long long cdn_before = cdn_bytes_settled();
    CHECK(cdn_before >= 0);
    CHECK_STATUS(tc_cache_download_quant(cache, BUDGET_REPO, "Q4_K_M", NULL, NULL, NULL), TC_STATUS_DISK_FULL);
    CHECK(strstr(tc_last_error_message(), "budget") != NULL && strstr(tc_last_error_message(), "needs") != NULL);
    CHECK(cdn_bytes_settled() == cdn_before);
    CHECK(!budget_has(cache, "m-Q4_K_M.gguf"));
    CHECK(budget_has(cache, "m-Q5_K_M.gguf") && budget_has(cache, "m-Q8_0.gguf"));

    CHECK_STATUS(tc_cache_unpin(cache, BUDGET_REPO, NULL, &changed), TC_STATUS_OK);
    CHECK(changed);
    CHECK_STATUS(tc_cache_unpin(cache, BUDGET_REPO, NULL, &changed), TC_STATUS_OK);
    CHECK(!changed);
    CHECK_STATUS(tc_cache_unpin(cache, BUDGET_REPO, "Q5_K_M", NULL), TC_STATUS_OK);
    json = NULL;
    CHECK_STATUS(tc_cache_pins_json(cache, &json), TC_STATUS_OK);
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    tc_string_free(json);

    /* 0 removes the budget; a prune then has nothing to prune to. */
    CHECK_STATUS(tc_cache_set_max_size(cache, 0, NULL), TC_STATUS_OK);
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_OK);
    CHECK(max_size == 0);
    json = (char *)"untouched";
    CHECK_STATUS(tc_cache_prune(cache, NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "no budget") != NULL);

    /* Arguments refused with a message, before anything is done. */
    tc_cache *foreign = (tc_cache *)&passed;
    CHECK_STATUS(tc_cache_max_size(NULL, &max_size), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_max_size(cache, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "out_max_size") != NULL);
    CHECK_STATUS(tc_cache_set_max_size(NULL, three, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_set_max_size(foreign, three, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "not a tc_cache") != NULL);
    CHECK_STATUS(tc_cache_pin(NULL, BUDGET_REPO, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_pin(cache, NULL, NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "repo_id") != NULL);
    CHECK_STATUS(tc_cache_pin(cache, "bad id!", NULL, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, "", NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "empty") != NULL);
    CHECK_STATUS(tc_cache_pin(cache, BUDGET_REPO, "bad-\xff", NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "quant_key") != NULL);
    CHECK_STATUS(tc_cache_unpin(cache, NULL, "Q5_K_M", NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_pins_json(NULL, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_pins_json(cache, NULL), TC_STATUS_INVALID_ARGUMENT);
    tc_prune_options_init(&prune);
    prune.max_size = three;
    CHECK_STATUS(tc_cache_prune(NULL, &prune, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tc_cache_prune(cache, &prune, NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "out_json") != NULL);
    prune.dry_run = 7;
    CHECK_STATUS(tc_cache_prune(cache, &prune, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "dry_run") != NULL);
    prune.dry_run = 1;
    prune.struct_size = 3;
    CHECK_STATUS(tc_cache_prune(cache, &prune, &json), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "tc_prune_options_init") != NULL);
    CHECK(strcmp(json, "untouched") == 0);
    tc_prune_options_init(NULL); /* ignored */
    tc_cache_close(cache);
    CHECK_STATUS(tc_cache_max_size(cache, &max_size), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "already closed") != NULL);

    /* Sizes as people write them, by the command line's rules. */
    uint64_t size = 0;
    CHECK_STATUS(tc_parse_size("50GB", &size), TC_STATUS_OK);
    CHECK(size == 50000000000ULL);
    CHECK_STATUS(tc_parse_size("20GiB", &size), TC_STATUS_OK);
    CHECK(size == 20ULL << 30);
    CHECK_STATUS(tc_parse_size(" 1.5 tb ", &size), TC_STATUS_OK);
    CHECK(size == 1500000000000ULL);
    CHECK_STATUS(tc_parse_size("512MiB", &size), TC_STATUS_OK);
    CHECK(size == 512ULL << 20);
    CHECK_STATUS(tc_parse_size("1000", &size), TC_STATUS_OK);
    CHECK(size == 1000);
    const char *not_sizes[] = {"", "GB", "-1GB", "5 parsecs", "1e9", "nan", "99999999999TB", "\xff"};
    size = 42;
    for (size_t i = 0; i < sizeof not_sizes / sizeof *not_sizes; i++) {
        CHECK_STATUS(tc_parse_size(not_sizes[i], &size), TC_STATUS_INVALID_ARGUMENT);
    }
    CHECK(size == 42);
    CHECK_STATUS(tc_parse_size("5 parsecs", &size), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "5 parsecs") != NULL && strstr(tc_last_error_message(), "20GiB") != NULL);
    CHECK_STATUS(tc_parse_size(NULL, &size), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "text") != NULL);
    CHECK_STATUS(tc_parse_size("50GB", NULL), TC_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(tc_last_error_message(), "out_bytes") != NULL);
}

int main(int argc, char **argv) {
    int reuse_only = argc == 7 && strcmp(argv[6], "reuse") == 0;
    if (argc != 6 && !reuse_only) {
        fprintf(stderr, "usage: %s ENDPOINT DEAD_ENDPOINT WORKDIR Q4_SIZE HF_CACHE [reuse]\n", argv[0]);
        return 2;
    }
    endpoint = argv[1];
    dead_endpoint = argv[2];
    workdir = argv[3];
    q4_size = strtoull(argv[4], NULL, 10);
    hf_cache = argv[5];
    if (reuse_only) {
        test_reused_memory();
        section(NULL);
        printf("%d passed, %d failed\n", passed, failed);
        return failed == 0 ? 0 : 1;
    }

    test_version_and_names();
    test_open_errors();
    test_shared();

    tc_options options = test_options(endpoint);
    tc_cache *cache = open_cache("main", &options);
    test_bad_handles(cache);
    test_hostile_names(cache);
    test_not_cached(cache);
    test_scan(cache);
    test_hub_errors(cache);
    test_downloads(cache);
    test_cancel_from_callback(cache);
    test_reads(cache);
    test_stats(cache);
    test_jobs(cache);
    test_threads(cache);
    tc_cache_close(cache);

    test_offline();
    test_delete_and_close();
    test_close_while_in_flight();
    test_import_hf();
    test_budget();
    test_server();
    section(NULL);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
