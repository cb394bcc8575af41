//! The systemd unit `hermes gateway install` writes: restarted after a crash or a lost
//! network, never after a verdict that needs a person (WhatsApp ended the session, exit 1; the
//! configuration is wrong, exit 2), where a restart loop would only hammer WhatsApp with dead
//! credentials. Hardened so that the gateway can write HERMES_HOME and nothing else.

use std::path::Path;

/// Hermes' own unit name, so `systemctl --user status hermes-gateway` works after switching.
pub const NAME: &str = "hermes-gateway";
/// The unit's name beside Hermes Agent, whose own unit is `hermes-gateway` (and whose every
/// `gateway run` writes that unit again with its own command).
pub const BESIDE_HERMES: &str = "hermes-whatsapp";
/// What marks a unit file as hermes' own (the first words of its first line).
pub const MARK: &str = "# Written by `hermes";

/// Where the unit runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A user unit (`~/.config/systemd/user`), running while the user is logged in, or
    /// always with lingering on.
    User,
    /// A system unit (`/etc/systemd/system`), running at boot as the owner of HERMES_HOME.
    System,
}

/// What the unit is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec<'a> {
    pub scope: Scope,
    /// The hermes binary, absolute.
    pub exec: &'a Path,
    /// HERMES_HOME, absolute (a profile's own folder: the same as `--profile NAME`).
    pub home: &'a Path,
    /// What the gateway writes besides HERMES_HOME: the folder of a session kept elsewhere
    /// (linking writes beside the session, backups too).
    pub also_writes: Option<&'a Path>,
    /// A system unit's user and group (numeric ids, which systemd takes as they are).
    pub run_as: Option<(u32, u32)>,
    /// Hermes Agent's unit, which this one wants and starts after (it answers the messages).
    pub after: Option<&'a str>,
}

/// The unit's name for a profile: `hermes-gateway`, or `hermes-gateway-NAME`; beside Hermes
/// Agent, `hermes-whatsapp` (`-NAME`).
pub fn unit_name(profile: Option<&str>, beside_hermes: bool) -> String {
    let base = if beside_hermes { BESIDE_HERMES } else { NAME };
    match profile {
        Some(p) => format!("{base}-{p}.service"),
        None => format!("{base}.service"),
    }
}

/// Whether a unit file is hermes' own (it says so on its first line).
pub fn is_ours(unit_text: &str) -> bool {
    unit_text.starts_with(MARK)
}

/// Whether a unit file is Hermes Agent's (its command runs Hermes' Python CLI,
/// `python -m hermes_cli.main gateway run`), which has the name hermes' unit had.
pub fn is_hermes_agents(unit_text: &str) -> bool {
    !is_ours(unit_text) && unit_text.lines().any(|l| l.starts_with("ExecStart=") && l.contains("hermes_cli"))
}

/// Why a path cannot go into a unit file as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{0} is not an absolute path; a service starts from /, so give the full path")]
    Relative(String),
    #[error(
        "{0} contains a character a unit file cannot hold as it is (a newline, a quote, a backslash, % or $); \
         move it to a plain path"
    )]
    Unquotable(String),
}

/// A path as a unit-file word: absolute, and without what systemd would read as syntax.
fn word(path: &Path) -> Result<String, UnitError> {
    let s = path.to_string_lossy().into_owned();
    if !path.is_absolute() {
        return Err(UnitError::Relative(s));
    }
    plain(&s)?;
    Ok(s)
}

/// Refuses what systemd would read as syntax inside a quoted word.
fn plain(s: &str) -> Result<(), UnitError> {
    if s.chars().any(|c| matches!(c, '"' | '\'' | '\\' | '%' | '$') || c.is_control()) {
        return Err(UnitError::Unquotable(s.to_owned()));
    }
    Ok(())
}

/// The unit file's text.
pub fn systemd_unit(spec: &Spec<'_>) -> Result<String, UnitError> {
    let exec = word(spec.exec)?;
    let home = word(spec.home)?;
    // Quoted: a path with spaces stays one word.
    let start = format!("\"{exec}\" gateway");
    let mut writable = format!("\"{home}\"");
    if let Some(other) = spec.also_writes {
        // `-`: a folder missing at start is not a failure to start (linking creates it).
        writable.push_str(&format!(" \"-{}\"", word(other)?));
    }
    let mut u = String::new();
    // The network is waited for by the system manager only; a user manager has no such target.
    let mut network = match spec.scope {
        Scope::System => "Wants=network-online.target\nAfter=network-online.target\n".to_owned(),
        Scope::User => String::new(),
    };
    if let Some(agent) = spec.after {
        plain(agent)?;
        network
            .push_str(&format!("# Hermes Agent answers the messages: started first.\nWants={agent}\nAfter={agent}\n"));
    }
    u.push_str(&format!(
        "# Written by `hermes gateway install`; `hermes gateway uninstall` removes it.\n\
         [Unit]\n\
         Description=Hermes Agent Gateway - WhatsApp (hermes)\n\
         {network}\
         # A crash loop is given up after 5 starts in 10 minutes, rather than spinning for ever.\n\
         StartLimitIntervalSec=600\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={start}\n\
         Environment=\"HERMES_HOME={home}\"\n"
    ));
    if let Some((uid, gid)) = spec.run_as {
        u.push_str(&format!("User={uid}\nGroup={gid}\n"));
    }
    u.push_str(
        "# Restarted after a crash or a failure to start; not after exit 1 (WhatsApp ended the\n\
         # session: re-link, `hermes whatsapp repair`) or exit 2 (a configuration error to fix).\n\
         Restart=on-failure\n\
         RestartSec=10\n\
         RestartPreventExitStatus=1 2\n\
         # SIGTERM: what is being sent is finished, what is not answered yet is kept for the next start.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30\n\
         UMask=0077\n\
         NoNewPrivileges=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         SystemCallArchitectures=native\n",
    );
    // The file-system and kernel sandbox needs privileges a user manager may lack (it would
    // refuse to start the service), so only a system unit gets it.
    if spec.scope == Scope::System {
        // The whole file system read-only but HERMES_HOME, where everything hermes writes
        // lives; tools it runs (speech to text, an alert command) cache there too. Not
        // `MemoryDenyWriteExecute`: such a tool may be a JIT runtime (Node.js, Java).
        u.push_str(&format!(
            "Environment=\"XDG_CACHE_HOME={home}/cache/tools\"\n\
             ProtectSystem=strict\n\
             ReadWritePaths={writable}\n\
             PrivateTmp=yes\n\
             PrivateDevices=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectKernelModules=yes\n\
             ProtectKernelLogs=yes\n\
             ProtectControlGroups=yes\n\
             ProtectClock=yes\n\
             ProtectHostname=yes\n\
             RestrictNamespaces=yes\n\
             CapabilityBoundingSet=\n\
             RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"
        ));
    }
    let target = match spec.scope {
        Scope::User => "default.target",
        Scope::System => "multi-user.target",
    };
    u.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> Spec<'static> {
        Spec {
            scope,
            exec: Path::new("/usr/local/bin/hermes"),
            home: Path::new("/home/ana/.hermes"),
            also_writes: None,
            run_as: None,
            after: None,
        }
    }

    #[test]
    fn beside_hermes_agent_the_unit_has_its_own_name_and_starts_after_hermes() {
        assert_eq!(unit_name(None, true), "hermes-whatsapp.service");
        assert_eq!(unit_name(Some("work"), true), "hermes-whatsapp-work.service");
        let u = systemd_unit(&Spec { after: Some("hermes-gateway.service"), ..spec(Scope::User) }).expect("unit");
        assert!(u.contains("\nWants=hermes-gateway.service\nAfter=hermes-gateway.service\n"), "{u}");
        assert!(is_ours(&u));
        let hermes = "[Unit]\nDescription=Hermes Agent Gateway\n[Service]\nExecStart=/usr/bin/python -m hermes_cli.main gateway run\n";
        assert!(!is_ours(hermes) && is_hermes_agents(hermes));
        assert!(!is_hermes_agents(&u) && !is_hermes_agents("[Service]\nExecStart=/bin/true\n"));
    }

    #[test]
    fn a_verdict_that_needs_a_person_is_not_restarted() {
        let u = systemd_unit(&spec(Scope::User)).expect("unit");
        assert!(u.contains("\nRestart=on-failure\n") && u.contains("\nRestartPreventExitStatus=1 2\n"), "{u}");
        assert!(u.contains("\nExecStart=\"/usr/local/bin/hermes\" gateway\n"), "{u}");
        assert!(u.contains("\nEnvironment=\"HERMES_HOME=/home/ana/.hermes\"\n"), "{u}");
        assert!(u.contains("\nWantedBy=default.target\n") && !u.contains("ProtectSystem"), "{u}");
    }

    #[test]
    fn a_system_unit_runs_as_the_owner_and_writes_only_hermes_home() {
        let u = systemd_unit(&Spec {
            run_as: Some((1000, 1000)),
            also_writes: Some(Path::new("/srv/wa")),
            ..spec(Scope::System)
        })
        .expect("unit");
        for line in [
            "User=1000",
            "Group=1000",
            "ProtectSystem=strict",
            "ReadWritePaths=\"/home/ana/.hermes\" \"-/srv/wa\"",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "WantedBy=multi-user.target",
            "ExecStart=\"/usr/local/bin/hermes\" gateway",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} in\n{u}");
        }
        assert_eq!(unit_name(Some("work"), false), "hermes-gateway-work.service");
        assert_eq!(unit_name(None, false), "hermes-gateway.service");
    }

    #[test]
    fn paths_a_unit_file_cannot_hold_are_refused() {
        let bad = |home: &'static str| systemd_unit(&Spec { home: Path::new(home), ..spec(Scope::User) });
        assert!(matches!(bad("relative/home"), Err(UnitError::Relative(_))));
        for home in ["/home/a\nExecStartPre=/bin/evil", "/home/50%", "/home/$USER", "/home/a\"b"] {
            assert!(matches!(bad(home), Err(UnitError::Unquotable(_))), "{home:?}");
        }
        assert!(bad("/home/ana/my hermes").expect("spaces are quoted").contains("\"HERMES_HOME=/home/ana/my hermes\""));
    }
}
