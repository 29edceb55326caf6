// Two downloads at once with tabcache's jobs, from C++17: RAII owners (std::unique_ptr with
// the library's free functions) so every handle is released on every path, progress polled
// from this thread while worker threads download, and one job cancelled half-way.
//
// Usage: async_download CACHE_DIR REPO_A VARIANT_A REPO_B VARIANT_B
//   Downloads VARIANT_A of REPO_A to the end; cancels the download of VARIANT_B of REPO_B
//   once it has made progress. HF_ENDPOINT / HF_TOKEN select the Hub.

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <tabcache.h>

namespace {

struct CacheCloser {
    void operator()(tc_cache *cache) const { tc_cache_close(cache); }
};
struct JobFreer {
    void operator()(tc_job *job) const { tc_job_free(job); }
};
using Cache = std::unique_ptr<tc_cache, CacheCloser>;
using Job = std::unique_ptr<tc_job, JobFreer>;

// Turns a failed status into an exception carrying this thread's message.
void check(tc_status status, const char *what) {
    if (status != TC_STATUS_OK) {
        throw std::runtime_error(std::string(what) + ": " + tc_status_name(status) + ": " +
                                 tc_last_error_message());
    }
}

Cache open_cache(const char *dir) {
    tc_cache *raw = nullptr;
    check(tc_cache_open(dir, nullptr, &raw), "tc_cache_open");
    return Cache(raw);
}

Job start_variant(const Cache &cache, const char *repo, const char *variant) {
    tc_job *raw = nullptr;
    check(tc_cache_download_quant_start(cache.get(), repo, variant, nullptr, &raw),
          "tc_cache_download_quant_start");
    return Job(raw);
}

struct Progress {
    uint64_t loaded = 0;
    uint64_t total = 0;
};

Progress progress_of(const Job &job) {
    Progress p;
    check(tc_job_progress(job.get(), &p.loaded, &p.total), "tc_job_progress");
    return p;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s CACHE_DIR REPO_A VARIANT_A REPO_B VARIANT_B\n", argv[0]);
        return 2;
    }
    try {
        Cache cache = open_cache(argv[1]);
        Job keep = start_variant(cache, argv[2], argv[3]);
        Job cancel = start_variant(cache, argv[4], argv[5]);
        std::printf("started: %s %s and %s %s\n", argv[2], argv[3], argv[4], argv[5]);

        bool cancelled = false;
        tc_status keep_status = TC_STATUS_PENDING;
        while (keep_status == TC_STATUS_PENDING || !cancelled) {
            if (!cancelled && progress_of(cancel).loaded > 0) {
                check(tc_job_cancel(cancel.get()), "tc_job_cancel");
                cancelled = true;
            }
            // A job that ended before showing progress (an error, or a tiny variant) has
            // nothing left to cancel.
            cancelled = cancelled || tc_job_status(cancel.get()) != TC_STATUS_PENDING;
            keep_status = tc_job_wait(keep.get(), 100);
            Progress a = progress_of(keep), b = progress_of(cancel);
            std::fprintf(stderr, "%s: %" PRIu64 "/%" PRIu64 "  %s: %" PRIu64 "/%" PRIu64 "\n", argv[3],
                         a.loaded, a.total, argv[5], b.loaded, b.total);
        }
        check(keep_status, "the first download");
        std::printf("%s: done (%" PRIu64 " bytes)\n", argv[3], progress_of(keep).total);

        tc_status cancel_status = tc_job_wait(cancel.get(), -1);
        std::printf("%s: %s\n", argv[5], tc_status_name(cancel_status));
        return cancel_status == TC_STATUS_CANCELLED ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
