//! Response bodies: nothing, a small buffer (JSON, errors), or a range of a blob streamed from
//! disk. A file is read a chunk at a time with positional reads on tokio's blocking pool, and
//! the next chunk is read only when hyper asks for it, so a slow client holds no thread and
//! no more than one chunk of memory, and a file is never whole in memory.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::download::pwrite::read_exact_at;

/// Bytes per read: large enough that the per-chunk hop to the blocking pool is small next to
/// the copy, small enough that many clients at once cost little memory.
const CHUNK: u64 = 256 * 1024;

pub(crate) enum Body {
    Empty,
    Bytes(Option<Bytes>),
    File(FileBody),
}

impl Body {
    pub(crate) fn bytes(bytes: impl Into<Bytes>) -> Body {
        Body::Bytes(Some(bytes.into()))
    }
}

/// `len` bytes of `file` from `offset`.
pub(crate) struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    pub(crate) fn new(file: File, offset: u64, len: u64) -> FileBody {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            reading: None,
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.reading.is_none() {
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            let (file, offset) = (self.file.clone(), self.offset);
            let len = self.remaining.min(CHUNK) as usize;
            self.reading = Some(tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; len];
                // A blob shorter than its record (damaged on disk) ends the body early, so
                // the client sees a short transfer rather than padding.
                read_exact_at(&file, &mut buf, offset)?;
                Ok(Bytes::from(buf))
            }));
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(reading).poll(cx));
        self.reading = None;
        Poll::Ready(Some(match read {
            Ok(Ok(bytes)) => {
                self.offset += bytes.len() as u64;
                self.remaining -= bytes.len() as u64;
                Ok(bytes)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(io::Error::other(e)),
        }))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::File(file) => file
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Bytes(bytes) => bytes.is_none(),
            Body::File(file) => file.remaining == 0 && file.reading.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File(file) => SizeHint::with_exact(file.remaining),
        }
    }
}
