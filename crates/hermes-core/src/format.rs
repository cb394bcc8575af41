//! What an LLM writes (Markdown) turned into what WhatsApp shows, cut into messages it accepts.
//!
//! WhatsApp has its own markup (`*bold*`, `_italic_`, `~strike~`, ``` ``` ``` and `` ` ``
//! monospace) and a 4096-character message limit. [`to_whatsapp`] follows Hermes'
//! `format_message` so replies look the same after a switch; [`chunk`] cuts long replies at
//! paragraph, line or word boundaries and never leaves a code block open across messages: a
//! fence cut in two is closed at the end of one message and reopened, with its language, at
//! the start of the next.

/// WhatsApp's limit on one text message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// The chunk budget when every message carries `prefix`, as Hermes computes it.
pub fn budget(prefix: &str) -> usize {
    MAX_MESSAGE_CHARS.saturating_sub(prefix.chars().count()).max(1024)
}

const FENCE: &str = "```";
// Private-use characters stand in for bold markers while italics are rewritten, so that the
// `*` of a converted `**bold**` is not read again as an italic marker.
const BOLD: char = '\u{E000}';

/// Markdown to WhatsApp markup. Code (fenced and inline) is kept as written.
pub fn to_whatsapp(markdown: &str) -> String {
    let cleaned = clean_spaces(markdown);
    let mut out = String::with_capacity(cleaned.len());
    let mut in_fence = false;
    for (i, line) in cleaned.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.trim_start().starts_with(FENCE) {
            in_fence = !in_fence;
            out.push_str(line);
        } else if in_fence {
            out.push_str(line);
        } else {
            out.push_str(&format_line(line));
        }
    }
    out
}

/// Invisible characters dropped, unusual spaces made ordinary (as Hermes does).
fn clean_spaces(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\u{200B}' | '\u{2060}' | '\u{2063}' | '\u{FEFF}'))
        .map(|c| match c {
            '\u{00A0}' | '\u{1680}' | '\u{180E}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => {
                ' '
            }
            c => c,
        })
        .collect()
}

/// One line outside code fences; inline code spans are left alone.
fn format_line(line: &str) -> String {
    // A heading becomes a bold line (nested emphasis markers dropped: WhatsApp does not nest).
    let trimmed = line.trim_start();
    let hashes = trimmed.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
        let title: String = trimmed[hashes..].trim().chars().filter(|c| *c != '*' && *c != '_').collect();
        return if title.is_empty() { String::new() } else { format!("*{title}*") };
    }
    // `* item` is a list bullet, not an italic marker.
    let indent = &line[..line.len() - trimmed.len()];
    let line = match trimmed.strip_prefix("* ") {
        Some(rest) => format!("{indent}- {rest}"),
        None => line.to_owned(),
    };
    let mut out = String::with_capacity(line.len());
    for (i, part) in line.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts sit between backticks: inline code.
        if i % 2 == 1 { out.push_str(part) } else { out.push_str(&format_span(part)) }
    }
    out
}

fn format_span(s: &str) -> String {
    let s = links(s);
    let s = replace_pairs(&s, "**", &BOLD.to_string());
    let s = replace_pairs(&s, "__", &BOLD.to_string());
    let s = replace_pairs(&s, "*", "_");
    let s = replace_pairs(&s, "~~", "~");
    s.replace(BOLD, "*")
}

/// Replaces each `marker text marker` (text non-empty, not starting or ending with a space)
/// by `with text with`; unpaired markers stay as written.
fn replace_pairs(s: &str, marker: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(marker) {
        let after = &rest[start + marker.len()..];
        let close = after.find(marker).filter(|&end| {
            let inner = &after[..end];
            !inner.is_empty() && !inner.starts_with(' ') && !inner.ends_with(' ')
        });
        match close {
            Some(end) => {
                out.push_str(&rest[..start]);
                out.push_str(with);
                out.push_str(&after[..end]);
                out.push_str(with);
                rest = &after[end + marker.len()..];
            }
            None => {
                out.push_str(&rest[..start + marker.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `[text](url)` becomes `text (url)`, or just `url` when the text is the url.
fn links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let parsed = after.find("](").and_then(|mid| {
            let url_part = &after[mid + 2..];
            let close = url_part.find(')')?;
            let (text, url) = (&after[..mid], &url_part[..close]);
            (!url.is_empty() && !url.contains(char::is_whitespace) && !text.contains('[')).then_some((
                text,
                url,
                open + 1 + mid + 2 + close + 1,
            ))
        });
        match parsed {
            Some((text, url, end)) => {
                out.push_str(&rest[..open]);
                if text.is_empty() || text == url {
                    out.push_str(url);
                } else {
                    out.push_str(&format!("{text} ({url})"));
                }
                rest = &rest[end..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Cuts `text` into messages of at most `max` characters (`max` >= 64), preferring a
/// paragraph break, then a line break, then a space in the second half of the window. A
/// code fence open at a cut is closed there and reopened (with its language) in the next
/// message. Whitespace at a cut is dropped; nothing else is.
pub fn chunk(text: &str, max: usize) -> Vec<String> {
    let max = max.max(64);
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let mut chunks = Vec::new();
    let mut rest: String = text.to_owned();
    loop {
        if rest.chars().count() <= max {
            chunks.push(rest);
            return chunks;
        }
        // Room for a closing fence, should the cut fall inside a code block.
        let window = max - (FENCE.len() + 1);
        let cut = cut_point(&rest, window);
        let (head, tail) = rest.split_at(cut);
        let mut head = head.trim_end().to_owned();
        let mut tail = tail.trim_start().to_owned();
        if let Some(lang) = open_fence(&head) {
            head.push('\n');
            head.push_str(FENCE);
            tail = format!("{FENCE}{lang}\n{tail}");
        }
        chunks.push(head);
        rest = tail;
    }
}

/// A byte index to cut at: at most `window` characters in, never 0.
fn cut_point(s: &str, window: usize) -> usize {
    let limit = s.char_indices().nth(window).map_or(s.len(), |(i, _)| i);
    let head = &s[..limit];
    let half = s.char_indices().nth(window / 2).map_or(0, |(i, _)| i);
    for sep in ["\n\n", "\n", " "] {
        if let Some(i) = head.rfind(sep).filter(|&i| i >= half) {
            return i + sep.len();
        }
    }
    limit
}

/// The language of a code fence left open at the end of `s`, if one is.
fn open_fence(s: &str) -> Option<String> {
    let mut open: Option<String> = None;
    for line in s.lines() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix(FENCE) {
            open = match open {
                Some(_) => None,
                // A language tag is a word; anything longer is not worth repeating.
                None => Some(info.trim().chars().take(20).collect()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests;
