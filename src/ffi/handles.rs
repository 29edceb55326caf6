//! Registries of live handles. A handle given to C names a slot of its kind's registry, and
//! the slot holds the `Arc` of the object; every call looks the handle up (taking its own
//! reference) before touching anything, so a closed, freed or foreign pointer is refused, and
//! closing a handle while another thread is inside a call on it is safe: the object is dropped
//! when that call ends.
//!
//! A handle is a token, not an address: its low bits name the slot, the next 8 bits the kind
//! (so a tc_job is never taken for a tc_cache), and the top 16 bits ([`GENERATION_SHIFT`]) the
//! slot's generation, which grows each time the slot is given out. A freed slot is the first
//! to be given out again (the registry reuses slots last-freed first, as an allocator reuses
//! memory), and then the stale handle and the new one differ in their generation: the stale
//! one is refused until its slot has been given out 65535 more times.
//!
//! Slots hold their object's address disguised ([`disguise`]), not as a pointer: a handle the
//! caller never closed must show up in valgrind as "definitely lost", not as memory still
//! reachable from our registry, or leak checks of C programs could never fail.

use std::sync::{Arc, Mutex};

use super::error::{Failure, TcStatus};

/// An address in a form that no leak checker takes for a pointer.
pub(crate) fn disguise(address: usize) -> usize {
    !address
}

/// Where a handle's generation sits: its top 16 bits.
pub(crate) const GENERATION_SHIFT: u32 = usize::BITS - 16;
/// Where a handle's kind sits: the 8 bits below the generation.
const KIND_SHIFT: u32 = GENERATION_SHIFT - 8;
/// The most slots a registry has (2^40 - 1 on 64-bit platforms).
const MAX_SLOTS: usize = (1 << KIND_SHIFT) - 1;

pub(crate) struct Registry<T> {
    kind: &'static str,
    /// Distinct per registry, so that a handle of one kind is unknown to the others.
    tag: u8,
    live: Mutex<Slots>,
    _owns: std::marker::PhantomData<Arc<T>>,
}

struct Slots {
    slots: Vec<Slot>,
    /// Free slot indices; the last freed is given out first.
    free: Vec<usize>,
}

struct Slot {
    /// Of the handle last given out for this slot; 0 before the first.
    generation: u16,
    /// The disguised address of the `Arc` while a handle names it.
    object: Option<usize>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str, tag: u8) -> Self {
        Registry {
            kind,
            tag,
            live: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
            _owns: std::marker::PhantomData,
        }
    }

    /// Inside a fork-quiet section, so a forked child never inherits the registry locked.
    fn live(&self) -> crate::fork::QuietGuard<'_, Slots> {
        crate::fork::lock(&self.live)
    }

    /// Register `value` and return the handle that names it.
    pub fn insert(&self, value: T) -> Result<*mut T, Failure> {
        let mut live = self.live();
        let index = match live.free.pop() {
            Some(index) => index,
            None if live.slots.len() < MAX_SLOTS => {
                live.slots.push(Slot {
                    generation: 0,
                    object: None,
                });
                live.slots.len() - 1
            }
            None => {
                return Err(Failure {
                    status: TcStatus::Internal,
                    message: format!(
                    "{MAX_SLOTS} {} handles are open; close (or free) the ones no longer in use",
                    self.kind
                ),
                })
            }
        };
        let address = Arc::into_raw(Arc::new(value)).expose_provenance();
        let slot = &mut live.slots[index];
        // 0 is skipped, so that no handle has a generation of nothing.
        slot.generation = slot.generation.wrapping_add(1).max(1);
        slot.object = Some(disguise(address));
        let handle = (usize::from(slot.generation) << GENERATION_SHIFT)
            | (usize::from(self.tag) << KIND_SHIFT)
            | (index + 1);
        // A token for C to hand back, never dereferenced: it carries no provenance.
        Ok(std::ptr::without_provenance_mut(handle))
    }

    /// The slot index `handle` names, if it is a live handle of this registry.
    fn find(&self, live: &Slots, handle: *const T) -> Option<usize> {
        let handle = handle.addr();
        let generation = (handle >> GENERATION_SHIFT) as u16;
        let tag = (handle >> KIND_SHIFT) as u8;
        let index = (handle & MAX_SLOTS).checked_sub(1)?;
        let slot = live.slots.get(index)?;
        (tag == self.tag && slot.generation == generation && slot.object.is_some()).then_some(index)
    }

    /// The object `handle` names, if it is live.
    pub fn get(&self, handle: *const T) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::invalid(format!(
                "the {} pointer is NULL",
                self.kind
            )));
        }
        let live = self.live();
        let index = self.find(&live, handle).ok_or_else(|| self.unknown())?;
        let disguised = live.slots[index].object.expect("find checked it");
        let ptr: *const T = std::ptr::with_exposed_provenance(disguise(disguised));
        // SAFETY: `ptr` came from `Arc::into_raw` in `insert` and the slot still holds that
        // reference (checked under the lock, so `remove` cannot release it meanwhile).
        unsafe {
            Arc::increment_strong_count(ptr);
            Ok(Arc::from_raw(ptr))
        }
    }

    /// Unregister `handle`; the object is dropped once no call is using it.
    pub fn remove(&self, handle: *const T) -> Result<Arc<T>, Failure> {
        let mut live = self.live();
        let index = self.find(&live, handle).ok_or_else(|| self.unknown())?;
        let disguised = live.slots[index].object.take().expect("find checked it");
        live.free.push(index);
        drop(live);
        let ptr: *const T = std::ptr::with_exposed_provenance(disguise(disguised));
        // SAFETY: the slot held the reference `insert` made; it is handed back exactly once.
        Ok(unsafe { Arc::from_raw(ptr) })
    }

    fn unknown(&self) -> Failure {
        Failure::invalid(format!(
            "this {kind} was already closed or freed, or is not a {kind} from tabcache; \
             use each handle until its close/free call only",
            kind = self.kind
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT_BITS: usize = (1 << GENERATION_SHIFT) - 1;

    #[test]
    fn a_stale_handle_is_refused_once_its_slot_names_a_newer_object() {
        let registry: Registry<String> = Registry::new("thing", 1);
        let stale = registry.insert("first".into()).unwrap();
        drop(registry.remove(stale).unwrap());
        let newer = registry.insert("second".into()).unwrap();
        assert_eq!(
            newer.addr() & SLOT_BITS,
            stale.addr() & SLOT_BITS,
            "the slot is reused"
        );
        assert_ne!(newer, stale, "under another generation");
        let err = registry.get(stale).err().unwrap();
        assert!(err.message.contains("already closed"), "{}", err.message);
        assert!(registry.remove(stale).is_err(), "a double close is refused");
        assert_eq!(*registry.get(newer).unwrap(), "second", "and harms nothing");
        drop(registry.remove(newer).unwrap());
    }

    #[test]
    fn handles_of_another_kind_or_made_up_are_unknown() {
        let caches: Registry<u8> = Registry::new("cache", 1);
        let jobs: Registry<u8> = Registry::new("job", 2);
        let cache = caches.insert(1).unwrap();
        let job = jobs.insert(2).unwrap();
        assert!(caches.get(job.cast()).is_err());
        assert!(jobs.get(cache.cast()).is_err());
        for made_up in [1usize, 0x1000, usize::MAX, cache.addr() + 1] {
            assert!(
                caches.get(std::ptr::without_provenance(made_up)).is_err(),
                "{made_up:x}"
            );
        }
        assert!(caches.get(std::ptr::null()).is_err());
        drop(caches.remove(cache).unwrap());
        drop(jobs.remove(job).unwrap());
    }

    #[test]
    fn generations_skip_zero_and_wrap() {
        let registry: Registry<u64> = Registry::new("thing", 1);
        let first = registry.insert(1).unwrap();
        drop(registry.remove(first).unwrap());
        registry.live().slots[0].generation = u16::MAX;
        let handle = registry.insert(7).unwrap();
        assert_eq!(registry.live().slots[0].generation, 1);
        assert_eq!(
            handle, first,
            "the generation came round again after 65535 reuses"
        );
        assert_eq!(*registry.get(handle).unwrap(), 7);
        drop(registry.remove(handle).unwrap());
    }
}
