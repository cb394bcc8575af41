use super::*;
use crate::{Code, Delivery, Reply, Role};

fn msg(id: &str) -> Inbound {
    Inbound {
        chat: "15551234567@s.whatsapp.net".into(),
        sender: "15551234567@s.whatsapp.net".into(),
        id: id.into(),
        sender_alt: Some("98765432109876@lid".into()),
        timestamp: 1_795_000_000,
        text: Some("hello".into()),
        from_me: false,
        mentions: Vec::new(),
        quoted: None,
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("hermes.db")).expect("open")
}

#[test]
fn a_redelivery_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let first = store.journal(&[msg("A"), msg("B")]).expect("journal");
    assert!(matches!(first.as_slice(), [Journaled::New(_), Journaled::New(_)]), "{first:?}");
    let again = store.journal(&[msg("B"), msg("C")]).expect("journal");
    assert!(matches!(again.as_slice(), [Journaled::Duplicate, Journaled::New(_)]), "{again:?}");
    assert_eq!(store.pending(10).expect("pending").len(), 3);
    // The same id from another sender in another chat is another message.
    let mut other = msg("A");
    other.chat = "4915112345678@s.whatsapp.net".into();
    other.sender = other.chat.clone();
    assert!(matches!(store.journal(&[other]).expect("journal").as_slice(), [Journaled::New(_)]));
}

#[test]
fn a_batch_is_kept_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let mut bad = msg("");
    bad.text = None;
    assert!(store.journal(&[msg("A"), bad]).is_err(), "an invalid row fails the batch");
    assert!(store.pending(10).expect("pending").is_empty(), "and nothing of it was kept");
    assert!(!store.is_journaled("15551234567@s.whatsapp.net", "15551234567@s.whatsapp.net", "A").expect("query"));
}

#[test]
fn the_journal_survives_reopening_and_done_rows_leave_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir);
        store.journal(&[msg("A"), msg("B")]).expect("journal");
        let (first, _) = store.pending(1).expect("pending").remove(0);
        store.mark_done(&[first]).expect("done");
    }
    let store = open(&dir);
    assert_eq!(store.schema_version().expect("version"), migrations::LATEST);
    let pending: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id).collect();
    assert_eq!(pending, vec!["B"]);
}

#[test]
fn drops_are_recorded_with_their_reason_and_close_the_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A")]).expect("journal");
    let (seq, _) = store.pending(1).expect("pending").remove(0);
    let drop = Drop {
        at: 1_795_000_100,
        chat: "15551234567@s.whatsapp.net".into(),
        sender: "15551234567@s.whatsapp.net".into(),
        sender_forms: "15551234567,98765432109876@lid".into(),
        rule: "not_allowlisted".into(),
        nearest: Some("#2 '555 123 4567'".into()),
        hint: Some("entry '555 123 4567' (#2 in WHATSAPP_ALLOWED_USERS) has no country code; write 15551234567".into()),
    };
    store.record_drop(Some(seq), &drop).expect("drop");
    assert!(store.pending(10).expect("pending").is_empty());
    assert_eq!(store.drops_since(1_795_000_000).expect("drops"), vec![drop]);
    assert!(store.drops_since(1_795_000_101).expect("drops").is_empty());
}

#[test]
fn a_database_from_a_newer_hermes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let conn = Connection::open(dir.path().join("hermes.db")).expect("raw open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    match Store::open(&dir.path().join("hermes.db")) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        other => panic!("expected TooNew, got {other:?}"),
    }
}

fn lid_msg(id: &str) -> Inbound {
    Inbound { chat: "98765432109876@lid".into(), sender: "98765432109876@lid".into(), sender_alt: None, ..msg(id) }
}

fn a_drop(rule: &str) -> Drop {
    Drop {
        at: 1_795_000_000,
        chat: "98765432109876@lid".into(),
        sender: "98765432109876@lid".into(),
        sender_forms: "98765432109876@lid".into(),
        rule: rule.into(),
        nearest: None,
        hint: Some("no phone number known".into()),
    }
}

#[test]
fn a_parked_lid_message_returns_when_its_phone_number_is_learned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[lid_msg("L1")]).expect("journal");
    let (seq, _) = store.pending(1).expect("pending").remove(0);
    store.park(seq, &a_drop("lid_without_phone")).expect("park");
    assert!(store.pending(10).expect("pending").is_empty());
    assert_eq!(store.drops_since(0).expect("drops").len(), 1, "the drop is in the ledger");
    // A later message from the same person, carrying both forms, teaches the mapping.
    let mut later = lid_msg("L2");
    later.sender_alt = Some("15551234567@s.whatsapp.net".into());
    store.journal(&[later]).expect("journal");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id).collect();
    assert_eq!(ids, vec!["L1", "L2"], "the parked message is back, in its place");
    assert_eq!(store.alias_of("98765432109876@lid").expect("alias").as_deref(), Some("15551234567@s.whatsapp.net"));
    assert_eq!(store.alias_of("15551234567@s.whatsapp.net").expect("alias").as_deref(), Some("98765432109876@lid"));
    assert_eq!(store.learn_alias("1@s.whatsapp.net", "2@s.whatsapp.net", 0).expect("learn"), 0, "not a mapping");
}

#[test]
fn a_reply_is_committed_whole_with_its_history_and_answered_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A"), msg("B")]).expect("journal");
    let seqs: Vec<i64> = store.pending(10).expect("pending").into_iter().map(|(s, _)| s).collect();
    let chat = "15551234567@s.whatsapp.net";
    let messages = vec![("OUT1".to_owned(), "part 1".to_owned()), ("OUT2".to_owned(), "part 2".to_owned())];
    let reply =
        Reply { chat, answers: &seqs, exchange: Some(("hello\nhello", "part 1 part 2")), messages: &messages, at: 5 };
    store.commit_reply(&reply).expect("commit");
    assert!(store.pending(10).expect("pending").is_empty(), "both messages are answered");
    let unsent = store.unsent(10).expect("unsent");
    assert_eq!(unsent.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["OUT1", "OUT2"]);
    assert_eq!(store.history(chat, 10).expect("history").len(), 2);

    // An id can only be used once: a second commit with it fails and changes nothing.
    store.journal(&[msg("C")]).expect("journal");
    let c = store.pending(1).expect("pending")[0].0;
    let again = Reply { answers: &[c], exchange: Some(("x", "y")), ..reply };
    assert!(store.commit_reply(&again).is_err());
    assert_eq!(store.pending(10).expect("pending").len(), 1, "C still waits");
    assert_eq!(store.history(chat, 10).expect("history").len(), 2, "no half-written history");

    store.send_failed(unsent[0].seq, "not connected").expect("failed");
    store.mark_sent(unsent[0].seq, 6).expect("sent");
    assert_eq!(store.delivery("OUT1").expect("q"), Some(Delivery::Sent { at: 6 }));
    assert_eq!(store.delivery("OUT2").expect("q"), Some(Delivery::Queued));
    assert_eq!(store.delivery("NOPE").expect("q"), None);
    assert_eq!(store.unsent_count().expect("count"), 1);
}

#[test]
fn history_is_a_window_and_reset_forgets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let chat = "c@s.whatsapp.net";
    for i in 0..5 {
        let (u, a) = (format!("q{i}"), format!("a{i}"));
        let r = Reply { chat, answers: &[], exchange: Some((&u, &a)), messages: &[], at: i };
        store.commit_reply(&r).expect("commit");
    }
    let window = store.history(chat, 4).expect("history");
    assert_eq!(window.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["q3", "a3", "q4", "a4"]);
    assert_eq!(window[0].0, Role::User);
    assert_eq!(store.forget(chat).expect("forget"), 10);
    assert!(store.history(chat, 4).expect("history").is_empty());
}

#[test]
fn approvals_come_from_unexpired_codes_and_can_be_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let code = |c: &str, at| Code {
        code: c.into(),
        sender: format!("{c}@s.whatsapp.net"),
        chat: format!("{c}@s.whatsapp.net"),
        created_at: at,
        approved_at: None,
    };
    store.add_code(&code("OLDCODE2", 100)).expect("add");
    store.add_code(&code("NEWCODE2", 5000)).expect("add");
    assert_eq!(store.approve("OLDCODE2", 1400, 5001).expect("approve"), None, "expired");
    assert_eq!(store.approve("NEWCODE2", 1400, 5001).expect("approve").as_deref(), Some("NEWCODE2@s.whatsapp.net"));
    assert_eq!(store.approve("NEWCODE2", 1400, 5002).expect("approve"), None, "used once");
    assert_eq!(store.approvals().expect("list").len(), 1);
    assert_eq!(store.codes_since(1400).expect("codes")[0].approved_at, Some(5001));
    assert!(store.revoke("NEWCODE2@s.whatsapp.net").expect("revoke"));
    assert!(!store.revoke("NEWCODE2@s.whatsapp.net").expect("revoke"));
    assert!(store.approvals().expect("list").is_empty());
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hermes.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(migrations::MIGRATIONS[0]).expect("v1");
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO inbox (chat, sender, msg_id, ts, text) VALUES ('c@s.whatsapp.net', 'c@s.whatsapp.net', 'OLD', 1, 'hi');",
        )
        .expect("v1 row");
    }
    let store = Store::open(&path).expect("migrate");
    assert_eq!(store.schema_version().expect("version"), migrations::LATEST);
    let pending = store.pending(10).expect("pending");
    assert_eq!(pending.len(), 1);
    assert!(!pending[0].1.from_me);
}

fn text_of(store: &Store, seq: i64) -> Option<String> {
    store.conn.query_row("SELECT text FROM inbox WHERE seq = ?1", [seq], |r| r.get(0)).expect("row")
}

/// Issue 11: a refused sender's message is kept only as a short preview.
#[test]
fn issue_11_a_refused_message_keeps_only_a_preview() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let mut long = msg("LONG");
    long.text = Some("x".repeat(5000));
    let mut parked = msg("PARKED");
    parked.text = Some("y".repeat(5000));
    let seqs: Vec<i64> = store
        .journal(&[long, parked, msg("SHORT")])
        .expect("journal")
        .into_iter()
        .map(|j| match j {
            Journaled::New(s) => s,
            Journaled::Duplicate => panic!("new"),
        })
        .collect();
    store.record_drop(Some(seqs[0]), &a_drop("not_allowlisted")).expect("drop");
    store.park(seqs[1], &a_drop("not_allowlisted")).expect("park");
    store.record_drop(Some(seqs[2]), &a_drop("not_allowlisted")).expect("drop");
    assert_eq!(text_of(&store, seqs[0]), Some(format!("{}…", "x".repeat(80))));
    assert_eq!(text_of(&store, seqs[1]).map(|t| t.len()), Some(5000), "a parked message may still be answered");
    assert_eq!(text_of(&store, seqs[2]).as_deref(), Some("hello"));
}

/// Issue 11: nothing was ever pruned. Old handled rows go; waiting messages, unsent replies
/// and approvals stay whatever their age.
#[test]
fn issue_11_prune_removes_the_old_and_keeps_what_still_matters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let (old, new) = (1_000, 2_000);
    let mut handled = msg("OLD-HANDLED");
    handled.timestamp = old;
    let mut waiting = msg("OLD-WAITING");
    waiting.timestamp = old;
    let mut recent = msg("RECENT");
    recent.timestamp = new;
    store.journal(&[handled, waiting, recent]).expect("journal");
    let rows = store.pending(10).expect("pending");
    let seq_of = |id: &str| rows.iter().find(|(_, m)| m.id == id).expect("row").0;
    let reply = [("SENT".to_owned(), "an old answer".to_owned())];
    store
        .commit_reply(&Reply {
            chat: "15551234567@s.whatsapp.net",
            answers: &[seq_of("OLD-HANDLED")],
            exchange: Some(("q", "a")),
            messages: &reply,
            at: old,
        })
        .expect("reply");
    let sent = store.unsent(10).expect("unsent")[0].seq;
    store.mark_sent(sent, old).expect("sent");
    store.enqueue("15551234567@s.whatsapp.net", &[("UNSENT".into(), "still to send".into())], old).expect("enqueue");
    store.record_drop(None, &Drop { at: old, ..a_drop("not_allowlisted") }).expect("old drop");
    store.record_drop(None, &Drop { at: new, ..a_drop("not_allowlisted") }).expect("new drop");
    let code = Code {
        code: "ABCDEFGH".into(),
        sender: "4915112345678@s.whatsapp.net".into(),
        chat: "4915112345678@s.whatsapp.net".into(),
        created_at: old,
        approved_at: None,
    };
    store.add_code(&code).expect("code");
    store.approve("ABCDEFGH", 0, old).expect("approve");

    let pruned = store.prune(1_500).expect("prune");
    assert_eq!(pruned, Pruned { messages: 1, drops: 1, replies: 1, history: 2, codes: 1 });
    let left: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id).collect();
    assert_eq!(left, ["OLD-WAITING", "RECENT"], "waiting messages stay, however old");
    assert_eq!(store.unsent(10).expect("unsent").len(), 1, "an unsent reply stays");
    assert_eq!(store.drops_since(0).expect("drops").len(), 1);
    assert_eq!(store.approvals().expect("approvals").len(), 1, "an approval is the owner's to revoke");
    assert_eq!(store.prune(1_500).expect("again"), Pruned::default());
}

/// Issue 12: an abandoned message read as sent (`sent_at = -1` is `Some(Some(_))`), so
/// `hermes send` said "Sent" for a message WhatsApp never took.
#[test]
fn an_abandoned_message_is_not_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.enqueue("15551234567@s.whatsapp.net", &[("GIVEN-UP".into(), "hello".into())], 1).expect("enqueue");
    let seq = store.unsent(10).expect("unsent")[0].seq;
    store.abandon(seq, "refused eight times").expect("abandon");
    assert_eq!(store.delivery("GIVEN-UP").expect("q"), Some(Delivery::Abandoned));
}
