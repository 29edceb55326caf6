//! Response bodies: nothing, a small buffer (JSON, errors), a range of a blob streamed from
//! disk, or the chunks a pull-through sends as its transfer goes ([`ChannelBody`]). A file is
//! read a chunk at a time with positional reads on tokio's blocking pool ([`read_chunk`]), and
//! the next chunk is read only when hyper asks for it (or, for a pull-through, when the
//! channel has room), so a slow client holds no thread and a few chunks of memory at most,
//! and a file is never whole in memory.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::download::pwrite::read_exact_at;

/// Bytes per read: large enough that the per-chunk hop to the blocking pool is small next to
/// the copy, small enough that many clients at once cost little memory.
pub(crate) const CHUNK: u64 = 256 * 1024;

pub(crate) enum Body {
    Empty,
    Bytes(Option<Bytes>),
    File(FileBody),
    Channel(ChannelBody),
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
            let len = self.remaining.min(CHUNK);
            self.reading = Some(tokio::task::spawn_blocking(move || {
                read_chunk(&file, offset, len)
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

/// `len` bytes of `file` from `offset`. Blocking: call it on the blocking pool. A file shorter
/// than that (a blob damaged on disk) is an error, which ends the body early, so the client
/// sees a short transfer rather than padding.
pub(crate) fn read_chunk(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    let mut buf = vec![0; len as usize];
    read_exact_at(file, &mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// A body of `remaining` bytes that another task sends as it gets them. An error from the
/// sender, or its end before the last byte, ends the body with an error: hyper then closes
/// the connection before the `Content-Length` is reached, so the client sees the answer cut.
pub(crate) struct ChannelBody {
    chunks: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl ChannelBody {
    pub(crate) fn new(chunks: mpsc::Receiver<io::Result<Bytes>>, len: u64) -> ChannelBody {
        ChannelBody {
            chunks,
            remaining: len,
        }
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(match ready!(self.chunks.poll_recv(cx)) {
            Some(Ok(bytes)) if bytes.len() as u64 <= self.remaining => {
                self.remaining -= bytes.len() as u64;
                Ok(bytes)
            }
            Some(Ok(_)) => Err(io::Error::other("a body was sent more bytes than it has")),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::other("the body's sender stopped before its end")),
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
            Body::Channel(channel) => channel
                .poll_chunk(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Bytes(bytes) => bytes.is_none(),
            Body::File(file) => file.remaining == 0 && file.reading.is_none(),
            Body::Channel(channel) => channel.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::File(file) => SizeHint::with_exact(file.remaining),
            Body::Channel(channel) => SizeHint::with_exact(channel.remaining),
        }
    }
}
