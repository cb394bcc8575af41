use super::*;

fn msg(id: &str) -> Inbound {
    Inbound {
        chat: "15551234567@s.whatsapp.net".into(),
        sender: "15551234567@s.whatsapp.net".into(),
        id: id.into(),
        sender_alt: Some("98765432109876@lid".into()),
        timestamp: 1_795_000_000,
        text: Some("hello".into()),
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
        store.mark_done(first).expect("done");
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
