//! Where hermes keeps things: `HERMES_HOME` and the WhatsApp session directory.
//!
//! Hermes' wizard once wrote the session to one directory while its gateway read another, and
//! users re-scanned QR codes without end. Here there is exactly one resolver,
//! [`resolve_session_dir`], and every command goes through it.

use std::path::{Path, PathBuf};

use crate::config::{Origin, Setting};

/// Where `HERMES_HOME` came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeOrigin {
    /// The `HERMES_HOME` environment variable.
    Env,
    /// `~/.hermes`.
    Default,
}

/// The resolved `HERMES_HOME`, possibly a profile inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermesHome {
    pub path: PathBuf,
    pub origin: HomeOrigin,
    /// `--profile NAME`: `path` is then `<base>/profiles/NAME`.
    pub profile: Option<String>,
}

/// Why `HERMES_HOME` cannot be determined.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// Neither `HERMES_HOME` nor a home directory is known.
    #[error("cannot tell where HERMES_HOME is: HOME is not set; set HERMES_HOME=/path/to/.hermes")]
    NoHome,
    /// The profile name would escape `profiles/`.
    #[error("profile name '{0}' is not valid; use letters, digits, '-' and '_' only")]
    BadProfile(String),
}

/// Resolves `HERMES_HOME`: the variable if set and not empty, else `~/.hermes`; then the
/// profile, if one was chosen.
pub fn hermes_home(
    env_value: Option<&str>,
    home_dir: Option<&Path>,
    profile: Option<&str>,
) -> Result<HermesHome, HomeError> {
    let (base, origin) = match env_value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => (expand_tilde(v, home_dir), HomeOrigin::Env),
        None => (home_dir.ok_or(HomeError::NoHome)?.join(".hermes"), HomeOrigin::Default),
    };
    let path = match profile {
        None => base,
        Some(name) => {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(HomeError::BadProfile(name.to_owned()));
            }
            base.join("profiles").join(name)
        }
    };
    Ok(HermesHome { path, origin, profile: profile.map(str::to_owned) })
}

fn expand_tilde(p: &str, home_dir: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~/"), home_dir) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if p == "~" => home_dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(p)),
        _ => PathBuf::from(p),
    }
}

/// The session directory under the current layout.
pub const SESSION_DIR: &str = "platforms/whatsapp/session";
/// The session directory under Hermes' legacy layout, still written by its CLI wizard.
pub const LEGACY_SESSION_DIR: &str = "whatsapp/session";

/// Why this session directory was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionDirReason {
    /// `platforms.whatsapp.extra.session_path` names it.
    Configured(Origin),
    /// The legacy `whatsapp/session` exists, and Hermes prefers it when it does.
    Legacy,
    /// The current layout's default.
    Default,
}

/// The chosen session directory and, for diagnosis, the one not chosen when both exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDir {
    pub path: PathBuf,
    pub reason: SessionDirReason,
    /// The other layout's directory, when it exists too (and so is *not* being used).
    pub shadowed: Option<PathBuf>,
}

/// The one resolver for the session directory, shared by every command.
///
/// `exists` is asked about the legacy and current directories; the caller answers from the
/// filesystem. A configured relative path is taken relative to `HERMES_HOME`, so the result
/// does not depend on the directory a command was started from.
pub fn resolve_session_dir(
    home: &HermesHome,
    configured: &Setting<Option<String>>,
    home_dir: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> SessionDir {
    let legacy = home.path.join(LEGACY_SESSION_DIR);
    let current = home.path.join(SESSION_DIR);
    if let Some(p) = &configured.value {
        let p = expand_tilde(p, home_dir);
        let path = if p.is_absolute() { p } else { home.path.join(p) };
        let shadowed = [legacy, current].into_iter().find(|d| *d != path && exists(d));
        return SessionDir { path, reason: SessionDirReason::Configured(configured.origin.clone()), shadowed };
    }
    if exists(&legacy) {
        let shadowed = exists(&current).then_some(current);
        SessionDir { path: legacy, reason: SessionDirReason::Legacy, shadowed }
    } else {
        SessionDir { path: current, reason: SessionDirReason::Default, shadowed: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> HermesHome {
        hermes_home(None, Some(Path::new("/home/ada")), None).expect("home")
    }

    #[test]
    fn home_from_env_default_and_profile() {
        assert_eq!(home().path, PathBuf::from("/home/ada/.hermes"));
        let h = hermes_home(Some("~/data/h"), Some(Path::new("/home/ada")), Some("work")).expect("home");
        assert_eq!(h.path, PathBuf::from("/home/ada/data/h/profiles/work"));
        assert_eq!(h.origin, HomeOrigin::Env);
        assert_eq!(hermes_home(Some(""), None, None), Err(HomeError::NoHome));
        assert_eq!(hermes_home(None, Some(Path::new("/h")), Some("../x")), Err(HomeError::BadProfile("../x".into())));
    }

    #[track_caller]
    fn check(
        configured: Option<&str>,
        existing: &[&str],
        path: &str,
        reason: SessionDirReason,
        shadowed: Option<&str>,
    ) {
        let setting = Setting {
            value: configured.map(str::to_owned),
            origin: if configured.is_some() {
                Origin::Yaml { path: "platforms.whatsapp.extra.session_path".into(), line: 4 }
            } else {
                Origin::Default
            },
        };
        let h = home();
        let exists = |p: &Path| existing.iter().any(|e| h.path.join(e) == p);
        let got = resolve_session_dir(&h, &setting, Some(Path::new("/home/ada")), exists);
        assert_eq!(got.path, h.path.join(path));
        assert_eq!(got.reason, reason);
        assert_eq!(got.shadowed, shadowed.map(|s| h.path.join(s)));
    }

    #[test]
    fn one_resolver_for_every_layout() {
        check(None, &[], SESSION_DIR, SessionDirReason::Default, None);
        check(None, &[SESSION_DIR], SESSION_DIR, SessionDirReason::Default, None);
        check(None, &[LEGACY_SESSION_DIR], LEGACY_SESSION_DIR, SessionDirReason::Legacy, None);
        check(
            None,
            &[LEGACY_SESSION_DIR, SESSION_DIR],
            LEGACY_SESSION_DIR,
            SessionDirReason::Legacy,
            Some(SESSION_DIR),
        );
        let configured = SessionDirReason::Configured(Origin::Yaml {
            path: "platforms.whatsapp.extra.session_path".into(),
            line: 4,
        });
        check(Some("/srv/wa"), &[], "/srv/wa", configured.clone(), None);
        check(Some("mine"), &[SESSION_DIR], "mine", configured, Some(SESSION_DIR));
    }
}
