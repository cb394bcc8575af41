use hermes_core::access::Rule;
use hermes_core::identity::MessageId;

use super::*;
use crate::{Change, Code, Delivery, Offered, Reply, Role};

fn j(s: &str) -> Jid {
    Jid::parse(s).expect("a JID")
}

fn msg(id: &str) -> Inbound {
    let alice = j("15551234567@s.whatsapp.net");
    Inbound {
        sender_alt: Some(j("98765432109876@lid")),
        ..Inbound::text(alice.clone(), alice, MessageId::new(id), 1_795_000_000, "hello")
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
    other.chat = j("4915112345678@s.whatsapp.net");
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
    assert!(
        !store
            .is_journaled(&j("15551234567@s.whatsapp.net"), &j("15551234567@s.whatsapp.net"), &MessageId::new("A"))
            .expect("query")
    );
}

#[test]
fn the_journal_survives_reopening_and_done_rows_leave_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = open(&dir);
        store.journal(&[msg("A"), msg("B")]).expect("journal");
        let (first, _) = store.pending(1).expect("pending").remove(0);
        store.settle(first, &Settlement { learned: None, outcome: Outcome::Ignored }).expect("done");
    }
    let store = open(&dir);
    assert_eq!(store.schema_version().expect("version"), migrations::LATEST);
    let pending: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(pending, vec!["B"]);
}

#[test]
fn drops_are_recorded_with_their_reason_and_close_the_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A")]).expect("journal");
    let (seq, _) = store.pending(1).expect("pending").remove(0);
    let drop = Dropped {
        at: 1_795_000_100,
        chat: j("15551234567@s.whatsapp.net"),
        sender: j("15551234567@s.whatsapp.net"),
        sender_forms: vec![j("15551234567@s.whatsapp.net"), j("98765432109876@lid")],
        rule: DropRule::Access(Rule::NotAllowlisted),
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
    Inbound { chat: j("98765432109876@lid"), sender: j("98765432109876@lid"), sender_alt: None, ..msg(id) }
}

fn a_drop(rule: DropRule) -> Dropped {
    Dropped {
        at: 1_795_000_000,
        chat: j("98765432109876@lid"),
        sender: j("98765432109876@lid"),
        sender_forms: vec![j("98765432109876@lid")],
        rule,
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
    park(&mut store, seq, a_drop(DropRule::LidWithoutPhone));
    assert!(store.pending(10).expect("pending").is_empty());
    assert_eq!(store.drops_since(0).expect("drops").len(), 1, "the drop is in the ledger");
    // A later message from the same person, carrying both forms, teaches the mapping.
    let mut later = lid_msg("L2");
    later.sender_alt = Some(j("15551234567@s.whatsapp.net"));
    store.journal(&[later]).expect("journal");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(ids, vec!["L1", "L2"], "the parked message is back, in its place");
    assert_eq!(store.alias_of(&j("98765432109876@lid")).expect("alias"), Some(j("15551234567@s.whatsapp.net")));
    assert_eq!(store.alias_of(&j("15551234567@s.whatsapp.net")).expect("alias"), Some(j("98765432109876@lid")));
    // Two phone numbers are not a mapping: nothing is learned.
    store.journal(&[msg("L3")]).expect("journal");
    let seq = store.pending(10).expect("pending").last().expect("L3").0;
    let learned = Some((j("1@s.whatsapp.net"), j("2@s.whatsapp.net")));
    store.settle(seq, &Settlement { learned, outcome: Outcome::Admitted }).expect("settle");
    assert_eq!(store.alias_of(&j("1@s.whatsapp.net")).expect("alias"), None, "not a mapping");
}

fn park(store: &mut Store, seq: i64, d: Dropped) {
    store.settle(seq, &Settlement { learned: None, outcome: Outcome::Parked(d) }).expect("park");
}

#[test]
fn settling_writes_the_decision_and_what_was_learned_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[lid_msg("L1"), msg("A"), msg("B")]).expect("journal");
    let rows = store.pending(10).expect("pending");
    // A LID parked earlier comes back when a later decision learns its number.
    park(&mut store, rows[0].0, a_drop(DropRule::LidWithoutPhone));
    let learned = Some((j("98765432109876@lid"), j("15551234567@s.whatsapp.net")));
    store.settle(rows[1].0, &Settlement { learned, outcome: Outcome::Admitted }).expect("settle");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(ids, ["L1", "A", "B"], "admitted stays waiting (the answer commits it); the parked one is back");
    let facts = store.facts(&rows[2].1, 0).expect("facts");
    assert_eq!(facts.alias, Some(j("98765432109876@lid")));
    assert!(!facts.ours);
    // An offered code: the code, its message and the drop, and the message handled.
    let code = Code { code: "ABCDEFGH".into(), sender: j(ALICE), chat: j(ALICE), created_at: 10, approved_at: None };
    let dropped = a_drop(DropRule::Access(Rule::AllowlistEmpty));
    let offered = Outcome::Offered(Box::new(Offered {
        code,
        dropped,
        message: (MessageId::new("CODE-MSG"), "your code".into()),
    }));
    store.settle(rows[2].0, &Settlement { learned: None, outcome: offered }).expect("offer");
    assert_eq!(store.unsent(10).expect("unsent")[0].id, "CODE-MSG");
    assert_eq!(store.drops_since(0).expect("drops").len(), 2);
    let facts = store.facts(&rows[2].1, 0).expect("facts");
    assert_eq!(facts.offers.len(), 1);
    store.settle(rows[1].0, &Settlement { learned: None, outcome: Outcome::Ignored }).expect("ignore");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(ids, ["L1"]);
}

const ALICE: &str = "15551234567@s.whatsapp.net";

/// Two copies of one message can meet in one batch: one undecryptable (another client of the
/// device read it: a stand-in) and one readable. Whatever the order, the text is kept.
#[test]
fn a_readable_copy_replaces_an_unreadable_stand_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let stand_in = |id: &str| Inbound { text: None, unreadable: true, ..msg(id) };
    let out = store.journal(&[stand_in("A"), msg("A"), msg("B"), stand_in("B")]).expect("journal");
    assert!(
        matches!(out.as_slice(), [Journaled::New(_), Journaled::New(_), Journaled::New(_), Journaled::Duplicate]),
        "{out:?}"
    );
    let rows = store.pending(10).expect("pending");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, m)| m.text.as_deref() == Some("hello") && !m.unreadable), "{rows:?}");
    assert_eq!(
        rows[0].0,
        match out[0] {
            Journaled::New(s) => s,
            Journaled::Duplicate => 0,
        },
        "the row kept its place"
    );
}

/// Issue 12 review: a message handled twice (a read taken while another handling ran) must
/// not be answered twice: the second commit fails whole and changes nothing.
#[test]
fn a_message_already_handled_cannot_be_answered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A")]).expect("journal");
    let seq = store.pending(1).expect("pending")[0].0;
    let chat = j(ALICE);
    let first = [(MessageId::new("OUT1"), "one".to_owned())];
    store
        .commit_reply(&Reply {
            chat: &chat,
            answers: &[seq],
            exchange: Some(("q", "a")),
            messages: &first,
            files: &[],
            at: 1,
            turn: None,
        })
        .expect("first answer");
    let second = [(MessageId::new("OUT2"), "two".to_owned())];
    let again = Reply {
        chat: &chat,
        answers: &[seq],
        exchange: Some(("q", "a")),
        messages: &second,
        files: &[],
        at: 2,
        turn: None,
    };
    assert!(matches!(store.commit_reply(&again), Err(StoreError::NotWaiting(s)) if s == seq));
    assert_eq!(store.unsent(10).expect("unsent").len(), 1, "no second reply queued");
    assert_eq!(store.history(&chat, 10).expect("history").len(), 2, "no second exchange");
    let dropped =
        Settlement { learned: None, outcome: Outcome::Dropped(a_drop(DropRule::Access(Rule::NotAllowlisted))) };
    assert!(matches!(store.settle(seq, &dropped), Err(StoreError::NotWaiting(_))));
    assert!(store.drops_since(0).expect("drops").is_empty(), "no ledger row for it either");
}

/// Issue 12: a version 3 file (`done` 0/1/2, `sent_at = -1`) reads the same in words.
#[test]
fn a_version_3_file_is_migrated_to_states_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hermes.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        for m in &migrations::MIGRATIONS[..3] {
            conn.execute_batch(m).expect("old schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO inbox (chat, sender, msg_id, ts, text, done) VALUES
               ('c@s.whatsapp.net', 'c@s.whatsapp.net', 'WAITING', 1, 'a', 0),
               ('c@s.whatsapp.net', 'c@s.whatsapp.net', 'HANDLED', 1, 'b', 1),
               ('98765432109876@lid', '98765432109876@lid', 'PARKED', 1, 'c', 2);
             INSERT INTO outbox (chat, msg_id, text, created_at, sent_at) VALUES
               ('c@s.whatsapp.net', 'QUEUED', 'x', 1, NULL),
               ('c@s.whatsapp.net', 'SENT', 'y', 1, 7),
               ('c@s.whatsapp.net', 'GIVEN-UP', 'z', 1, -1);",
        )
        .expect("old rows");
    }
    let mut store = Store::open(&path).expect("migrate");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(ids, ["WAITING"]);
    assert_eq!(store.delivery(&MessageId::new("QUEUED")).expect("q"), Some(Delivery::Queued));
    assert_eq!(store.delivery(&MessageId::new("SENT")).expect("q"), Some(Delivery::Sent { at: 7 }));
    assert_eq!(store.delivery(&MessageId::new("GIVEN-UP")).expect("q"), Some(Delivery::Abandoned));
    assert_eq!(store.unsent(10).expect("unsent").len(), 1);
    // The parked row is still parked: learning its number (while deciding another) brings it back.
    let waiting = store.pending(1).expect("pending")[0].0;
    let learned = Some((j("98765432109876@lid"), j(ALICE)));
    store.settle(waiting, &Settlement { learned, outcome: Outcome::Admitted }).expect("learn");
    let ids: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
    assert_eq!(ids, ["WAITING", "PARKED"]);
}

#[test]
fn a_reply_is_committed_whole_with_its_history_and_answered_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A"), msg("B")]).expect("journal");
    let seqs: Vec<i64> = store.pending(10).expect("pending").into_iter().map(|(s, _)| s).collect();
    let chat = &j("15551234567@s.whatsapp.net");
    let messages = vec![(MessageId::new("OUT1"), "part 1".to_owned()), (MessageId::new("OUT2"), "part 2".to_owned())];
    let reply = Reply {
        chat,
        answers: &seqs,
        exchange: Some(("hello\nhello", "part 1 part 2")),
        messages: &messages,
        files: &[],
        at: 5,
        turn: None,
    };
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
    assert_eq!(store.delivery(&MessageId::new("OUT1")).expect("q"), Some(Delivery::Sent { at: 6 }));
    assert_eq!(store.delivery(&MessageId::new("OUT2")).expect("q"), Some(Delivery::Queued));
    assert_eq!(store.delivery(&MessageId::new("NOPE")).expect("q"), None);
    assert_eq!(store.unsent_count().expect("count"), 1);
}

#[test]
fn history_is_a_window_and_reset_forgets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let chat = &j("c@s.whatsapp.net");
    for i in 0..5 {
        let (u, a) = (format!("q{i}"), format!("a{i}"));
        let r = Reply { chat, answers: &[], exchange: Some((&u, &a)), messages: &[], files: &[], at: i, turn: None };
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
        sender: j(&format!("{c}@s.whatsapp.net")),
        chat: j(&format!("{c}@s.whatsapp.net")),
        created_at: at,
        approved_at: None,
    };
    store.add_code(&code("OLDCODE2", 100)).expect("add");
    store.add_code(&code("NEWCODE2", 5000)).expect("add");
    assert_eq!(store.approve("OLDCODE2", 1400, 5001).expect("approve"), None, "expired");
    assert_eq!(store.approve("NEWCODE2", 1400, 5001).expect("approve"), Some(j("NEWCODE2@s.whatsapp.net")));
    assert_eq!(store.approve("NEWCODE2", 1400, 5002).expect("approve"), None, "used once");
    assert_eq!(store.approvals().expect("list").len(), 1);
    assert_eq!(store.codes_since(1400).expect("codes")[0].approved_at, Some(5001));
    assert!(store.revoke(&j("NEWCODE2@s.whatsapp.net")).expect("revoke"));
    assert!(!store.revoke(&j("NEWCODE2@s.whatsapp.net")).expect("revoke"));
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
    let not_allowlisted = DropRule::Access(Rule::NotAllowlisted);
    store.record_drop(Some(seqs[0]), &a_drop(not_allowlisted)).expect("drop");
    park(&mut store, seqs[1], a_drop(not_allowlisted));
    store.record_drop(Some(seqs[2]), &a_drop(not_allowlisted)).expect("drop");
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
    let reply = [(MessageId::new("SENT"), "an old answer".to_owned())];
    store
        .commit_reply(&Reply {
            chat: &j("15551234567@s.whatsapp.net"),
            answers: &[seq_of("OLD-HANDLED")],
            exchange: Some(("q", "a")),
            messages: &reply,
            files: &[],
            at: old,
            turn: None,
        })
        .expect("reply");
    let sent = store.unsent(10).expect("unsent")[0].seq;
    store.mark_sent(sent, old).expect("sent");
    store
        .enqueue(&j("15551234567@s.whatsapp.net"), &[(MessageId::new("UNSENT"), "still to send".into())], old)
        .expect("enqueue");
    let not_allowlisted = DropRule::Access(Rule::NotAllowlisted);
    store.record_drop(None, &Dropped { at: old, ..a_drop(not_allowlisted) }).expect("old drop");
    store.record_drop(None, &Dropped { at: new, ..a_drop(not_allowlisted) }).expect("new drop");
    let code = Code {
        code: "ABCDEFGH".into(),
        sender: j("4915112345678@s.whatsapp.net"),
        chat: j("4915112345678@s.whatsapp.net"),
        created_at: old,
        approved_at: None,
    };
    store.add_code(&code).expect("code");
    store.approve("ABCDEFGH", 0, old).expect("approve");

    let pruned = store.prune(1_500).expect("prune");
    assert_eq!(pruned, Pruned { messages: 1, drops: 1, replies: 1, history: 2, codes: 1, turns: 0 });
    let left: Vec<String> = store.pending(10).expect("pending").into_iter().map(|(_, m)| m.id.to_string()).collect();
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
    store
        .enqueue(&j("15551234567@s.whatsapp.net"), &[(MessageId::new("GIVEN-UP"), "hello".into())], 1)
        .expect("enqueue");
    let seq = store.unsent(10).expect("unsent")[0].seq;
    store.abandon(seq, "refused eight times").expect("abandon");
    assert_eq!(store.delivery(&MessageId::new("GIVEN-UP")).expect("q"), Some(Delivery::Abandoned));
}

#[test]
fn an_edit_is_taken_by_its_waiting_message_and_a_delete_settles_it_unanswered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let edit = |id: &str, of: &str, text: &str| Inbound {
        text: Some(format!("[edited] {text}")),
        change: Some(Change::Edit { of: MessageId::new(of), text: text.into() }),
        ..msg(id)
    };
    let seqs = |o: Vec<Journaled>| {
        o.into_iter()
            .map(|j| match j {
                Journaled::New(s) => s,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let s = seqs(store.journal(&[msg("A"), msg("B")]).expect("journal"));
    let e = seqs(store.journal(&[edit("E1", "A", "hello again")]).expect("journal"));
    let now = store.current(&[s[0], e[0]]).expect("current");
    assert_eq!((now[0].text.as_deref(), now[0].absorbed_by, now[0].waiting), (Some("hello again"), Some(e[0]), true));
    assert_eq!(now[1].text.as_deref(), Some("[edited] hello again"), "the edit keeps its note");
    let r = seqs(
        store
            .journal(&[Inbound { text: None, change: Some(Change::Revoke { of: MessageId::new("B") }), ..msg("R1") }])
            .expect("journal"),
    );
    assert!(!store.current(&[s[1]]).expect("current")[0].waiting, "deleted before it was answered");
    // A redelivered edit changes nothing again; an edit of a settled message is only a note.
    assert_eq!(store.journal(&[edit("E1", "A", "hello again")]).expect("journal"), [Journaled::Duplicate]);
    let late = seqs(store.journal(&[edit("E2", "B", "too late")]).expect("journal"));
    let b = store.current(&[s[1], late[0], r[0]]).expect("current");
    assert_eq!((b[0].text.as_deref(), b[0].absorbed_by), (Some("hello"), None));
    assert_eq!(b[1].text.as_deref(), Some("[edited] too late"));

    // Edited twice, then deleted: neither edit is left to be read.
    let s2 = seqs(store.journal(&[msg("C")]).expect("journal"));
    let e1 = seqs(store.journal(&[edit("C1", "C", "first")]).expect("journal"));
    let e2 = seqs(store.journal(&[edit("C2", "C", "second")]).expect("journal"));
    let now = store.current(&[s2[0], e1[0], e2[0]]).expect("current");
    assert_eq!((now[0].text.as_deref(), now[0].absorbed_by), (Some("second"), Some(e2[0])));
    assert!(!now[1].waiting, "the first edit is settled by the second");
    store
        .journal(&[Inbound { text: None, change: Some(Change::Revoke { of: MessageId::new("C") }), ..msg("R2") }])
        .expect("journal");
    assert!(store.current(&[s2[0], e2[0]]).expect("current").iter().all(|c| !c.waiting), "deleted with its edit");
}

/// The message path reads beside the writer: a read never waits for a commit in progress
/// (it sees what was committed before it began), and it sees the commit once it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_sees_each_commit_and_never_waits_for_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("hermes.db")).expect("open");
    db.call(|s| s.journal(&[msg("A")])).await.expect("journal");
    let text = |db: &Db| db.read(|s| s.pending(10)).expect("read")[0].1.text.clone();
    assert_eq!(text(&db), Some("hello".to_owned()), "a commit is seen by the next read");

    // A write transaction held open on the writer, as a commit waiting for its fsync is.
    let (inside, in_transaction) = std::sync::mpsc::channel();
    let (finish, may_finish) = std::sync::mpsc::channel::<()>();
    let held = db.clone();
    let writer = async move {
        held.call(move |s| {
            s.conn.execute_batch("BEGIN IMMEDIATE; UPDATE inbox SET text = 'edited';")?;
            inside.send(()).expect("test alive");
            may_finish.recv().expect("test alive");
            s.conn.execute_batch("COMMIT")?;
            Ok(())
        })
        .await
    };
    let writer = tokio::spawn(writer);
    tokio::task::spawn_blocking(move || in_transaction.recv()).await.expect("join").expect("in the transaction");
    // On a thread of its own and bounded: a read that waited for the writer would hang the
    // test instead of failing it.
    let reader = db.clone();
    let beside =
        tokio::time::timeout(std::time::Duration::from_secs(10), tokio::task::spawn_blocking(move || text(&reader)))
            .await
            .expect("the read waited for the open transaction")
            .expect("join");
    assert_eq!(beside, Some("hello".to_owned()), "read beside the open transaction, as committed before it");
    finish.send(()).expect("writer alive");
    writer.await.expect("join").expect("commit");
    assert_eq!(text(&db), Some("edited".to_owned()), "the commit is seen once it ended");
}

#[test]
fn the_reader_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("hermes.db")).expect("open");
    let wrote = db.read(|s| Ok(s.conn.execute("DELETE FROM inbox", [])?));
    assert!(wrote.is_err(), "{wrote:?}");
}

/// A cached statement is planned once, on both connections: SQLite otherwise plans it again
/// each time a `LIMIT ?` is bound, which made every history and journal read parse its SQL.
#[test]
fn a_cached_statement_keeps_its_plan_when_its_limit_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = open(&dir);
    writer.journal(&[msg("A"), msg("B"), msg("C")]).expect("journal");
    let reader = Store::open_reader(&dir.path().join("hermes.db")).expect("reader");
    const SQL: &str = "SELECT seq FROM inbox WHERE state = ?1 ORDER BY seq LIMIT ?2";
    for (name, store) in [("writer", &writer), ("reader", &reader)] {
        for limit in 1..=4_i64 {
            let mut q = store.conn.prepare_cached(SQL).expect("prepare");
            let seqs: Vec<i64> = q
                .query_map(rusqlite::params!["waiting", limit], |r| r.get(0))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect();
            assert_eq!(seqs.len() as i64, limit.min(3), "the {name}'s limit is the one bound");
        }
        let q = store.conn.prepare_cached(SQL).expect("prepare");
        assert_eq!(q.get_status(rusqlite::StatementStatus::RePrepare), 0, "the {name} planned the statement again");
    }
}

/// A turn of Hermes Agent: kept before it is sent, closed with its reply; an answer under a
/// rotated transcript id moves the conversation to it, and `/new` starts the next generation.
#[test]
fn an_agent_turn_is_kept_until_its_reply_commits_and_its_session_follows_hermes() {
    use crate::{NewTurn, TurnEnd};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A"), msg("B")]).expect("journal");
    let seqs: Vec<i64> = store.pending(10).expect("pending").iter().map(|(s, _)| *s).collect();
    let chat = j(ALICE);
    let conversation = chat.to_string();
    let first = store.agent_session(&conversation).expect("session");
    assert_eq!(first.generation, 1);
    let turn = NewTurn {
        chat: &chat,
        conversation: &conversation,
        memory_key: "agent:main:whatsapp:dm:15551234567",
        idempotency_key: "key-1",
        body: "{\"messages\":[]}",
        asked: "hello\nhello",
        answers: &seqs,
        at: 10,
    };
    let opened = store.open_turn(&turn).expect("open");
    let id = opened.id;
    let open = store.open_turn_of(&chat).expect("read").expect("an open turn");
    assert_eq!(open, opened, "as kept");
    assert_eq!(
        (open.session_id.as_str(), open.body.as_str(), open.answers.clone()),
        (first.session_id.as_str(), "{\"messages\":[]}", seqs.clone())
    );
    assert_eq!(store.known_sessions().expect("known")[0].session_id, first.session_id);
    assert_eq!(store.resume_turn(id).expect("resume"), 1);
    let note = (MessageId::new("NOTE"), "still working".to_owned());
    assert!(store.note_turn(id, &chat, &note, 11).expect("note"));
    assert!(!store.note_turn(id, &chat, &note, 12).expect("note"), "one note per turn");
    // Hermes compressed the conversation and answered under a new id: adopted.
    let messages = [(MessageId::new("OUT"), "hi".to_owned())];
    let reply = Reply {
        chat: &chat,
        answers: &seqs,
        exchange: None,
        messages: &messages,
        files: &[],
        at: 20,
        turn: Some(TurnEnd::Answered { turn: id, session_id: Some("wa-rotated-1".into()) }),
    };
    store.commit_reply(&reply).expect("commit");
    assert_eq!(store.open_turn_of(&chat).expect("read"), None);
    assert_eq!(store.agent_session(&conversation).expect("session").session_id, "wa-rotated-1");
    assert_eq!(store.known_sessions().expect("known").len(), 2, "both ids lead back to the chat");
    assert_eq!(store.unsent(10).expect("unsent").len(), 2, "the note and the answer");
    // A turn for messages handled meanwhile is refused.
    assert!(matches!(store.open_turn(&turn), Err(StoreError::NotWaiting(_))));
    // `/new`: generation 2, a fresh id.
    let (old, new) = store.next_agent_session(&conversation, &chat, 30).expect("next");
    assert_eq!(old.session_id, "wa-rotated-1");
    assert_eq!(new.generation, 2);
    assert_eq!(new.session_id, hermes_core::hermes_api::session_id(&conversation, 2));
    assert_eq!(store.agent_session(&conversation).expect("session"), new);
}

/// An answer that comes back under a rotated id after `/new` began another generation does
/// not take the conversation back to the old one.
#[test]
fn a_late_rotation_does_not_undo_new() {
    use crate::{NewTurn, TurnEnd};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    store.journal(&[msg("A")]).expect("journal");
    let seqs: Vec<i64> = store.pending(10).expect("pending").iter().map(|(s, _)| *s).collect();
    let chat = j(ALICE);
    let conversation = chat.to_string();
    let first = store.agent_session(&conversation).expect("session");
    let turn = NewTurn {
        chat: &chat,
        conversation: &conversation,
        memory_key: "k",
        idempotency_key: "key-1",
        body: "{}",
        asked: "hello",
        answers: &seqs,
        at: 10,
    };
    let opened = store.open_turn(&turn).expect("open");
    assert_eq!(opened.session_id, first.session_id, "opened under the conversation's session");
    let id = opened.id;
    let (_, new) = store.next_agent_session(&conversation, &chat, 11).expect("next");
    let reply = Reply {
        chat: &chat,
        answers: &seqs,
        exchange: None,
        messages: &[],
        files: &[],
        at: 20,
        turn: Some(TurnEnd::Answered { turn: id, session_id: Some("wa-rotated-1".into()) }),
    };
    store.commit_reply(&reply).expect("commit");
    assert_eq!(store.agent_session(&conversation).expect("session"), new);
}

#[test]
fn a_reminder_run_is_delivered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let chat = j(ALICE);
    let messages = [(MessageId::new("R1"), "Reminder: water the plants".to_owned())];
    assert!(!store.reminder_delivered("job1", "run1").expect("read"));
    assert!(store.commit_reminder("job1", "run1", &chat, &messages, 5).expect("commit"));
    assert!(store.reminder_delivered("job1", "run1").expect("read"));
    assert!(!store.commit_reminder("job1", "run1", &chat, &messages, 6).expect("commit"), "delivered already");
    assert_eq!(store.unsent(10).expect("unsent").len(), 1);
}
