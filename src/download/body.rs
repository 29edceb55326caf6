//! Receiving one response body with a watchdog: the blocking reads run on a small reader
//! thread that hands filled buffers over, so the connection's owner can cut a stalled body
//! (no byte for `stall_timeout`) or react to cancellation within [`POLL`] even when the
//! source's reader blocks far longer. A cut reader thread is abandoned; it ends when its read
//! returns (the hub client's idle timeout, or the server closing).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Bytes per read. Two buffers circulate per body, so the next read overlaps the write of the
/// previous one; a connection never holds more than `2 * BUFFER_SIZE` of file data.
pub(crate) const BUFFER_SIZE: usize = 256 << 10;

/// The longest the owner waits before looking at the cancel flag again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// What stops a body besides its end: the caller's cancel flag, the transfer's own abort flag
/// (another connection failed, or the transfer fell back to one stream), and stalls.
pub(crate) struct Control<'a> {
    pub cancel: &'a AtomicBool,
    pub abort: &'a AtomicBool,
    pub stall_timeout: Duration,
}

impl Control<'_> {
    /// Once any thread of a transfer sees the cancel, the whole transfer stops, even if the
    /// cancel is withdrawn meanwhile (a flight that a new requester joins as it stops): the
    /// sighting is kept in the abort flag, so no thread is left waiting for others that quit.
    pub fn should_stop(&self) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            self.abort.store(true, Ordering::Relaxed);
            return true;
        }
        self.abort.load(Ordering::Relaxed)
    }

    /// The error to return when [`Control::should_stop`] is true; the transfer replaces it with
    /// the error that caused an abort.
    pub fn stopped(&self) -> Error {
        Error::cancelled()
    }
}

/// How a body ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub bytes: u64,
    /// The server sent more than `limit` bytes; only `limit` reached the sink.
    pub overflow: bool,
}

enum Message {
    Data(Vec<u8>, usize),
    End,
    Failed(std::io::Error),
}

/// Read `body` to its end, handing each piece to `sink` in order; at most `limit` bytes are
/// handed over, and more than that is reported as [`Received::overflow`]. Errors: the sink's
/// own, [`ErrorKind::Cancelled`] when told to stop, and transient [`ErrorKind::Network`] for a
/// failed read or a stall (bytes handed over before it stay handed over).
///
/// One loop on purpose: the watchdog's states (data, end, failure, stall, cancel) are the arms
/// of one select over the reader thread's messages.
pub(crate) fn receive(
    body: Box<dyn Read + Send>,
    limit: Option<u64>,
    control: &Control,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Received> {
    let (messages, returned) = spawn_reader(body)?;
    let mut bytes = 0u64;
    let mut last_byte = Instant::now();
    loop {
        let complete = limit.is_some_and(|limit| bytes >= limit);
        if control.should_stop() && !complete {
            return Err(control.stopped());
        }
        let waited = last_byte.elapsed();
        if waited >= control.stall_timeout {
            if complete {
                // Every byte asked for is here; only the end of the body is late.
                return Ok(Received {
                    bytes,
                    overflow: false,
                });
            }
            return Err(Error::new(
                ErrorKind::Network,
                format!(
                    "the server sent no data for {:.1} s; the connection was cut",
                    waited.as_secs_f64()
                ),
            )
            .transient(None));
        }
        match messages.recv_timeout((control.stall_timeout - waited).min(POLL)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(Message::End) => {
                return Ok(Received {
                    bytes,
                    overflow: false,
                })
            }
            Ok(Message::Failed(err)) if complete => {
                // A reset after the last byte asked for loses nothing.
                let _ = err;
                return Ok(Received {
                    bytes,
                    overflow: false,
                });
            }
            Ok(Message::Failed(err)) => {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("the connection failed while reading: {err}"),
                )
                .transient(None))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::internal(
                    "the body reader thread ended without saying why",
                ))
            }
            Ok(Message::Data(buf, n)) => {
                last_byte = Instant::now();
                let room = limit.map_or(n as u64, |limit| (limit - bytes).min(n as u64)) as usize;
                if room > 0 {
                    sink(&buf[..room])?;
                    bytes += room as u64;
                    // Time spent in the sink (a slow disk, waiting for the hasher) is ours,
                    // not a server stall.
                    last_byte = Instant::now();
                }
                if room < n {
                    return Ok(Received {
                        bytes,
                        overflow: true,
                    });
                }
                // The reader may be gone already (it ended); a failed return is harmless.
                let _ = returned.send(buf);
            }
        }
    }
}

fn spawn_reader(
    mut body: Box<dyn Read + Send>,
) -> Result<(Receiver<Message>, SyncSender<Vec<u8>>)> {
    let (send_message, messages) = mpsc::sync_channel::<Message>(2);
    let (returned, recycled) = mpsc::sync_channel::<Vec<u8>>(2);
    std::thread::Builder::new()
        .name("tabcache-body".into())
        .spawn(move || {
            let mut allocated = 0;
            loop {
                let mut buf = match recycled.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if allocated < 2 => {
                        allocated += 1;
                        vec![0u8; BUFFER_SIZE]
                    }
                    Err(_) => match recycled.recv() {
                        Ok(buf) => buf,
                        Err(_) => return, // the owner has gone: stop reading
                    },
                };
                let message = loop {
                    match body.read(&mut buf) {
                        Ok(0) => break Message::End,
                        Ok(n) => break Message::Data(buf, n),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => break Message::Failed(e),
                    }
                };
                let last = !matches!(message, Message::Data(..));
                if send_message.send(message).is_err() || last {
                    return;
                }
            }
        })
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("could not start a body reader thread: {e}"),
            )
        })?;
    Ok((messages, returned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Script {
        steps: Vec<Step>,
    }
    enum Step {
        Bytes(Vec<u8>),
        Sleep(Duration),
        Fail,
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            loop {
                if self.steps.is_empty() {
                    return Ok(0);
                }
                match self.steps.remove(0) {
                    Step::Bytes(b) => {
                        buf[..b.len()].copy_from_slice(&b);
                        return Ok(b.len());
                    }
                    Step::Sleep(d) => std::thread::sleep(d),
                    Step::Fail => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "reset",
                        ))
                    }
                }
            }
        }
    }

    fn control<'a>(cancel: &'a AtomicBool, abort: &'a AtomicBool, stall_ms: u64) -> Control<'a> {
        Control {
            cancel,
            abort,
            stall_timeout: Duration::from_millis(stall_ms),
        }
    }

    fn collect(
        body: impl Read + Send + 'static,
        limit: Option<u64>,
        control: &Control,
    ) -> (Result<Received>, Vec<u8>) {
        let mut got = Vec::new();
        let r = receive(Box::new(body), limit, control, |b| {
            got.extend_from_slice(b);
            Ok(())
        });
        (r, got)
    }

    #[test]
    fn whole_body_arrives_in_order() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let (r, got) = collect(Cursor::new(data.clone()), None, &control(&c, &a, 5000));
        assert_eq!(
            r.unwrap(),
            Received {
                bytes: data.len() as u64,
                overflow: false
            }
        );
        assert_eq!(got, data);
    }

    #[test]
    fn time_the_sink_spends_is_not_a_server_stall() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let body = Script {
            steps: vec![Step::Bytes(vec![1; 10]), Step::Bytes(vec![2; 10])],
        };
        let mut got = Vec::new();
        // The sink (a slow disk, a worker waiting for the hasher) takes longer than the stall
        // timeout while the server has the next piece ready.
        let r = receive(Box::new(body), None, &control(&c, &a, 200), |b| {
            std::thread::sleep(Duration::from_millis(300));
            got.extend_from_slice(b);
            Ok(())
        });
        assert_eq!(r.unwrap().bytes, 20);
        assert_eq!(got.len(), 20);
    }

    #[test]
    fn bytes_beyond_the_limit_are_reported_not_written() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let (r, got) = collect(Cursor::new(vec![7u8; 11]), Some(10), &control(&c, &a, 5000));
        assert_eq!(
            r.unwrap(),
            Received {
                bytes: 10,
                overflow: true
            }
        );
        assert_eq!(got.len(), 10);
        let late_extra = Script {
            steps: vec![Step::Bytes(vec![1; 10]), Step::Bytes(vec![2])],
        };
        let (r, _) = collect(late_extra, Some(10), &control(&c, &a, 5000));
        assert!(r.unwrap().overflow);
    }

    #[test]
    fn a_stall_is_cut_and_transient_keeping_earlier_bytes() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let body = Script {
            steps: vec![Step::Bytes(vec![1; 5]), Step::Sleep(Duration::from_secs(3))],
        };
        let started = Instant::now();
        let (r, got) = collect(body, None, &control(&c, &a, 300));
        let err = r.unwrap_err();
        assert!(
            err.is_transient() && err.kind() == ErrorKind::Network,
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(got, vec![1; 5]);
    }

    #[test]
    fn a_read_failure_is_transient() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let body = Script {
            steps: vec![Step::Bytes(vec![1; 5]), Step::Fail],
        };
        let (r, got) = collect(body, None, &control(&c, &a, 5000));
        assert!(r.unwrap_err().is_transient());
        assert_eq!(got.len(), 5);
        // After every byte asked for, a reset costs nothing.
        let body = Script {
            steps: vec![Step::Bytes(vec![1; 5]), Step::Fail],
        };
        let (r, _) = collect(body, Some(5), &control(&c, &a, 5000));
        assert_eq!(r.unwrap().bytes, 5);
    }

    #[test]
    fn cancel_interrupts_a_blocked_read_promptly() {
        let (c, a) = (AtomicBool::new(false), AtomicBool::new(false));
        let body = Script {
            steps: vec![Step::Sleep(Duration::from_secs(5))],
        };
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                c.store(true, Ordering::Relaxed);
            });
            let (r, _) = collect(body, None, &control(&c, &a, 60_000));
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
        });
        assert!(started.elapsed() < Duration::from_millis(600));
    }
}
