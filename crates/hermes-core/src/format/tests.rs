use proptest::prelude::*;

use super::*;

#[track_caller]
fn check(markdown: &str, expected: &str) {
    assert_eq!(to_whatsapp(markdown), expected, "input: {markdown:?}");
}

#[test]
fn markup() {
    check("plain text", "plain text");
    check("**bold** and *italic*", "*bold* and _italic_");
    check("__bold__ too", "*bold* too");
    check("~~gone~~", "~gone~");
    check("# Title", "*Title*");
    check("### A **loud** title", "*A loud title*");
    check("#hashtag stays", "#hashtag stays");
    check("see [the docs](https://x.org/a)", "see the docs (https://x.org/a)");
    check("[https://x.org](https://x.org)", "https://x.org");
    check("[not a link] (x)", "[not a link] (x)");
    check("* one\n* two", "- one\n- two");
    check("  * nested *em*", "  - nested _em_");
    check("a * b * c", "a * b * c");
    check("2 ** 3", "2 ** 3");
    check("use `**raw**` here", "use `**raw**` here");
    check("```rust\nlet x = **y**;\n```\n**after**", "```rust\nlet x = **y**;\n```\n*after*");
    check("zero\u{200B}width\u{00A0}space", "zerowidth space");
}

#[test]
fn short_text_is_one_chunk() {
    assert_eq!(chunk("hello", 4096), vec!["hello"]);
    assert!(chunk("   \n ", 4096).is_empty());
}

#[test]
fn cuts_prefer_paragraphs_then_lines_then_words() {
    let para = format!("{}\n\n{}", "a".repeat(60), "b".repeat(60));
    assert_eq!(chunk(&para, 100), vec!["a".repeat(60), "b".repeat(60)]);
    let words = format!("{} {}", "a".repeat(70), "b".repeat(70));
    assert_eq!(chunk(&words, 100), vec!["a".repeat(70), "b".repeat(70)]);
    let unbroken = "x".repeat(250);
    let parts = chunk(&unbroken, 100);
    assert!(parts.iter().all(|p| p.chars().count() <= 100));
    assert_eq!(parts.concat(), unbroken);
}

#[test]
fn a_code_block_cut_in_two_is_closed_and_reopened() {
    let code: String = (0..40).map(|i| format!("let v{i} = {i};\n")).collect();
    let text = format!("Here:\n```rust\n{code}```\ndone");
    let parts = chunk(&text, 200);
    assert!(parts.len() > 2);
    for p in &parts {
        assert_eq!(p.matches("```").count() % 2, 0, "unbalanced chunk: {p:?}");
        assert!(p.chars().count() <= 200);
    }
    assert!(parts[1].starts_with("```rust\n"));
    // The code itself survives whole, in order.
    let kept: String = parts.join("\n").lines().filter(|l| l.starts_with("let ")).map(|l| format!("{l}\n")).collect();
    assert_eq!(kept, code);
}

#[test]
fn budget_leaves_room_for_the_prefix() {
    assert_eq!(budget(""), 4096);
    assert_eq!(budget("⚕ *Hermes Agent*\n────────────\n"), 4096 - 30);
    assert_eq!(budget(&"x".repeat(5000)), 1024);
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

proptest! {
    #[test]
    fn chunks_fit_and_lose_nothing(text in "[a-z ]{0,30}(\n{0,2}[a-zA-Z0-9 .,]{0,120}){0,40}", max in 64usize..400) {
        let parts = chunk(&text, max);
        for p in &parts {
            prop_assert!(p.chars().count() <= max);
            prop_assert!(!p.trim().is_empty());
        }
        // Only whitespace at the cuts may go; a word cut in two (no space to cut at) rejoins.
        prop_assert_eq!(parts.concat().split_whitespace().collect::<String>(), words(&text).concat());
    }

    #[test]
    fn fenced_chunks_stay_balanced(lines in proptest::collection::vec("[a-z ]{0,50}", 1..80), max in 64usize..300) {
        let text = format!("intro\n```sh\n{}\n```\noutro", lines.join("\n"));
        for p in chunk(&text, max) {
            prop_assert!(p.chars().count() <= max);
            prop_assert_eq!(p.matches("```").count() % 2, 0);
        }
    }

    #[test]
    fn formatting_is_stable_on_plain_words(text in "[a-zA-Z0-9 ,.\n]{0,200}") {
        prop_assert_eq!(to_whatsapp(&text), text);
    }
}
