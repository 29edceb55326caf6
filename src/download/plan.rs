//! Range planning for ranged transfers: how a file of known size is cut into fixed-size ranges,
//! and the bitset that records which of them are done (the form [`PartialState`] persists).
//!
//! A plan never has more than [`MAX_RANGES`] ranges, so the per-range bookkeeping of a
//! transfer (a counter and an index per range, a bit in the resume record) stays bounded
//! whatever size a server claims.

use super::PartialState;

/// Ranges are never cut smaller than this, however many connections share a small file: below
/// it a request's round trip costs more than its bytes.
pub(crate) const MIN_RANGE_SIZE: u64 = 1 << 20;

/// The most ranges one file is cut into: ranges grow beyond the configured size for files
/// larger than `MAX_RANGES` of them (1 TiB at the default 16 MiB), so a transfer's range
/// bookkeeping never exceeds about 1 MiB and its resume record 8 KiB.
pub(crate) const MAX_RANGES: u64 = 1 << 16;

/// A file of `size` bytes cut into ranges of `range_size` bytes (the last one may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangePlan {
    pub size: u64,
    pub range_size: u64,
}

impl RangePlan {
    /// The plan for `size` bytes over `connections` connections with ranges of at most
    /// `max_range_size`. A file too small to give every connection a full range gets smaller
    /// ranges (whole MiBs, at least [`MIN_RANGE_SIZE`]) so that all connections work. The result
    /// depends only on the arguments, so a later run with the same options finds the same plan
    /// and can resume.
    pub fn new(size: u64, connections: usize, max_range_size: u64) -> RangePlan {
        let max_range_size = max_range_size.max(1);
        let per_connection = size.div_ceil(connections.max(1) as u64);
        let rounded = per_connection
            .div_ceil(MIN_RANGE_SIZE)
            .max(1)
            .saturating_mul(MIN_RANGE_SIZE);
        // Whole MiBs again, so that the plan of a huge file is as regular as any other.
        let fewest = size
            .div_ceil(MAX_RANGES)
            .div_ceil(MIN_RANGE_SIZE)
            .saturating_mul(MIN_RANGE_SIZE);
        RangePlan {
            size,
            range_size: rounded.min(max_range_size).max(fewest),
        }
    }

    pub fn count(&self) -> usize {
        self.size.div_ceil(self.range_size) as usize
    }

    /// Byte bounds `start..end` of range `index`.
    pub fn bounds(&self, index: usize) -> (u64, u64) {
        let start = (index as u64)
            .saturating_mul(self.range_size)
            .min(self.size);
        (start, start.saturating_add(self.range_size).min(self.size))
    }

    pub fn len(&self, index: usize) -> u64 {
        let (start, end) = self.bounds(index);
        end - start
    }

    /// The done ranges recorded in `state`, when `state` describes this very plan; a state
    /// from another size or range size says nothing usable about this file.
    pub fn resumable(&self, state: &PartialState) -> Option<Bitset> {
        let matches = state.size == self.size
            && state.range_size == self.range_size
            && state.done.len() == Bitset::words_for(self.count());
        matches.then(|| Bitset::from_words(self.count(), state.done.clone()))
    }

    pub fn state(&self, done: &Bitset) -> PartialState {
        PartialState {
            size: self.size,
            range_size: self.range_size,
            done: done.words().to_vec(),
            xet: None,
        }
    }
}

/// A fixed-length set of range indices, 64 per word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitset {
    len: usize,
    words: Vec<u64>,
}

impl Bitset {
    pub fn new(len: usize) -> Bitset {
        Bitset {
            len,
            words: vec![0; Bitset::words_for(len)],
        }
    }

    fn words_for(len: usize) -> usize {
        len.div_ceil(64)
    }

    /// Bits at or beyond `len` are dropped, so a damaged record cannot claim ranges that do
    /// not exist.
    pub fn from_words(len: usize, mut words: Vec<u64>) -> Bitset {
        words.resize(Bitset::words_for(len), 0);
        if !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last &= (1u64 << (len % 64)) - 1;
            }
        }
        Bitset { len, words }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn get(&self, index: usize) -> bool {
        index < self.len && self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// The indices in the set, in order; visits words, not every index.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let bit = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + bit
                })
            })
        })
    }

    pub fn set(&mut self, index: usize) {
        assert!(index < self.len, "range index {index} out of {}", self.len);
        self.words[index / 64] |= 1 << (index % 64);
    }

    #[cfg(test)]
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn big_files_use_the_full_range_size() {
        let plan = RangePlan::new(1000 * MIB, 8, 16 * MIB);
        assert_eq!(plan.range_size, 16 * MIB);
        assert_eq!(plan.count(), 63);
        assert_eq!(plan.bounds(0), (0, 16 * MIB));
        assert_eq!(plan.bounds(62), (992 * MIB, 1000 * MIB));
        assert_eq!(plan.len(62), 8 * MIB);
    }

    #[test]
    fn small_files_shrink_ranges_so_every_connection_works() {
        let plan = RangePlan::new(40 * MIB, 8, 16 * MIB);
        assert_eq!(plan.range_size, 5 * MIB);
        assert_eq!(plan.count(), 8);
        // Never below one MiB, rounded up to whole MiBs.
        let plan = RangePlan::new(3 * MIB + 1, 8, 16 * MIB);
        assert_eq!(plan.range_size, MIB);
        assert_eq!(plan.count(), 4);
        assert_eq!(plan.len(3), 1);
    }

    #[test]
    fn ranges_cover_the_file_exactly_once() {
        for (size, conns, max) in [
            (1u64, 8, 16 * MIB),
            (MIB, 1, MIB),
            (77 * MIB + 13, 3, 4 * MIB),
            (5 * MIB, 8, 3 * MIB),
        ] {
            let plan = RangePlan::new(size, conns, max);
            let mut next = 0;
            for i in 0..plan.count() {
                let (start, end) = plan.bounds(i);
                assert_eq!(start, next);
                assert!(end > start && end - start <= plan.range_size);
                next = end;
            }
            assert_eq!(next, size);
        }
    }

    #[test]
    fn bitset_round_trips_through_partial_state() {
        let plan = RangePlan::new(130 * MIB, 1, MIB);
        assert_eq!(plan.count(), 130);
        let mut done = Bitset::new(plan.count());
        for i in [0, 63, 64, 129] {
            done.set(i);
        }
        let state = plan.state(&done);
        assert_eq!(state.done.len(), 3);
        let back = plan.resumable(&state).expect("same plan");
        assert_eq!(back, done);
        assert_eq!(back.count_ones(), 4);
        assert!(back.get(63) && back.get(64) && !back.get(65) && !back.get(130));
    }

    #[test]
    fn state_of_another_plan_is_not_resumable() {
        let plan = RangePlan::new(130 * MIB, 1, MIB);
        let state = plan.state(&Bitset::new(plan.count()));
        assert!(RangePlan::new(131 * MIB, 1, MIB)
            .resumable(&state)
            .is_none());
        assert!(RangePlan::new(130 * MIB, 1, 2 * MIB)
            .resumable(&state)
            .is_none());
        let mut short = state.clone();
        short.done.pop();
        assert!(plan.resumable(&short).is_none());
    }

    #[test]
    fn no_claimed_size_makes_more_than_max_ranges() {
        // 1 PiB (the largest size any server may claim) and the 2^64 - 1 a broken one could.
        for size in [1u64 << 50, u64::MAX, (1 << 40) + 1] {
            for max in [1, MIB, 16 * MIB] {
                let plan = RangePlan::new(size, 8, max);
                assert!(
                    plan.count() as u64 <= MAX_RANGES,
                    "{size} / {max}: {plan:?}"
                );
                assert_eq!(plan.range_size % MIB, 0, "{plan:?}");
                let (start, end) = plan.bounds(plan.count() - 1);
                assert!(start < end && end == size, "{plan:?}: {start}..{end}");
            }
        }
        // Up to MAX_RANGES ranges the configured size is kept (resume records stay valid).
        assert_eq!(RangePlan::new(1 << 40, 8, 16 * MIB).range_size, 16 * MIB);
    }

    #[test]
    fn ones_lists_the_set_indices_in_order() {
        let mut set = Bitset::new(200);
        for i in [0, 5, 63, 64, 130, 199] {
            set.set(i);
        }
        assert_eq!(set.ones().collect::<Vec<_>>(), vec![0, 5, 63, 64, 130, 199]);
        assert_eq!(Bitset::new(10).ones().count(), 0);
    }

    #[test]
    fn durable_bytes_count_the_recorded_ranges() {
        let state = PartialState {
            size: 1 << 62,
            range_size: 1,
            done: vec![u64::MAX; 4],
            xet: None,
        };
        assert_eq!(
            state.durable_bytes(),
            0,
            "not a plan of this size: nothing usable"
        );
        let state = PartialState {
            size: 130 * MIB,
            range_size: MIB,
            done: vec![u64::MAX, u64::MAX, u64::MAX],
            xet: None,
        };
        assert_eq!(state.durable_bytes(), 130 * MIB);
    }

    #[test]
    fn stray_bits_beyond_the_last_range_are_dropped() {
        let set = Bitset::from_words(3, vec![u64::MAX]);
        assert_eq!(set.count_ones(), 3);
        assert!(!set.get(3));
    }
}
