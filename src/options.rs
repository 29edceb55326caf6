//! [`CacheOptions`]: how a cache talks to the hub and moves bytes, and the rules that make
//! one setting reach every part it concerns (a read timeout is also the transfers' stall
//! timeout; a retry count is also each connection's budget of attempts; zero means "the
//! default"). The C ABI (and Python, through it) sets options with these builder methods
//! only, so Rust, C and Python callers get the same rules. Also where a cache lives when the
//! caller names none ([`default_cache_dir`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::download::TransferOptions;
use crate::hub::HubOptions;

/// How a cache talks to the hub and moves bytes. `Default` reads the environment as
/// huggingface_hub does (see [`HubOptions`]).
///
/// The fields can be set directly; the builder methods are the way to set what concerns
/// both the hub client and transfers:
///
/// ```
/// use std::time::Duration;
/// let options = tabcache::CacheOptions::default()
///     .read_timeout(Duration::from_secs(5))
///     .max_retries(2);
/// assert_eq!(options.transfer.stall_timeout, Duration::from_secs(5));
/// assert_eq!(options.transfer.max_attempts, 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    pub hub: HubOptions,
    pub transfer: TransferOptions,
    /// How many files of one request are fetched at once (0 = default, 4).
    pub parallel_files: usize,
    /// The disk budget to set on open (bytes of blob files; it is kept in the cache for every
    /// process, the last one set wins). `None` leaves the cache's budget as it is.
    pub max_size: Option<u64>,
}

impl CacheOptions {
    /// The hub's base URL, e.g. `http://127.0.0.1:8080` (else `HF_ENDPOINT`, else the
    /// public Hub).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.hub.endpoint = Some(url.into());
        self
    }

    /// The access token to send; `""` sends none (else `HF_TOKEN`, then the token file).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.hub.token = Some(token.into());
        self
    }

    /// The User-Agent header (else `tabcache/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.hub.user_agent = Some(user_agent.into());
        self
    }

    /// `true`: make no network request at all, serve what is cached; `false`: online,
    /// whatever `HF_HUB_OFFLINE` says.
    pub fn offline(mut self, offline: bool) -> Self {
        self.hub.offline = Some(offline);
        self
    }

    /// Connections used at once for one large file; 0 means the default (8).
    pub fn connections(mut self, connections: usize) -> Self {
        self.transfer.connections = nonzero_or(connections, TransferOptions::default().connections);
        self
    }

    /// The largest byte range one request asks for, the unit of resume; 0 means the
    /// default (16 MiB).
    pub fn range_size(mut self, bytes: u64) -> Self {
        self.transfer.range_size = nonzero_or(bytes, TransferOptions::default().range_size);
        self
    }

    /// Files of at least this many bytes are fetched in ranges over several connections;
    /// 0 means the default (32 MiB).
    pub fn parallel_threshold(mut self, bytes: u64) -> Self {
        self.transfer.parallel_threshold =
            nonzero_or(bytes, TransferOptions::default().parallel_threshold);
        self
    }

    /// Files fetched at once by one request (e.g. the shards of a variant); 0 means the
    /// default (4).
    pub fn parallel_files(mut self, files: usize) -> Self {
        self.parallel_files = files;
        self
    }

    /// Time to establish a connection; zero means the default (10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.hub.connect_timeout = nonzero(timeout);
        self
    }

    /// A connection that delivers no byte for this long is cut (and retried), whether it is
    /// an API request or a transfer: it sets the hub client's read timeout and the
    /// transfers' stall timeout alike. Zero means the defaults (`HF_HUB_DOWNLOAD_TIMEOUT`,
    /// else 30 s, for requests; 30 s for transfers).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.hub.read_timeout = nonzero(timeout);
        self.transfer.stall_timeout =
            nonzero(timeout).unwrap_or(TransferOptions::default().stall_timeout);
        self
    }

    /// Retries of a transient failure (connection fault, 408, 429, 5xx) for a request, and
    /// so `retries + 1` attempts in a row for each connection of a transfer. 0 retries is
    /// "try once".
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.hub.max_retries = Some(retries);
        self.transfer.max_attempts = retries.saturating_add(1);
        self
    }

    /// The first wait between retries, doubled each time, for requests and transfers alike;
    /// zero means the defaults (1 s for requests, 500 ms for a transfer's connections).
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.hub.retry_base_delay = nonzero(delay);
        self.transfer.backoff_base =
            nonzero(delay).unwrap_or(TransferOptions::default().backoff_base);
        self
    }
}

impl CacheOptions {
    /// Set the cache's disk budget on open (see [`CacheOptions::max_size`]).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }
}

/// A size as people write it: `50GB` (10^9), `20GiB` (2^30), `512M`, `1.5 TB`, `1000` (bytes);
/// units are case-insensitive, a bare `K`/`M`/`G`/`T` is decimal like `KB`.
///
/// # Errors
/// `InvalidArgument` naming the text, for anything else.
pub fn parse_byte_size(text: &str) -> crate::Result<u64> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => 0,
    };
    let value: Option<f64> = number.parse().ok().filter(|v: &f64| v.is_finite());
    match value {
        Some(value) if scale > 0 && value >= 0.0 && value * (scale as f64) < u64::MAX as f64 => {
            Ok((value * scale as f64).round() as u64)
        }
        _ => Err(crate::Error::invalid(format!(
            "{text:?} is not a size; write it as bytes or with a unit, e.g. 50GB, 20GiB, 512MB"
        ))),
    }
}

fn nonzero(duration: Duration) -> Option<Duration> {
    Some(duration).filter(|d| !d.is_zero())
}

fn nonzero_or<T: Default + PartialEq>(value: T, default: T) -> T {
    if value == T::default() {
        default
    } else {
        value
    }
}

/// Where a cache lives when the caller names no directory: `$TABCACHE_HOME`, else
/// `tabcache` under the platform's per-user cache directory (`$XDG_CACHE_HOME` or
/// `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows). The CLI,
/// C (`tc_default_cache_dir`) and Python (`default_cache_dir()`) all find the same cache.
/// `None` when the environment names no home at all.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("TABCACHE_HOME") {
        return Some(PathBuf::from(dir));
    }
    let base = if cfg!(windows) {
        env("LOCALAPPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| PathBuf::from(h).join("Library").join("Caches"))
    } else {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
    }?;
    Some(base.join("tabcache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_people_write_them() {
        assert_eq!(parse_byte_size("50GB").unwrap(), 50_000_000_000);
        assert_eq!(parse_byte_size("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_byte_size(" 1.5 tb ").unwrap(), 1_500_000_000_000);
        assert_eq!(parse_byte_size("512M").unwrap(), 512_000_000);
        assert_eq!(parse_byte_size("1000").unwrap(), 1000);
        for bad in ["", "GB", "-1GB", "5 parsecs", "1e9", "nan"] {
            let err = parse_byte_size(bad).unwrap_err();
            assert!(err.message().contains("not a size"), "{bad}: {err}");
        }
    }

    #[test]
    fn read_timeout_is_also_the_stall_timeout() {
        let o = CacheOptions::default().read_timeout(Duration::from_millis(1500));
        assert_eq!(o.hub.read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.transfer.stall_timeout, Duration::from_millis(1500));
        // Zero puts both back to their defaults, even after a value.
        let o = o.read_timeout(Duration::ZERO);
        assert_eq!(o.hub.read_timeout, None);
        assert_eq!(
            o.transfer.stall_timeout,
            TransferOptions::default().stall_timeout
        );
    }

    #[test]
    fn max_retries_is_also_the_attempts_of_a_connection() {
        let o = CacheOptions::default().max_retries(0);
        assert_eq!((o.hub.max_retries, o.transfer.max_attempts), (Some(0), 1));
        let o = o.max_retries(7);
        assert_eq!((o.hub.max_retries, o.transfer.max_attempts), (Some(7), 8));
        let o = o.max_retries(u32::MAX);
        assert_eq!(o.transfer.max_attempts, u32::MAX);
    }

    #[test]
    fn retry_base_delay_reaches_requests_and_transfers() {
        let o = CacheOptions::default().retry_base_delay(Duration::from_millis(20));
        assert_eq!(o.hub.retry_base_delay, Some(Duration::from_millis(20)));
        assert_eq!(o.transfer.backoff_base, Duration::from_millis(20));
        let o = o.retry_base_delay(Duration::ZERO);
        assert_eq!(o.hub.retry_base_delay, None);
        assert_eq!(
            o.transfer.backoff_base,
            TransferOptions::default().backoff_base
        );
    }

    #[test]
    fn zero_sizes_and_counts_mean_the_default() {
        let set = CacheOptions::default()
            .connections(3)
            .range_size(1 << 20)
            .parallel_threshold(5 << 20)
            .parallel_files(2)
            .connect_timeout(Duration::from_secs(2));
        assert_eq!(set.transfer.connections, 3);
        assert_eq!(set.transfer.range_size, 1 << 20);
        assert_eq!(set.transfer.parallel_threshold, 5 << 20);
        assert_eq!(set.parallel_files, 2);
        assert_eq!(set.hub.connect_timeout, Some(Duration::from_secs(2)));
        let reset = set
            .connections(0)
            .range_size(0)
            .parallel_threshold(0)
            .parallel_files(0)
            .connect_timeout(Duration::ZERO);
        assert_eq!(reset.transfer, TransferOptions::default());
        assert_eq!(reset.parallel_files, 0);
        assert_eq!(reset.hub.connect_timeout, None);
    }
}
