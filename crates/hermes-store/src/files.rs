//! Private files and directories: the one atomic writer and the one directory creator that
//! every part of hermes uses for what it keeps on disk (`.env`, `state/*.json`, the session).
//!
//! Why one: a fixed temporary name (`gateway.tmp`) follows a symlink planted by someone else
//! and inherits a planted file's mode; and `chmod 0700` on a directory hermes did not create
//! takes the sticky bit off `/tmp`. Here temporary files get random names, are created with
//! `O_CREAT|O_EXCL` (which never follows a symlink) at 0600, are synced before the rename,
//! and the directory is synced after it; only directories created here are made 0700.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, readable by this user only: a reader sees the old
/// file or the new one, never half of one, and a crash leaves one of the two.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // tempfile opens with O_CREAT|O_EXCL and mode 0600 under a random name.
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
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
    let existing = path.ancestors().find(|a| a.is_dir())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
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
