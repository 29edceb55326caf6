//! Registries of live handles. A handle given to C is the address of an `Arc` the registry
//! holds; every call looks the address up (cloning the `Arc`) before touching anything, so a
//! closed, freed or foreign pointer is refused, and closing a handle while another thread is
//! inside a call on it is safe: the object is dropped when that call ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::error::Failure;

pub(crate) struct Registry<T> {
    kind: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub const fn new(kind: &'static str) -> Self {
        Registry {
            kind,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `value` and return the pointer that names it.
    pub fn insert(&self, value: T) -> *mut T {
        let value = Arc::new(value);
        let ptr = Arc::as_ptr(&value) as *mut T;
        self.live().insert(ptr as usize, value);
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
        self.live()
            .get(&(ptr as usize))
            .cloned()
            .ok_or_else(|| self.unknown())
    }

    /// Unregister `ptr`; the object is dropped once no call is using it.
    pub fn remove(&self, ptr: *const T) -> Result<Arc<T>, Failure> {
        self.live()
            .remove(&(ptr as usize))
            .ok_or_else(|| self.unknown())
    }

    fn unknown(&self) -> Failure {
        Failure::invalid(format!(
            "this {kind} was already closed or freed, or is not a {kind} from tabcache; \
             use each handle until its close/free call only",
            kind = self.kind
        ))
    }
}
