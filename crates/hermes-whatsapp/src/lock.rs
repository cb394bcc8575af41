//! One process per session: a second gateway or wizard on the same session fails at once,
//! naming the first, instead of both fighting over it (WhatsApp would replace one with the
//! other, back and forth).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Held while a process uses the session; released when dropped (or when the process dies,
/// which is why this is a `flock` and not a PID file alone).
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error("the WhatsApp session {session} is in use by another hermes process (PID {pid}); stop it first")]
    Held { session: String, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl SessionLock {
    /// The lock file for a session directory: beside it, so it also guards replacing the
    /// directory as a whole.
    pub fn path_for(session_dir: &Path) -> PathBuf {
        let name =
            session_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "session".into());
        session_dir.with_file_name(format!("{name}.lock"))
    }

    /// Takes the lock without waiting.
    pub fn acquire(session_dir: &Path) -> Result<SessionLock, LockError> {
        let path = Self::path_for(session_dir);
        let io = |source| LockError::Io { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                session: session_dir.display().to_string(),
                pid: if pid.is_empty() { "unknown".into() } else { pid.to_owned() },
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(SessionLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the session's lock: the PID written in its lock file, if that process is
    /// still alive. Takes no lock and creates nothing, so commands that only look may ask.
    pub fn holder(session_dir: &Path) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(Self::path_for(session_dir)).ok()?.trim().parse().ok()?;
        process_alive(pid).then_some(pid)
    }
}

/// Whether a process with this PID exists on this machine (`/proc/PID`).
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("session");
        let first = SessionLock::acquire(&session).expect("first");
        // flock locks are per open file description, so a second open in this process contends.
        match SessionLock::acquire(&session) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        SessionLock::acquire(&session).expect("free again once released");
    }

    #[test]
    fn the_holder_is_the_live_process_named_in_the_lock_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("session");
        assert_eq!(SessionLock::holder(&session), None, "no lock file");
        let lock = SessionLock::acquire(&session).expect("lock");
        assert_eq!(SessionLock::holder(&session), Some(std::process::id()));
        drop(lock);
        // The file stays behind with a PID; a PID no process has is nobody.
        std::fs::write(SessionLock::path_for(&session), u32::MAX.to_string()).expect("write");
        assert_eq!(SessionLock::holder(&session), None);
    }
}
