//! Backups of the session, taken before anything destructive, three kept.

use std::path::{Path, PathBuf};

/// How many backups are kept; older ones are removed.
pub const KEEP: usize = 3;

/// The backups directory beside a session directory: `session.bak/`.
pub fn dir_for(session_dir: &Path) -> PathBuf {
    let name = session_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "session".into());
    session_dir.with_file_name(format!("{name}.bak"))
}

/// Moves the session directory into a new backup (`session.bak/<unix seconds>[-n]`) and
/// removes the oldest beyond [`KEEP`]. Returns where it went, or `None` if there was nothing.
pub fn move_to_backup(session_dir: &Path, now_secs: u64) -> std::io::Result<Option<PathBuf>> {
    if !session_dir.exists() {
        return Ok(None);
    }
    let dir = dir_for(session_dir);
    std::fs::create_dir_all(&dir)?;
    let mut target = dir.join(format!("{now_secs:012}"));
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{now_secs:012}-{n}"));
        n += 1;
    }
    std::fs::rename(session_dir, &target)?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)?.flatten().map(|e| e.path()).collect();
    all.sort();
    while all.len() > KEEP {
        std::fs::remove_dir_all(all.remove(0))?;
    }
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_three() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("session");
        for i in 0..5u64 {
            std::fs::create_dir(&session).expect("mkdir");
            std::fs::write(session.join("whatsapp.db"), i.to_string()).expect("write");
            let moved = move_to_backup(&session, 1000 + i).expect("backup").expect("something moved");
            assert!(!session.exists());
            assert_eq!(std::fs::read_to_string(moved.join("whatsapp.db")).expect("read"), i.to_string());
        }
        let mut kept: Vec<String> = std::fs::read_dir(dir_for(&session))
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, vec!["000000001002", "000000001003", "000000001004"]);
        assert_eq!(move_to_backup(&session, 2000).expect("nothing to do"), None);
    }
}
