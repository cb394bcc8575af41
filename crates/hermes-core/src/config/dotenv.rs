//! `.env` as Hermes reads it (python-dotenv), so an existing file means the same thing here.
//!
//! Not dotenvy: it rejects unquoted values with spaces (`WHATSAPP_ALLOWED_USERS=49151..., 1555...`),
//! which python-dotenv accepts and Hermes users write. The rules kept from python-dotenv:
//! optional `export `; `#` comment lines; unquoted values run to the end of the line, minus a
//! ` #` comment and trailing blanks; `'single'` quotes are literal (but `\'` and `\\`);
//! `"double"` quotes decode escapes and may span lines; `${VAR}` and `${VAR:-default}` expand
//! in unquoted and double-quoted values from earlier lines, then the environment. A line that
//! cannot be parsed is reported with its number, and the rest of the file still counts.

use std::collections::BTreeMap;

/// A line that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Parses `.env` text. `env` is the process environment, used for `${VAR}` expansion.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<DotenvError>) {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    // Editors on Windows start files with a byte-order mark; it is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let line = lines[i].trim_end_matches('\r');
        i += 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export").filter(|r| r.starts_with([' ', '\t'])).map_or(t, str::trim_start);
        let Some((key, rest)) = t.split_once('=') else {
            errors.push(DotenvError { line: start + 1, message: format!("'{}' has no '='", t.trim()) });
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('#') {
            errors.push(DotenvError { line: start + 1, message: format!("'{key}' is not a variable name") });
            continue;
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // A quoted value may continue on the following lines.
                let mut buf = rest[1..].to_owned();
                let closed = loop {
                    if let Some(end) = closing_quote(&buf, q) {
                        let after = buf[end + 1..].trim();
                        if !(after.is_empty() || after.starts_with('#')) {
                            break Err(format!("unexpected '{after}' after the closing quote"));
                        }
                        buf.truncate(end);
                        break Ok(buf);
                    }
                    match lines.get(i) {
                        Some(next) => {
                            buf.push('\n');
                            buf.push_str(next.trim_end_matches('\r'));
                            i += 1;
                        }
                        None => break Err(format!("the {q} quote opened here is never closed")),
                    }
                };
                match closed {
                    Ok(raw) if q == '"' => expand(&unescape_double(&raw), &vars, env),
                    Ok(raw) => raw.replace("\\'", "'").replace("\\\\", "\\"),
                    Err(message) => {
                        errors.push(DotenvError { line: start + 1, message });
                        // Like python-dotenv, go on with the next line rather than lose the file.
                        i = start + 1;
                        continue;
                    }
                }
            }
            _ => {
                let v = match rest.find(" #").or_else(|| rest.find("\t#")) {
                    Some(c) => &rest[..c],
                    None if rest.starts_with('#') => "",
                    None => rest,
                };
                expand(v.trim_end(), &vars, env)
            }
        };
        vars.insert(key.to_owned(), value);
    }
    (vars, errors)
}

/// The index of the quote that closes the value, skipping backslash-escaped ones.
fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == q && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(c @ ('"' | '\'' | '\\')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `${VAR}` and `${VAR:-default}`; the environment wins over earlier lines, as in
/// python-dotenv's default (`override=False`).
fn expand(s: &str, vars: &BTreeMap<String, String>, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else { break };
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..start + len];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        let value = env.get(name).or_else(|| vars.get(name)).map_or(default, String::as_str);
        out.push_str(value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> (Vec<(String, String)>, Vec<DotenvError>) {
        let env = BTreeMap::from([("HOME".to_owned(), "/home/ada".to_owned())]);
        let (v, e) = parse(text, &env);
        (v.into_iter().collect(), e)
    }

    #[track_caller]
    fn check(text: &str, key: &str, value: &str) {
        let (v, e) = vars(text);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(v.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()), Some(value), "in {text:?}");
    }

    /// Issue 11: a byte-order mark before the first key silently dropped that key.
    #[test]
    fn issue_11_a_byte_order_mark_does_not_hide_the_first_key() {
        check("\u{feff}WHATSAPP_ALLOWED_USERS=15551234567\nB=2", "WHATSAPP_ALLOWED_USERS", "15551234567");
    }

    /// Outside input: whatever the bytes, parsing ends, never panics, and keeps what it can.
    #[test]
    fn arbitrary_text_never_panics() {
        proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(512), |(text in "\\PC{0,400}")| {
            let _ = vars(&text);
        });
        proptest::proptest!(|(text in "[A-Z_=\"'#\\\\$ {}\n\r\t]{0,200}")| {
            let _ = vars(&text);
        });
    }

    #[test]
    fn python_dotenv_semantics() {
        check("A=4915112345678, 555 123 4567", "A", "4915112345678, 555 123 4567");
        check("A=value # comment", "A", "value");
        check("A=value#not-a-comment", "A", "value#not-a-comment");
        check("export A=1", "A", "1");
        check("  A = spaced  ", "A", "spaced");
        check("A='single # kept \\n'", "A", "single # kept \\n");
        check("A=\"⚕ *Hermes*\\n────\\n\"", "A", "⚕ *Hermes*\n────\n");
        check("A=\"two\nlines\"\nB=2", "A", "two\nlines");
        check("A=\"two\nlines\"\nB=2", "B", "2");
        check("A=\"q \\\" q\" # c", "A", "q \" q");
        check("A=", "A", "");
        check("A=#", "A", "");
        check("A=${HOME}/x", "A", "/home/ada/x");
        check("B=1\nA=${B}${MISSING:-d}", "A", "1d");
        check("A=1\r\nB=2\r\n", "B", "2");
        check("# comment\n\nA=1", "A", "1");
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let (v, e) = vars("A=1\nnot a line\nB=\"never closed\nC=3");
        assert_eq!(v, vec![("A".to_owned(), "1".to_owned()), ("C".to_owned(), "3".to_owned())]);
        assert_eq!(
            e,
            vec![
                DotenvError { line: 2, message: "'not a line' has no '='".into() },
                DotenvError { line: 3, message: "the \" quote opened here is never closed".into() },
            ]
        );
        let (_, e) = vars("A='x' y\nMY KEY=1");
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), vec![1, 2]);
    }
}

/// Sets variables in `.env` text, keeping everything else (comments, order, other keys): an
/// existing line is replaced in place, a new key is appended. Values that need it are quoted.
pub fn set_vars(text: &str, updates: &[(&str, &str)]) -> String {
    // Single quotes are literal (no `${}` expansion); double quotes only for what they cannot hold.
    let quote = |v: &str| {
        if !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || matches!(c, '#' | '"' | '\'' | '\\' | '$')) {
            v.to_owned()
        } else if !v.contains('\'') && !v.contains('\n') {
            format!("'{v}'")
        } else {
            format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        }
    };
    let key_of = |line: &str| -> Option<String> {
        let t = line.trim_start();
        let t = t.strip_prefix("export").filter(|r| r.starts_with([' ', '\t'])).map_or(t, str::trim_start);
        t.split_once('=').map(|(k, _)| k.trim().to_owned())
    };
    let mut done = vec![false; updates.len()];
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        match key_of(line).and_then(|k| updates.iter().position(|(u, _)| *u == k)) {
            // A later duplicate of a key already written would override it: drop it.
            Some(i) if done[i] => {}
            Some(i) => {
                out.push(format!("{}={}", updates[i].0, quote(updates[i].1)));
                done[i] = true;
            }
            None => out.push(line.to_owned()),
        }
    }
    for (i, (k, v)) in updates.iter().enumerate() {
        if !done[i] {
            out.push(format!("{k}={}", quote(v)));
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn set_vars_replaces_in_place_and_appends_and_round_trips() {
        let before = "# my settings\nWHATSAPP_MODE=self-chat\nOPENAI_API_KEY=sk-1\nWHATSAPP_MODE=old\n";
        let after = set_vars(
            before,
            &[("WHATSAPP_MODE", "bot"), ("WHATSAPP_ALLOWED_USERS", "15551234567, 4915112345678"), ("X", "a\"b$c")],
        );
        assert_eq!(
            after,
            "# my settings\nWHATSAPP_MODE=bot\nOPENAI_API_KEY=sk-1\nWHATSAPP_ALLOWED_USERS='15551234567, 4915112345678'\nX='a\"b$c'\n"
        );
        let (vars, errors) = parse(&after, &BTreeMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(vars["WHATSAPP_ALLOWED_USERS"], "15551234567, 4915112345678");
        assert_eq!(vars["WHATSAPP_MODE"], "bot");
        assert_eq!(vars["X"], "a\"b$c");
        let quoted = set_vars("", &[("P", "it's \"x\" # y")]);
        let (vars, _) = parse(&quoted, &BTreeMap::new());
        assert_eq!(vars["P"], "it's \"x\" # y", "{quoted}");
    }
}
