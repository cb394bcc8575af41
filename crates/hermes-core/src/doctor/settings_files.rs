//! Who else can change the settings: a `.env`, `config.yaml` or `SOUL.md` that another user can
//! write is that user's configuration (their allowlist, their model URL, which then receives the
//! API key), so the gateway applies none of it, at start or on a live reload.
//!
//! The rule is OpenSSH's `StrictModes`: the file and every folder it is reached through, up to
//! `/`, belong to this user or root, and nobody else may write them. A shared folder with the
//! sticky bit (`/tmp`) is allowed above, where others cannot rename what is ours; never as the
//! folder a settings file is in, where they could create one before hermes does.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Check, Status};

/// The owner and mode of one path, as the binary found it (symbolic links followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathFacts {
    pub path: PathBuf,
    pub uid: u32,
    /// `st_mode`: the permission bits and the sticky bit are what count.
    pub mode: u32,
}

/// One settings file that exists, and what it is reached through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsFile {
    /// The file as HERMES_HOME names it.
    pub name: PathBuf,
    /// What was found on the way, or why it could not be looked at.
    pub reached: Result<Reached, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reached {
    /// The file itself (a symbolic link's target).
    pub file: PathFacts,
    /// The folders the file, and the link to it, are directly in.
    pub holders: Vec<PathFacts>,
    /// Every folder above those, up to `/`.
    pub above: Vec<PathFacts>,
}

/// Why a settings file is not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distrust {
    /// The file, or a folder it is reached through, can be written by users other than its
    /// owner (group or others), and no sticky bit makes up for it.
    Writable { path: PathBuf, mode: u32 },
    /// The file, or a folder it is reached through, belongs to another user, who can change it
    /// whatever its mode says.
    OtherOwner { path: PathBuf, uid: u32 },
    /// What it is reached through could not be looked at.
    Unchecked { error: String },
}

/// A settings file the gateway does not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untrusted {
    pub file: PathBuf,
    /// The uid hermes runs as.
    pub me: u32,
    pub why: Distrust,
}

impl Untrusted {
    /// What is wrong, ending with what hermes does about it.
    pub fn describe(&self) -> String {
        let file = self.file.display();
        match &self.why {
            Distrust::Writable { path, mode } if *path == self.file => format!(
                "{file} can be written by other users (mode {:o}): what it says may be theirs, so hermes does not \
                 apply it",
                mode & 0o7777
            ),
            Distrust::Writable { path, mode } => format!(
                "{file} is reached through {}, which other users can write (mode {:o}): they could put a file of \
                 theirs in its place, so hermes does not apply it",
                path.display(),
                mode & 0o7777
            ),
            Distrust::OtherOwner { path, uid } if *path == self.file => format!(
                "{file} belongs to uid {uid}, not to you (uid {}) or root: that user can change it, so hermes does \
                 not apply it",
                self.me
            ),
            Distrust::OtherOwner { path, uid } => format!(
                "{file} is reached through {}, which belongs to uid {uid}, not to you (uid {}) or root: that user \
                 can replace it, so hermes does not apply it",
                path.display(),
                self.me
            ),
            Distrust::Unchecked { error } => {
                format!("{file}: who can change it cannot be checked ({error}), so hermes does not apply it")
            }
        }
    }

    /// The command that makes the file hermes' own again; the content is the user's to check
    /// first, since someone else may have written it.
    pub fn fix(&self) -> String {
        let file = self.file.display();
        match &self.why {
            Distrust::Writable { path, .. } if *path == self.file => {
                format!("check what it holds, then run chmod go-w {file}")
            }
            Distrust::Writable { path, .. } => format!(
                "check {file}, then run chmod go-w {} (or keep HERMES_HOME in folders only you can write)",
                path.display()
            ),
            Distrust::OtherOwner { path, .. } => format!(
                "check {file}, then, as root, run chown {} {} (or keep HERMES_HOME in folders of your own)",
                self.me,
                path.display()
            ),
            Distrust::Unchecked { .. } => "check the permissions of the folders above it".to_owned(),
        }
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.describe(), self.fix())
    }
}

/// Why `file` must not be applied when hermes runs as uid `me`, or `None` when only `me` and
/// root can change it. The file is looked at first, then its folders, nearest first.
pub fn judge(file: &SettingsFile, me: u32) -> Option<Untrusted> {
    let refuse = |why| Untrusted { file: file.name.clone(), me, why };
    let reached = match &file.reached {
        Ok(r) => r,
        Err(error) => return Some(refuse(Distrust::Unchecked { error: error.clone() })),
    };
    // The file is named as HERMES_HOME names it (chmod and chown follow a link to it).
    let own = fault(&reached.file, &file.name, me, false);
    let folders = reached.holders.iter().map(|p| (p, false)).chain(reached.above.iter().map(|p| (p, true)));
    let mut folder_faults = folders.filter_map(|(at, sticky_helps)| fault(at, &at.path, me, sticky_helps));
    own.or_else(|| folder_faults.next()).map(refuse)
}

/// Every settings file among `files` that must not be applied.
pub fn untrusted(files: &[SettingsFile], me: u32) -> Vec<Untrusted> {
    files.iter().filter_map(|f| judge(f, me)).collect()
}

/// `doctor`'s check of the settings files that exist; `None` when there are none.
pub fn check(files: &[SettingsFile], me: u32) -> Option<Check> {
    if files.is_empty() {
        return None;
    }
    let refused = untrusted(files, me);
    if refused.is_empty() {
        let names: Vec<String> = files
            .iter()
            .map(|f| f.name.file_name().unwrap_or(f.name.as_os_str()).to_string_lossy().into_owned())
            .collect();
        let they = if names.len() == 1 { "it is" } else { "they are" };
        return Some(Check::ok(
            "settings_files",
            format!("only you and root can change {} and the folders {they} in", names.join(", ")),
        ));
    }
    let message: Vec<String> = refused.iter().map(Untrusted::describe).collect();
    let fix: Vec<String> = refused.iter().map(Untrusted::fix).collect();
    Some(Check::bad(
        "settings_files",
        Status::Error,
        format!("{}; the gateway refuses to start on them, and a running one does not reload them", message.join("; ")),
        fix.join("; "),
    ))
}

/// Who else can change what is in the folder `at` (another owner, or group or others writing,
/// sticky or not: a file another user creates there is as good as ours to whoever reads it
/// by name). The same rule as for the folder a settings file is in; the gateway applies it to
/// the folders files may be sent from.
pub fn others_can_write_in(at: &PathFacts, me: u32) -> Option<Distrust> {
    fault(at, &at.path, me, false)
}

/// What is wrong with one path, if anything, naming it `named`; `sticky_helps` for the folders
/// above the ones the file is in, where the sticky bit keeps others from renaming what is ours.
fn fault(at: &PathFacts, named: &Path, me: u32, sticky_helps: bool) -> Option<Distrust> {
    if at.uid != me && at.uid != 0 {
        return Some(Distrust::OtherOwner { path: named.to_path_buf(), uid: at.uid });
    }
    let others_write = at.mode & 0o022 != 0;
    let sticky = at.mode & 0o1000 != 0;
    (others_write && !(sticky_helps && sticky)).then(|| Distrust::Writable { path: named.to_path_buf(), mode: at.mode })
}

/// The folders `name` (and `target`, what it resolves to) are reached through, for
/// [`Reached`]: the folders they are directly in, then the ones above, each once.
pub fn folders(name: &Path, target: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut holders: Vec<PathBuf> = Vec::new();
    for dir in [name.parent(), target.parent()].into_iter().flatten() {
        if !dir.as_os_str().is_empty() && !holders.iter().any(|h| h == dir) {
            holders.push(dir.to_path_buf());
        }
    }
    let mut above: Vec<PathBuf> = Vec::new();
    for dir in name.ancestors().skip(2).chain(target.ancestors().skip(2)) {
        if !dir.as_os_str().is_empty() && !holders.iter().chain(&above).any(|h| h == dir) {
            above.push(dir.to_path_buf());
        }
    }
    (holders, above)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;
    const ROOT: u32 = 0;
    const OTHER: u32 = 65534;

    fn at(path: &str, uid: u32, mode: u32) -> PathFacts {
        PathFacts { path: PathBuf::from(path), uid, mode }
    }

    /// `/home/ada/.hermes/.env` (the file, then HERMES_HOME, `/home/ada`, `/home`, `/`), each
    /// as `(uid, mode)`.
    fn env_file(file: (u32, u32), home: (u32, u32), ada: (u32, u32), slash_home: (u32, u32)) -> SettingsFile {
        SettingsFile {
            name: PathBuf::from("/home/ada/.hermes/.env"),
            reached: Ok(Reached {
                file: at("/home/ada/.hermes/.env", file.0, 0o100000 | file.1),
                holders: vec![at("/home/ada/.hermes", home.0, 0o40000 | home.1)],
                above: vec![
                    at("/home/ada", ada.0, 0o40000 | ada.1),
                    at("/home", slash_home.0, 0o40000 | slash_home.1),
                    at("/", ROOT, 0o40755),
                ],
            }),
        }
    }

    #[track_caller]
    fn check_judged(file: SettingsFile, expected: Option<Distrust>) {
        assert_eq!(judge(&file, ME).map(|u| u.why), expected);
    }

    fn writable(path: &str, mode: u32) -> Option<Distrust> {
        Some(Distrust::Writable { path: PathBuf::from(path), mode })
    }

    fn owned(path: &str, uid: u32) -> Option<Distrust> {
        Some(Distrust::OtherOwner { path: PathBuf::from(path), uid })
    }

    #[test]
    fn issue_25_who_else_can_change_a_settings_file() {
        let mine = (ME, 0o755);
        let root = (ROOT, 0o755);
        // The usual: ours, in folders of ours and root's.
        check_judged(env_file((ME, 0o600), (ME, 0o700), mine, root), None);
        check_judged(env_file((ME, 0o644), (ME, 0o755), mine, root), None);
        // Root may own the file and the folders: root can change everything anyway.
        check_judged(env_file((ROOT, 0o644), (ROOT, 0o755), root, root), None);
        // Others can write the file: the whole point.
        check_judged(env_file((ME, 0o666), (ME, 0o700), mine, root), writable("/home/ada/.hermes/.env", 0o100666));
        check_judged(env_file((ME, 0o620), (ME, 0o700), mine, root), writable("/home/ada/.hermes/.env", 0o100620));
        // A private file in a folder others can write: they can rename another file over it.
        check_judged(env_file((ME, 0o600), (ME, 0o777), mine, root), writable("/home/ada/.hermes", 0o40777));
        check_judged(env_file((ME, 0o600), (ME, 0o770), mine, root), writable("/home/ada/.hermes", 0o40770));
        // The sticky bit does not help where the file is: others can create one there first.
        check_judged(env_file((ME, 0o600), (ME, 0o1777), mine, root), writable("/home/ada/.hermes", 0o41777));
        // Above, a /tmp-like sticky folder is fine (others cannot rename what is ours)...
        check_judged(env_file((ME, 0o600), (ME, 0o700), (ROOT, 0o1777), root), None);
        // ...but not one without the sticky bit.
        check_judged(env_file((ME, 0o600), (ME, 0o700), (ROOT, 0o777), root), writable("/home/ada", 0o40777));
        check_judged(env_file((ME, 0o600), (ME, 0o700), mine, (ROOT, 0o775)), writable("/home", 0o40775));
        // Another user's file, or folder on the way, is theirs to change whatever the mode.
        check_judged(env_file((OTHER, 0o600), (ME, 0o700), mine, root), owned("/home/ada/.hermes/.env", OTHER));
        check_judged(env_file((ME, 0o600), (OTHER, 0o700), mine, root), owned("/home/ada/.hermes", OTHER));
        check_judged(env_file((ME, 0o600), (ME, 0o700), (OTHER, 0o755), root), owned("/home/ada", OTHER));
        // Not even a sticky bit makes another user's folder above safe.
        check_judged(env_file((ME, 0o600), (ME, 0o700), (OTHER, 0o1777), root), owned("/home/ada", OTHER));
        // What cannot be looked at is not trusted.
        let unchecked = SettingsFile { name: PathBuf::from("/h/.env"), reached: Err("permission denied".into()) };
        check_judged(unchecked, Some(Distrust::Unchecked { error: "permission denied".into() }));
    }

    #[test]
    fn issue_25_root_is_not_another_user_and_runs_under_the_same_rule() {
        // Run as root (as in CI), a file of uid 65534 is another user's; root's own are fine.
        let file = env_file((ROOT, 0o600), (OTHER, 0o700), (ROOT, 0o755), (ROOT, 0o755));
        assert_eq!(judge(&file, ROOT).map(|u| u.why), owned("/home/ada/.hermes", OTHER));
        let file = env_file((ROOT, 0o600), (ROOT, 0o700), (ROOT, 0o755), (ROOT, 0o755));
        assert_eq!(judge(&file, ROOT), None);
    }

    #[test]
    fn issue_25_the_refusal_says_why_and_the_fix() {
        let root = (ROOT, 0o755);
        let u = judge(&env_file((ME, 0o666), (ME, 0o700), (ME, 0o755), root), ME).expect("refused");
        assert_eq!(
            u.to_string(),
            "/home/ada/.hermes/.env can be written by other users (mode 666): what it says may be theirs, so hermes \
             does not apply it; check what it holds, then run chmod go-w /home/ada/.hermes/.env"
        );
        let u = judge(&env_file((ME, 0o600), (ME, 0o1777), (ME, 0o755), root), ME).expect("refused");
        assert_eq!(
            u.fix(),
            "check /home/ada/.hermes/.env, then run chmod go-w /home/ada/.hermes (or keep HERMES_HOME in folders only \
             you can write)"
        );
        assert!(u.describe().contains("(mode 1777)"), "{}", u.describe());
        let u = judge(&env_file((ME, 0o600), (OTHER, 0o700), (ME, 0o755), root), ME).expect("refused");
        assert_eq!(
            u.fix(),
            "check /home/ada/.hermes/.env, then, as root, run chown 1000 /home/ada/.hermes (or keep HERMES_HOME in \
             folders of your own)"
        );
    }

    #[test]
    fn issue_25_doctor_check() {
        let root = (ROOT, 0o755);
        assert_eq!(check(&[], ME), None);
        let fine = env_file((ME, 0o600), (ME, 0o700), (ME, 0o755), root);
        let c = check(std::slice::from_ref(&fine), ME).expect("a check");
        assert_eq!(
            (c.status, c.message.as_str()),
            (Status::Ok, "only you and root can change .env and the folders it is in")
        );
        let open = env_file((ME, 0o664), (ME, 0o700), (ME, 0o755), root);
        let c = check(&[fine, open], ME).expect("a check");
        assert_eq!(c.status, Status::Error);
        assert!(c.message.contains("mode 664") && c.message.contains("refuses to start"), "{}", c.message);
        assert_eq!(c.fix.as_deref(), Some("check what it holds, then run chmod go-w /home/ada/.hermes/.env"));
    }

    #[test]
    fn issue_25_folders_of_a_file_and_of_its_link_target() {
        let (holders, above) = folders(Path::new("/home/ada/.hermes/.env"), Path::new("/home/ada/.hermes/.env"));
        assert_eq!(holders, vec![PathBuf::from("/home/ada/.hermes")]);
        assert_eq!(above, vec![PathBuf::from("/home/ada"), PathBuf::from("/home"), PathBuf::from("/")]);
        // A link to a file elsewhere: both folders hold it, each folder above is looked at once.
        let (holders, above) = folders(Path::new("/home/ada/.hermes/.env"), Path::new("/home/ada/dotfiles/env"));
        assert_eq!(holders, vec![PathBuf::from("/home/ada/.hermes"), PathBuf::from("/home/ada/dotfiles")]);
        assert_eq!(above, vec![PathBuf::from("/home/ada"), PathBuf::from("/home"), PathBuf::from("/")]);
    }
}
