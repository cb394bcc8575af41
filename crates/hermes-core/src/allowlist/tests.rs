use super::*;
use crate::identity::PhoneProblem;

/// One line per way of writing an entry: the raw text, and what it normalises to (`Ok`) or
/// the start of the problem's description (`Err`).
#[track_caller]
fn check(raw: &str, expected: Result<&str, &str>) {
    let list = Allowlist::parse(raw);
    assert_eq!(list.entries().len(), 1, "one entry expected from {raw:?}");
    let entry = &list.entries()[0];
    match (expected, &entry.outcome) {
        (Ok(norm), Ok(_)) => assert_eq!(entry.normalized().as_deref(), Some(norm), "for {raw:?}"),
        (Err(prefix), Err(problem)) => {
            let d = problem.describe();
            assert!(d.starts_with(prefix), "for {raw:?}: {d:?} should start with {prefix:?}");
        }
        (exp, got) => panic!("for {raw:?}: expected {exp:?}, got {got:?}"),
    }
}

#[test]
fn ordinary_spellings_of_one_number_are_admitted() {
    for raw in [
        "15551234567",
        "+15551234567",
        "+1 555 123 4567",
        "+1-555-123-4567",
        "+1 (555) 123-4567",
        "1.555.123.4567",
        "1 555 123 4567",
        "15551234567@s.whatsapp.net",
        "15551234567:3@s.whatsapp.net",
        "15551234567@c.us",
        // Pasted from a contact card: bidi embedding, no-break space, non-breaking hyphen.
        "\u{202A}+1 555\u{00A0}123\u{2011}4567\u{202C}",
        "\u{200E}+1\u{2009}555\u{2009}123\u{2009}4567",
        "tel:+1-555-123-4567",
        "TEL;TYPE=CELL:+1 555 123 4567",
        "item1.TEL;type=pref:+1 (555) 123-4567",
        "https://wa.me/15551234567",
        "wa.me/15551234567?text=hi",
        "001 555 123 4567",
        "+1 555 123 4567 ",
        "'15551234567'",
        "\"+1 555 123 4567\"",
        "\u{FF0B}\u{FF11}\u{FF15}\u{FF15}\u{FF15}\u{FF11}\u{FF12}\u{FF13}\u{FF14}\u{FF15}\u{FF16}\u{FF17}",
        "+1 555 123\u{2014}4567",
        "+1/555/1234567",
    ] {
        check(raw, Ok("15551234567"));
    }
}

#[test]
fn other_forms() {
    check("*", Ok("*"));
    check("123456789012345@lid", Ok("123456789012345@lid"));
    check("123456789012345:7@lid", Ok("123456789012345@lid"));
    check("+49 151 12345678", Ok("4915112345678"));
    check("0049 151 12345678", Ok("4915112345678"));
    // The UK's "(0)" is the trunk prefix, dialled only inside the country.
    check("+44 (0)20 7946 0958", Ok("442079460958"));
    check(
        "\u{0669}\u{0666}\u{0666}\u{0665}\u{0660}\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}\u{0667}",
        Ok("966501234567"),
    );
}

#[test]
fn implausible_entries_are_reported_with_a_reason() {
    check("0151 12345678", Err("'015112345678' starts with 0"));
    // Plausible in length, so admitted; the access hint catches the missing country code.
    check("555 1234", Ok("5551234"));
    check("12345", Err("has only 5 digits"));
    check("15551234567 4915112345678", Err("has 24 digits"));
    check("john", Err("contains 'j'"));
    check("+1 555 123 4567 ext 9", Err("contains 'e'"));
    check("120363001234567890@g.us", Err("is a group"));
    check("status@broadcast", Err("is a broadcast"));
    check("abc@s.whatsapp.net", Err("the part before '@'"));
    check("123@example.com", Err("'@example.com' is not"));
    check("1:x@lid", Err("'1:x@lid' is not a JID"));
    check("1+5551234567", Err("contains '+'"));
}

#[test]
fn lists_split_on_commas_and_newlines_and_keep_positions() {
    let list = Allowlist::parse("15551234567, +49 151 12345678\n0151 1234567,,\r\n*");
    let got: Vec<_> = list.entries().iter().map(|e| (e.position, e.normalized())).collect();
    assert_eq!(
        got,
        vec![(1, Some("15551234567".into())), (2, Some("4915112345678".into())), (3, None), (4, Some("*".into()))]
    );
    assert!(list.has_wildcard());
    assert_eq!(list.problems().count(), 1);
}

#[test]
fn duplicates_point_at_the_first_occurrence() {
    let list = Allowlist::parse("15551234567,+1 555 123 4567");
    assert_eq!(list.entries()[1].duplicate_of, Some(1));
}

#[test]
fn yaml_items_may_hold_lists_themselves() {
    let list = Allowlist::from_items(["15551234567", "4915112345678, 447911123456"]);
    assert_eq!(list.entries().len(), 3);
    assert_eq!(list.entries()[2].position, 3);
}

#[test]
fn fixes_are_concrete() {
    let list = Allowlist::parse("0151 12345678");
    let (_, problem) = list.problems().next().expect("a problem");
    assert_eq!(problem, &EntryProblem::Phone { digits: "015112345678".into(), problem: PhoneProblem::NationalZero });
    assert_eq!(
        problem.fix("WHATSAPP_ALLOWED_USERS"),
        "replace the leading 0 with the country code, e.g. a German 015112345678 becomes 4915112345678"
    );
}

#[test]
fn matching_prefers_a_concrete_entry_over_the_wildcard() {
    let list = Allowlist::parse("*, 15551234567");
    let me = UserId::Phone(PhoneNumber::from_digits("15551234567").expect("valid"));
    let (entry, via) = list.find_match(std::slice::from_ref(&me)).expect("match");
    assert_eq!(entry.position, 2);
    assert_eq!(via, Some(&me));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn number() -> impl Strategy<Value = String> {
        // A country code that does not start with 0, then the rest of a 7..=15 digit number.
        ("[1-9]", "[0-9]{6,14}").prop_map(|(a, b)| format!("{a}{b}"))
    }

    /// Writes a number the way a person might: grouped, with separators, a `+`, invisible marks.
    fn formatted(number: String) -> impl Strategy<Value = String> {
        let seps = prop::sample::select(vec![" ", "-", ".", "\u{00A0}", "\u{2011}", "\u{202F}", "", "/"]);
        (prop::collection::vec(seps, number.len()), any::<bool>(), any::<bool>(), 0..4usize).prop_map(
            move |(seps, plus, marks, wrapper)| {
                let mut out = String::new();
                if marks {
                    out.push('\u{202A}');
                }
                if plus {
                    out.push('+');
                }
                for (i, c) in number.chars().enumerate() {
                    out.push(c);
                    if i + 1 < number.len() {
                        out.push_str(seps[i]);
                    }
                }
                if marks {
                    out.push('\u{202C}');
                }
                match wrapper {
                    0 => out,
                    1 => format!("tel:{out}"),
                    2 => format!("  {out}  "),
                    _ => format!("{}@s.whatsapp.net", number),
                }
            },
        )
    }

    proptest! {
        #[test]
        fn any_formatting_of_a_number_normalises_to_it(
            (number, written) in number().prop_flat_map(|n| (Just(n.clone()), formatted(n)))
        ) {
            let list = Allowlist::parse(&written);
            prop_assert_eq!(list.entries().len(), 1);
            prop_assert_eq!(list.entries()[0].normalized(), Some(number));
        }

        #[test]
        fn normalisation_is_idempotent(raw in "\\PC{0,24}") {
            let once = Allowlist::parse(&raw);
            let again: Vec<String> = once.entries().iter().filter_map(|e| e.normalized()).collect();
            let twice = Allowlist::parse(&again.join(","));
            let twice: Vec<String> = twice.entries().iter().filter_map(|e| e.normalized()).collect();
            prop_assert_eq!(again, twice);
        }

        #[test]
        fn parsing_never_panics_and_keeps_every_entry(raw in "[0-9+ ,()\\-@a-z.:*\\n]{0,40}") {
            let list = Allowlist::parse(&raw);
            let written = raw.split([',', '\n']).filter(|s| !trim_entry(s).is_empty()).count();
            prop_assert_eq!(list.entries().len(), written);
        }
    }
}

#[track_caller]
fn check_chat(raw: &str, expected: Result<&str, ()>) {
    assert_eq!(parse_chat(raw).map(|j| j.to_string()).map_err(|_| ()), expected.map(str::to_owned), "for {raw:?}");
}

#[test]
fn chats_are_groups_or_people_in_any_spelling() {
    check_chat("120363012345678901@g.us", Ok("120363012345678901@g.us"));
    check_chat("120363012345678901", Ok("120363012345678901@g.us"));
    check_chat("1555123-1600000000", Ok("1555123-1600000000@g.us"));
    check_chat("+1 (555) 123-4567", Ok("15551234567@s.whatsapp.net"));
    check_chat("15551234567:3@s.whatsapp.net", Ok("15551234567@s.whatsapp.net"));
    check_chat("123456789012345@lid", Ok("123456789012345@lid"));
    check_chat("status@broadcast", Ok("status@broadcast"));
    check_chat("@g.us", Err(()));
    check_chat("alice", Err(()));
}
