//! Positional file I/O behind one helper, so that several connections can write their ranges
//! into one open file at once without sharing a cursor: `FileExt::write_at`/`read_at` on unix,
//! `seek_write`/`seek_read` on Windows. Also the platform-specific durability calls:
//! preallocation and early write-back.

use std::fs::File;
use std::io;

/// Write all of `buf` at `offset`, whatever the platform writes per call.
pub(crate) fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match write_at(file, buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file accepted no bytes",
                ))
            }
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fill `buf` from `offset`; an end of file before `buf` is full is an error, because callers
/// only read back bytes they know were written.
pub(crate) fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match read_at(file, buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the bytes written to it",
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(file, buf, offset)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

// seek_write/seek_read move the file cursor, which nothing here relies on.
#[cfg(windows)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_write(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Give `file` its final length. On Linux the blocks are reserved too (fallocate), so a full
/// disk shows up now rather than halfway through, and ranges written out of order do not
/// fragment the file; elsewhere, or where the file system cannot, the file is sized sparse.
pub(crate) fn preallocate(file: &File, size: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if size > 0 && i64::try_from(size).is_ok() {
            // SAFETY: fallocate only reads its integer arguments; the fd is open for writing.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
            if rc == 0 {
                return file.set_len(size);
            }
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                return Err(err);
            }
        }
    }
    file.set_len(size)
}

/// Ask the kernel to start writing `offset..offset+len` back to disk now, without waiting,
/// so that the sync that makes a range durable finds little left to do. A hint only: where it
/// is unavailable the later sync does all the work.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments. Failure is harmless.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn temp_file(name: &str) -> (std::path::PathBuf, File) {
        let dir =
            std::env::temp_dir().join(format!("tabcache-pwrite-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn writes_land_at_their_offsets_in_any_order() {
        let (path, file) = temp_file("order");
        preallocate(&file, 30).unwrap();
        write_all_at(&file, b"cccccccccc", 20).unwrap();
        write_all_at(&file, b"aaaaaaaaaa", 0).unwrap();
        write_all_at(&file, b"bbbbbbbbbb", 10).unwrap();
        start_writeback(&file, 0, 30);
        file.sync_data().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"aaaaaaaaaabbbbbbbbbbcccccccccc"
        );
        let mut back = [0u8; 12];
        read_exact_at(&file, &mut back, 9).unwrap();
        assert_eq!(&back, b"abbbbbbbbbbc");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn concurrent_writers_share_one_file() {
        let (path, file) = temp_file("threads");
        preallocate(&file, 8 * 4096).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 8 * 4096);
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let file = &file;
                s.spawn(move || write_all_at(file, &[t; 4096], t as u64 * 4096).unwrap());
            }
        });
        let data = std::fs::read(&path).unwrap();
        for t in 0..8u8 {
            assert!(data[t as usize * 4096..(t as usize + 1) * 4096]
                .iter()
                .all(|&b| b == t));
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let (path, file) = temp_file("eof");
        write_all_at(&file, b"abc", 0).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            read_exact_at(&file, &mut buf, 0).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
