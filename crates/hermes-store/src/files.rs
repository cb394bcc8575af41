//! Private files and directories: the one atomic writer and the one directory creator that
//! every part of hermes uses for what it keeps on disk (`.env`, `state/*.json`, the session,
//! the systemd unit). `xtask tidy` fails a write or chmod anywhere else that it does not list.
//!
//! Why one: a fixed temporary name (`gateway.tmp`) follows a symlink planted by someone else
//! and inherits a planted file's mode; and `chmod 0700` on a directory hermes did not create
//! takes the sticky bit off `/tmp`. Here temporary files get random names, are created with
//! `O_CREAT|O_EXCL` (which never follows a symlink) at 0600, are synced before the rename,
//! and the directory is synced after it; only directories created here are made 0700.
//!
//! And the one bounded reader of files hermes did not write (a Baileys session, media to
//! send): a symlink is refused rather than followed (to `/dev/zero` it ran an import out of
//! memory), a FIFO rather than waited on (it hung an import holding the session lock), and
//! nothing is read past the caller's cap.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, readable by this user only: a reader sees the old
/// file or the new one, never half of one, and a crash leaves one of the two.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// [`write_private`] for a file that holds no secret and that others must read (a systemd
/// unit: tools run by other users read it too): 0644, written the same way.
pub fn write_readable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, 0o644)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // tempfile opens with O_CREAT|O_EXCL and mode 0600 under a random name.
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Why [`read_regular_capped`] refused a file: the inner error of the `io::Error` it returns,
/// read back with [`refusal`]. Each says what the file is, not where: the caller names the
/// file and says what to do, which depends on what the file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The path names a symbolic link, which is never followed.
    #[error("is a symbolic link")]
    Symlink,
    /// A FIFO, a socket, a device or a directory (what it is, in words): opening it can wait
    /// for ever and reading it may never end.
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the caller's cap, in bytes: not read past it.
    #[error("is larger than {cap} bytes")]
    TooLarge { cap: u64 },
}

impl Refusal {
    /// Why a file of this type is refused; `None` for a regular file. For a directory
    /// listing's types (`DirEntry::file_type`, which never follows a link), so that an entry
    /// is refused before it is opened.
    pub fn of_type(t: std::fs::FileType) -> Option<Refusal> {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_file() {
            return None;
        }
        Some(if t.is_symlink() {
            Refusal::Symlink
        } else if t.is_dir() {
            Refusal::NotRegular("a directory")
        } else if t.is_fifo() {
            Refusal::NotRegular("a FIFO (named pipe)")
        } else if t.is_socket() {
            Refusal::NotRegular("a socket")
        } else if t.is_char_device() {
            Refusal::NotRegular("a character device")
        } else if t.is_block_device() {
            Refusal::NotRegular("a block device")
        } else {
            Refusal::NotRegular("an unknown kind of file")
        })
    }

    fn into_io(self) -> std::io::Error {
        let kind = match self {
            Refusal::TooLarge { .. } => std::io::ErrorKind::FileTooLarge,
            Refusal::Symlink | Refusal::NotRegular(_) => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, self)
    }
}

/// The [`Refusal`] behind an error of [`read_regular_capped`]; `None` for an error of the
/// filesystem itself (not found, permission denied...).
pub fn refusal(e: &std::io::Error) -> Option<Refusal> {
    e.get_ref()?.downcast_ref::<Refusal>().copied()
}

/// Reads a file hermes did not write: only a regular file, never through a symbolic link, and
/// at most `cap` bytes. Anything else is an error whose [`refusal`] says why, without opening
/// it where it can be told from the path, and without blocking where it cannot.
pub fn read_regular_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Looked at first: a device or a socket is refused without being opened at all.
    if let Some(r) = Refusal::of_type(std::fs::symlink_metadata(path)?.file_type()) {
        return Err(r.into_io());
    }
    // The path may change between the look and the open, so the open is safe by itself:
    // NOFOLLOW refuses a symlink swapped in (ELOOP), NONBLOCK makes opening a FIFO return at
    // once instead of waiting for a writer (and changes nothing for a regular file's reads),
    // NOCTTY keeps a terminal from becoming this process's.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(Refusal::Symlink.into_io());
        }
        Err(e) => return Err(e),
    };
    // Judged by the descriptor that is read, not by the path.
    let meta = file.metadata()?;
    if let Some(r) = Refusal::of_type(meta.file_type()) {
        return Err(r.into_io());
    }
    if meta.len() > cap {
        return Err(Refusal::TooLarge { cap }.into_io());
    }
    read_to_cap(file, meta.len(), cap)
}

/// Reads what an open file holds (`size` bytes expected) up to `cap`; a file that grew past
/// the cap while it was read is refused ([`Refusal::TooLarge`]), not cut.
pub fn read_to_cap(file: impl std::io::Read, size: u64, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(cap)).unwrap_or(0));
    // One byte past the cap tells a file that grew while it was read from one at the cap.
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(Refusal::TooLarge { cap }.into_io());
    }
    Ok(bytes)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `path` and any missing parents, each new one 0700; directories that already exist
/// keep their mode. Returns the directories created, outermost first.
pub fn create_private_dir_all(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if p.as_os_str().is_empty() || std::fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        at = p.parent();
    }
    missing.reverse();
    for dir in &missing {
        // mkdir's mode is never widened by the umask, so 0700 or narrower; and no chmod after
        // it, which would follow a symlink swapped in meanwhile.
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            // Someone else made it meanwhile: theirs, so its mode is left alone.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    if !path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} exists and is not a directory", path.display()),
        ));
    }
    Ok(missing)
}

/// Free bytes for this user on the filesystem of `path`, or of its nearest existing ancestor
/// when it does not exist yet.
pub fn free_bytes(path: &Path) -> Option<u64> {
    space(path).map(|s| s.free)
}

/// Free and total bytes for this user on the filesystem of `path` (or of its nearest existing
/// ancestor). The total leaves out the blocks kept for root, as the free space does: it is what
/// a reserve is compared with.
pub fn space(path: &Path) -> Option<hermes_core::reserve::Space> {
    let existing = path.ancestors().find(|a| a.is_dir())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    let for_root = st.f_bfree.saturating_sub(st.f_bavail);
    Some(hermes_core::reserve::Space {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        total: st.f_blocks.saturating_sub(for_root).saturating_mul(st.f_frsize),
    })
}

/// A directory other users can write into and rename entries of (group- or world-writable,
/// without the sticky bit): a private file kept there can be replaced behind hermes' back.
pub fn others_can_replace_entries(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| {
        let mode = m.permissions().mode();
        mode & 0o022 != 0 && mode & 0o1000 == 0
    })
}

/// Opens a SQLite file for reading without creating anything beside it. In WAL mode even a
/// read-only connection creates `-wal` and `-shm` files when they are missing, and cannot
/// remove them afterwards. Without a `-wal`, every commit is in the main file and nothing is
/// writing, so it is opened `immutable` (no side files, no locks). With one, a plain read-only
/// open sees the latest commits; it changes no data, only its read marks in the `-shm`
/// shared-memory index that every reader maps.
pub fn open_sqlite_read_only(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let conn = if Path::new(&wal).exists() {
        rusqlite::Connection::open_with_flags(path, flags)?
    } else {
        rusqlite::Connection::open_with_flags(format!("file:{}?immutable=1", uri_path(path)), flags)?
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// `path` percent-encoded for a `file:` URI.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn a_planted_temporary_file_or_symlink_is_never_written_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let target = dir.join("gateway.json");
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        // What an older hermes would have used as its temporary names.
        std::os::unix::fs::symlink(&victim, dir.join("gateway.tmp")).expect("symlink");
        std::fs::write(dir.join("gateway.json.tmp"), "").expect("planted");
        std::fs::set_permissions(dir.join("gateway.json.tmp"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&target, b"secret").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert_eq!(std::fs::read(&target).expect("target"), b"secret");
        assert_eq!(mode(&target), 0o600);
        // A symlink at the destination is replaced, not followed.
        std::fs::remove_file(&target).expect("rm");
        std::os::unix::fs::symlink(&victim, &target).expect("symlink");
        write_private(&target, b"again").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert!(std::fs::symlink_metadata(&target).expect("meta").is_file());
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .expect("read")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp") && e.file_name() != "gateway.json.tmp")
            .filter(|e| e.file_name() != "gateway.tmp")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Runs `f` on a thread of its own and fails the test if it has not returned within a
    /// minute: what is tested is that it does not block (a thread blocked on a FIFO stays
    /// behind, and ends with the test process).
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("returned instead of blocking")
    }

    fn refused(path: &Path, cap: u64) -> Option<Refusal> {
        let path = path.to_owned();
        let e = within_a_minute(move || read_regular_capped(&path, cap)).expect_err("refused");
        refusal(&e)
    }

    /// Issue 25: a key file linked to `/dev/zero` ran `hermes whatsapp import` out of memory,
    /// and a FIFO hung it while it held the session lock.
    #[test]
    fn issue_25_only_a_regular_file_is_read_and_never_past_its_cap() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let file = dir.join("key.json");
        std::fs::write(&file, b"0123456789").expect("write");
        assert_eq!(read_regular_capped(&file, 10).expect("at the cap"), b"0123456789");
        assert_eq!(refused(&file, 9), Some(Refusal::TooLarge { cap: 9 }));
        let over = read_regular_capped(&file, 9).expect_err("over the cap");
        assert_eq!(over.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(over.to_string(), "is larger than 9 bytes");

        // A link is refused, wherever it points: an endless device or a real file.
        let zero = dir.join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert_eq!(refused(&zero, 1 << 20), Some(Refusal::Symlink));
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(refused(&link, 1 << 20), Some(Refusal::Symlink));

        // A FIFO with no writer is refused at once, not waited on.
        let fifo = dir.join("fifo.json");
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, mode, 0).expect("mkfifo");
        assert_eq!(refused(&fifo, 1 << 20), Some(Refusal::NotRegular("a FIFO (named pipe)")));
        let e = read_regular_capped(&fifo, 1 << 20).expect_err("a FIFO");
        assert_eq!(e.to_string(), "is a FIFO (named pipe), not a regular file");

        // A device named directly, and a directory.
        assert_eq!(refused(Path::new("/dev/zero"), 1 << 20), Some(Refusal::NotRegular("a character device")));
        assert_eq!(refused(dir, 1 << 20), Some(Refusal::NotRegular("a directory")));

        // An error of the filesystem itself is no refusal.
        let missing = read_regular_capped(&dir.join("missing.json"), 10).expect_err("missing");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(refusal(&missing), None);
    }

    #[test]
    fn only_directories_it_creates_are_made_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let deep = shared.join("a").join("b");
        let created = create_private_dir_all(&deep).expect("create");
        assert_eq!(created, vec![shared.join("a"), deep.clone()]);
        assert_eq!(mode(&shared), 0o1777, "an existing directory keeps its mode and sticky bit");
        assert_eq!(mode(&shared.join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        assert!(!others_can_replace_entries(&shared), "sticky: others cannot rename our entries");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(others_can_replace_entries(&shared));
        assert_eq!(create_private_dir_all(&deep).expect("again"), Vec::<PathBuf>::new());
        std::fs::write(shared.join("file"), "").expect("file");
        assert!(create_private_dir_all(&shared.join("file")).is_err());
    }
}
