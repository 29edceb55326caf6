//! Registries of live handles. A handle given to C is the address of an `Arc` that the
//! registry counts as live; every call looks the address up (taking its own reference)
//! before touching anything, so a closed, freed or foreign pointer is refused, and closing a
//! handle while another thread is inside a call on it is safe: the object is dropped when
//! that call ends.
//!
//! Live addresses are stored disguised ([`disguise`]), not as pointers: a handle the caller
//! never closed must show up in valgrind as "definitely lost", not as memory still reachable
//! from our registry, or leak checks of C programs could never fail.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::error::Failure;

/// An address in a form that no leak checker takes for a pointer.
pub(crate) fn disguise(address: usize) -> usize {
    !address
}

pub(crate) struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeSet<usize>>,
    _owns: std::marker::PhantomData<Arc<T>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            live: Mutex::new(BTreeSet::new()),
            _owns: std::marker::PhantomData,
        }
    }

    /// Inside a fork-quiet section, so a forked child never inherits the registry locked.
    fn live(&self) -> crate::fork::QuietGuard<'_, BTreeSet<usize>> {
        crate::fork::lock(&self.live)
    }

    /// Register `value` and return the pointer that names it.
    pub fn insert(&self, value: T) -> *mut T {
        let ptr = Arc::into_raw(Arc::new(value)) as *mut T;
        self.live().insert(disguise(ptr as usize));
        ptr
    }

    /// The object `ptr` names, if it is live.
    pub fn get(&self, ptr: *const T) -> Result<Arc<T>, Failure> {
        if ptr.is_null() {
            return Err(Failure::invalid(format!(
                "the {} pointer is NULL",
                self.kind
            )));
        }
        let live = self.live();
        if !live.contains(&disguise(ptr as usize)) {
            return Err(self.unknown());
        }
        // SAFETY: `ptr` came from `Arc::into_raw` in `insert` and the registry still holds
        // that reference (checked under the lock, so `remove` cannot release it meanwhile).
        unsafe {
            Arc::increment_strong_count(ptr);
            Ok(Arc::from_raw(ptr))
        }
    }

    /// Unregister `ptr`; the object is dropped once no call is using it.
    pub fn remove(&self, ptr: *const T) -> Result<Arc<T>, Failure> {
        if !self.live().remove(&disguise(ptr as usize)) {
            return Err(self.unknown());
        }
        // SAFETY: the registry held the reference `insert` made; it is handed back exactly once.
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
