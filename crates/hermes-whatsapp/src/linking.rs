//! Linking this gateway to a WhatsApp account as a companion device, by QR code or code.
//!
//! Linking happens in a temporary directory beside the session and is moved into place only
//! after WhatsApp accepted the login, so an interrupted, timed-out or killed link leaves the
//! previous session (or none) exactly as it was, never a half-linked one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use whatsapp_rust::prelude::*;

pub use crate::client::PUSH_NAME;
use crate::store::{self, LinkedAccount, StoreState};

/// How to link.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    pub session_dir: PathBuf,
    /// Link by code to this phone number (digits) instead of by QR code.
    pub pair_code_phone: Option<String>,
    pub timeout: Duration,
    /// The WhatsApp server; `None` is WhatsApp itself. Only simulator builds accept one.
    pub server_url: Option<String>,
    /// The name this device shows in the phone's Linked Devices.
    pub push_name: String,
}

/// What the user has to see while linking.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkProgress {
    /// Show this QR code; WhatsApp rotates it when it expires.
    Qr { code: String, expires_in: Duration },
    /// Type this code on the phone (Linked Devices, Link with phone number instead).
    PairCode { code: String, expires_in: Duration },
    /// The phone accepted; logging in with the new credentials.
    Paired { phone: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Nobody scanned or typed in time.
    #[error("no phone linked this device within {0:?}; run the command again when the phone is at hand")]
    Timeout(Duration),
    /// The user interrupted (Ctrl-C).
    #[error("interrupted; nothing was changed")]
    Interrupted,
    /// WhatsApp stopped issuing QR codes for this attempt.
    #[error("every QR code expired before one was scanned; run the command again when the phone is at hand")]
    QrExpired,
    /// WhatsApp refused the device during or right after linking.
    #[error("WhatsApp refused the link: {0}")]
    Refused(String),
    /// WhatsApp asks for the account's passkey before it links this device; a gateway cannot
    /// present one.
    #[error(
        "WhatsApp asks for this account's passkey to link a new device, and a gateway cannot present one: link \
         with a pairing code instead (`hermes whatsapp --pair-code NUMBER`, or the form on the gateway's page); \
         if WhatsApp asks again, remove the passkey on the phone (WhatsApp > Settings > Account > Passkeys), \
         link, then add it back"
    )]
    PasskeyRequired,
    /// The server URL is not allowed in this build.
    #[error("{0}")]
    ServerUrl(String),
    #[error("session storage: {0}")]
    Store(String),
    /// WhatsApp accepted the link, but the linking client was still at work on the new store
    /// when the wind-down ended; installed, the store could be written to behind the back of
    /// the client that runs on it next. It is kept where it is, as a leftover.
    #[error(
        "WhatsApp accepted the link, but the linking client had not let go of the new session {:?} later, so it \
         was not installed (it could still be written to); it is kept in {}, which the next link keeps as a \
         backup: run the command again",
        .waited,
        .kept.display()
    )]
    StillRunning { kept: PathBuf, waited: Duration },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Io { what, source }
}

/// Checks a `WHATSAPP_SERVER_URL`: simulator builds accept loopback `ws://` addresses only.
pub fn check_server_url(url: &str) -> Result<(), String> {
    if !cfg!(feature = "simulator") {
        return Err(format!(
            "WHATSAPP_SERVER_URL={url} is set, but this hermes was built without the simulator feature; unset it to use WhatsApp"
        ));
    }
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("WHATSAPP_SERVER_URL={url}: use a ws:// URL of a local simulator"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!("WHATSAPP_SERVER_URL={url}: only a loopback address (127.0.0.1, ::1, localhost) is allowed"))
    }
}

/// Deals with leftovers of earlier attempts that were killed mid-way. The caller holds the
/// session lock, so no other link is in progress. A leftover whose store holds a linked device
/// may be a link WhatsApp accepted: it is kept as a backup, never deleted; the rest is removed.
async fn clean_leftovers(session_dir: &Path, now_secs: i64) -> Result<Vec<String>, LinkError> {
    let mut warnings = Vec::new();
    let Some(parent) = session_dir.parent() else { return Ok(warnings) };
    let prefix = format!("{}.linking-", session_dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let Ok(entries) = std::fs::read_dir(parent) else { return Ok(warnings) };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        if let StoreState::Linked(account) = store::inspect(&path).await {
            let kept = crate::backup::move_to_backup(session_dir, &path, now_secs)
                .map_err(io(format!("keep the unfinished link {} as a backup", path.display())))?;
            if let Some(kept) = kept {
                warnings.push(format!(
                    "an earlier link to +{} was interrupted after WhatsApp accepted it; it is kept in {}",
                    account.phone,
                    kept.display()
                ));
            }
        } else {
            std::fs::remove_dir_all(&path).map_err(io(format!("remove the unfinished link {}", path.display())))?;
        }
    }
    Ok(warnings)
}

/// Creates `path` (and missing parents) 0700; a directory that exists already keeps its mode,
/// with a warning when other users could replace what hermes keeps in it.
fn private_dir(path: &Path, warnings: &mut Vec<String>) -> Result<(), LinkError> {
    hermes_store::files::create_private_dir_all(path).map_err(io(format!("create {}", path.display())))?;
    if hermes_store::files::others_can_replace_entries(path) {
        warnings.push(format!(
            "{} can be written by other users, who could replace the session kept in it; run `chmod go-w {}` or \
             choose another session_path",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Session files hold keys: readable by this user only.
pub(crate) fn restrict_files(dir: &Path) -> Result<(), LinkError> {
    for entry in std::fs::read_dir(dir).map_err(io(format!("read {}", dir.display())))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            restrict_file(&entry.path()).map_err(io(format!("chmod {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// A file that is gone by the time it is reached is not an error: the store's `-wal` and `-shm`
/// files are removed when its last connection closes, and the verifying store's connections
/// close on a thread of their own, while the directory is being walked. SQLite gives those files
/// the database file's mode when it makes them again, so nothing is left readable.
fn restrict_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A finished link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub account: LinkedAccount,
    /// Where the session it replaced was moved, if there was one.
    pub backup: Option<PathBuf>,
    /// What went wrong without stopping the link (a backup that could not be rotated, a
    /// shared parent directory), for the user to see.
    pub warnings: Vec<String>,
}

/// Links a new device and installs it as the session; a session it replaces is moved to a
/// backup first, and only once the new one is known good. The caller holds the session lock.
/// `progress` sees each step; `cancel` ending (Ctrl-C) stops cleanly, changing nothing.
pub async fn link(
    opts: &LinkOptions,
    mut progress: impl FnMut(LinkProgress),
    cancel: impl std::future::Future<Output = ()>,
    now_secs: i64,
) -> Result<Linked, LinkError> {
    if let Some(url) = &opts.server_url {
        check_server_url(url).map_err(LinkError::ServerUrl)?;
    }
    let mut warnings = clean_leftovers(&opts.session_dir, now_secs).await?;
    let parent =
        opts.session_dir.parent().ok_or_else(|| LinkError::Store("the session directory has no parent".into()))?;
    private_dir(parent, &mut warnings)?;
    let name = opts.session_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A name of its own per attempt: a client of an earlier attempt that is still winding down
    // (its store opens connections by path) must never write into this one's store.
    let tmp = parent.join(format!("{name}.linking-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    private_dir(&tmp, &mut warnings)?;

    let runtime = crate::tracked::TrackedRuntime::current();
    // Nothing is ever sent: the channel closes once the linking store's files are closed.
    let (store_closed, mut closed_rx) = tokio::sync::mpsc::channel::<()>(1);
    // Biased: a link that finished wins over a cancel that came at the same moment. The
    // other arms drop the attempt (and its client) where it stands, nothing of it kept.
    let result = tokio::select! {
        biased;
        r = run_link(opts, &tmp, &mut progress, runtime.clone(), store_closed) => r,
        () = cancel => Err(LinkError::Interrupted),
        () = tokio::time::sleep(opts.timeout) => Err(LinkError::Timeout(opts.timeout)),
    };
    let wound_down = tokio::time::timeout(WIND_DOWN, async {
        runtime.shutdown().await;
        while closed_rx.recv().await.is_some() {}
    })
    .await
    .is_ok();
    let account = match result {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if !wound_down {
        // Something of the linking client could still write into the store: installed, it
        // would write beside the next client. The phone accepted the link, so it is not
        // deleted either: the next link keeps it as a backup (`clean_leftovers`).
        return Err(LinkError::StillRunning { kept: tmp, waited: WIND_DOWN });
    }
    // Only a store that really holds the new device is installed.
    match store::inspect(&tmp).await {
        StoreState::Linked(_) => {}
        other => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(LinkError::Store(format!("the new session did not verify: {other:?}")));
        }
    }
    // After the verification, which may have created the store's WAL files too.
    restrict_files(&tmp)?;
    // Install first, rotate after: the old session is moved aside (a rename), the new one
    // takes its place, and only then are old backups pruned, whose failure is only a warning.
    let backup = crate::backup::move_to_backup(&opts.session_dir, &opts.session_dir, now_secs)
        .map_err(io(format!("back up the old {}", opts.session_dir.display())))?;
    if let Err(e) = std::fs::rename(&tmp, &opts.session_dir) {
        // Put the old session back where it was; the new one stays beside it as a leftover
        // that the next run keeps as a backup.
        let what = match &backup {
            Some(b) => match std::fs::rename(b, &opts.session_dir) {
                Ok(()) => {
                    format!("move the new session to {} (the old one is back in place)", opts.session_dir.display())
                }
                Err(_) => format!(
                    "move the new session to {}; the old session is in {} and the new one in {}",
                    opts.session_dir.display(),
                    b.display(),
                    tmp.display()
                ),
            },
            None => format!("move the new session to {}", opts.session_dir.display()),
        };
        return Err(LinkError::Io { what, source: e });
    }
    hermes_store::files::sync_dir(parent).map_err(io(format!("sync {}", parent.display())))?;
    warnings.extend(crate::backup::rotate(&opts.session_dir));
    Ok(Linked { account, backup, warnings })
}

/// How long the linking client's leftover work may take to wind down once linking is over.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Links with a client whose every task `runtime` keeps, on a store that closes `store_closed`
/// when its files are closed: [`link`] ends those tasks and waits for that before it installs.
///
/// whatsapp-rust leaves detached tasks behind when a client stops (the post-login pre-key
/// upload, background queries), and they hold the store's connections by file descriptor, so
/// they follow the directory when it is renamed into place. Left running beside the gateway's
/// own client, they overwrote the pre-keys that client had just uploaded, and the first message
/// of every new contact failed to decrypt (BadMac).
async fn run_link(
    opts: &LinkOptions,
    dir: &Path,
    progress: &mut impl FnMut(LinkProgress),
    runtime: crate::tracked::TrackedRuntime,
    store_closed: tokio::sync::mpsc::Sender<()>,
) -> Result<LinkedAccount, LinkError> {
    let mut running = crate::client::start(crate::client::Start {
        push_name: &opts.push_name,
        pair_code_phone: opts.pair_code_phone.as_deref(),
        runtime: Some(runtime),
        store_closed: Some(store_closed),
        ..crate::client::Start::new(dir, opts.server_url.as_deref())
    })
    .await
    .map_err(LinkError::Store)?;
    let outcome = loop {
        let Some(event) = running.events.recv().await else {
            break Err(LinkError::Refused("the connection ended".into()));
        };
        match &*event {
            // Linking by code, the QR codes the client also produces would only confuse.
            Event::PairingQrCode(q) if opts.pair_code_phone.is_none() => {
                progress(LinkProgress::Qr { code: q.code.clone(), expires_in: q.timeout });
            }
            Event::PairingCode(c) => progress(LinkProgress::PairCode { code: c.code.clone(), expires_in: c.timeout }),
            Event::PairSuccess(p) => progress(LinkProgress::Paired { phone: p.id.user.to_string() }),
            Event::Connected(_) => {
                let device = running.client.persistence_manager().get_device_snapshot();
                match &device.pn {
                    Some(pn) => {
                        break Ok(LinkedAccount {
                            phone: pn.user.to_string(),
                            lid: device.lid.as_ref().map(|l| l.user.to_string()),
                            name: Some(device.push_name.clone()).filter(|n| !n.is_empty()),
                            device: pn.device,
                        });
                    }
                    None => break Err(LinkError::Refused("connected without an account".into())),
                }
            }
            Event::PairingQrCodesExhausted(_) => break Err(LinkError::QrExpired),
            // No authenticator is registered, so the client would wait for ever: say it now.
            Event::PairPasskeyRequest(_) => break Err(LinkError::PasskeyRequired),
            Event::PairPasskeyError(e) => break Err(LinkError::Refused(format!("passkey: {}", e.error))),
            Event::PairError(e) => break Err(LinkError::Refused(format!("{e:?}"))),
            Event::PairingCodeError(e) => break Err(LinkError::Refused(format!("{e:?}"))),
            Event::LoggedOut(l) => break Err(LinkError::Refused(format!("logged out ({:?})", l.reason))),
            Event::ClientOutdated(_) => {
                break Err(LinkError::Refused("WhatsApp refuses this version of hermes; update hermes".into()));
            }
            Event::TemporaryBan(b) => {
                break Err(LinkError::Refused(format!(
                    "this number is temporarily banned for {}s",
                    b.expire.num_seconds()
                )));
            }
            _ => {}
        }
    };
    running.stop().await;
    outcome
}

#[cfg(all(test, feature = "simulator"))]
mod tests {
    use super::*;
    use crate::client::tests::open_under;

    /// How many of this process's threads have this name.
    fn threads_named(name: &str) -> usize {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
        let comm = |t: std::fs::DirEntry| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        tasks.flatten().map(comm).filter(|c| c.trim_end() == name).count()
    }

    /// A file that vanished between listing and chmod (a store's `-shm` as its last connection
    /// closes) does not fail the link; the files that are there become 0600.
    #[test]
    fn a_file_gone_before_its_chmod_does_not_fail_the_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = dir.path().join("whatsapp.db");
        std::fs::write(&kept, b"keys").expect("write");
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        restrict_file(&dir.path().join("whatsapp.db-shm")).expect("a vanished file is no error");
        restrict_files(dir.path()).expect("restrict");
        let mode = std::fs::metadata(&kept).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// Nothing of the linking client outlives the link: no task of it may write into the
    /// installed session beside the client that runs on it next (its leftover pre-key upload
    /// once overwrote that client's keys, and new contacts' first messages failed to decrypt).
    /// And it runs on the caller's runtime: the link once started a thread with a runtime of
    /// its own for it (issue #25), which only the binary's `main` may build.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_linking_client_is_gone_when_the_link_returns() {
        const PHONE: &str = "15550001000";
        let sim = wa_sim::Sim::start().await.expect("simulator");
        sim.add_phone(PHONE);
        let home = tempfile::tempdir().expect("tempdir");
        let whatsapp = home.path().join("whatsapp");
        let opts = LinkOptions {
            session_dir: whatsapp.join("session"),
            pair_code_phone: None,
            timeout: Duration::from_secs(120),
            server_url: Some(sim.ws_url()),
            push_name: PUSH_NAME.to_owned(),
        };
        let mut scanned = false;
        let mut link_threads = 0;
        let progress = |p| {
            if let LinkProgress::Qr { code, .. } = p
                && !scanned
            {
                scanned = true;
                link_threads = threads_named("hermes-link");
                sim.link_qr(PHONE, &code).expect("scan");
            }
        };
        let linked = link(&opts, progress, std::future::pending(), 1_800_000_000).await.expect("link");
        assert_eq!(linked.account.phone, PHONE);
        assert!(scanned);
        assert_eq!(link_threads, 0, "the linking client ran on a thread and runtime of its own");
        let open = open_under(&whatsapp);
        assert!(open.is_empty(), "the linking client still holds {open:?}");
    }
}
