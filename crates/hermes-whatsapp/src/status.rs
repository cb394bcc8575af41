//! Is the gateway linked, to which account, is the link usable, and what to do if not: what
//! `hermes whatsapp status` reports, gathered and judged here; the binary only prints it.
//!
//! Two witnesses, each knowing what the other cannot. The session store says whether a device
//! is linked ([`store::inspect_read_only`]). The gateway records every link state in
//! `state/link.json` ([`LinkRecord`], kept by a [`Recorder`]): the live state while it runs,
//! and a session WhatsApp ended that still looks linked on disk. Looking changes nothing: the
//! store is read from a snapshot and the state database read-only.

use std::path::{Path, PathBuf};

use hermes_core::link::{LinkState, Resume, StateName};
use hermes_core::reserve::{self, Space};
use serde::{Deserialize, Serialize};

use crate::lock::SessionLock;
use crate::store::{self, StoreState};

/// What `hermes whatsapp status` found.
#[derive(Clone, Debug)]
pub struct LinkStatus {
    /// The state shown to the user.
    pub state: StatusState,
    /// The session holds a device WhatsApp has not ended.
    pub linked: bool,
    /// Linked, and the link can carry messages now (or will by itself).
    pub usable: bool,
    /// What the user should do, when there is something to do.
    pub fix: Option<String>,
    /// What the session store holds (the account, when linked).
    pub store: StoreState,
    /// Another process holding the session's lock.
    pub in_use_by_pid: Option<u32>,
    /// That process is the gateway that wrote the record.
    pub gateway_running: bool,
    /// The last link state a gateway recorded, if one ever ran here.
    pub record: Option<LinkRecord>,
    /// Unix seconds of the last message received, from the journal.
    pub last_message_received: Option<i64>,
}

/// The state `status` shows: what the store holds, or the gateway's link state where its
/// record knows more. Written as the same strings as before (`linked`, `connected`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusState {
    /// A linked device, and no gateway saying more.
    Linked,
    /// No session, or linking never finished.
    NotLinked,
    /// The store file is empty (an interrupted first run).
    Empty,
    /// The store cannot be read.
    Corrupt,
    /// The link state the gateway recorded.
    Link(StateName),
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Linked => "linked",
            StatusState::NotLinked => "not_linked",
            StatusState::Empty => "empty",
            StatusState::Corrupt => "corrupt",
            StatusState::Link(name) => name.as_str(),
        }
    }
}

/// Gathers what the session, its lock, the gateway's record, the disk and the journal say, and
/// judges it. `state_dir` is `HERMES_HOME/state`; `min_free_bytes` the reserve below which a
/// running gateway pauses receiving. Never fails: what cannot be read is reported as such.
pub async fn status(session_dir: &Path, state_dir: &Path, min_free_bytes: u64) -> LinkStatus {
    let store = store::inspect_read_only(session_dir).await;
    let in_use_by_pid = SessionLock::holder(session_dir).filter(|pid| *pid != std::process::id());
    let record = read_record(state_dir);
    let gateway_running = record.as_ref().is_some_and(|r| in_use_by_pid == Some(r.pid));
    // A full disk may not even let the gateway record that it paused: look for it here too.
    // Judged again rather than read from the record: on a volume smaller than the reserve the
    // fix is to lower the reserve, not to free space, and only the volume's size tells which.
    let short = if gateway_running { shortage([session_dir, state_dir], min_free_bytes) } else { None };
    let mut verdict = judge(&store, record.as_ref(), gateway_running, short.as_ref());
    // Not linked, but Hermes' bridge is: taking its session over beats a new QR code.
    if !verdict.linked && !store.is_linked() && crate::import::bridge_session(session_dir) {
        verdict.fix = Some(crate::import::IMPORT_FIX.to_owned());
    }
    LinkStatus {
        state: verdict.state,
        linked: verdict.linked,
        usable: verdict.usable,
        fix: verdict.fix,
        store,
        in_use_by_pid,
        gateway_running,
        record,
        last_message_received: last_received(state_dir).await,
    }
}

/// Free and total bytes on the filesystems of the session and of `state/`, those that can be
/// asked.
pub fn free_space(session_dir: &Path, state_dir: &Path) -> Vec<(PathBuf, Space)> {
    [session_dir, state_dir]
        .into_iter()
        .filter_map(|dir| Some((dir.to_path_buf(), hermes_store::files::space(dir)?)))
        .collect()
}

/// The first of `dirs` whose filesystem has less free space than `min_free_bytes`, judged (with
/// the fix that fits its volume): what pauses receiving. `None` when all have room, or cannot
/// be asked. Blocks for a statvfs per directory.
pub fn shortage<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>, min_free_bytes: u64) -> Option<reserve::Verdict> {
    dirs.into_iter().find_map(|dir| {
        let dir = dir.as_ref();
        let verdict = reserve::judge(dir, hermes_store::files::space(dir)?, min_free_bytes);
        verdict.room.pauses().then_some(verdict)
    })
}

/// What `state/link.json` holds: the last link state the gateway recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// The gateway's process.
    pub pid: u32,
    #[serde(with = "state_name")]
    pub state: StateName,
    /// Unix seconds when this state began.
    pub since: i64,
    pub fix: Option<String>,
    pub last_connected: Option<i64>,
    /// Unix seconds of reconnections, the last hour's only.
    pub reconnects: Vec<i64>,
}

/// `state/link.json`.
pub fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("link.json")
}

/// The record, when there is one this version can read.
pub fn read_record(state_dir: &Path) -> Option<LinkRecord> {
    serde_json::from_slice(&std::fs::read(record_path(state_dir)).ok()?).ok()
}

/// Forgets what gateways recorded: after a new link, it is about a session that is gone.
pub fn forget_record(state_dir: &Path) {
    let _ = std::fs::remove_file(record_path(state_dir));
}

/// The record could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct RecordError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Keeps `state/link.json` up to date for one gateway: feed it every state the link
/// supervisor reports.
#[derive(Debug)]
pub struct Recorder {
    state_dir: PathBuf,
    pid: u32,
    last_connected: Option<i64>,
    reconnects: Vec<i64>,
}

impl Recorder {
    /// A recorder for the gateway `pid`, carrying the previous record's connection history on
    /// (its last connection and its recent reconnects).
    pub fn resume(state_dir: &Path, pid: u32) -> Recorder {
        let previous = read_record(state_dir);
        Recorder {
            state_dir: state_dir.to_path_buf(),
            pid,
            last_connected: previous.as_ref().and_then(|r| r.last_connected),
            reconnects: previous.map(|r| r.reconnects).unwrap_or_default(),
        }
    }

    /// Records `state`, begun at `now` (unix seconds), and writes the file. On failure the
    /// history is still kept, and the next state tries again.
    pub fn record(&mut self, state: &LinkState, now: i64) -> Result<LinkRecord, RecordError> {
        if state.kind() == StateName::Connected {
            if self.last_connected.is_some() {
                self.reconnects.push(now);
            }
            self.last_connected = Some(now);
        }
        self.reconnects.retain(|t| now.saturating_sub(*t) < 3600);
        let record = LinkRecord {
            pid: self.pid,
            state: state.kind(),
            since: now,
            fix: state.fix().map(str::to_owned),
            last_connected: self.last_connected,
            reconnects: self.reconnects.clone(),
        };
        let path = record_path(&self.state_dir);
        let write = || -> std::io::Result<()> {
            hermes_store::files::create_private_dir_all(&self.state_dir)?;
            hermes_store::files::write_private(&path, &serde_json::to_vec(&record)?)
        };
        write().map_err(|source| RecordError { path: path.clone(), source })?;
        Ok(record)
    }
}

/// The state name in files as its stable string.
mod state_name {
    use hermes_core::link::StateName;
    use serde::{Deserialize as _, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(name: &StateName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StateName, D::Error> {
        let s = String::deserialize(d)?;
        StateName::parse(&s).ok_or_else(|| de::Error::custom(format!("unknown link state '{s}'")))
    }
}

/// The verdict on what was gathered.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    state: StatusState,
    linked: bool,
    usable: bool,
    fix: Option<String>,
}

fn judge(
    store: &StoreState,
    record: Option<&LinkRecord>,
    gateway_running: bool,
    shortage: Option<&reserve::Verdict>,
) -> Verdict {
    let (mut state, mut fix) = match store {
        StoreState::Linked(_) => (StatusState::Linked, None),
        StoreState::Missing => {
            (StatusState::NotLinked, Some("run `hermes whatsapp` to link this gateway to your WhatsApp".to_owned()))
        }
        StoreState::NotLinked => {
            (StatusState::NotLinked, Some("linking never finished; run `hermes whatsapp` to link".to_owned()))
        }
        StoreState::Empty => (
            StatusState::Empty,
            Some("the session store is empty (an interrupted first run); run `hermes whatsapp` to link".to_owned()),
        ),
        StoreState::Corrupt(why) => (
            StatusState::Corrupt,
            Some(format!(
                "the session store cannot be read ({why}); run `hermes whatsapp repair` to link again (a backup is kept)"
            )),
        ),
    };
    // The gateway's record knows what the store cannot: the live state, and whether WhatsApp
    // ended a session that still looks linked on disk.
    let mut linked = store.is_linked();
    if let (true, Some(r)) = (linked, record)
        && (gateway_running || outlasts_the_gateway(r.state))
    {
        state = StatusState::Link(r.state);
        fix = r.fix.clone();
        linked = !ended_by_whatsapp(r.state);
    }
    if let Some(short) = shortage {
        let paused = LinkState::StoragePaused { since: 0, then: Resume::Connect };
        state = StatusState::Link(paused.kind());
        fix = short.fix.clone().or_else(|| paused.fix().map(str::to_owned));
    }
    let usable = linked && carries_messages(state);
    Verdict { state, linked, usable, fix }
}

/// A state that stays true after the gateway exits: only the user gets the link going again.
fn outlasts_the_gateway(name: StateName) -> bool {
    match name {
        StateName::LoggedOut | StateName::DeviceRemoved | StateName::ClientOutdated | StateName::Stopped => true,
        StateName::NotLinked
        | StateName::Connecting
        | StateName::Connected
        | StateName::Reconnecting
        | StateName::Replaced
        | StateName::TemporarilyBanned
        | StateName::StoragePaused => false,
    }
}

/// WhatsApp ended the session: the device on disk is linked to nothing any more.
fn ended_by_whatsapp(name: StateName) -> bool {
    match name {
        StateName::LoggedOut | StateName::DeviceRemoved => true,
        StateName::NotLinked
        | StateName::Connecting
        | StateName::Connected
        | StateName::Reconnecting
        | StateName::Replaced
        | StateName::TemporarilyBanned
        | StateName::StoragePaused
        | StateName::ClientOutdated
        | StateName::Stopped => false,
    }
}

/// Messages get through now, or will without the user doing anything.
fn carries_messages(state: StatusState) -> bool {
    match state {
        StatusState::Link(
            StateName::TemporarilyBanned | StateName::ClientOutdated | StateName::Stopped | StateName::StoragePaused,
        ) => false,
        StatusState::Link(
            StateName::NotLinked
            | StateName::Connecting
            | StateName::Connected
            | StateName::Reconnecting
            | StateName::Replaced
            | StateName::LoggedOut
            | StateName::DeviceRemoved,
        )
        | StatusState::Linked
        | StatusState::NotLinked
        | StatusState::Empty
        | StatusState::Corrupt => true,
    }
}

/// When the last message arrived, from the journal; reading it never creates it.
async fn last_received(state_dir: &Path) -> Option<i64> {
    let db = state_dir.join("hermes.db");
    tokio::task::spawn_blocking(move || {
        hermes_store::Store::open_read_only(&db).ok().flatten().and_then(|s| s.last_received().ok().flatten())
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LinkedAccount;

    fn linked() -> StoreState {
        StoreState::Linked(LinkedAccount { phone: "15551234567".into(), lid: None, name: None, device: 3 })
    }

    fn record(state: StateName) -> LinkRecord {
        LinkRecord {
            pid: 7,
            state,
            since: 0,
            fix: Some(format!("fix for {}", state.as_str())),
            last_connected: None,
            reconnects: vec![],
        }
    }

    /// One line per case: the store, the recorded state, whether its gateway runs, whether the
    /// disk is below the reserve; then the state shown, linked, usable.
    #[track_caller]
    fn check(
        store: StoreState,
        recorded: Option<StateName>,
        running: bool,
        disk_low: bool,
        expected: (&str, bool, bool),
    ) {
        let r = recorded.map(record);
        let low = reserve::judge(Path::new("/h/state"), Space { free: 0, total: 1 << 40 }, 1 << 20);
        let v = judge(&store, r.as_ref(), running, disk_low.then_some(&low));
        assert_eq!((v.state.as_str(), v.linked, v.usable), expected, "{v:?}");
    }

    #[test]
    fn the_record_speaks_while_its_gateway_runs_or_when_the_session_ended() {
        use StateName as N;
        check(linked(), None, false, false, ("linked", true, true));
        check(StoreState::Missing, None, false, false, ("not_linked", false, false));
        check(StoreState::NotLinked, Some(N::Connected), true, false, ("not_linked", false, false));
        check(StoreState::Empty, None, false, false, ("empty", false, false));
        check(StoreState::Corrupt("x".into()), None, false, false, ("corrupt", false, false));
        check(linked(), Some(N::Connected), true, false, ("connected", true, true));
        check(linked(), Some(N::Reconnecting), true, false, ("reconnecting", true, true));
        // A gateway that is gone says nothing about the live state...
        check(linked(), Some(N::Connected), false, false, ("linked", true, true));
        check(linked(), Some(N::TemporarilyBanned), false, false, ("linked", true, true));
        // ...but what WhatsApp ended stays ended.
        check(linked(), Some(N::LoggedOut), false, false, ("logged_out", false, false));
        check(linked(), Some(N::DeviceRemoved), false, false, ("device_removed", false, false));
        check(linked(), Some(N::ClientOutdated), false, false, ("client_outdated", true, false));
        check(linked(), Some(N::Stopped), false, false, ("stopped", true, false));
        check(linked(), Some(N::TemporarilyBanned), true, false, ("temporarily_banned", true, false));
        check(linked(), Some(N::Connected), true, true, ("storage_paused", true, false));
    }

    #[test]
    fn the_fix_comes_from_where_the_state_does() {
        let r = record(StateName::LoggedOut);
        let v = judge(&linked(), Some(&r), false, None);
        assert_eq!(v.fix.as_deref(), Some("fix for logged_out"));
        let v = judge(&StoreState::Missing, None, false, None);
        assert!(v.fix.is_some_and(|f| f.contains("hermes whatsapp")));
    }

    /// Issue 25: on a volume smaller than the reserve, status said to free some space, which
    /// cannot work; it says to lower the reserve or give the home a bigger volume.
    #[test]
    fn issue_25_a_volume_smaller_than_the_reserve_says_to_lower_it() {
        const MIB: u64 = 1024 * 1024;
        let r = record(StateName::StoragePaused);
        let small = reserve::judge(Path::new("/h/state"), Space { free: 20 * MIB, total: 24 * MIB }, 64 * MIB);
        let v = judge(&linked(), Some(&r), true, Some(&small));
        assert_eq!((v.state.as_str(), v.usable), ("storage_paused", false));
        let fix = v.fix.unwrap_or_default();
        assert!(fix.contains("set WHATSAPP_MIN_FREE_MB lower (e.g. 6)") && fix.contains("bigger volume"), "{fix}");
        assert!(!fix.contains("free some space"), "{fix}");
    }

    #[test]
    fn the_record_is_written_as_before_and_counts_reconnects_of_the_last_hour() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state_dir = tmp.path().join("state");
        let connected = LinkState::Connected { since: 0 };
        let mut recorder = Recorder::resume(&state_dir, 42);
        recorder.record(&connected, 100).expect("write");
        let written = std::fs::read_to_string(record_path(&state_dir)).expect("read");
        assert_eq!(
            written,
            r#"{"pid":42,"state":"connected","since":100,"fix":null,"last_connected":100,"reconnects":[]}"#
        );
        recorder
            .record(&LinkState::Reconnecting { attempt: 1, at: 0, cause: hermes_core::link::Transient::Network }, 200)
            .expect("write");
        recorder.record(&connected, 300).expect("write");
        // A new gateway carries the history on; a reconnect older than an hour is forgotten.
        let mut next = Recorder::resume(&state_dir, 43);
        let r = next.record(&connected, 4_000).expect("write");
        assert_eq!((r.pid, r.last_connected, r.reconnects), (43, Some(4_000), vec![4_000]));
        assert_eq!(read_record(&state_dir).map(|r| r.state), Some(StateName::Connected));
        forget_record(&state_dir);
        assert_eq!(read_record(&state_dir), None);
    }
}
