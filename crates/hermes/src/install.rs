//! `hermes gateway install` and `uninstall`: the gateway as a systemd service, under Hermes'
//! unit name. The unit itself (what restarts, what is hardened) is `hermes_core::service_unit`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hermes_core::service_unit::{self, Scope, Spec};

use crate::exit;
use crate::load::{self, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A user unit (~/.config/systemd/user): the default, unless run as root.
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// A system unit (/etc/systemd/system), run at boot as the owner of HERMES_HOME (needs root).
    #[arg(long)]
    system: bool,
    /// Write the unit to stdout and change nothing.
    #[arg(long)]
    print: bool,
    /// Replace a unit that differs from the one this would write.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The user unit (the default, unless run as root).
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// The system unit.
    #[arg(long)]
    system: bool,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn scope(user: bool, system: bool) -> Scope {
    if system || (!user && is_root()) { Scope::System } else { Scope::User }
}

/// Where units of `scope` go.
fn unit_dir(scope: Scope, loaded: &Loaded) -> anyhow::Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let config = load::xdg_config_home()
                .or_else(|| loaded.home_dir.as_ref().map(|h| h.join(".config")))
                .ok_or_else(|| exit::usage("HOME is not set: cannot tell where user units go"))?;
            Ok(config.join("systemd").join("user"))
        }
    }
}

fn systemctl(scope: Scope, args: &[&str]) -> Result<(), String> {
    let mut cmd = std::process::Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    let shown = format!("systemctl {}{}", if scope == Scope::User { "--user " } else { "" }, args.join(" "));
    match cmd.args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{shown}` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("`{shown}` cannot be run: {e}")),
    }
}

/// An absolute form of `p`, from the working directory, without following links.
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

pub fn install(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    if loaded.resolved.has_errors() {
        for d in loaded.resolved.errors() {
            eprintln!("hermes: configuration error: {d}");
        }
        return Ok(exit::USAGE);
    }
    let scope = scope(args.user, args.system);
    if scope == Scope::System && !args.print && !is_root() {
        return Err(exit::usage(
            "a system unit goes to /etc/systemd/system: run `sudo hermes gateway install --system` (with \
             HERMES_HOME=... before hermes), or `hermes gateway install --user` for a user unit",
        ));
    }
    // sudo resets HOME: `~/.hermes` would be root's, not the linked one of the user who asked.
    if let (Scope::System, Some(user), hermes_core::paths::HomeOrigin::Default) =
        (scope, load::sudo_user(), &loaded.home.origin)
    {
        return Err(exit::usage(format!(
            "under sudo, HERMES_HOME would be root's ({}); say which one {user} linked: `sudo HERMES_HOME=~{user}/.hermes \
             hermes gateway install --system`",
            loaded.home.path.display()
        )));
    }
    let exec = std::env::current_exe().context("find the hermes binary")?;
    if exec.components().any(|c| c.as_os_str() == "target") {
        eprintln!(
            "hermes: warning: the unit runs {}, a build in a cargo target directory: `cargo install --path crates/hermes` \
             first, so that a `cargo clean` or a rebuild does not pull it from under the service",
            exec.display()
        );
    }
    // The unit passes HERMES_HOME only: what this shell sets, the service would not have.
    let from_shell: Vec<String> = loaded
        .resolved
        .config
        .summary()
        .into_iter()
        .filter_map(|l| match l.origin {
            hermes_core::config::Origin::Env(key) if key != "HERMES_HOME" => Some(key),
            _ => None,
        })
        .collect();
    if !from_shell.is_empty() {
        eprintln!(
            "hermes: warning: {} come(s) from this shell's environment, which the service does not have: put them in {}",
            from_shell.join(", "),
            loaded.env_file().display()
        );
    }
    let home = absolute(&loaded.home.path)?;
    let session = absolute(&loaded.session_dir().path)?;
    let session_parent = session.parent().map(Path::to_path_buf);
    let also_writes = session_parent.as_deref().filter(|p| !p.starts_with(&home));
    let run_as = match scope {
        Scope::User => None,
        Scope::System => {
            use std::os::unix::fs::MetadataExt as _;
            let meta = std::fs::metadata(&home).map_err(|e| {
                exit::usage(format!(
                    "HERMES_HOME {} cannot be read ({e}): a system unit runs as its owner; link first with \
                     `hermes whatsapp`, as that user",
                    home.display()
                ))
            })?;
            if meta.uid() == 0 {
                eprintln!(
                    "hermes: warning: {} belongs to root, so the service runs as root; better: `chown -R USER {}` first",
                    home.display(),
                    home.display()
                );
            }
            Some((meta.uid(), meta.gid()))
        }
    };
    let dir = unit_dir(scope, &loaded)?;
    let profile = loaded.home.profile.as_deref();
    // Beside Hermes Agent (its unit is `hermes-gateway` too, and it answers our messages), the
    // unit gets a name of its own, ordered after Hermes'.
    let hermes_unit = service_unit::unit_name(profile, false);
    let at_hermes_name = std::fs::read_to_string(dir.join(&hermes_unit)).ok();
    let beside = crate::program::name() != "hermes"
        || matches!(loaded.resolved.config.agent.brain().0, hermes_core::config::Brain::Hermes { .. })
        || at_hermes_name.as_deref().is_some_and(service_unit::is_hermes_agents);
    let after = beside.then_some(hermes_unit.as_str());
    let spec = Spec { scope, exec: &exec, home: &home, also_writes, run_as, after };
    let unit = service_unit::systemd_unit(&spec).map_err(|e| exit::usage(e.to_string()))?;
    let unit = crate::program::fix(&unit).into_owned();
    if args.print {
        std::io::stdout().lock().write_all(unit.as_bytes())?;
        return Ok(exit::OK);
    }
    let name = service_unit::unit_name(profile, beside);
    let path = dir.join(&name);
    // An earlier hermes unit under Hermes' name: replaced by this one, not left to run beside it.
    if beside && at_hermes_name.as_deref().is_some_and(service_unit::is_ours) {
        let old = dir.join(&hermes_unit);
        if let Err(e) = systemctl(scope, &["disable", "--now", &hermes_unit]) {
            eprintln!("hermes: warning: {e}");
        }
        std::fs::remove_file(&old).with_context(|| format!("remove {}", old.display()))?;
        println!(
            "Removed {}: hermes' unit is now {name}, since {hermes_unit} is the name of Hermes Agent's own unit.",
            old.display()
        );
    }
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == unit => {
            println!("{} is already installed as {}; the file was not changed.", name, path.display());
        }
        Ok(_) if !args.force => {
            eprintln!(
                "hermes: {} exists and differs from the unit this hermes would write; nothing was changed. \
                 `hermes gateway install --print` shows the new one, `--force` replaces it",
                path.display()
            );
            return Ok(exit::PROBLEM);
        }
        _ => {}
    }
    if std::fs::read_to_string(&path).ok().as_deref() != Some(unit.as_str()) {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        write_unit(&path, &unit)?;
        println!("Wrote {}.", path.display());
    }
    let who = if scope == Scope::User { "--user " } else { "" };
    for step in [&["daemon-reload"][..], &["enable", &name]] {
        if let Err(e) = systemctl(scope, step) {
            eprintln!(
                "hermes: {e}; the unit is written: run `systemctl {who}daemon-reload && systemctl {who}enable {name}`"
            );
            return Ok(exit::PROBLEM);
        }
    }
    println!("Enabled. Start it now: systemctl {who}start {name}");
    println!("Its log: journalctl {who}-u {name} -f");
    if scope == Scope::User {
        println!("To keep it running after you log out: sudo loginctl enable-linger $USER");
    }
    if loaded.resolved.config.whatsapp.listen.value.is_none() {
        println!(
            "Without a listener, a session WhatsApp ends stops the service (it is not restarted then: re-link with \
             `hermes whatsapp repair`). Set HERMES_GATEWAY_LISTEN=127.0.0.1:8080 in {} for health checks and a page \
             that links again from a browser.",
            loaded.env_file().display()
        );
    }
    Ok(exit::OK)
}

/// Writes the unit readable by all (systemd reads it; it holds no secret), atomically, through
/// hermes' one writer: a fixed temporary name beside it would follow a link planted there.
fn write_unit(path: &Path, unit: &str) -> anyhow::Result<()> {
    hermes_store::files::write_readable(path, unit.as_bytes()).with_context(|| format!("write {}", path.display()))
}

pub fn uninstall(profile: Option<&str>, args: &UninstallArgs) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let scope = scope(args.user, args.system);
    let dir = unit_dir(scope, &loaded)?;
    let profile = loaded.home.profile.as_deref();
    // hermes' unit, under either name: never Hermes Agent's own `hermes-gateway` unit.
    let ours = [true, false]
        .into_iter()
        .map(|beside| service_unit::unit_name(profile, beside))
        .find(|n| std::fs::read_to_string(dir.join(n)).is_ok_and(|u| service_unit::is_ours(&u)));
    let name = ours.unwrap_or_else(|| service_unit::unit_name(profile, crate::program::name() != "hermes"));
    let path = dir.join(&name);
    if std::fs::read_to_string(&path).is_ok_and(|u| service_unit::is_hermes_agents(&u)) {
        println!("{} is Hermes Agent's own unit, not hermes'; nothing was changed.", path.display());
        return Ok(exit::OK);
    }
    if !path.exists() {
        println!("{} is not installed ({} does not exist); nothing was changed.", name, path.display());
        return Ok(exit::OK);
    }
    // Stopped and disabled first; a unit systemd does not know (never reloaded) is only removed.
    if let Err(e) = systemctl(scope, &["disable", "--now", &name]) {
        eprintln!("hermes: warning: {e}");
    }
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    println!("Removed {}.", path.display());
    if let Err(e) = systemctl(scope, &["daemon-reload"]) {
        eprintln!("hermes: warning: {e}");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// Issue #25: the unit went through a fixed temporary name (`NAME.service.tmp`), and a
    /// symlink planted there sent the unit into the file it pointed at.
    #[test]
    fn a_unit_is_written_readable_and_never_through_a_planted_temporary_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hermes-gateway.service");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, path.with_extension("service.tmp")).expect("symlink");
        write_unit(&path, "[Unit]\n").expect("written");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert_eq!(std::fs::read_to_string(&path).expect("unit"), "[Unit]\n");
        let mode = std::fs::symlink_metadata(&path).expect("unit").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "systemd and other users' tools read the unit");
    }
}
