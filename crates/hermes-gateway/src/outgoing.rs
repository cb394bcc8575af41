//! Files that leave the machine: the agent's `MEDIA:` lines and `hermes send --file`. A file is
//! opened once and copied from that same descriptor into the outgoing cache, so what was
//! checked is what is sent. A path that is checked and then opened again by name can be
//! swapped between the two (a plain file for a symlink to a secret, in a folder another local
//! user can write); that once sent the secret in 7 of 40 replies.
//!
//! The agent's files are opened beneath one of the folders files may be sent from, one
//! component at a time, never following a symbolic link (`O_NOFOLLOW` at each step, the
//! portable form of `openat2`'s `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), without blocking on a
//! FIFO; then what was opened is checked: a regular file, within the size cap, and its real
//! path (the kernel's, from the descriptor) outside hermes' secrets.

use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::path::{Component, Path, PathBuf};

use hermes_core::media::{self as m, outbound::Allowed};
use rustix::fs::{Mode, OFlags};

/// A file opened for sending and what was checked about it.
#[derive(Debug)]
pub(crate) struct Opened {
    file: std::fs::File,
    /// Its size when it was checked.
    size: u64,
    /// Where the kernel says the opened file is.
    pub(crate) real: PathBuf,
}

/// Opens `written` (absolute, `~/` already expanded) beneath one of the folders files may be
/// sent from, following no link on the way; the error says why it cannot go.
pub(crate) fn open_allowed(home: &Path, allow: Option<&str>, written: &Path, cap: u64) -> Result<Opened, String> {
    let shown = written.display();
    if !written.is_absolute() {
        return Err(format!("'{shown}' is not an absolute path"));
    }
    if written.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("'{shown}' has a '..' in it; name the file by its own path"));
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let allowed = Allowed::resolved(home, allow, canonical);
    // A folder as configured and as resolved: the agent may name the file either way.
    let written_roots = Allowed::new(home, allow).dirs;
    let roots = written_roots.iter().chain(allowed.dirs.iter());
    let Some((root, rest)) = roots.filter_map(|r| Some((r, written.strip_prefix(r).ok()?))).next() else {
        // Says which folders are allowed, as the check does.
        return Err(allowed
            .check(written)
            .err()
            .unwrap_or_else(|| format!("'{shown}' is outside the allowed folders")));
    };
    let fd = open_beneath(root, rest).map_err(|e| match e.kind() {
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            format!("'{shown}' is, or goes through, a symbolic link; files are sent only from their own path")
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            // `O_PATH | O_DIRECTORY | O_NOFOLLOW` on a link says ENOTDIR, not ELOOP.
            format!("'{shown}' goes through a symbolic link, or something else that is not a folder; files are sent only from their own path")
        }
        _ => format!("'{shown}' cannot be opened: {e}"),
    })?;
    let opened = checked(fd, &shown.to_string(), cap)?;
    allowed.check(&opened.real)?;
    Ok(opened)
}

/// Opens a file the owner named (`hermes send --file`): any path the owner can read, links
/// followed as the owner wrote them, but opened once, without blocking on a FIFO, and checked
/// on the descriptor that is then copied.
pub(crate) fn open_owners(path: &Path, cap: u64) -> Result<Opened, String> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| format!("'{}': {e}", path.display()))?;
    checked(fd, &path.display().to_string(), cap)
}

impl Opened {
    /// A private copy in `HERMES_HOME/cache/outgoing`, read from the descriptor that was
    /// checked; `name` is the file's name as written (sanitized).
    pub(crate) fn copy_into_cache(self, home: &Path, name: &str, cap: u64) -> Result<PathBuf, String> {
        // The size was checked on the descriptor; a file that grew since is refused.
        let bytes = hermes_store::files::read_to_cap(self.file, self.size, cap).map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => {
                format!("'{name}' grew past the {} limit while it was read", m::human_size(cap))
            }
            _ => format!("cannot read '{name}': {e}"),
        })?;
        keep_in_cache(home, name, &bytes)
    }
}

/// `bytes` kept as a private file in `HERMES_HOME/cache/outgoing` under `name` (sanitized),
/// until sent.
pub(crate) fn keep_in_cache(home: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = home.join("cache/outgoing");
    crate::media::private_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let copy = dir.join(format!("{:012x}_{}", rand::random::<u64>() & 0xffff_ffff_ffff, m::sanitize_file_name(name)));
    hermes_store::files::write_private(&copy, bytes).map_err(|e| format!("cannot copy '{name}': {e}"))?;
    Ok(copy)
}

/// `root` (followed: the owner configured it), then each component of `rest` without
/// following a link; the last one opened for reading.
fn open_beneath(root: &Path, rest: &Path) -> std::io::Result<OwnedFd> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, dir_flags, Mode::empty())?;
    let names: Vec<&std::ffi::OsStr> = rest
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, folders)) = names.split_last() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a folder, not a file"));
    };
    for name in folders {
        dir = rustix::fs::openat(dir.as_fd(), *name, dir_flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    let file_flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(rustix::fs::openat(dir.as_fd(), *last, file_flags, Mode::empty())?)
}

/// What was opened is a regular file within the cap; where it really is.
fn checked(fd: OwnedFd, shown: &str, cap: u64) -> Result<Opened, String> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("'{shown}': {e}"))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(format!("'{shown}' is not a regular file"));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > cap {
        return Err(format!(
            "'{shown}' is {}, over the {} limit (WHATSAPP_MAX_MEDIA_MB)",
            m::human_size(size),
            m::human_size(cap)
        ));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("'{shown}': where it is cannot be read: {e}"))?;
    Ok(Opened { file: std::fs::File::from(fd), size, real })
}

/// Folders files may be sent from that another user can write to: a file there can be swapped
/// for another user's between the agent's reply and the send. Judged as the folder of a
/// settings file is (`hermes_core::doctor::settings_files`); said at start and by `doctor`.
pub fn writable_by_others(home: &Path, allow: Option<&str>) -> Vec<PathBuf> {
    use hermes_core::doctor::settings_files::{PathFacts, others_can_write_in};
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    Allowed::new(home, allow)
        .dirs
        .into_iter()
        .filter(|dir| {
            std::fs::metadata(dir).is_ok_and(|md| {
                let facts = PathFacts { path: dir.clone(), uid: md.uid(), mode: md.mode() };
                md.is_dir() && others_can_write_in(&facts, me).is_some()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    const CAP: u64 = 1 << 20;

    #[test]
    fn a_file_beneath_an_allowed_folder_is_opened_and_copied_from_what_was_opened() {
        let home = tempfile::tempdir().expect("home");
        let out = tempfile::tempdir().expect("out");
        std::fs::write(out.path().join("report.pdf"), b"%PDF-1.4 report").expect("write");
        let allow = out.path().to_str().expect("utf-8");
        let opened = open_allowed(home.path(), Some(allow), &out.path().join("report.pdf"), CAP).expect("allowed");
        // Swapped after the open: the copy is of what was opened.
        std::fs::remove_file(out.path().join("report.pdf")).expect("rm");
        std::fs::write(out.path().join("report.pdf"), b"something else").expect("swap");
        let copy = opened.copy_into_cache(home.path(), "report.pdf", CAP).expect("copied");
        assert_eq!(std::fs::read(&copy).expect("read"), b"%PDF-1.4 report");
        assert!(copy.starts_with(home.path().join("cache/outgoing")));
    }

    /// Issue 25, hole 1: a symlink in an allowed folder (which another user may write) to a
    /// secret must not be followed, at the file or on the way to it.
    #[test]
    fn links_fifos_parents_and_secrets_are_refused() {
        let home = tempfile::tempdir().expect("home");
        let out = tempfile::tempdir().expect("out");
        let secret = home.path().join(".env");
        std::fs::write(&secret, "OPENAI_API_KEY=sk-secret").expect("secret");
        symlink(&secret, out.path().join("chart.png")).expect("link");
        std::fs::create_dir(home.path().join("elsewhere")).expect("dir");
        std::fs::write(home.path().join("elsewhere/x.png"), b"png").expect("x");
        symlink(home.path().join("elsewhere"), out.path().join("sub")).expect("dir link");
        let fifo = out.path().join("pipe.txt");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
        let allow = out.path().to_str().expect("utf-8");
        let open = |p: PathBuf| open_allowed(home.path(), Some(allow), &p, CAP).map(|o| o.real);
        assert!(open(out.path().join("chart.png")).expect_err("link").contains("symbolic link"));
        assert!(open(out.path().join("sub/x.png")).expect_err("dir link").contains("symbolic link"));
        assert!(open(out.path().join("pipe.txt")).expect_err("fifo").contains("not a regular file"));
        assert!(open(out.path().join("../x.png")).expect_err("parent").contains("'..'"));
        assert!(open(PathBuf::from("/etc/hostname")).expect_err("outside").contains("HERMES_MEDIA_ALLOW_DIRS"));
        // HERMES_HOME itself allowed: its secrets still are not.
        let home_allowed = home.path().to_str().expect("utf-8");
        let err = open_allowed(home.path(), Some(home_allowed), &secret, CAP).expect_err("secret");
        assert!(err.contains("never sent"), "{err}");
        std::fs::write(out.path().join("big.bin.pdf"), vec![0u8; 2 * CAP as usize]).expect("big");
        assert!(open(out.path().join("big.bin.pdf")).expect_err("big").contains("over the"));
    }

    #[test]
    fn a_folder_others_can_write_is_named() {
        let home = tempfile::tempdir().expect("home");
        let shared = tempfile::tempdir().expect("shared");
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let private = tempfile::tempdir().expect("private");
        let allow = format!("{}:{}", shared.path().display(), private.path().display());
        assert_eq!(writable_by_others(home.path(), Some(&allow)), vec![shared.path().to_path_buf()]);
        // A sticky bit keeps others from replacing a file, not from putting theirs there.
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert_eq!(writable_by_others(home.path(), Some(&allow)), vec![shared.path().to_path_buf()]);
    }
}
