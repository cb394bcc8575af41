//! Backups of the session, taken before anything destructive, three kept.
//!
//! Taking a backup (a rename) and rotating old ones are two steps: a caller installs what it
//! came to install between them, so a rotation that fails can never stand between a user and
//! their new session. Rotation removes only what it recognises as its own backups (by name),
//! and its failures are warnings: a stray `.DS_Store` is left alone and costs nothing.

use std::path::{Path, PathBuf};

/// How many backups are kept; older ones are removed.
pub const KEEP: usize = 3;

/// The backups directory beside a session directory: `session.bak/`.
pub fn dir_for(session_dir: &Path) -> PathBuf {
    let name = session_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "session".into());
    session_dir.with_file_name(format!("{name}.bak"))
}

/// Moves `from` (the session directory, or a leftover beside it) into a new backup
/// `session.bak/<unix seconds>[-n]` of `session_dir`. Returns where it went, or `None` if
/// there was nothing. Nothing is removed: see [`rotate`].
pub fn move_to_backup(session_dir: &Path, from: &Path, now_secs: i64) -> std::io::Result<Option<PathBuf>> {
    if std::fs::symlink_metadata(from).is_err() {
        return Ok(None);
    }
    let dir = dir_for(session_dir);
    hermes_store::files::create_private_dir_all(&dir)?;
    let mut target = dir.join(format!("{now_secs:012}"));
    let mut n = 1;
    while std::fs::symlink_metadata(&target).is_ok() {
        target = dir.join(format!("{now_secs:012}-{n}"));
        n += 1;
    }
    std::fs::rename(from, &target)?;
    hermes_store::files::sync_dir(&dir)?;
    Ok(Some(target))
}

/// The (seconds, n) of a backup's name, `None` for anything hermes did not name.
fn backup_name(name: &str) -> Option<(u64, u64)> {
    let (secs, n) = match name.split_once('-') {
        Some((s, n)) => (s, Some(n)),
        None => (name, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if secs.len() != 12 || !digits(secs) || n.is_some_and(|n| !digits(n)) {
        return None;
    }
    Some((secs.parse().ok()?, n.map_or(Some(0), |n| n.parse().ok())?))
}

/// Removes the oldest of hermes' own backups beyond [`KEEP`]. Never fails: what it could not
/// remove is returned as a warning for the caller to show, and anything in `session.bak/`
/// that hermes did not name is not touched.
pub fn rotate(session_dir: &Path) -> Vec<String> {
    let dir = dir_for(session_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut ours: Vec<((u64, u64), PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((backup_name(&e.file_name().to_string_lossy())?, e.path())))
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(KEEP);
    ours.into_iter()
        .take(excess)
        .filter_map(|(_, path)| {
            std::fs::remove_dir_all(&path)
                .err()
                .map(|e| format!("could not remove the old backup {}: {e}; remove it by hand", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(dir)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn keeps_the_newest_three() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("session");
        for i in 0..5i64 {
            std::fs::create_dir(&session).expect("mkdir");
            std::fs::write(session.join("whatsapp.db"), i.to_string()).expect("write");
            let moved = move_to_backup(&session, &session, 1000 + i).expect("backup").expect("something moved");
            assert!(!session.exists());
            assert_eq!(std::fs::read_to_string(moved.join("whatsapp.db")).expect("read"), i.to_string());
            assert!(rotate(&session).is_empty());
        }
        assert_eq!(names(&dir_for(&session)), vec!["000000001002", "000000001003", "000000001004"]);
        assert_eq!(move_to_backup(&session, &session, 2000).expect("nothing to do"), None);
    }

    #[test]
    fn rotation_leaves_what_it_did_not_name_and_orders_same_second_backups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let session = tmp.path().join("session");
        let bak = dir_for(&session);
        std::fs::create_dir_all(&bak).expect("mkdir");
        std::fs::write(bak.join(".DS_Store"), "finder").expect("stray file");
        std::fs::create_dir(bak.join("my-copy")).expect("stray dir");
        for _ in 0..12 {
            std::fs::create_dir(&session).expect("mkdir");
            move_to_backup(&session, &session, 1000).expect("backup");
        }
        assert!(rotate(&session).is_empty());
        assert_eq!(
            names(&bak),
            vec![".DS_Store", "000000001000-10", "000000001000-11", "000000001000-9", "my-copy"],
            "the newest three of one second (-9, -10, -11), and nothing hermes did not name"
        );
    }
}
