use super::*;

const S: u64 = 1000;

fn link() -> Link {
    let mut l = Link::new(RetryPolicy::default());
    assert_eq!(l.step(LinkEvent::Start { linked: true }, 0, 0.5), vec![Action::Connect]);
    l
}

fn connected(now: u64) -> Link {
    let mut l = link();
    l.step(LinkEvent::Connected, now, 0.5);
    l
}

#[track_caller]
fn check(l: &mut Link, event: LinkEvent, now: u64, unit: f64, state: LinkState, actions: &[Action]) {
    let got = l.step(event, now, unit);
    assert_eq!((l.state(), got.as_slice()), (&state, actions), "after {event:?}");
}

#[test]
fn not_linked_stays_put_and_never_connects() {
    let mut l = Link::new(RetryPolicy::default());
    check(&mut l, LinkEvent::Start { linked: false }, 0, 0.5, LinkState::NotLinked, &[]);
    check(&mut l, LinkEvent::RetryDue, 1, 0.5, LinkState::NotLinked, &[]);
    check(&mut l, LinkEvent::Disconnected(Transient::Network), 2, 0.5, LinkState::NotLinked, &[]);
    assert!(l.state().fix().is_some_and(|f| f.contains("hermes whatsapp")));
}

#[test]
fn transient_failures_back_off_and_reconnect() {
    let mut l = connected(0);
    // First retry within a second (full jitter: unit 0.5 -> 500 ms).
    let cause = Transient::Network;
    check(
        &mut l,
        LinkEvent::Disconnected(cause),
        10 * S,
        0.5,
        LinkState::Reconnecting { attempt: 1, at: 10 * S + 500, cause },
        &[Action::ConnectAt(10 * S + 500)],
    );
    check(&mut l, LinkEvent::RetryDue, 10 * S + 500, 0.5, LinkState::Connecting { attempt: 1 }, &[Action::Connect]);
    // The attempt fails: the ceiling doubles (2 s).
    check(
        &mut l,
        LinkEvent::Disconnected(Transient::Timeout),
        11 * S,
        0.5,
        LinkState::Reconnecting { attempt: 2, at: 12 * S, cause: Transient::Timeout },
        &[Action::ConnectAt(12 * S)],
    );
    check(&mut l, LinkEvent::RetryDue, 12 * S, 0.5, LinkState::Connecting { attempt: 2 }, &[Action::Connect]);
    check(&mut l, LinkEvent::Connected, 13 * S, 0.5, LinkState::Connected { since: 13 * S }, &[]);
    // A short-lived connection does not reset the backoff: 4 s ceiling now.
    let c = Transient::StreamError(503);
    check(
        &mut l,
        LinkEvent::Disconnected(c),
        20 * S,
        0.5,
        LinkState::Reconnecting { attempt: 3, at: 22 * S, cause: c },
        &[Action::ConnectAt(22 * S)],
    );
    // Reports while waiting change nothing.
    check(
        &mut l,
        LinkEvent::Disconnected(Transient::Network),
        21 * S,
        0.5,
        LinkState::Reconnecting { attempt: 3, at: 22 * S, cause: c },
        &[],
    );
}

#[test]
fn a_minute_connected_resets_the_backoff() {
    let mut l = link();
    for i in 0..5 {
        l.step(LinkEvent::Disconnected(Transient::Network), i * S, 0.5);
        l.step(LinkEvent::RetryDue, i * S + 1, 0.5);
    }
    l.step(LinkEvent::Connected, 100 * S, 0.5);
    // Connected for 60 s: the next failure is treated as the first.
    check(
        &mut l,
        LinkEvent::Disconnected(Transient::Network),
        160 * S,
        0.999,
        LinkState::Reconnecting { attempt: 1, at: 160 * S + 999, cause: Transient::Network },
        &[Action::ConnectAt(160 * S + 999)],
    );
}

#[test]
fn restart_515_reconnects_at_once() {
    let mut l = connected(0);
    check(
        &mut l,
        LinkEvent::Disconnected(Transient::Restart),
        5 * S,
        0.5,
        LinkState::Connecting { attempt: 0 },
        &[Action::Connect],
    );
}

#[test]
fn terminal_causes_stop_for_good_with_their_fix() {
    for (event, state, fix) in [
        (
            LinkEvent::LoggedOut(LogoutReason::LoggedOut),
            LinkState::LoggedOut { reason: LogoutReason::LoggedOut, at: 7 },
            "hermes whatsapp repair",
        ),
        (
            LinkEvent::LoggedOut(LogoutReason::Locked),
            LinkState::LoggedOut { reason: LogoutReason::Locked, at: 7 },
            "locked",
        ),
        (LinkEvent::DeviceRemoved, LinkState::DeviceRemoved { at: 7 }, "removed from Linked Devices"),
        (LinkEvent::ClientOutdated, LinkState::ClientOutdated { at: 7 }, "update hermes"),
    ] {
        let mut l = connected(0);
        check(&mut l, event, 7, 0.5, state.clone(), &[Action::Disconnect]);
        assert!(l.state().is_terminal());
        assert!(l.state().fix().is_some_and(|f| f.contains(fix)), "{:?}", l.state().fix());
        // Nothing but a new start gets it going: no retry, ever.
        for e in [
            LinkEvent::RetryDue,
            LinkEvent::Disconnected(Transient::Network),
            LinkEvent::Connected,
            LinkEvent::Replaced,
        ] {
            check(&mut l, e, 8, 0.5, state.clone(), &[]);
        }
    }
    // "Update", never "re-link", for an outdated client.
    assert!(!LinkState::ClientOutdated { at: 0 }.fix().is_some_and(|f| f.contains("repair")));
}

#[test]
fn terminal_from_every_live_state() {
    let live: Vec<Link> = {
        let mut v = vec![link(), connected(0)];
        let mut r = connected(0);
        r.step(LinkEvent::Disconnected(Transient::Network), 1, 0.5);
        v.push(r);
        let mut b = connected(0);
        b.step(LinkEvent::TemporaryBan { lasts: Duration::from_secs(10) }, 1, 0.5);
        v.push(b);
        let mut p = connected(0);
        p.step(LinkEvent::Replaced, 1, 0.5);
        v.push(p);
        v
    };
    for l in live {
        let mut l2 = l.clone();
        assert_eq!(l2.step(LinkEvent::DeviceRemoved, 99, 0.5), vec![Action::Disconnect], "from {:?}", l.state());
        assert_eq!(l2.state(), &LinkState::DeviceRemoved { at: 99 });
    }
}

#[test]
fn temporary_ban_waits_for_its_expiry() {
    let mut l = connected(0);
    let until = 5 * S + 3600 * S;
    check(
        &mut l,
        LinkEvent::TemporaryBan { lasts: Duration::from_secs(3600) },
        5 * S,
        0.5,
        LinkState::TemporarilyBanned { until },
        &[Action::Disconnect, Action::ConnectAt(until)],
    );
    assert!(!l.state().is_terminal());
    check(&mut l, LinkEvent::RetryDue, until, 0.5, LinkState::Connecting { attempt: 0 }, &[Action::Connect]);
}

#[test]
fn replaced_backs_off_longer_then_stops() {
    let mut l = connected(0);
    // Between 15 and 30 s after the first replacement.
    check(
        &mut l,
        LinkEvent::Replaced,
        0,
        0.0,
        LinkState::Replaced { count: 1, at: 15 * S },
        &[Action::ConnectAt(15 * S)],
    );
    l.step(LinkEvent::RetryDue, 15 * S, 0.0);
    l.step(LinkEvent::Connected, 16 * S, 0.0);
    check(
        &mut l,
        LinkEvent::Replaced,
        20 * S,
        0.0,
        LinkState::Replaced { count: 2, at: 50 * S },
        &[Action::ConnectAt(50 * S)],
    );
    l.step(LinkEvent::RetryDue, 50 * S, 0.0);
    l.step(LinkEvent::Connected, 51 * S, 0.0);
    check(
        &mut l,
        LinkEvent::Replaced,
        60 * S,
        0.0,
        LinkState::Stopped { why: StopReason::ReplacedRepeatedly },
        &[Action::Disconnect],
    );
    assert!(l.state().fix().is_some_and(|f| f.contains("another client is using this session")));
}

#[test]
fn replacements_far_apart_do_not_stop_the_link() {
    let mut l = connected(0);
    for i in 0..10u64 {
        let now = i * 700 * S; // more than the 10-minute window apart
        assert!(matches!(l.step(LinkEvent::Replaced, now, 0.5).as_slice(), [Action::ConnectAt(_)]));
        l.step(LinkEvent::RetryDue, now + 100 * S, 0.5);
        l.step(LinkEvent::Connected, now + 101 * S, 0.5);
    }
    assert_eq!(l.state().name(), "connected");
}

#[test]
fn stop_and_restart() {
    let mut l = connected(0);
    check(&mut l, LinkEvent::Stop, 1, 0.5, LinkState::Stopped { why: StopReason::Requested }, &[Action::Disconnect]);
    assert_eq!(l.state().fix(), None);
    check(&mut l, LinkEvent::Start { linked: true }, 2, 0.5, LinkState::Connecting { attempt: 0 }, &[Action::Connect]);
}

#[test]
fn codes_are_classified_once() {
    use LinkEvent as E;
    assert_eq!(classify_failure(401, None), E::LoggedOut(LogoutReason::LoggedOut));
    assert_eq!(classify_failure(403, None), E::LoggedOut(LogoutReason::Locked));
    assert_eq!(classify_failure(402, Some(60)), E::TemporaryBan { lasts: Duration::from_secs(60) });
    assert_eq!(classify_failure(405, None), E::ClientOutdated);
    assert_eq!(classify_failure(503, None), E::Disconnected(Transient::ServerError(503)));
    assert_eq!(classify_failure(500, None), E::Disconnected(Transient::ServerError(500)));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = LinkEvent> {
        prop_oneof![
            Just(LinkEvent::Connected),
            Just(LinkEvent::RetryDue),
            prop_oneof![
                Just(Transient::Network),
                Just(Transient::Timeout),
                Just(Transient::Restart),
                (400u16..600).prop_map(Transient::StreamError)
            ]
            .prop_map(LinkEvent::Disconnected),
        ]
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_bounds(failures in 0u32..100, unit in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.delay(failures, unit);
            prop_assert!(d <= p.cap);
            prop_assert!(d <= p.base * 2u32.saturating_pow(failures.min(20)));
            if failures == 0 {
                prop_assert!(d <= Duration::from_secs(1), "first retry within 1 s");
            }
        }

        /// Network trouble, however long and however it interleaves, never ends the session,
        /// and every wait is bounded by the cap.
        #[test]
        fn transient_trouble_never_becomes_terminal(
            events in prop::collection::vec((event(), 0u64..120_000, 0.0f64..1.0), 1..200)
        ) {
            let mut l = link();
            let mut now = 0u64;
            for (e, dt, unit) in events {
                now += dt;
                for a in l.step(e, now, unit) {
                    prop_assert_ne!(a, Action::Disconnect);
                    if let Action::ConnectAt(at) = a {
                        prop_assert!(at >= now && at - now <= 60_000, "wait {} ms", at - now);
                    }
                }
                prop_assert!(!l.state().is_terminal(), "{:?}", l.state());
            }
        }
    }
}

/// Issue 11: a full disk pauses receiving (never a QR, never a retry into the same wall) and
/// room resumes it; reports from the dropped connection change nothing meanwhile.
#[test]
fn issue_11_a_full_disk_pauses_until_there_is_room() {
    let mut l = connected(0);
    let paused = LinkState::StoragePaused { since: 5 * S, then: Resume::Connect };
    check(&mut l, LinkEvent::StorageFull, 5 * S, 0.5, paused.clone(), &[Action::Disconnect]);
    assert!(!l.state().is_terminal());
    assert!(l.state().fix().is_some_and(|f| f.contains("free some space")));
    check(&mut l, LinkEvent::Disconnected(Transient::Network), 6 * S, 0.5, paused.clone(), &[]);
    check(&mut l, LinkEvent::RetryDue, 7 * S, 0.5, paused.clone(), &[]);
    check(&mut l, LinkEvent::StorageFull, 8 * S, 0.5, paused, &[]);
    check(&mut l, LinkEvent::StorageReady, 9 * S, 0.5, LinkState::Connecting { attempt: 0 }, &[Action::Connect]);
    check(&mut l, LinkEvent::StorageReady, 10 * S, 0.5, LinkState::Connecting { attempt: 0 }, &[]);
    // While reconnecting, too: the retry timer is dropped.
    let mut l = connected(0);
    l.step(LinkEvent::Disconnected(Transient::Network), S, 0.5);
    let paused = LinkState::StoragePaused { since: 2 * S, then: Resume::Connect };
    check(&mut l, LinkEvent::StorageFull, 2 * S, 0.5, paused, &[Action::Disconnect]);
    // A ban interrupted by a full disk still runs its course when there is room.
    let mut l = connected(0);
    l.step(LinkEvent::TemporaryBan { lasts: std::time::Duration::from_secs(100) }, S, 0.5);
    let paused = LinkState::StoragePaused { since: 2 * S, then: Resume::Banned { until: 101 * S } };
    check(&mut l, LinkEvent::StorageFull, 2 * S, 0.5, paused, &[Action::Disconnect]);
    let banned = LinkState::TemporarilyBanned { until: 101 * S };
    check(&mut l, LinkEvent::StorageReady, 3 * S, 0.5, banned, &[Action::ConnectAt(101 * S)]);
    // And one that ended meanwhile connects at once.
    l.step(LinkEvent::StorageFull, 4 * S, 0.5);
    check(&mut l, LinkEvent::StorageReady, 200 * S, 0.5, LinkState::Connecting { attempt: 0 }, &[Action::Connect]);
}

#[test]
fn state_names_read_back_as_written() {
    for name in StateName::ALL {
        assert_eq!(StateName::parse(name.as_str()), Some(name));
    }
    assert_eq!(StateName::parse("Connected"), None);
    assert_eq!(connected(0).state().kind(), StateName::Connected);
}

#[test]
fn only_a_missing_or_ended_session_needs_a_new_link() {
    let needs: Vec<&str> = StateName::ALL.into_iter().filter(|n| n.needs_link()).map(StateName::as_str).collect();
    assert_eq!(needs, ["not_linked", "logged_out", "device_removed"]);
    // Each one is terminal: the supervisor stops there and the page takes over.
    for state in [
        LinkState::NotLinked,
        LinkState::LoggedOut { reason: LogoutReason::Locked, at: 0 },
        LinkState::DeviceRemoved { at: 0 },
    ] {
        assert!(state.is_terminal() && state.kind().needs_link(), "{state:?}");
    }
}
