//! The in-order prefix of a transfer's file: how many bytes from byte 0 are written (and, for
//! a ranged transfer, hashed), and the open file they are in. This is what a reader may stream
//! while the transfer still runs (the server's pull-through): the ranged transfer writes its
//! ranges out of order, so only the contiguous prefix is readable in order.
//!
//! The transfer publishes; readers subscribe. The channel is a tokio `watch`: the one
//! notification that both the blocking transfer threads (which only send, never wait) and an
//! async reader understand; a reader never misses a change and never holds a thread to wait.
//!
//! The prefix hands out the file itself (a duplicate of the transfer's descriptor), never a
//! path: a reader never opens anything in `tmp/` by name, so a link planted there cannot lead
//! it elsewhere, and the descriptor keeps reading the same bytes after the verified file is
//! renamed into `blobs/`.
//!
//! A transfer that starts its file over (a new file after a corrupt resume, a stream the
//! server restarted from byte 0, the fall back from ranges to one stream) begins a new
//! `generation`: bytes a reader took from an earlier generation may differ from the final ones.

use std::fs::File;
use std::sync::Arc;

use tokio::sync::watch;

/// What a reader sees of the prefix at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct WrittenPrefix {
    /// The file being written; None until the transfer has one (or when it could not be
    /// shared: then readers wait for the outcome).
    pub(crate) file: Option<Arc<File>>,
    /// Counts the times the transfer started its file from byte 0.
    pub(crate) generation: u64,
    /// Bytes from byte 0 in place in `file`.
    pub(crate) len: u64,
    /// The transfer is over (whatever its outcome, which its owner publishes).
    pub(crate) ended: bool,
}

/// The publishing side, owned by whoever runs the transfer (a flight).
pub(crate) struct PrefixWatch {
    sender: watch::Sender<WrittenPrefix>,
}

impl Default for PrefixWatch {
    fn default() -> Self {
        PrefixWatch {
            sender: watch::Sender::new(WrittenPrefix::default()),
        }
    }
}

impl PrefixWatch {
    pub(crate) fn subscribe(&self) -> watch::Receiver<WrittenPrefix> {
        self.sender.subscribe()
    }

    /// The transfer (re)starts `file` from byte 0.
    pub(crate) fn begin(&self, file: &File) {
        let shared = file.try_clone().ok().map(Arc::new);
        self.sender.send_modify(|p| {
            p.file = shared;
            p.generation += 1;
            p.len = 0;
        });
    }

    /// The first `len` bytes of the file are in place. Readers are woken only when it grows.
    pub(crate) fn grew_to(&self, len: u64) {
        self.sender.send_if_modified(|p| {
            let grew = len > p.len;
            if grew {
                p.len = len;
            }
            grew
        });
    }

    /// The transfer is over; readers look at its outcome now.
    pub(crate) fn end(&self) {
        self.sender.send_modify(|p| p.ended = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_growth_restarts_and_the_end() {
        let watch = PrefixWatch::default();
        let mut reader = watch.subscribe();
        assert!(reader.borrow_and_update().file.is_none());
        let file = tempfile::tempfile().unwrap();
        watch.begin(&file);
        watch.grew_to(10);
        watch.grew_to(5); // never shrinks
        assert!(reader.has_changed().unwrap());
        let seen = reader.borrow_and_update().clone();
        assert_eq!((seen.generation, seen.len, seen.ended), (1, 10, false));
        assert!(seen.file.is_some());
        watch.grew_to(10);
        assert!(!reader.has_changed().unwrap(), "no growth, no wake-up");
        watch.begin(&file);
        let seen = reader.borrow_and_update().clone();
        assert_eq!((seen.generation, seen.len), (2, 0));
        watch.end();
        assert!(reader.borrow_and_update().ended);
    }
}
