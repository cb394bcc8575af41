//! Rust sources as tidy reads them. Comments and the insides of string and character literals
//! are blanked out, byte for byte, so that a word in a message or a doc comment is never taken
//! for code and every offset still falls on its line; and what only tests compile
//! (`#[cfg(test)]` items, and the files of the test modules they declare) is marked, because
//! the invariants are about what ships.

use std::io;
use std::path::{Path, PathBuf};

/// One `.rs` file under `crates/*/src`.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// From the repository root, with `/`: `crates/hermes/src/load.rs`.
    pub path: String,
    /// Its crate's directory under `crates/`: `hermes`.
    pub krate: String,
    raw: String,
    /// `raw` with comments and literal contents turned into spaces (newlines kept).
    pub code: String,
    line_starts: Vec<usize>,
    /// Per line (0-based): compiled for tests only.
    test: Vec<bool>,
    /// The modules this file declares under `#[cfg(test)]` with `mod name;`.
    test_mods: Vec<String>,
    /// Every path its `use` declarations name, groups spread out, with the line of the `use`.
    uses: Vec<(usize, String)>,
}

impl SourceFile {
    pub fn new(path: String, krate: String, raw: String) -> SourceFile {
        let code = blank(&raw);
        let mut line_starts = vec![0];
        line_starts.extend(raw.match_indices('\n').map(|(at, _)| at + 1));
        let mut file = SourceFile {
            path,
            krate,
            raw,
            code,
            test: vec![false; line_starts.len()],
            line_starts,
            test_mods: Vec::new(),
            uses: Vec::new(),
        };
        file.mark_test_items();
        file.uses = file.find_uses();
        file
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= at)
    }

    /// Line `line` (1-based) as written.
    pub fn raw_line(&self, line: usize) -> &str {
        let start = self.line_starts.get(line.wrapping_sub(1)).copied().unwrap_or(self.raw.len());
        let end = self.line_starts.get(line).map_or(self.raw.len(), |next| next - 1);
        self.raw.get(start..end.max(start)).unwrap_or("")
    }

    /// Whether line `line` (1-based) is compiled for tests only.
    pub fn is_test(&self, line: usize) -> bool {
        self.test.get(line.wrapping_sub(1)).copied().unwrap_or(false)
    }

    /// The lines (1-based, outside test code) where `needle` is written as code: as a whole
    /// word where it begins or ends with one, and in any path a grouped `use` spreads out.
    pub fn lines_with(&self, needle: &str) -> Vec<usize> {
        let in_code = self.code.match_indices(needle).filter(|(at, _)| bounded(&self.code, *at, needle));
        let mut lines: Vec<usize> = in_code.map(|(at, _)| self.line_of(at)).collect();
        for (line, path) in &self.uses {
            if path.match_indices(needle).any(|(at, _)| bounded(path, at, needle)) {
                lines.push(*line);
            }
        }
        lines.retain(|&l| !self.is_test(l));
        lines.sort_unstable();
        lines.dedup();
        lines
    }

    /// The paths of the `use` declarations outside test code, with their lines.
    pub fn uses(&self) -> impl Iterator<Item = &(usize, String)> {
        self.uses.iter().filter(|(line, _)| !self.is_test(*line))
    }

    /// Marks `#[cfg(test)]` items (and `#![cfg(test)]` files) and notes the test modules
    /// declared here whose bodies are files of their own.
    fn mark_test_items(&mut self) {
        let code = self.code.as_bytes();
        let mut regions = Vec::new();
        for (at, _) in self.code.match_indices("#![cfg(") {
            if let Some(end) = closing(code, at + 2, b'[', b']')
                && is_test_cfg(&self.code[at..=end])
            {
                regions.push((0, code.len()));
            }
        }
        for (at, _) in self.code.match_indices("#[cfg(") {
            let Some(attr_end) = closing(code, at + 1, b'[', b']') else { continue };
            if !is_test_cfg(&self.code[at..=attr_end]) {
                continue;
            }
            let item = skip_attributes(code, attr_end + 1);
            let Some((end, body)) = item_end(code, item) else { continue };
            regions.push((at, end));
            if !body && let Some(name) = declared_module(&self.code[item..end]) {
                self.test_mods.push(name);
            }
        }
        for (from, to) in regions {
            let (first, last) = (self.line_of(from), self.line_of(to.saturating_sub(1).max(from)));
            for flag in self.test.iter_mut().take(last).skip(first - 1) {
                *flag = true;
            }
        }
    }

    fn find_uses(&self) -> Vec<(usize, String)> {
        let code = self.code.as_bytes();
        let mut out = Vec::new();
        for (at, _) in self.code.match_indices("use") {
            let before_ok = at == 0 || !is_ident(code[at - 1]);
            let after_ok = code.get(at + 3).is_some_and(|c| c.is_ascii_whitespace());
            if !(before_ok && after_ok) {
                continue;
            }
            let Some(semi) = self.code[at..].find(';') else { continue };
            let tree = normalise(&self.code[at + 3..at + semi]);
            let mut paths = Vec::new();
            expand("", &tree, &mut paths);
            let line = self.line_of(at);
            out.extend(paths.into_iter().map(|p| (line, p)));
        }
        out
    }
}

/// Reads every `.rs` file under `crates/*/src`, in a stable order, with test code marked.
pub(crate) fn read_tree(root: &Path) -> io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for krate in sorted_entries(&root.join("crates"))? {
        let src = krate.join("src");
        if !src.is_dir() {
            continue;
        }
        let name = krate.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut paths = Vec::new();
        collect_rs(&src, &mut paths)?;
        for p in paths {
            let raw = std::fs::read_to_string(&p)?;
            files.push(SourceFile::new(relative(root, &p), name.clone(), raw));
        }
    }
    mark_test_modules(&mut files);
    Ok(files)
}

/// `path` under `root`, spelled with `/`.
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The entries of `dir`, sorted; none when it does not exist.
pub(crate) fn sorted_entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.path())).collect::<io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    entries.sort();
    Ok(entries)
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            collect_rs(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Whole files that are test modules: `#[cfg(test)] mod tests;` in `a/b.rs` makes
/// `a/b/tests.rs` (and everything under `a/b/tests/`) test code.
fn mark_test_modules(files: &mut [SourceFile]) {
    let mut prefixes = Vec::new();
    for f in files.iter() {
        let (dir, name) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
        let dir = match name {
            "lib.rs" | "main.rs" | "mod.rs" => dir.to_owned(),
            _ => format!("{dir}/{}", name.trim_end_matches(".rs")),
        };
        for m in &f.test_mods {
            prefixes.push((format!("{dir}/{m}.rs"), format!("{dir}/{m}/")));
        }
    }
    for f in files.iter_mut() {
        if prefixes.iter().any(|(file, under)| f.path == *file || f.path.starts_with(under.as_str())) {
            f.test.iter_mut().for_each(|t| *t = true);
        }
    }
}

pub(crate) fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `needle` at `at` in `s` is not part of a longer identifier on either side where it
/// begins or ends with an identifier character (`env::var` is not `env::var_os`; `rand::` is
/// a prefix).
pub(crate) fn bounded(s: &str, at: usize, needle: &str) -> bool {
    let (s, n) = (s.as_bytes(), needle.as_bytes());
    let (Some(&first), Some(&last)) = (n.first(), n.last()) else { return false };
    let joins_before = is_ident(first) && at.checked_sub(1).and_then(|i| s.get(i)).is_some_and(|&c| is_ident(c));
    let joins_after = is_ident(last) && s.get(at + n.len()).is_some_and(|&c| is_ident(c));
    !joins_before && !joins_after
}

/// `raw` with comments and the contents of string, raw string, byte string and character
/// literals replaced by spaces; newlines and everything else stay where they were.
pub(crate) fn blank(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = b.to_vec();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            let end = raw[i..].find('\n').map_or(n, |e| i + e);
            clear(&mut out, i, end);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                match (b[j], b.get(j + 1).copied()) {
                    (b'/', Some(b'*')) => (depth, j) = (depth + 1, j + 2),
                    (b'*', Some(b'/')) => (depth, j) = (depth - 1, j + 2),
                    _ => j += 1,
                }
            }
            clear(&mut out, i, j.min(n));
            i = j;
        } else if c == b'r'
            && starts_word(b, i)
            && let Some(hashes) = raw_string_hashes(b, i + 1)
        {
            let start = i + 1 + hashes + 1;
            let mut j = start;
            while j < n && !(b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&h| h == b'#').count() == hashes) {
                j += 1;
            }
            clear(&mut out, start, j.min(n));
            i = j + 1 + hashes;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < n && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            clear(&mut out, i + 1, j.min(n));
            i = j + 1;
        } else if c == b'\'' {
            match char_literal_end(b, i) {
                Some(end) => {
                    clear(&mut out, i + 1, end);
                    i = end + 1;
                }
                // A lifetime or a label.
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    // Whole characters were replaced, at ASCII boundaries, so this never loses anything.
    String::from_utf8_lossy(&out).into_owned()
}

fn clear(out: &mut [u8], from: usize, to: usize) {
    for c in out.iter_mut().take(to).skip(from) {
        if *c != b'\n' {
            *c = b' ';
        }
    }
}

/// An `r` that begins a raw string's prefix (`r"`, `r#"`, `br"`), not the end of a name.
fn starts_word(b: &[u8], i: usize) -> bool {
    match i.checked_sub(1).map(|p| b[p]) {
        None => true,
        Some(b'b') => i < 2 || !is_ident(b[i - 2]),
        Some(c) => !is_ident(c),
    }
}

/// After an `r`: how many `#` open a raw string, when one opens here.
fn raw_string_hashes(b: &[u8], from: usize) -> Option<usize> {
    let hashes = b[from.min(b.len())..].iter().take_while(|&&c| c == b'#').count();
    (b.get(from + hashes) == Some(&b'"')).then_some(hashes)
}

/// Where the character literal opening at `i` closes; `None` for a lifetime or a label.
fn char_literal_end(b: &[u8], i: usize) -> Option<usize> {
    let first = *b.get(i + 1)?;
    if first == b'\\' {
        // An escape: `'\n'`, `'\''`, `'\u{1F600}'`.
        let from = i + 3;
        return b.get(from..(from + 10).min(b.len()))?.iter().position(|&c| c == b'\'').map(|p| from + p);
    }
    let len = match first {
        0..0x80 => 1,
        0xc0..0xe0 => 2,
        0xe0..0xf0 => 3,
        _ => 4,
    };
    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
}

/// The offset of the bracket closing the one at `open`.
fn closing(code: &[u8], open: usize, opening: u8, closer: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(open) {
        if c == opening {
            depth += 1;
        } else if c == closer {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// `#[cfg(test)]`, or `#[cfg(all(.., test, ..))]`: compiled for tests only.
fn is_test_cfg(attr: &str) -> bool {
    let s: String = attr.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(inner) = s.strip_prefix("#[cfg(").or_else(|| s.strip_prefix("#![cfg(")) else { return false };
    let Some(inner) = inner.strip_suffix(")]") else { return false };
    if inner == "test" {
        return true;
    }
    inner
        .strip_prefix("all(")
        .and_then(|i| i.strip_suffix(')'))
        .is_some_and(|list| split_top(list).any(|i| i == "test"))
}

/// Past the whitespace and further attributes after an attribute.
fn skip_attributes(code: &[u8], mut at: usize) -> usize {
    loop {
        while code.get(at).is_some_and(|c| c.is_ascii_whitespace()) {
            at += 1;
        }
        if code.get(at) == Some(&b'#')
            && let Some(end) = closing(code, at + 1, b'[', b']')
        {
            at = end + 1;
        } else {
            return at;
        }
    }
}

/// The end (exclusive) of the item starting at `at`, and whether it had a `{ }` body: the
/// first `;` outside brackets, or the brace closing the first `{`.
fn item_end(code: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(at) {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => return Some((j + 1, false)),
            b'{' if depth == 0 => return closing(code, j, b'{', b'}').map(|end| (end + 1, true)),
            _ => {}
        }
    }
    None
}

/// `name` of an item `mod name;` (with any visibility).
fn declared_module(item: &str) -> Option<String> {
    let mut rest = item.trim_start();
    if let Some(r) = rest.strip_prefix("pub") {
        rest = r.trim_start();
        if rest.starts_with('(') {
            rest = &rest[rest.find(')')? + 1..];
        }
    }
    let name: String = rest
        .trim_start()
        .strip_prefix("mod ")?
        .trim_start()
        .bytes()
        .take_while(|&c| is_ident(c))
        .map(char::from)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A `use` tree with its whitespace taken out (but around `as`).
fn normalise(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut s = words.join(" ");
    for (from, to) in [(" ::", "::"), (":: ", "::"), ("{ ", "{"), (" }", "}"), (" ,", ","), (", ", ",")] {
        s = s.replace(from, to);
    }
    s
}

/// Spreads the groups of a `use` tree out: `std::{fs, io::{self, Write}}` gives `std::fs`,
/// `std::io` and `std::io::Write`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let Some(close) = tree.rfind('}') else { return };
        let head = format!("{prefix}{}", &tree[..open]);
        for part in split_top(&tree[open + 1..close.max(open + 1)]) {
            expand(&head, part, out);
        }
        return;
    }
    let item = tree.split(" as ").next().unwrap_or(tree);
    match item {
        "" => {}
        "self" => out.push(prefix.trim_end_matches("::").to_owned()),
        _ => out.push(format!("{prefix}{item}")),
    }
}

/// `s` split at the commas outside brackets and braces; empty parts skipped.
fn split_top(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}
