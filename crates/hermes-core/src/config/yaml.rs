//! A YAML tree that keeps scalars as written.
//!
//! Resolving YAML scalars to typed values loses what matters here: `0151 234` and `0151234`
//! would become integers, eating the leading zero that tells us a country code is missing, and
//! a quoted `"yes"` would be indistinguishable from a bare one. So `config.yaml` is read into
//! this tree of raw scalars with their line numbers, and each setting interprets its own.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with raw scalar text and the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Scalar { text: String, plain: bool, line: usize },
    Seq { items: Vec<Node>, line: usize },
    Map { entries: Vec<(String, Node)>, line: usize },
}

impl Node {
    pub fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// `~`, `null` or an empty plain scalar: YAML's way of saying "not set".
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, plain: true, .. } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map { entries, .. } => entries,
            _ => &[],
        }
    }

    /// A short name for the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a value",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// `config.yaml` could not be parsed at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config.yaml line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Deeper than any configuration needs; the limit keeps a hostile file from building a tree
/// whose recursive drop or comparison would overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses the first document. An empty file is an empty mapping.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    // Event by event rather than `Parser::load`, which recurses once per nesting level and so
    // overflows the stack on a hostile file before any limit of ours could say no.
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        match event {
            Event::StreamEnd | Event::DocumentEnd => break,
            event => builder.on_event(event, mark),
        }
    }
    if let Some(message) = builder.error {
        return Err(YamlError { line: builder.error_line, column: 1, message });
    }
    Ok(builder.root.unwrap_or(Node::Map { entries: Vec::new(), line: 1 }))
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(String, Node)>, Option<String>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    error: Option<String>,
    error_line: usize,
    /// Levels opened beyond [`MAX_DEPTH`], skipped with everything inside them.
    skipped: usize,
}

impl Builder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, key, _)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => match node {
                    Node::Scalar { text, .. } => *key = Some(text),
                    other => {
                        if self.error.is_none() {
                            self.error = Some(format!("a mapping key must be a plain value, not {}", other.kind()));
                            self.error_line = other.line();
                        }
                        *key = Some(String::new());
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        if opens && (self.skipped > 0 || self.stack.len() >= MAX_DEPTH) {
            if self.error.is_none() {
                self.error = Some(format!(
                    "nested deeper than {MAX_DEPTH} levels; a configuration never needs that, so this is not one"
                ));
                self.error_line = line;
            }
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            if matches!(ev, Event::SequenceEnd | Event::MappingEnd) {
                self.skipped -= 1;
            }
            return;
        }
        match ev {
            Event::Scalar(text, style, _, _) => {
                self.push_node(Node::Scalar { text, plain: style == TScalarStyle::Plain, line })
            }
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(Vec::new(), line)),
            Event::MappingStart(..) => self.stack.push(Frame::Map(Vec::new(), None, line)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(items, line)) => Node::Seq { items, line },
                    Some(Frame::Map(entries, _, line)) => Node::Map { entries, line },
                    None => return,
                };
                self.push_node(node);
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some("YAML aliases (*name) are not supported in config.yaml".to_owned());
                    self.error_line = line;
                }
                self.push_node(Node::Scalar { text: String::new(), plain: true, line });
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scalars_as_written() {
        let node = parse("whatsapp:\n  allow_from:\n    - 0151 234567\n    - +15551234567\n  require_mention: 'yes'\n")
            .expect("valid yaml");
        let wa = node.get("whatsapp").expect("whatsapp block");
        let Node::Seq { items, .. } = wa.get("allow_from").expect("allow_from") else { panic!("not a list") };
        assert_eq!(items[0], Node::Scalar { text: "0151 234567".into(), plain: true, line: 3 });
        assert_eq!(items[1], Node::Scalar { text: "+15551234567".into(), plain: true, line: 4 });
        assert_eq!(wa.get("require_mention"), Some(&Node::Scalar { text: "yes".into(), plain: false, line: 5 }));
    }

    /// Issue 11: 50,000 nested lists crashed every command with a stack overflow.
    #[test]
    fn issue_11_deep_nesting_is_an_error_not_a_crash() {
        let text = "- ".repeat(50_000) + "x\n";
        let err = parse(&text).expect_err("too deep");
        assert!(err.message.contains("nested deeper than 64 levels"), "{err}");
        let text = "[".repeat(50_000);
        assert!(parse(&text).is_err());
        let ok = "a:\n".to_owned() + &(1..40).map(|i| format!("{}b{i}:\n", "  ".repeat(i))).collect::<String>();
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let node = parse("\u{feff}whatsapp:\n  mode: bot\n").expect("valid");
        assert!(node.get("whatsapp").is_some());
    }

    #[test]
    fn empty_is_an_empty_mapping_and_garbage_is_an_error() {
        assert_eq!(parse("").expect("empty ok"), Node::Map { entries: vec![], line: 1 });
        let err = parse("whatsapp:\n  dm_policy: [open\n").expect_err("unclosed");
        assert!(err.line >= 2, "{err}");
    }
}
