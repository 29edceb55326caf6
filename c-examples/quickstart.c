/*
 * The Quick Start in C: open a cache, scan a repo, list its variants, download one with a
 * progress bar, then check the cache. The Hub endpoint and token come from the environment
 * (HF_ENDPOINT, HF_TOKEN) as for huggingface_hub.
 *
 * Usage: quickstart CACHE_DIR REPO_ID [VARIANT] [FILE]
 *   e.g. quickstart ./model_cache org/tiny-gguf Q4_K_M config.json
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <tabcache.h>

static int fail(const char *what, tc_status status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, tc_status_name(status), tc_last_error_message());
    return 1;
}

/* Draws a 30-column bar on stderr; runs on the thread that called the download. */
static int progress_bar(void *user_data, uint64_t loaded, uint64_t total) {
    const char *label = user_data;
    int filled = total ? (int)(loaded * 30 / total) : 0;
    fprintf(stderr, "\r%s [%.*s%*s] %" PRIu64 "/%" PRIu64 " bytes", label, filled,
            "==============================", 30 - filled, "", loaded, total);
    if (total > 0 && loaded == total) fputc('\n', stderr); /* total 0: not known yet */
    return 0; /* non-zero would cancel */
}

/* Prints each variant name of the manifest JSON, without a JSON library: the keys of
 * "quants" are the objects that hold a "status". */
static void print_variants(const char *manifest) {
    const char *quants = strstr(manifest, "\"quants\":{");
    if (!quants) return;
    const char *p = quants + strlen("\"quants\":{");
    while (*p == '"') {
        const char *end = strchr(p + 1, '"');
        if (!end) return;
        printf("variant: %.*s\n", (int)(end - p - 1), p + 1);
        int depth = 0; /* skip the variant's object */
        for (p = end + 2; *p; p++) {
            if (*p == '{' || *p == '[') depth++;
            if ((*p == '}' || *p == ']') && --depth == 0) break;
        }
        if (*p) p++;
        if (*p == ',') p++;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CACHE_DIR REPO_ID [VARIANT] [FILE]\n", argv[0]);
        return 2;
    }
    const char *repo = argv[2];
    const char *variant = argc > 3 ? argv[3] : "Q4_K_M";
    const char *file = argc > 4 ? argv[4] : "config.json";
    printf("tabcache %s\n", tc_version());

    tc_cache *cache = NULL;
    tc_status st = tc_cache_open(argv[1], NULL, &cache);
    if (st != TC_STATUS_OK) return fail("tc_cache_open", st);

    int rc = 1;
    char *manifest = NULL;
    tc_bytes bytes = {NULL, 0};
    if ((st = tc_cache_scan_repo(cache, repo, NULL, &manifest)) != TC_STATUS_OK) {
        fail("tc_cache_scan_repo", st);
        goto done;
    }
    print_variants(manifest);

    if ((st = tc_cache_download_quant(cache, repo, variant, NULL, progress_bar, (void *)variant)) != TC_STATUS_OK) {
        fail("tc_cache_download_quant", st);
        goto done;
    }
    printf("downloaded: %s\n", variant);

    if ((st = tc_cache_download_file(cache, repo, file, NULL, progress_bar, (void *)file, NULL)) != TC_STATUS_OK) {
        fail("tc_cache_download_file", st);
        goto done;
    }
    bool has = false;
    if ((st = tc_cache_has_file(cache, repo, file, NULL, &has)) != TC_STATUS_OK) {
        fail("tc_cache_has_file", st);
        goto done;
    }
    printf("has_file %s: %s\n", file, has ? "yes" : "no");
    if ((st = tc_cache_get_file(cache, repo, file, NULL, &bytes)) != TC_STATUS_OK) {
        fail("tc_cache_get_file", st);
        goto done;
    }
    printf("get_file %s: %zu bytes\n", file, bytes.len);

    tc_stats stats;
    if ((st = tc_cache_get_stats(cache, &stats)) != TC_STATUS_OK) {
        fail("tc_cache_get_stats", st);
        goto done;
    }
    printf("stats: %" PRIu64 " repos, %" PRIu64 " files, %" PRIu64 " bytes\n", stats.total_repos,
           stats.total_files, stats.total_size);
    rc = 0;

done:
    tc_bytes_free(&bytes);
    tc_string_free(manifest);
    tc_cache_close(cache);
    return rc;
}
