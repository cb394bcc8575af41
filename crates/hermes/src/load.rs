//! Reading what the configuration is made of: the environment, `.env` and `config.yaml`.
//!
//! The only place that reads environment variables; everything after works on [`Loaded`].
//! Also who owns the settings files and the folders they are in ([`settings_files`]), for the
//! gateway to refuse those another user could have written.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hermes_core::config::{self, Diagnostic, Inputs, Resolved, Severity};
use hermes_core::doctor::settings_files::{PathFacts, Reached, SettingsFile, Untrusted};
use hermes_core::paths::{self, HermesHome, SessionDir};

use crate::exit;

/// The configuration as resolved for one command.
pub struct Loaded {
    pub home: HermesHome,
    pub home_exists: bool,
    pub home_dir: Option<PathBuf>,
    pub resolved: Resolved,
    /// `.env` and `config.yaml`, those that exist.
    pub files_read: Vec<PathBuf>,
    /// The environment variable `container`, for doctor's container detection.
    pub container_var: Option<String>,
    /// What makes Hermes Agent start its own WhatsApp bridge from this folder.
    pub bridge_switch: hermes_core::coexist::BridgeSwitch,
}

impl Loaded {
    pub fn env_file(&self) -> PathBuf {
        self.home.path.join(".env")
    }

    /// Whether Hermes Agent, started from this folder, would start its own WhatsApp bridge on
    /// the device hermes owns (`hermes_core::coexist`).
    pub fn hermes_bridge(&self) -> hermes_core::coexist::Bridge {
        let node =
            std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("node").is_file()));
        hermes_core::coexist::hermes_bridge(&hermes_core::coexist::BridgeSwitch {
            node,
            bridge_session: self.bridge_creds().is_some(),
            ..self.bridge_switch.clone()
        })
    }

    /// A session of Hermes' Node bridge (Baileys' `creds.json`) where the bridge looks: in the
    /// session directory, legacy or new layout. Only a regular file counts, as for the import,
    /// which refuses a link.
    pub fn bridge_creds(&self) -> Option<PathBuf> {
        [self.session_dir().path, self.home.path.join(hermes_core::paths::LEGACY_SESSION_DIR)]
            .into_iter()
            .map(|d| d.join("creds.json"))
            .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }

    pub fn session_dir(&self) -> SessionDir {
        paths::resolve_session_dir(
            &self.home,
            &self.resolved.config.whatsapp.session_path,
            self.home_dir.as_deref(),
            Path::exists,
        )
    }
}

/// Reads everything. Missing files are not errors. What the user must change (a HERMES_HOME that
/// is not UTF-8, a bad profile name, a configuration file that is not a small UTF-8 text file) is
/// a usage error; a file that cannot be read is an internal (I/O) error.
pub fn load(profile: Option<&str>) -> anyhow::Result<Loaded> {
    let home_dir = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let home_var = match std::env::var_os("HERMES_HOME") {
        None => None,
        Some(v) => Some(v.into_string().map_err(|v| {
            exit::usage(format!(
                "HERMES_HOME={} is not valid UTF-8; hermes will not guess another folder: point HERMES_HOME at a \
                 path spelled in UTF-8",
                v.to_string_lossy()
            ))
        })?),
    };
    let home = paths::hermes_home(home_var.as_deref(), home_dir.as_deref(), profile)
        .map_err(|e| exit::usage(e.to_string()))?;
    let env: BTreeMap<String, String> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();

    let mut files_read = Vec::new();
    let mut early = Vec::new();
    let env_path = home.path.join(".env");
    let dotenv = read_dotenv(&env_path, &env, &mut early)?;
    if dotenv.is_some() {
        files_read.push(env_path);
    }
    let yaml_path = home.path.join("config.yaml");
    let yaml = read_optional(&yaml_path)?;
    if yaml.is_some() {
        files_read.push(yaml_path);
    }
    let inputs = Inputs { env, dotenv: dotenv.unwrap_or_default(), yaml: yaml.as_deref() };
    let bridge_switch = hermes_core::coexist::BridgeSwitch::read(&inputs.env, &inputs.dotenv, inputs.yaml);
    let mut resolved = config::resolve(&inputs);
    early.append(&mut resolved.diagnostics);
    resolved.diagnostics = early;
    Ok(Loaded {
        home_exists: home.path.is_dir(),
        home,
        home_dir,
        resolved,
        files_read,
        container_var: std::env::var("container").ok(),
        bridge_switch,
    })
}

/// Configuration files are small (a 100,000-entry allowlist is 1.5 MiB); a larger one is a
/// mistake (or an attack), not a setting.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    // Looked at before opening: opening a FIFO would wait forever for a writer.
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.is_file() {
        return Err(exit::usage(format!(
            "{} is not a regular file; replace it with a text file (or remove it)",
            path.display()
        )));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(exit::usage(format!(
            "{} is {} KiB; configuration files are at most {} KiB: keep only the settings in it",
            path.display(),
            meta.len() / 1024,
            MAX_CONFIG_BYTES / 1024
        )));
    }
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map(Some).map_err(|e| {
        exit::usage(format!(
            "{} is not UTF-8 text (byte {} is not); save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads `.env`; a line that cannot be parsed is a configuration error naming the line, and
/// the other lines still count.
fn read_dotenv(
    path: &Path,
    env: &BTreeMap<String, String>,
    diagnostics: &mut Vec<Diagnostic>,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let Some(text) = read_optional(path)? else { return Ok(None) };
    let (vars, errors) = config::dotenv::parse(&text, env);
    diagnostics.extend(errors.into_iter().map(|e| Diagnostic {
        severity: Severity::Error,
        key: format!(".env line {}", e.line),
        origin: None,
        message: e.message,
        fix: "write one KEY=value per line, and close every quote you open".to_owned(),
    }));
    Ok(Some(vars))
}

/// `HERMES_CRASH_AT`, the crash point the crash tests arm (simulator build only).
#[cfg(feature = "simulator")]
pub fn crash_at() -> Option<String> {
    std::env::var("HERMES_CRASH_AT").ok().filter(|s| !s.is_empty())
}

/// `HERMES_TEST_TIME_SCALE`: the link's retry delays multiplied by it (simulator build only),
/// so that end-to-end tests of minutes-long sequences run in seconds.
#[cfg(feature = "simulator")]
pub fn time_scale() -> Option<f64> {
    std::env::var("HERMES_TEST_TIME_SCALE").ok()?.parse().ok()
}

/// How the gateway parses files from outside: this very program, as a child
/// (`hermes __parse ...`) with limits. The time limits follow `HERMES_TEST_TIME_SCALE` in the
/// simulator build, so a test meets them in seconds.
pub fn parser() -> hermes_gateway::parse::Parser {
    // `/proc/self/exe`: the binary that runs, even if the file was replaced since (an upgrade);
    // a name that cannot be read falls back to the one on PATH.
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hermes"));
    let parser = hermes_gateway::parse::Parser::new(program, vec![hermes_gateway::parse::CHILD_COMMAND.to_owned()]);
    #[cfg(feature = "simulator")]
    if let Some(scale) = time_scale() {
        return parser.with_time_scale(scale);
    }
    parser
}

/// `HERMES_TEST_MOUNTINFO`: a file read as the mount table instead of this process's
/// (simulator build only), so that a test can put HERMES_HOME on a container's writable layer.
#[cfg(feature = "simulator")]
pub fn mountinfo() -> Option<String> {
    std::fs::read_to_string(std::env::var_os("HERMES_TEST_MOUNTINFO")?).ok()
}

#[cfg(not(feature = "simulator"))]
pub fn mountinfo() -> Option<String> {
    None
}

/// `SUDO_USER`: who ran `sudo hermes ...` (sudo resets HOME, so `~/.hermes` is root's then).
pub fn sudo_user() -> Option<String> {
    std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty() && u != "root")
}

/// `XDG_CONFIG_HOME`, when set and not empty: user units go into its `systemd/user`.
pub fn xdg_config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// HERMES_HOME alone, without reading anything in it: what the configuration files are
/// fingerprinted in before they are read.
pub fn home_path(profile: Option<&str>) -> Option<PathBuf> {
    let home_dir = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let var = std::env::var("HERMES_HOME").ok();
    paths::hermes_home(var.as_deref(), home_dir.as_deref(), profile).ok().map(|h| h.path)
}

/// The uid hermes runs as: the one user besides root who may change its settings files (the
/// effective uid, the one the kernel checks and new files get).
pub fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The settings files that exist in `home` (`.env`, `config.yaml`, `SOUL.md`), each with the
/// owner and mode of the file and of every folder it is reached through, for
/// `hermes_core::doctor::settings_files` to judge.
pub fn settings_files(home: &Path) -> Vec<SettingsFile> {
    let home = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
    crate::reload::FILES
        .iter()
        .filter_map(|name| {
            let name = home.join(name);
            // Missing (or a link to nothing): nothing is read, so nothing is judged; a file
            // someone creates later is judged when it is read. A HERMES_HOME that is not a
            // folder is for `load` to report.
            let target = match fs::canonicalize(&name) {
                Ok(t) => t,
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return None,
                Err(e) => return Some(SettingsFile { name, reached: Err(e.to_string()) }),
            };
            let reached = reached_through(&name, &target).map_err(|e| e.to_string());
            Some(SettingsFile { name, reached })
        })
        .collect()
}

/// The settings files in `home` that another user could have written, with why and the fix:
/// the gateway applies none of them.
pub fn untrusted_settings(home: &Path) -> Vec<Untrusted> {
    hermes_core::doctor::settings_files::untrusted(&settings_files(home), me())
}

/// Looked at through symbolic links: a folder on the way that is a link counts for what it
/// points to, and the folders of its target are looked at too (the target is `target`).
fn reached_through(name: &Path, target: &Path) -> io::Result<Reached> {
    use std::os::unix::fs::MetadataExt as _;
    let facts = |path: &Path| -> io::Result<PathFacts> {
        let meta = fs::metadata(path)?;
        Ok(PathFacts { path: path.to_path_buf(), uid: meta.uid(), mode: meta.mode() })
    };
    let (holders, above) = hermes_core::doctor::settings_files::folders(name, target);
    Ok(Reached {
        file: facts(target)?,
        holders: holders.iter().map(|p| facts(p.as_path())).collect::<io::Result<_>>()?,
        above: above.iter().map(|p| facts(p.as_path())).collect::<io::Result<_>>()?,
    })
}
