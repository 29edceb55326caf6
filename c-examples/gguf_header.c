/*
 * What a GGUF runtime does with tabcache: download a GGUF variant, ask for the file's path in
 * the snapshot view, mmap it and read the header (magic, version, tensor count, metadata
 * count). The Hub endpoint and token come from HF_ENDPOINT / HF_TOKEN.
 *
 * Usage: gguf_header CACHE_DIR REPO_ID GGUF_FILE
 *   e.g. gguf_header ./model_cache org/tiny-gguf model-Q4_K_M.gguf
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tabcache.h>

static int fail(const char *what, tc_status status) {
    fprintf(stderr, "%s failed: %s: %s\n", what, tc_status_name(status), tc_last_error_message());
    return 1;
}

/* GGUF stores integers little-endian. */
static uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int print_header(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 24) {
        fprintf(stderr, "%s is too small to be a GGUF file\n", path);
        close(fd);
        return 1;
    }
    const unsigned char *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    int rc = 0;
    if (memcmp(map, "GGUF", 4) != 0) {
        fprintf(stderr, "%s: not a GGUF file\n", path);
        rc = 1;
    } else {
        printf("magic: GGUF\n");
        printf("version: %" PRIu64 "\n", le(map + 4, 4));
        printf("tensors: %" PRIu64 "\n", le(map + 8, 8));
        printf("metadata entries: %" PRIu64 "\n", le(map + 16, 8));
        printf("file size: %lld bytes\n", (long long)st.st_size);
    }
    munmap((void *)map, (size_t)st.st_size);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CACHE_DIR REPO_ID GGUF_FILE\n", argv[0]);
        return 2;
    }
    const char *repo = argv[2], *file = argv[3];
    tc_cache *cache = NULL;
    tc_status st = tc_cache_open(argv[1], NULL, &cache);
    if (st != TC_STATUS_OK) return fail("tc_cache_open", st);

    int rc = 1;
    char *path = NULL;
    if ((st = tc_cache_download_file(cache, repo, file, NULL, NULL, NULL, NULL)) != TC_STATUS_OK) {
        fail("tc_cache_download_file", st);
    } else if ((st = tc_cache_file_path(cache, repo, file, NULL, &path)) != TC_STATUS_OK) {
        fail("tc_cache_file_path", st);
    } else {
        printf("path: %s\n", path);
        rc = print_header(path);
    }
    tc_string_free(path);
    tc_cache_close(cache);
    return rc;
}
