//! Response bodies: nothing, a small buffer (JSON, errors), a range of a blob streamed from
//! disk, or the chunks a pull-through sends as its transfer goes ([`ChannelBody`]). A file is
//! read a chunk at a time with positional reads, and the next chunk is read only when hyper
//! asks for it (or, for a pull-through, when the channel has room), so a slow client holds no
//! thread and a few chunks of memory at most, and a file is never whole in memory.
//!
//! Where the bytes are already in the page cache (a served model mostly is) the chunk is read
//! right here on the runtime's worker, a copy of a few tens of microseconds; only what would
//! wait for the disk goes to tokio's blocking pool ([`read_chunk`]; on Linux `preadv2` with
//! `RWF_NOWAIT` says which). Sending every chunk through the pool cost two thread wake-ups per
//! chunk: with 32 clients asking for random 1 MiB ranges (bench case 8) context switches and
//! futex calls were the largest single part of the server's CPU, which was about twice
//! nginx's per request.

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
            let len = self.remaining.min(CHUNK);
            if let Some(bytes) = read_cached(&self.file, len as usize, self.offset) {
                self.offset += bytes.len() as u64;
                self.remaining -= bytes.len() as u64;
                return Poll::Ready(Some(Ok(bytes)));
            }
            let (file, offset) = (self.file.clone(), self.offset);
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

/// Up to `len` bytes at `offset` when they can be had without waiting for the disk: `None`
/// when none are in memory (or the file system cannot tell), and then the blocking pool reads
/// them. A short read (only the first pages cached) is a chunk of its own; an end of file is
/// left to the blocking read, which reports the damaged blob.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, len: usize, offset: u64) -> Option<Bytes> {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut buf = vec![0; len];
    match preadv2(
        file,
        &mut [io::IoSliceMut::new(&mut buf)],
        offset,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.truncate(n);
            Some(Bytes::from(buf))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_: &File, _: usize, _: u64) -> Option<Bytes> {
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    /// The data frames of `body` until it ends or fails: (the bytes, the error if any).
    fn drain(body: Body) -> (Vec<u8>, Option<io::Error>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut body = std::pin::pin!(body);
            let mut got = Vec::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => got.extend_from_slice(frame.data_ref().unwrap()),
                    Err(e) => return (got, Some(e)),
                }
            }
            (got, None)
        })
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        file.sync_all().unwrap();
        file
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_range_of_several_chunks_is_the_files_bytes() {
        let data = pattern(3 * CHUNK as usize + 12_345);
        let (start, len) = (1_000, 2 * CHUNK as usize + 777);
        let (got, err) = drain(Body::File(FileBody::new(
            file_of(&data),
            start as u64,
            len as u64,
        )));
        assert!(err.is_none());
        assert_eq!(got, data[start..start + len]);
    }

    /// The same when nothing is in memory, so the chunks come from the blocking pool.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_range_not_in_the_page_cache_is_read_all_the_same() {
        let data = pattern(2 * CHUNK as usize + 5);
        let file = file_of(&data);
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let (got, err) = drain(Body::File(FileBody::new(file, 3, data.len() as u64 - 3)));
        assert!(err.is_none());
        assert_eq!(got, data[3..]);
    }

    #[test]
    fn a_blob_shorter_than_its_record_ends_the_body_with_an_error() {
        let data = pattern(CHUNK as usize + 100);
        let (got, err) = drain(Body::File(FileBody::new(file_of(&data), 0, 2 * CHUNK)));
        assert_eq!(got, data);
        assert_eq!(err.unwrap().kind(), io::ErrorKind::UnexpectedEof);
    }
}
