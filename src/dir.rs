//! Directory handles: every file operation the cache makes on its own directories (`blobs/`,
//! `tmp/`, `hub/` and the folders below it, the lock files), done relative to a directory
//! opened once, so that no link planted in the cache directory can redirect it.
//!
//! What that buys, on unix: a [`Dir`] holds an open descriptor of its directory, and every
//! operation names one entry of it (never a path with `/`), with `*at` system calls that do not
//! follow a link at that name (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`, `unlinkat`,
//! `renameat`). A link planted at an entry's name, or a directory swapped for a link after the
//! handle was opened, is then never followed: nothing outside the cache is created, written,
//! chmodded, renamed or deleted through it. Files are opened non-blocking and refused unless
//! they are regular files, so a FIFO or device planted at a name cannot hang a call.
//!
//! Only [`Dir::open`] follows links: the cache root the user names may legitimately be one.
//! Elsewhere (Windows, other platforms) the same operations are path-based: the platform
//! offers no descriptor-relative calls through std, and the guarantee above is unix's.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open directory. Clones share the descriptor.
#[derive(Clone)]
pub(crate) struct Dir {
    inner: Arc<Inner>,
}

struct Inner {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    /// Where the directory was when it was opened: for messages, and the paths handed out.
    path: PathBuf,
}

/// What is at a name, seen without following a link there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Link,
    /// A FIFO, socket or device.
    Other,
}

/// The metadata of an entry (of the link itself when it is one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) len: u64,
    pub(crate) modified: Option<std::time::SystemTime>,
    /// Device and inode (0 where the platform has none): which file this is.
    pub(crate) id: (u64, u64),
    /// Hard links to the file (1 where the platform cannot say). A file the cache created in
    /// `tmp/` has one; more means a name elsewhere shares its bytes.
    pub(crate) links: u64,
}

/// The refusal of a special file (FIFO, device, socket) where a regular file was expected.
pub(crate) fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a FIFO, device, socket or directory)",
    )
}

/// Entry names only: a `/` would make the kernel resolve (and follow) the folders in between.
fn check_name(name: &OsStr) -> io::Result<()> {
    let ok =
        !name.is_empty() && name != "." && name != ".." && !name.as_encoded_bytes().contains(&b'/');
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ))
    }
}

impl Dir {
    /// Where this directory was when it was opened.
    pub(crate) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The path of entry `name`, for messages and for paths handed to callers.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.inner.path.join(name)
    }

    /// The directory holding `path` and `path`'s file name: for callers that name a file by
    /// path (the parent is opened following links; the name never is).
    pub(crate) fn open_parent(path: &Path) -> io::Result<(Dir, std::ffi::OsString)> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Ok((Dir::open(parent)?, name.to_os_string()))
    }
}

#[cfg(unix)]
mod imp {
    use super::*;
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    use std::os::fd::{AsFd, OwnedFd};

    const DIR_FLAGS: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::CLOEXEC)
        .union(OFlags::NOFOLLOW);

    fn meta_of(st: &rustix::fs::Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Link,
            _ => Kind::Other,
        };
        let modified = u64::try_from(st.st_mtime).ok().map(|secs| {
            std::time::UNIX_EPOCH
                + std::time::Duration::new(secs, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
        });
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Meta {
            kind,
            len: st.st_size as u64,
            modified,
            id: (st.st_dev as u64, st.st_ino as u64),
            links: st.st_nlink as u64,
        }
    }

    /// A file descriptor opened with `O_NONBLOCK` (a FIFO must not block the open), kept only
    /// when it is a regular file, and made blocking again.
    fn regular(fd: OwnedFd) -> io::Result<File> {
        let st = rustix::fs::fstat(&fd)?;
        if meta_of(&st).kind != Kind::File {
            return Err(not_regular());
        }
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
        Ok(File::from(fd))
    }

    /// Open an existing regular file by path for reading without blocking on a FIFO or
    /// device; links in the path are followed (the caller named it).
    pub(crate) fn open_regular_path(path: &Path) -> io::Result<File> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        regular(fd)
    }

    /// The metadata of an open file.
    pub(crate) fn file_meta(file: &File) -> io::Result<Meta> {
        Ok(meta_of(&rustix::fs::fstat(file)?))
    }

    /// Remove the write permission of an open file (every class), leaving the rest.
    pub(crate) fn make_read_only(file: &File) -> io::Result<()> {
        let st = rustix::fs::fstat(file)?;
        let mode = Mode::from_raw_mode(st.st_mode as _) & !(Mode::WUSR | Mode::WGRP | Mode::WOTH);
        Ok(rustix::fs::fchmod(file, mode)?)
    }

    impl Dir {
        /// Open the directory at `path`, following links (the cache root may be one).
        pub(crate) fn open(path: &Path) -> io::Result<Dir> {
            let fd = rustix::fs::open(path, DIR_FLAGS - OFlags::NOFOLLOW, Mode::empty())?;
            Ok(Dir {
                inner: Arc::new(Inner {
                    fd,
                    path: path.to_path_buf(),
                }),
            })
        }

        /// The directory `name` in this one, made first when `create` and it is missing. A link
        /// at `name` is refused (`ELOOP`/`ENOTDIR`), never followed.
        pub(crate) fn sub(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<Dir> {
            let name = name.as_ref();
            check_name(name)?;
            if create {
                match rustix::fs::mkdirat(&self.inner.fd, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let fd = rustix::fs::openat(&self.inner.fd, name, DIR_FLAGS, Mode::empty())?;
            Ok(Dir {
                inner: Arc::new(Inner {
                    fd,
                    path: self.join(name),
                }),
            })
        }

        /// What is at `name` (a link itself, not what it points to); None when nothing is.
        pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Meta>> {
            let name = name.as_ref();
            check_name(name)?;
            match rustix::fs::statat(&self.inner.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(Some(meta_of(&st))),
                Err(rustix::io::Errno::NOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }

        /// The metadata of this directory itself.
        pub(crate) fn meta(&self) -> io::Result<Meta> {
            Ok(meta_of(&rustix::fs::fstat(&self.inner.fd)?))
        }

        fn open_file(&self, name: &OsStr, flags: OFlags) -> io::Result<File> {
            check_name(name)?;
            let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
            let fd = rustix::fs::openat(&self.inner.fd, name, flags, Mode::from_raw_mode(0o666))?;
            regular(fd)
        }

        /// Open the regular file `name` for reading.
        pub(crate) fn open_read(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
            self.open_file(name.as_ref(), OFlags::RDONLY)
        }

        /// Open the regular file `name` for reading and writing, creating it when `create`
        /// (permissions 0666 less the umask, as `std::fs` does). Never truncates: see
        /// [`Dir::create_fresh`].
        pub(crate) fn open_rw(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<File> {
            let mut flags = OFlags::RDWR;
            if create {
                flags |= OFlags::CREATE;
            }
            self.open_file(name.as_ref(), flags)
        }

        /// Create `name`, which must not exist (as anything, a link included), for writing.
        pub(crate) fn create_new(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
            self.open_file(name.as_ref(), OFlags::RDWR | OFlags::CREATE | OFlags::EXCL)
        }

        /// Remove the non-directory `name` (a link itself, never its target). Returns whether
        /// there was one.
        pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
            let name = name.as_ref();
            check_name(name)?;
            match rustix::fs::unlinkat(&self.inner.fd, name, AtFlags::empty()) {
                Ok(()) => Ok(true),
                Err(rustix::io::Errno::NOENT) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }

        /// Remove `name` and everything below it; a link there is removed itself, never
        /// followed. Absent is fine.
        pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
            let name = name.as_ref();
            match self.stat(name)? {
                None => return Ok(()),
                Some(meta) if meta.kind != Kind::Dir => {
                    self.remove_file(name)?;
                    return Ok(());
                }
                Some(_) => {}
            }
            let sub = self.sub(name, false)?;
            for child in sub.list()? {
                sub.remove_tree(&child)?;
            }
            drop(sub);
            match rustix::fs::unlinkat(&self.inner.fd, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }

        /// Rename `from` (in this directory) to `to` in `dest`, replacing what is at `to` (a
        /// link there is replaced, not followed).
        pub(crate) fn rename(
            &self,
            from: impl AsRef<OsStr>,
            dest: &Dir,
            to: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let (from, to) = (from.as_ref(), to.as_ref());
            check_name(from)?;
            check_name(to)?;
            Ok(rustix::fs::renameat(
                &self.inner.fd,
                from,
                &dest.inner.fd,
                to,
            )?)
        }

        /// Create the symbolic link `name` holding `target`.
        pub(crate) fn symlink(&self, target: &Path, name: impl AsRef<OsStr>) -> io::Result<()> {
            let name = name.as_ref();
            check_name(name)?;
            Ok(rustix::fs::symlinkat(target, &self.inner.fd, name)?)
        }

        /// The target of the link `name`.
        pub(crate) fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<PathBuf> {
            use std::os::unix::ffi::OsStringExt;
            let name = name.as_ref();
            check_name(name)?;
            let target = rustix::fs::readlinkat(&self.inner.fd, name, Vec::new())?;
            Ok(PathBuf::from(std::ffi::OsString::from_vec(
                target.into_bytes(),
            )))
        }

        /// Hard-link `from` of `src` (a link there is linked itself, never followed) as `name`.
        pub(crate) fn hard_link(
            &self,
            src: &Dir,
            from: impl AsRef<OsStr>,
            name: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let (from, name) = (from.as_ref(), name.as_ref());
            check_name(from)?;
            check_name(name)?;
            Ok(rustix::fs::linkat(
                &src.inner.fd,
                from,
                &self.inner.fd,
                name,
                AtFlags::empty(),
            )?)
        }

        /// Hard-link the file at `path` (outside the cache; its last component is linked
        /// itself if it is a link) as `name`.
        pub(crate) fn hard_link_path(
            &self,
            path: &Path,
            name: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let name = name.as_ref();
            check_name(name)?;
            Ok(rustix::fs::linkat(
                rustix::fs::CWD,
                path,
                &self.inner.fd,
                name,
                AtFlags::empty(),
            )?)
        }

        /// The names in this directory (lossy where not UTF-8).
        pub(crate) fn list(&self) -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&self.inner.fd)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy();
                if name != "." && name != ".." {
                    names.push(name.into_owned());
                }
            }
            Ok(names)
        }

        /// Make renames and creations in this directory durable.
        pub(crate) fn sync(&self) -> io::Result<()> {
            Ok(rustix::fs::fsync(&self.inner.fd)?)
        }

        /// Free bytes for an unprivileged writer on this directory's file system.
        pub(crate) fn free_space(&self) -> Option<u64> {
            let st = rustix::fs::fstatvfs(self.inner.fd.as_fd()).ok()?;
            Some(st.f_bavail.saturating_mul(st.f_frsize))
        }
    }
}

#[cfg(not(unix))]
mod imp {
    //! Path-based: see the module documentation.
    use super::*;
    use std::fs;

    fn meta_of(m: &fs::Metadata) -> Meta {
        let t = m.file_type();
        let kind = if t.is_symlink() {
            Kind::Link
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Meta {
            kind,
            len: m.len(),
            modified: m.modified().ok(),
            id: (0, 0),
            links: 1,
        }
    }

    pub(crate) fn open_regular_path(path: &Path) -> io::Result<File> {
        let file = File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(not_regular());
        }
        Ok(file)
    }

    pub(crate) fn file_meta(file: &File) -> io::Result<Meta> {
        Ok(meta_of(&file.metadata()?))
    }

    pub(crate) fn make_read_only(file: &File) -> io::Result<()> {
        let mut perms = file.metadata()?.permissions();
        perms.set_readonly(true);
        file.set_permissions(perms)
    }

    impl Dir {
        pub(crate) fn open(path: &Path) -> io::Result<Dir> {
            if !fs::metadata(path)?.is_dir() {
                return Err(io::Error::other("not a directory"));
            }
            Ok(Dir {
                inner: Arc::new(Inner {
                    path: path.to_path_buf(),
                }),
            })
        }

        pub(crate) fn sub(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<Dir> {
            let name = name.as_ref();
            check_name(name)?;
            let path = self.join(name);
            if create {
                match fs::create_dir(&path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            if !fs::symlink_metadata(&path)?.is_dir() {
                return Err(io::Error::other("not a directory"));
            }
            Ok(Dir {
                inner: Arc::new(Inner { path }),
            })
        }

        pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Meta>> {
            let name = name.as_ref();
            check_name(name)?;
            match fs::symlink_metadata(self.join(name)) {
                Ok(m) => Ok(Some(meta_of(&m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }

        pub(crate) fn meta(&self) -> io::Result<Meta> {
            Ok(meta_of(&fs::metadata(self.path())?))
        }

        fn open_with(&self, name: &OsStr, options: &fs::OpenOptions) -> io::Result<File> {
            check_name(name)?;
            let file = options.open(self.join(name))?;
            if !file.metadata()?.is_file() {
                return Err(not_regular());
            }
            Ok(file)
        }

        pub(crate) fn open_read(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
            self.open_with(name.as_ref(), fs::OpenOptions::new().read(true))
        }

        pub(crate) fn open_rw(&self, name: impl AsRef<OsStr>, create: bool) -> io::Result<File> {
            self.open_with(
                name.as_ref(),
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(create)
                    .truncate(false),
            )
        }

        pub(crate) fn create_new(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
            self.open_with(
                name.as_ref(),
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true),
            )
        }

        pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
            let name = name.as_ref();
            check_name(name)?;
            let path = self.join(name);
            // Windows refuses to delete read-only files.
            if let Ok(meta) = fs::symlink_metadata(&path) {
                let mut perms = meta.permissions();
                if perms.readonly() {
                    perms.set_readonly(false);
                    let _ = fs::set_permissions(&path, perms);
                }
            }
            match fs::remove_file(&path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        }

        pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
            let name = name.as_ref();
            check_name(name)?;
            match fs::remove_dir_all(self.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }

        pub(crate) fn rename(
            &self,
            from: impl AsRef<OsStr>,
            dest: &Dir,
            to: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let (from, to) = (from.as_ref(), to.as_ref());
            check_name(from)?;
            check_name(to)?;
            fs::rename(self.join(from), dest.join(to))
        }

        pub(crate) fn symlink(&self, target: &Path, name: impl AsRef<OsStr>) -> io::Result<()> {
            let name = name.as_ref();
            check_name(name)?;
            #[cfg(windows)]
            return std::os::windows::fs::symlink_file(target, self.join(name));
            #[cfg(not(windows))]
            {
                let _ = target;
                Err(io::Error::new(io::ErrorKind::Unsupported, "no symlinks"))
            }
        }

        pub(crate) fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<PathBuf> {
            let name = name.as_ref();
            check_name(name)?;
            fs::read_link(self.join(name))
        }

        pub(crate) fn hard_link(
            &self,
            src: &Dir,
            from: impl AsRef<OsStr>,
            name: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let (from, name) = (from.as_ref(), name.as_ref());
            check_name(from)?;
            check_name(name)?;
            fs::hard_link(src.join(from), self.join(name))
        }

        pub(crate) fn hard_link_path(
            &self,
            path: &Path,
            name: impl AsRef<OsStr>,
        ) -> io::Result<()> {
            let name = name.as_ref();
            check_name(name)?;
            fs::hard_link(path, self.join(name))
        }

        pub(crate) fn list(&self) -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in fs::read_dir(self.path())? {
                names.push(entry?.file_name().to_string_lossy().into_owned());
            }
            Ok(names)
        }

        pub(crate) fn sync(&self) -> io::Result<()> {
            // Windows has no directory sync; its metadata journaling covers renames.
            Ok(())
        }

        pub(crate) fn free_space(&self) -> Option<u64> {
            None
        }
    }
}

pub(crate) use imp::{file_meta, make_read_only, open_regular_path};

impl Dir {
    /// Whether the path this directory was opened at still names it (not moved away, nor
    /// swapped for a link or another folder).
    pub(crate) fn still_at_path(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match (self.meta(), std::fs::symlink_metadata(self.path())) {
                (Ok(held), Ok(now)) => {
                    now.file_type().is_dir() && held.id == (now.dev(), now.ino())
                }
                _ => false,
            }
        }
        #[cfg(not(unix))]
        {
            std::fs::symlink_metadata(self.path()).is_ok_and(|m| m.is_dir())
        }
    }

    /// A new, empty file `name` for writing, replacing whatever was there. The old entry is
    /// unlinked rather than truncated: a hard link planted at the name shares its bytes with
    /// a file elsewhere, which truncating would change.
    pub(crate) fn create_fresh(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let name = name.as_ref();
        self.remove_file(name)?;
        self.create_new(name)
    }

    /// Copy the open file `src` into a new file `name` of this directory and sync it.
    pub(crate) fn copy_new(&self, src: &File, name: impl AsRef<OsStr>) -> io::Result<u64> {
        use std::io::{Seek, SeekFrom};
        let mut src = src;
        src.seek(SeekFrom::Start(0))?;
        let mut dest = self.create_new(name)?;
        let copied = io::copy(&mut src, &mut dest)?;
        dest.sync_all()?;
        Ok(copied)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn names_with_a_slash_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        for bad in ["a/b", "..", ".", ""] {
            assert_eq!(
                dir.stat(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn links_are_neither_followed_nor_entered() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), b"keep").unwrap();
        let inside = tmp.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("d")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), inside.join("f")).unwrap();
        let dir = Dir::open(&inside).unwrap();
        assert!(dir.sub("d", true).is_err());
        assert!(dir.open_rw("f", true).is_err());
        assert!(dir.open_read("f").is_err());
        assert!(dir.create_new("f").is_err());
        assert_eq!(dir.stat("d").unwrap().unwrap().kind, Kind::Link);
        dir.remove_tree("d").unwrap();
        assert!(dir.remove_file("f").unwrap());
        assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"keep");
    }

    #[test]
    fn free_space_is_known_on_unix() {
        let dir = Dir::open(&std::env::temp_dir()).unwrap();
        let free = dir.free_space();
        assert!(free.is_some_and(|n| n > 0), "{free:?}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        assert_eq!(
            dir.open_read("fifo").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            dir.open_rw("fifo", true).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            open_regular_path(&fifo).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
