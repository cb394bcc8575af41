//! How much text goes to the model: a cap on one message and on the history sent with it.
//!
//! A 300 KB message went to the model whole, and forty turns of history had no size at all:
//! a cost and a failure waiting to happen (context limits answer with an error the sender
//! would see). Both are cut here, and a cut message says so to the model, so it does not
//! answer as if it had read everything.

/// `text` cut to at most `max` characters (on a character boundary), with a note to the model
/// when it was cut. `max == 0` means no cap.
pub fn cap_message(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if max == 0 || total <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}\n\n[The message was cut: only its first {max} of {total} characters are shown.]")
}

/// How many of the most recent `turns` (oldest first, each the length of its text in
/// characters) fit in `max` characters. The newest turn always counts, so a conversation is
/// never sent without its last exchange; `max == 0` means no cap.
pub fn history_fits(turn_chars: &[usize], max: usize) -> usize {
    if max == 0 {
        return turn_chars.len();
    }
    let mut used = 0usize;
    let mut kept = 0;
    for chars in turn_chars.iter().rev() {
        used = used.saturating_add(*chars);
        if used > max && kept > 0 {
            break;
        }
        kept += 1;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_and_says_so() {
        assert_eq!(cap_message("short", 10), "short");
        assert_eq!(cap_message("ééééé", 0), "ééééé");
        let cut = cap_message(&"é".repeat(300_000), 1000);
        assert!(cut.starts_with(&"é".repeat(1000)));
        assert!(cut.ends_with("[The message was cut: only its first 1000 of 300000 characters are shown.]"));
    }

    #[test]
    fn history_keeps_the_newest_turns_that_fit() {
        assert_eq!(history_fits(&[10, 10, 10], 0), 3);
        assert_eq!(history_fits(&[10, 10, 10], 25), 2);
        assert_eq!(history_fits(&[10, 10, 10], 30), 3);
        assert_eq!(history_fits(&[10, 10, 500], 25), 1, "the newest turn always counts");
        assert_eq!(history_fits(&[], 25), 0);
    }

    proptest::proptest! {
        #[test]
        fn a_cut_message_never_exceeds_its_cap_plus_the_note(text in "\\PC{0,300}", max in 1usize..100) {
            let cut = cap_message(&text, max);
            proptest::prop_assert!(cut.chars().count() <= max + 100);
        }
    }
}
