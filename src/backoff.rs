//! Exponential backoff with jitter: the one formula behind every retry, the hub client's
//! request retries (`hub::retry`) and the transfer engine's per-connection retries
//! (`download::retry`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// The wait before retry number `retry` (0-based): `base * 2^retry`, capped at `cap`, then
/// scaled by a random factor in [50%, 100%), so that clients that failed together (the
/// connections of one transfer, say) do not all come back at the same instant.
pub(crate) fn jittered(base: Duration, retry: u32, cap: Duration) -> Duration {
    let exponential = base.saturating_mul(1u32 << retry.min(20)).min(cap);
    exponential.mul_f64(0.5 + 0.5 * random_unit())
}

/// A uniform number in [0, 1) without a random-number crate: std seeds every `RandomState`
/// with fresh per-process randomness and a per-instance counter, which is plenty for jitter
/// (never for cryptography).
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_half_to_full_and_stop_at_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(8);
        for retry in 0..6 {
            let full = (base * (1 << retry)).min(cap);
            let wait = jittered(base, retry, cap);
            assert!(wait >= full / 2 && wait < full, "{retry}: {wait:?}");
        }
        assert!(jittered(base, 40, cap) < cap);
        assert!(jittered(base, 40, cap) >= cap / 2);
    }

    #[test]
    fn jitter_spreads_waits() {
        let waits: std::collections::HashSet<Duration> = (0..20)
            .map(|_| jittered(Duration::from_secs(1), 3, Duration::from_secs(60)))
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
