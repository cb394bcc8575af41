//! Looking at the session directory without changing it.
//!
//! "It asks me to scan again" starts here: a session that could not be written, or was
//! written somewhere that does not survive. [`inspect`] gathers the facts `doctor` judges
//! (kind, mode, a real write probe, the filesystem under it); it never creates the directory
//! and leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use hermes_core::doctor::{DirState, SessionDirFacts, WriteFailure};
use hermes_core::storage::{self, ContainerFacts};

/// Inspects `dir`. `container_var` is the `container` environment variable, which only the
/// binary reads.
pub fn inspect(dir: &Path, container_var: Option<String>) -> SessionDirFacts {
    let state = match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => DirState::Directory { mode: meta.mode(), write: probe_write(dir) },
        Ok(meta) => DirState::NotADirectory { kind: kind_of(&meta.file_type()).to_owned() },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let ancestor = nearest_existing_ancestor(dir);
            let write = if ancestor.is_dir() {
                probe_write(&ancestor)
            } else {
                Err(WriteFailure::Other(format!("{} is not a directory", ancestor.display())))
            };
            DirState::Missing { ancestor, write }
        }
        Err(e) => DirState::Inaccessible { error: e.to_string() },
    };
    SessionDirFacts { state, persistence: persistence(dir, container_var, None) }
}

/// Whether what is written under `dir` survives: a disk or a volume, memory, or a container's
/// writable layer. `mountinfo` is a mount table's text; `None` reads this process's.
pub fn persistence(dir: &Path, container_var: Option<String>, mountinfo: Option<&str>) -> storage::Persistence {
    let text = match mountinfo {
        Some(t) => t.to_owned(),
        None => fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    };
    let mounts = storage::parse_mountinfo(&text);
    let container = ContainerFacts {
        dockerenv: Path::new("/.dockerenv").exists(),
        containerenv: Path::new("/run/.containerenv").exists(),
        container_var,
        pid1_cgroup: fs::read_to_string("/proc/1/cgroup").unwrap_or_default(),
    };
    // Mount points are canonical paths; so must ours be, through symlinks (macOS-style /var).
    let real = canonical_prefix(dir);
    storage::persistence(&real, &mounts, &container)
}

fn kind_of(t: &fs::FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_symlink() {
        "dangling symbolic link"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "named pipe"
    } else {
        "special file"
    }
}

fn nearest_existing_ancestor(dir: &Path) -> PathBuf {
    dir.ancestors().skip(1).find(|a| a.exists()).unwrap_or(Path::new("/")).to_path_buf()
}

/// The canonical form of the longest existing prefix of `dir`, with the rest appended.
fn canonical_prefix(dir: &Path) -> PathBuf {
    let existing = if dir.exists() { dir.to_path_buf() } else { nearest_existing_ancestor(dir) };
    let rest = dir.strip_prefix(&existing).unwrap_or(Path::new(""));
    fs::canonicalize(&existing).unwrap_or(existing).join(rest)
}

/// Proves the directory can hold a session: create, write, fsync, rename and remove a file,
/// then fsync the directory. Checking permission bits is not enough: root passes every mode
/// check and still cannot write to a read-only mount.
pub fn probe_write(dir: &Path) -> Result<(), WriteFailure> {
    let name = format!(".hermes-probe-{}", std::process::id());
    let (a, b) = (dir.join(&name), dir.join(format!("{name}.renamed")));
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&a)?;
        f.write_all(b"hermes write probe\n")?;
        f.sync_all()?;
        drop(f);
        fs::rename(&a, &b)?;
        fs::remove_file(&b)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: leave nothing behind whichever step failed.
        let _ = fs::remove_file(&a);
        let _ = fs::remove_file(&b);
    }
    result.map_err(|e| classify(&e))
}

fn classify(e: &io::Error) -> WriteFailure {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::ROFS) => WriteFailure::ReadOnlyFilesystem,
        Some(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => WriteFailure::PermissionDenied,
        Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT) => WriteFailure::NoSpace,
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => WriteFailure::NoDescriptors,
        _ => WriteFailure::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 25, hole 7: at a descriptor limit of 256, half-sent HTTP requests made the storage
    /// check fail with EMFILE, which was read as a full disk.
    #[test]
    fn no_descriptor_left_is_told_from_a_full_disk() {
        let errno = |e: rustix::io::Errno| classify(&io::Error::from_raw_os_error(e.raw_os_error()));
        assert_eq!(errno(rustix::io::Errno::MFILE), WriteFailure::NoDescriptors);
        assert_eq!(errno(rustix::io::Errno::NFILE), WriteFailure::NoDescriptors);
        assert_eq!(errno(rustix::io::Errno::NOSPC), WriteFailure::NoSpace);
        assert!(!WriteFailure::NoDescriptors.describe().contains("full disk"));
    }

    #[test]
    fn a_writable_directory_passes_and_keeps_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        let facts = inspect(tmp.path(), None);
        assert_eq!(
            facts.state,
            DirState::Directory { mode: fs::metadata(tmp.path()).expect("meta").mode(), write: Ok(()) }
        );
        assert_eq!(fs::read_dir(tmp.path()).expect("read").count(), 0, "the probe left a file behind");
    }

    #[test]
    fn missing_directory_is_probed_through_its_parent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b/session");
        let facts = inspect(&dir, None);
        assert_eq!(facts.state, DirState::Missing { ancestor: tmp.path().to_path_buf(), write: Ok(()) });
        assert!(!tmp.path().join("a").exists(), "inspection must not create anything");
    }

    #[test]
    fn a_file_in_the_way_is_not_a_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("session");
        fs::write(&file, b"").expect("write");
        assert_eq!(inspect(&file, None).state, DirState::NotADirectory { kind: "regular file".into() });
    }

    #[test]
    fn shared_memory_is_volatile() {
        assert!(Path::new("/dev/shm").is_dir(), "this test needs the tmpfs at /dev/shm");
        let facts = inspect(Path::new("/dev/shm/hermes-test-not-created"), None);
        assert!(
            matches!(facts.persistence, hermes_core::storage::Persistence::Volatile { .. }),
            "{:?}",
            facts.persistence
        );
    }
}
